//! The trade-off plot: top-1 accuracy against MACs and against measured p50 latency, one
//! point per graph labelled with its width (and precision, `0.5/int8`), each series' Pareto
//! front over all its graphs drawn as a line (filled points are on it, hollow ones are
//! dominated). Float graphs are circles; f16 ones triangles and int8 ones squares, each
//! precision with its own legend entry. Written as `plot.png` and
//! `plot.svg`, two panels side by side, [`SIZE`] pixels. Text is set in a DejaVu Sans
//! subset compiled into the binary, so the PNG looks the same on machines without fonts.
//! [`write_figure`] writes any [`Figure`] the same way (slim-serve's load timeline).

use slim_core::{Precision, Variant, Width};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::Error;
use crate::report::Report;

/// Width and height of both files, in pixels.
pub const SIZE: (u32, u32) = (1200, 520);

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");
pub const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

/// One graph (a width in a precision) of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub width: Width,
    pub precision: Precision,
    pub mmacs: f64,
    /// p50 at the plotted batch size, if measured.
    pub latency_ms: Option<f64>,
    /// Top-1 accuracy in [0, 1].
    pub top1: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
}

impl Series {
    /// The graphs of `report` that have an accuracy, with their p50 latency at `batch`;
    /// `None` when no graph has an accuracy.
    pub fn from_report(report: &Report, label: String, batch: usize) -> Option<Series> {
        let points: Vec<Point> = report
            .widths
            .iter()
            .filter_map(|w| {
                Some(Point {
                    width: w.width,
                    precision: w.precision,
                    mmacs: w.macs as f64 / 1e6,
                    latency_ms: w.at_batch(batch).map(|l| l.p50_ms),
                    top1: w.accuracy.as_ref()?.figures.top1,
                })
            })
            .collect();
        (!points.is_empty()).then_some(Series { label, points })
    }
}

impl Series {
    /// The precisions of this series' graphs, float first.
    fn precisions(&self) -> Vec<Precision> {
        let mut list: Vec<Precision> = self.points.iter().map(|p| p.precision).collect();
        list.sort();
        list.dedup();
        list
    }
}

/// Indices of the points on the Pareto front of (cost, accuracy) pairs, cheapest first: a
/// point is on it unless another is at most as costly and at least as accurate, and
/// strictly better in one of the two.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let dominated = |i: usize| {
        let (c, a) = points[i];
        points
            .iter()
            .any(|&(c2, a2)| c2 <= c && a2 >= a && (c2 < c || a2 > a))
    };
    let mut front: Vec<usize> = (0..points.len()).filter(|&i| !dominated(i)).collect();
    front.sort_by(|&i, &j| points[i].0.total_cmp(&points[j].0));
    front
}

/// A tick label: three significant digits at most, no trailing zeros.
pub fn tick(v: f64) -> String {
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Tick positions for a log axis over `lo..hi`: 1-2-5 steps, or finer ones when those give
/// fewer than four ticks.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (d0, d1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let mut ticks = Vec::new();
    for steps in [
        &[1.0, 2.0, 5.0][..],
        &[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0],
    ] {
        ticks = (d0..=d1)
            .flat_map(|d| steps.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|&t| t >= lo && t <= hi)
            .collect();
        if ticks.len() >= 4 {
            break;
        }
    }
    ticks
}

/// Which cost a panel puts on the x axis.
#[derive(Clone, Copy)]
enum Cost {
    Macs,
    Latency,
}

