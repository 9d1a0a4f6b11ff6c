//! PNG figures of the delay benchmark: solve rate against d (s = max(d, 1)) and against s at d = 1, one panel
//! per task plus the average, one line per method.

use crate::studies::delay_benchmark::methods::Method;
use crate::studies::delay_benchmark::report::{PointRecord, Sweep, method_label};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans (ASCII subset; license in runtime/assets), so the figures need no system fonts.
static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans-subset.ttf");

/// Registers the embedded font as "sans-serif" (once per process).
pub(crate) fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The font is compiled in and valid; registration only fails for an unparsable font.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A colour per method, stable across figures.
fn color(method: Method) -> RGBColor {
    const COLORS: [RGBColor; 9] = [
        RGBColor(120, 120, 120),
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(23, 190, 207),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(227, 119, 194),
    ];
    COLORS[Method::ALL.iter().position(|m| *m == method).unwrap_or(0)]
}

/// Draws `sweep`'s points (per-task records over all seeds pooled, plus the averages) into a PNG at `path`.
pub fn write_figure(records: &[PointRecord], sweep: Sweep, path: &Path) -> anyhow::Result<()> {
    register_font();
    let points: Vec<&PointRecord> = records
        .iter()
        .filter(|r| r.sweep == sweep && r.policy_seed.is_none())
        .collect();
    let mut panels: Vec<&str> = Vec::new();
    for r in &points {
        if !panels.contains(&r.task.as_str()) {
            panels.push(&r.task);
        }
    }
    panels.sort_by_key(|task| *task == "average");
    let x_of = |r: &PointRecord| if sweep == Sweep::Delay { r.delay } else { r.execution_horizon } as f64;
    let (x_min, x_max) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| {
        (lo.min(x_of(r)), hi.max(x_of(r)))
    });
    // The y axis starts a little below the lowest interval, so that close curves stay apart.
    let lowest = points.iter().map(|r| r.interval().0).fold(1.0, f64::min);
    let y_min = ((lowest - 0.02) * 20.0).floor().clamp(0.0, 18.0) / 20.0;
    let columns = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(columns).max(1);
    let (width, height) = (420 * columns as u32, 340 * rows as u32);
    let mut pixels = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        for (area, task) in root.split_evenly((rows, columns)).iter().zip(&panels) {
            let x_label = if sweep == Sweep::Delay {
                "inference delay d (s = max(d, 1) unless labelled)"
            } else {
                "execution horizon s (d = 1)"
            };
            let mut chart = ChartBuilder::on(area)
                .caption(*task, ("sans-serif", 18))
                .margin(8)
                .x_label_area_size(34)
                .y_label_area_size(44)
                .build_cartesian_2d((x_min - 0.2)..(x_max + 0.2), y_min..1.02)?;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc("solve rate")
                .x_labels((x_max - x_min) as usize + 1)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style(("sans-serif", 12))
                .draw()?;
            for method in Method::ALL {
                let mut line: Vec<(f64, f64, f64, f64)> = points
                    .iter()
                    .filter(|r| r.task == *task && r.method == method)
                    .map(|r| {
                        let (low, high) = r.interval();
                        (x_of(r), r.solve_rate, low, high)
                    })
                    .collect();
                if line.is_empty() {
                    continue;
                }
                line.sort_by(|a, b| a.0.total_cmp(&b.0));
                let style = color(method).stroke_width(2);
                let series =
                    chart.draw_series(LineSeries::new(line.iter().map(|p| (p.0, p.1)), style))?;
                if *task == "average" {
                    series
                        .label(method_label(records, method, sweep))
                        .legend(move |(x, y)| {
                            PathElement::new(
                                vec![(x, y), (x + 16, y)],
                                color(method).stroke_width(2),
                            )
                        });
                }
                chart.draw_series(
                    line.iter()
                        .map(|p| Circle::new((p.0, p.1), 3, color(method).filled())),
                )?;
                chart.draw_series(line.iter().map(|p| {
                    PathElement::new(vec![(p.0, p.2), (p.0, p.3)], color(method).stroke_width(1))
                }))?;
            }
            if *task == "average" {
                draw_legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
            }
        }
        root.present()?;
    }
    write_png(path, width, height, &pixels)
}

/// Draws a chart's series labels in the figures' common style.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 11))
        .draw()
        .map_err(|e| anyhow::anyhow!("drawing a legend: {e}"))
}

/// Writes RGB `pixels` of a `width` x `height` image as a PNG file.
pub(crate) fn write_png(path: &Path, width: u32, height: u32, pixels: &[u8]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(())
}
