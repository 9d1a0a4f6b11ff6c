//! The statistics LeRobotDataset v3 keeps per feature in `meta/stats.json`: min, max, mean, standard deviation
//! (population), count and the quantiles q01, q10, q50, q90, q99 (linear interpolation between order
//! statistics, numpy's default). Images are summarised per channel over every pixel, scaled to [0, 1], with the
//! shape `[channels][1][1]`.

use serde_json::{Map, Value, json};

/// The quantiles LeRobot records, with their keys.
pub const QUANTILES: [(&str, f64); 5] = [
    ("q01", 0.01),
    ("q10", 0.10),
    ("q50", 0.50),
    ("q90", 0.90),
    ("q99", 0.99),
];

/// Statistics of one dimension.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    min: f64,
    max: f64,
    mean: f64,
    std: f64,
    quantiles: [f64; 5],
}

/// The quantile `q` of sorted values, interpolated linearly between neighbouring order statistics.
fn quantile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
}

fn summarise(mut values: Vec<f64>) -> Summary {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    values.sort_by(f64::total_cmp);
    Summary {
        min: values[0],
        max: values[values.len() - 1],
        mean,
        std: variance.sqrt(),
        quantiles: QUANTILES.map(|(_, q)| quantile_of_sorted(&values, q)),
    }
}

/// Joins per-dimension summaries into LeRobot's JSON object, each statistic wrapped by `shape` (a list per
/// dimension, or `[[v]]` per channel for images).
fn to_json(summaries: &[Summary], count: usize, wrap: fn(f64) -> Value) -> Value {
    let column =
        |pick: fn(&Summary) -> f64| Value::Array(summaries.iter().map(|s| wrap(pick(s))).collect());
    let mut stats = Map::new();
    stats.insert("min".into(), column(|s| s.min));
    stats.insert("max".into(), column(|s| s.max));
    stats.insert("mean".into(), column(|s| s.mean));
    stats.insert("std".into(), column(|s| s.std));
    stats.insert("count".into(), json!([count]));
    for (index, (key, _)) in QUANTILES.iter().enumerate() {
        let values = summaries.iter().map(|s| wrap(s.quantiles[index])).collect();
        stats.insert((*key).into(), Value::Array(values));
    }
    Value::Object(stats)
}

/// Statistics of rows of `width` values (`values` row after row), per dimension.
pub fn vector_stats(values: impl Iterator<Item = f64> + Clone, width: usize) -> Value {
    let rows = values.clone().count() / width;
    let summaries: Vec<Summary> = (0..width)
        .map(|dim| summarise(values.clone().skip(dim).step_by(width).collect()))
        .collect();
    to_json(&summaries, rows, |v| json!(v))
}

/// Per-channel pixel counts of 8-bit images, from which exact statistics follow.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelHistogram {
    counts: Vec<[u64; 256]>,
    images: usize,
}

impl PixelHistogram {
    /// An empty histogram for images of `channels` interleaved channels.
    pub fn new(channels: usize) -> Self {
        PixelHistogram {
            counts: vec![[0; 256]; channels],
            images: 0,
        }
    }

    /// Counts every pixel of one image (interleaved channels).
    pub fn add(&mut self, pixels: &[u8]) {
        let channels = self.counts.len();
        for (index, &value) in pixels.iter().enumerate() {
            self.counts[index % channels][value as usize] += 1;
        }
        self.images += 1;
    }

    /// LeRobot's image statistics: per channel, values scaled to [0, 1], shaped `[channels][1][1]`; `count` is
    /// the number of images.
    pub fn to_json(&self) -> Value {
        let summaries: Vec<Summary> = self.counts.iter().map(summarise_histogram).collect();
        to_json(&summaries, self.images, |v| json!([[v]]))
    }
}

fn summarise_histogram(counts: &[u64; 256]) -> Summary {
    let total: u64 = counts.iter().sum();
    let scale = |level: usize| level as f64 / 255.0;
    let mean = counts
        .iter()
        .enumerate()
        .map(|(l, &c)| scale(l) * c as f64)
        .sum::<f64>()
        / total as f64;
    let variance = counts
        .iter()
        .enumerate()
        .map(|(l, &c)| (scale(l) - mean).powi(2) * c as f64)
        .sum::<f64>()
        / total as f64;
    // The k-th order statistic (0-based) of the pixels in ascending order.
    let order_statistic = |k: u64| {
        let mut seen = 0;
        for (level, &count) in counts.iter().enumerate() {
            seen += count;
            if k < seen {
                return scale(level);
            }
        }
        1.0
    };
    let quantile = |q: f64| {
        let position = q * (total - 1) as f64;
        let below = position.floor() as u64;
        let (low, high) = (
            order_statistic(below),
            order_statistic((below + 1).min(total - 1)),
        );
        low + (high - low) * (position - below as f64)
    };
    let present = |level: &usize| counts[*level] > 0;
    Summary {
        min: (0..256).find(present).map_or(0.0, scale),
        max: (0..256).rev().find(present).map_or(0.0, scale),
        mean,
        std: variance.sqrt(),
        quantiles: QUANTILES.map(|(_, q)| quantile(q)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let sorted = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile_of_sorted(&sorted, 0.5), 3.0);
        assert!((quantile_of_sorted(&sorted, 0.9) - 6.8).abs() < 1e-12);
        assert_eq!(quantile_of_sorted(&[5.0], 0.99), 5.0);
    }

    #[test]
    fn vector_stats_are_per_dimension() {
        let stats = vector_stats([1.0, 10.0, 3.0, 30.0].into_iter(), 2);
        assert_eq!(stats["mean"], json!([2.0, 20.0]));
        assert_eq!(stats["std"], json!([1.0, 10.0]));
        assert_eq!(stats["count"], json!([2]));
    }

    #[test]
    fn image_stats_match_the_same_pixels_summarised_directly() {
        let pixels: Vec<u8> = (0..300u32).map(|i| (i * 37 % 256) as u8).collect();
        let mut histogram = PixelHistogram::new(3);
        histogram.add(&pixels);
        let direct: Vec<Summary> = (0..3)
            .map(|c| {
                summarise(
                    pixels
                        .iter()
                        .skip(c)
                        .step_by(3)
                        .map(|&p| p as f64 / 255.0)
                        .collect(),
                )
            })
            .collect();
        let from_histogram: Vec<Summary> =
            histogram.counts.iter().map(summarise_histogram).collect();
        for (a, b) in direct.iter().zip(&from_histogram) {
            assert!((a.mean - b.mean).abs() < 1e-12 && (a.std - b.std).abs() < 1e-12);
            assert_eq!((a.min, a.max), (b.min, b.max));
            for (x, y) in a.quantiles.iter().zip(&b.quantiles) {
                assert!((x - y).abs() < 1e-12);
            }
        }
    }
}
