//! The demo's figure: the point mass's paths around the obstacle and its height over time, one line per method.

use crate::studies::demo::DemoRun;
use plotters::prelude::*;
use rtchunk_config::PlantConfig;
use std::path::Path;

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn disc(centre: [f64; 2], radius: f64) -> Vec<(f64, f64)> {
    (0..64)
        .map(|k| {
            let angle = std::f64::consts::TAU * k as f64 / 64.0;
            (
                centre[0] + radius * angle.cos(),
                centre[1] + radius * angle.sin(),
            )
        })
        .collect()
}

/// Writes an SVG with two panels: x-y paths with the obstacle and the goal, and y against time.
pub fn demo_figure(
    runs: &[DemoRun],
    plant: &PlantConfig,
    period: f64,
    path: &Path,
) -> Result<(), String> {
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (1100, 440)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(520);
        let extent = plant.half_extent;
        let mut paths = ChartBuilder::on(&left)
            .caption(
                "point mass paths (obstacle in grey, goal in green)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(-extent..extent, -0.8 * extent..0.8 * extent)?;
        paths.configure_mesh().x_desc("x").y_desc("y").draw()?;
        paths.draw_series(std::iter::once(Polygon::new(
            disc(plant.obstacle, plant.obstacle_radius),
            RGBColor(150, 150, 150).filled(),
        )))?;
        paths.draw_series(std::iter::once(Polygon::new(
            disc(plant.goal, plant.goal_radius),
            RGBColor(44, 160, 44).mix(0.4).filled(),
        )))?;
        let mut heights = ChartBuilder::on(&right)
            .caption("height y over time", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(
                0.0..runs.iter().map(|r| r.trajectory.len()).max().unwrap_or(1) as f64 * period,
                -0.6..0.6,
            )?;
        heights
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("y")
            .draw()?;
        for (run, colour) in runs.iter().zip(COLOURS) {
            let label = format!(
                "{} (obstacle contacts {}, mean seam jump {:.3})",
                run.metrics.label, run.plant.obstacle_contacts, run.metrics.seam_jump.mean
            );
            paths
                .draw_series(LineSeries::new(
                    run.trajectory
                        .iter()
                        .step_by(4)
                        .map(|p| (p[0] as f64, p[1] as f64)),
                    colour.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            heights.draw_series(LineSeries::new(
                run.trajectory
                    .iter()
                    .enumerate()
                    .step_by(4)
                    .map(|(k, p)| (k as f64 * period, p[1] as f64)),
                colour.stroke_width(2),
            ))?;
        }
        paths
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("cannot write the figure {}: {e}", path.display()))
}
