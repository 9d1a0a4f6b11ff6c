//! A small raster canvas in world coordinates, for pictures of task states, saved as PNG.

use std::io::BufWriter;
use std::path::Path;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// Colours shared by the tasks (Kinetix's convention: green is the agent's object, blue the goal, red fails).
pub mod palette {
    use super::Rgb;
    /// Background.
    pub const BACKGROUND: Rgb = [250, 250, 247];
    /// The controlled object.
    pub const AGENT: Rgb = [46, 160, 67];
    /// The goal.
    pub const GOAL: Rgb = [45, 110, 220];
    /// What must not be touched.
    pub const HAZARD: Rgb = [214, 60, 50];
    /// Passive objects and walls.
    pub const NEUTRAL: Rgb = [90, 90, 90];
    /// Traces of past states.
    pub const TRACE: Rgb = [170, 170, 170];
}

/// An image whose pixels map to a rectangle of the world (y up).
#[derive(Debug, Clone)]
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<Rgb>,
    x_min: f64,
    y_max: f64,
    scale: f64,
}

impl Canvas {
    /// A canvas `width` pixels wide showing x in `[x_min, x_max]` and y in `[y_min, y_max]` at equal scale.
    pub fn new(width: usize, x_range: [f64; 2], y_range: [f64; 2]) -> Self {
        let scale = width as f64 / (x_range[1] - x_range[0]);
        let height = ((y_range[1] - y_range[0]) * scale).round().max(1.0) as usize;
        Canvas {
            width,
            height,
            pixels: vec![palette::BACKGROUND; width * height],
            x_min: x_range[0],
            y_max: y_range[1],
            scale,
        }
    }

    /// Width and height in pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The pixel at column `x`, row `y` (row 0 at the top).
    pub fn pixel(&self, x: usize, y: usize) -> Rgb {
        self.pixels[y * self.width + x]
    }

    fn to_pixel(&self, x: f64, y: f64) -> (f64, f64) {
        ((x - self.x_min) * self.scale, (self.y_max - y) * self.scale)
    }

    fn to_world(&self, column: usize, row: usize) -> (f64, f64) {
        (
            self.x_min + (column as f64 + 0.5) / self.scale,
            self.y_max - (row as f64 + 0.5) / self.scale,
        )
    }

    /// Fills the pixels whose centres satisfy `inside` within the world bounding box given.
    fn fill(&mut self, bounds: [f64; 4], color: Rgb, inside: impl Fn(f64, f64) -> bool) {
        let (c0, r0) = self.to_pixel(bounds[0], bounds[3]);
        let (c1, r1) = self.to_pixel(bounds[2], bounds[1]);
        let columns = (c0.floor().max(0.0) as usize)..(c1.ceil().max(0.0) as usize).min(self.width);
        let rows = (r0.floor().max(0.0) as usize)..(r1.ceil().max(0.0) as usize).min(self.height);
        for row in rows {
            for column in columns.clone() {
                let (x, y) = self.to_world(column, row);
                if inside(x, y) {
                    self.pixels[row * self.width + column] = color;
                }
            }
        }
    }

    /// A filled disc.
    pub fn disc(&mut self, center: [f64; 2], radius: f64, color: Rgb) {
        let [cx, cy] = center;
        let bounds = [cx - radius, cy - radius, cx + radius, cy + radius];
        self.fill(bounds, color, |x, y| {
            (x - cx).powi(2) + (y - cy).powi(2) <= radius * radius
        });
    }

    /// A filled rectangle of half extents `half` centred at `center`, rotated by `angle` (radians, counter-clockwise).
    pub fn rect(&mut self, center: [f64; 2], half: [f64; 2], angle: f64, color: Rgb) {
        let (sin, cos) = angle.sin_cos();
        let reach = half[0].hypot(half[1]);
        let bounds = [
            center[0] - reach,
            center[1] - reach,
            center[0] + reach,
            center[1] + reach,
        ];
        self.fill(bounds, color, |x, y| {
            let (dx, dy) = (x - center[0], y - center[1]);
            (cos * dx + sin * dy).abs() <= half[0] && (-sin * dx + cos * dy).abs() <= half[1]
        });
    }

    /// A line segment `width` world units wide.
    pub fn line(&mut self, from: [f64; 2], to: [f64; 2], width: f64, color: Rgb) {
        let center = [(from[0] + to[0]) / 2.0, (from[1] + to[1]) / 2.0];
        let length = (to[0] - from[0]).hypot(to[1] - from[1]);
        let angle = (to[1] - from[1]).atan2(to[0] - from[0]);
        self.rect(center, [length / 2.0, width / 2.0], angle, color);
    }

    /// The pixels as RGB bytes, row by row from the top.
    pub fn rgb(&self) -> Vec<u8> {
        self.pixels.iter().flatten().copied().collect()
    }

    /// Writes the canvas as an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut encoder =
            png::Encoder::new(BufWriter::new(file), self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&self.rgb())
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    }
}
