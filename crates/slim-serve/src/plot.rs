//! The load run drawn over time (`slim-serve load --plot`): each second's round-trip p95
//! against the target, the mean width served, and the server's resident memory, three
//! panels sharing the time axis; PNG and SVG through slim-bench's [`Figure`].

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use slim_bench::plot::{COLORS, Figure, legend, tick, write_figure};

use crate::Error;
use crate::load::Report;

/// The three panels of one run.
pub struct Timeline<'a>(pub &'a Report);

/// Draws `points` (second, value) as a line in a panel titled `title`, with `y` its range,
/// and a dashed horizontal line at `mark` when given.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    points: Vec<(f64, f64)>,
    y: std::ops::Range<f64>,
    mark: Option<(f64, String)>,
    seconds: f64,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .caption(title, ("sans-serif", 18))
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..seconds, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start")
        .y_desc(y_desc)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .axis_desc_style(("sans-serif", 14))
        .label_style(("sans-serif", 12))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(points, COLORS[0].stroke_width(2)))
        .map_err(err)?;
    if let Some((at, label)) = mark {
        let red = COLORS[1];
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, at), (seconds, at)],
                8,
                6,
                red.stroke_width(2),
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    Ok(())
}

impl Figure for Timeline<'_> {
    fn size(&self) -> (u32, u32) {
        (1200, 900)
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        let r = self.0;
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let seconds = r.seconds.len().max(1) as f64;
        let at = |s: u64| s as f64 + 0.5;
        let p95: Vec<(f64, f64)> = r
            .seconds
            .iter()
            .filter_map(|s| Some((at(s.second), s.p95_ms?)))
            .collect();
        let width: Vec<(f64, f64)> = r
            .seconds
            .iter()
            .filter(|s| s.ok > 0)
            .map(|s| {
                let sum: f64 = s.widths.iter().map(|&(w, n)| w * n as f64).sum();
                (at(s.second), sum / s.ok as f64)
            })
            .collect();
        let rss: Vec<(f64, f64)> = r
            .seconds
            .iter()
            .filter_map(|s| Some((at(s.second), s.resident_mib?)))
            .collect();
        let top = |v: &[(f64, f64)], floor: f64| v.iter().map(|p| p.1).fold(floor, f64::max) * 1.15;
        let panels = root.split_evenly((3, 1));
        let title = format!(
            "round-trip p95 per second, {} closed-loop clients",
            r.clients
        );
        let target = (r.target_ms, format!("p95 target {} ms", r.target_ms));
        panel(
            &panels[0],
            &title,
            "p95 (ms)",
            p95.clone(),
            0.0..top(&p95, r.target_ms),
            Some(target),
            seconds,
        )?;
        panel(
            &panels[1],
            "mean width served per second",
            "width",
            width,
            0.0..1.1,
            None,
            seconds,
        )?;
        panel(
            &panels[2],
            "server resident memory (scraped from /metrics each second)",
            "MiB",
            rss.clone(),
            0.0..top(&rss, 1.0),
            None,
            seconds,
        )?;
        root.present().map_err(|e| e.to_string())
    }
}

/// Writes `stem.png` and `stem.svg`.
pub fn write(report: &Report, stem: &Path) -> Result<(), Error> {
    write_figure(
        &Timeline(report),
        &stem.with_extension("png"),
        &stem.with_extension("svg"),
    )?;
    Ok(())
}
