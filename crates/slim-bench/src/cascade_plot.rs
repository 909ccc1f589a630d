//! `cascade.png` and `cascade.svg`: on the measured half, top-1 against mean MACs per image
//! for each fixed width (points), the calibrated cascade's widths at every swept threshold
//! (a line) and the calibrated cascade as run (a triangle); the widest width's top-1 less half a point is
//! a dashed line.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::Error;
use crate::cascade::CascadeReport;
use crate::plot::{COLORS, Figure, accuracy_mesh, legend, log_ticks, write_figure};

struct CascadeFigure<'a>(&'a CascadeReport);

impl Figure for CascadeFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (800, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let r = self.0;
        root.fill(&WHITE).map_err(err)?;
        let fixed: Vec<(f64, f64, String)> = r
            .rows
            .iter()
            .filter_map(|row| {
                let w = row.width?;
                Some((row.mean_macs / 1e6, row.top1 * 100.0, w.to_string()))
            })
            .collect();
        let cascade = r.rows.iter().find(|row| row.width.is_none());
        let curve: Vec<(f64, f64)> = r
            .sweep
            .iter()
            .map(|p| (p.mean_macs / 1e6, p.top1 * 100.0))
            .collect();
        let all = || {
            fixed
                .iter()
                .map(|&(x, y, _)| (x, y))
                .chain(curve.iter().copied())
        };
        let (x_lo, x_hi) = all().fold((f64::MAX, f64::MIN), |(lo, hi), (x, _)| {
            (lo.min(x), hi.max(x))
        });
        let (y_lo, y_hi) = all().fold((f64::MAX, f64::MIN), |(lo, hi), (_, y)| {
            (lo.min(y), hi.max(y))
        });
        let pad = ((y_hi - y_lo) * 0.15).max(1.0);
        let (x0, x1) = (x_lo / 1.3, x_hi * 1.3);
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .caption(
                format!(
                    "width cascade ({}) on {} held-out images, one per call",
                    r.calibrated.cascade.confidence().name(),
                    r.images
                ),
                ("sans-serif", 18),
            )
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(
                (x0..x1).log_scale().with_key_points(log_ticks(x0, x1)),
                y_lo - pad..y_hi + 2.5 * pad,
            )
            .map_err(err)?;
        accuracy_mesh(&mut chart, "mean MACs per image (millions, log scale)")?;
        let (blue, red, green) = (COLORS[0], COLORS[1], COLORS[2]);
        chart
            .draw_series(fixed.iter().map(|(x, y, w)| {
                EmptyElement::at((*x, *y))
                    + Circle::new((0, 0), 5, blue.filled())
                    + Text::new(w.clone(), (-10, -22), ("sans-serif", 13))
            }))
            .map_err(err)?
            .label("fixed widths")
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, blue.filled()));
        chart
            .draw_series(LineSeries::new(curve, green.stroke_width(2)))
            .map_err(err)?
            .label(format!(
                "its widths, threshold 0 to 1 in steps of 1/{}",
                crate::cascade::SWEEP_STEPS
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], green.stroke_width(2))
            });
        if let Some(&(_, widest, _)) = fixed.last() {
            let at = widest - 0.5;
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, at), (x1, at)],
                    8,
                    6,
                    red.stroke_width(1),
                ))
                .map_err(err)?
                .label("widest width's top-1 less 0.5 points")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(1))
                });
        }
        if let Some(c) = cascade {
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((c.mean_macs / 1e6, c.top1 * 100.0))
                        + TriangleMarker::new((0, 0), 9, red.filled()),
                ))
                .map_err(err)?
                .label(format!(
                    "calibrated cascade {}, run",
                    r.calibrated.cascade.describe()
                ))
                .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 7, red.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(|e| e.to_string())
    }
}

/// Writes `dir/cascade.png` and `dir/cascade.svg`; returns their paths.
pub fn write(dir: &Path, report: &CascadeReport) -> Result<Vec<PathBuf>, Error> {
    let (png, svg) = (dir.join("cascade.png"), dir.join("cascade.svg"));
    write_figure(&CascadeFigure(report), &png, &svg)?;
    Ok(vec![png, svg])
}