impl Cost {
    fn of(self, p: &Point) -> Option<f64> {
        match self {
            Cost::Macs => Some(p.mmacs),
            Cost::Latency => p.latency_ms,
        }
    }
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
    cost: Cost,
    batch: usize,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let points = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter_map(|p| Some((cost.of(p)?, p.top1 * 100.0)))
    };
    let (title, x_desc) = match cost {
        Cost::Macs => (
            "top-1 accuracy vs MACs".to_string(),
            "MACs per image (millions, log scale)".to_string(),
        ),
        Cost::Latency => (
            format!("top-1 accuracy vs p50 latency, batch {batch}"),
            format!("p50 latency per call, batch {batch} (ms, log scale)"),
        ),
    };
    if points().next().is_none() {
        area.draw(&Text::new(
            "no latency measured at this batch size",
            (60, 60),
            ("sans-serif", 16),
        ))
        .map_err(err)?;
        return Ok(());
    }
    let (x_lo, x_hi) = points().fold((f64::MAX, f64::MIN), |(lo, hi), (x, _)| {
        (lo.min(x), hi.max(x))
    });
    let (y_lo, y_hi) = points().fold((f64::MAX, f64::MIN), |(lo, hi), (_, y)| {
        (lo.min(y), hi.max(y))
    });
    let y_pad = ((y_hi - y_lo) * 0.12).max(1.0);
    let (y_bottom, y_top) = (y_lo - y_pad, y_hi + y_pad);
    // Room above the highest point for the legend (upper left): its share of the plot's
    // roughly 400 pixels of height.
    // Legend entries: each series' front, and each of its precisions but f32.
    let entries: usize = (series.iter())
        .map(|s| 1 + s.precisions().iter().filter(|p| !p.is_f32()).count())
        .sum();
    let legend_share = ((entries * 20 + 20) as f64 / 400.0).min(0.5);
    let y_top = (y_top - legend_share * y_bottom) / (1.0 - legend_share);
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .caption(title, ("sans-serif", 20))
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (x_lo / 1.3..x_hi * 1.3)
                .log_scale()
                .with_key_points(log_ticks(x_lo / 1.3, x_hi * 1.3)),
            y_bottom..y_top,
        )
        .map_err(err)?;
    accuracy_mesh(&mut chart, &x_desc)?;
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let pts: Vec<(f64, f64, Variant)> = s
            .points
            .iter()
            .filter_map(|p| {
                let v = Variant::new(p.width, p.precision);
                Some((cost.of(p)?, p.top1 * 100.0, v))
            })
            .collect();
        let pairs: Vec<(f64, f64)> = pts.iter().map(|&(x, y, _)| (x, y)).collect();
        // One front over every graph of the series, whatever its precision.
        let front = pareto_front(&pairs);
        chart
            .draw_series(LineSeries::new(
                front.iter().map(|&i| pairs[i]),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("{}: line = Pareto front", s.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        for precision in s.precisions() {
            let drawn = chart
                .draw_series(
                    (pts.iter().enumerate())
                        .filter(|(_, (_, _, v))| v.precision == precision)
                        .map(|(i, &(x, y, v))| {
                            let style = if front.contains(&i) {
                                color.filled()
                            } else {
                                color.stroke_width(2)
                            };
                            EmptyElement::at((x, y))
                                + marker(precision, (0, 0), style)
                                + Text::new(format!("{v}"), (-10, -22), ("sans-serif", 13))
                        }),
                )
                .map_err(err)?;
            if precision != Precision::F32 {
                drawn
                    .label(format!("{}: {precision}", s.label))
                    .legend(move |(x, y)| marker(precision, (x + 10, y), color.filled()));
            }
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// A point's mark: a circle for a float graph, a triangle for f16, a square for int8.
fn marker<DB: DrawingBackend>(
    precision: Precision,
    at: (i32, i32),
    style: ShapeStyle,
) -> DynElement<'static, DB, (i32, i32)> {
    let (x, y) = at;
    match precision {
        Precision::F32 => Circle::new(at, 5, style).into_dyn(),
        Precision::F16 => TriangleMarker::new(at, 6, style).into_dyn(),
        Precision::Int8 => Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], style).into_dyn(),
    }
}

/// The axes of a top-1 (%) against log-scale cost chart, `x_desc` under the x axis.
pub fn accuracy_mesh<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, LogAccuracy>,
    x_desc: &str,
) -> Result<(), String> {
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("top-1 accuracy (%)")
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(|e| e.to_string())
}

/// A log-scale cost (x) against top-1 (y) chart's coordinates.
pub type LogAccuracy = Cartesian2d<WithKeyPoints<LogCoord<f64>>, RangedCoordf64>;

/// Draws the labels of `chart`'s series in a framed box at `at`.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(at)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// A picture that can be drawn on any plotters backend: the same code makes the PNG and
/// the SVG.
pub trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String>;
}

struct TradeOff<'a> {
    series: &'a [Series],
    batch: usize,
}

impl Figure for TradeOff<'_> {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(SIZE.0 / 2);
        panel(&left, self.series, Cost::Macs, self.batch)?;
        panel(&right, self.series, Cost::Latency, self.batch)?;
        root.present().map_err(|e| e.to_string())
    }
}

/// Registers the bundled font as plotters' `sans-serif`, once.
fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| "the bundled font does not parse".to_string())
}

/// Writes `figure` as a PNG at `png_path` and an SVG at `svg_path`, each atomically, text
/// in the bundled font.
pub fn write_figure(figure: &impl Figure, png_path: &Path, svg_path: &Path) -> Result<(), Error> {
    let fail = |path: &Path, msg: String| Error::Plot {
        path: path.to_path_buf(),
        msg,
    };
    register_font().map_err(|m| fail(png_path, m))?;
    let size = figure.size();
    let mut rgb = vec![0u8; (size.0 * size.1 * 3) as usize];
    figure
        .draw(BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area())
        .map_err(|m| fail(png_path, m))?;
    let mut png = Vec::new();
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    PngEncoder::new_with_quality(&mut png, CompressionType::Best, FilterType::Adaptive)
        .write_image(&rgb, size.0, size.1, image::ExtendedColorType::Rgb8)
        .map_err(|e| fail(png_path, e.to_string()))?;
    slim_core::fsutil::atomic_write(png_path, &png)?;
    let mut svg = String::new();
    figure
        .draw(SVGBackend::with_string(&mut svg, size).into_drawing_area())
        .map_err(|m| fail(svg_path, m))?;
    slim_core::fsutil::atomic_write(svg_path, svg.as_bytes())?;
    Ok(())
}

/// Writes `dir/plot.png` and `dir/plot.svg` for `series` (the first is this run), with
/// latency at `batch`; returns the two paths.
pub fn write(dir: &Path, series: &[Series], batch: usize) -> Result<Vec<PathBuf>, Error> {
    let (png_path, svg_path) = (dir.join("plot.png"), dir.join("plot.svg"));
    write_figure(&TradeOff { series, batch }, &png_path, &svg_path)?;
    Ok(vec![png_path, svg_path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_keeps_only_undominated_points() {
        // (cost, accuracy): 1 is dominated by 0 (cheaper and more accurate); 3 ties 2 on
        // cost but is less accurate; 4 is the most accurate and the most costly.
        let pts = [
            (2.0, 80.0),
            (3.0, 79.0),
            (5.0, 81.0),
            (5.0, 80.5),
            (9.0, 82.0),
        ];
        assert_eq!(pareto_front(&pts), vec![0, 2, 4]);
        assert_eq!(pareto_front(&[(1.0, 50.0)]), vec![0]);
        // Equal points do not dominate each other.
        assert_eq!(pareto_front(&[(1.0, 50.0), (1.0, 50.0)]), vec![0, 1]);
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(31.0), "31");
        assert_eq!(tick(1.96), "1.96");
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(250.0), "250");
        assert_eq!(tick(12.34), "12.3");
    }

    #[test]
    fn log_ticks_fall_inside_the_range() {
        assert_eq!(log_ticks(1.5, 40.0), vec![2.0, 5.0, 10.0, 20.0]);
        let fine = log_ticks(1.1, 5.5);
        assert_eq!(fine.len(), 5, "{fine:?}");
        assert!(fine.iter().all(|&t| (1.1..=5.5).contains(&t)));
    }
}
