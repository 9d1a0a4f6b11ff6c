//! `rtchunk bench graphs`: ONNX graphs timed alone with the same inputs (forms of one computation, such as
//! attention written out against a fused operator), and how far each one's output is from the first's.

use crate::core::metrics::Quantiles;
use rtchunk_policy::onnx::{BundleError, OnnxRuntimeOptions, time_graph};
use serde::Serialize;
use std::path::PathBuf;

/// One graph's timing beside the first graph's.
#[derive(Debug, Clone, Serialize)]
pub struct GraphBenchmark {
    /// The graph file.
    pub graph: PathBuf,
    /// Where it ran.
    pub device: String,
    /// Whether it was captured as a CUDA graph and replayed.
    pub cuda_graphs: bool,
    /// One run, ms.
    pub run_ms: Quantiles,
    /// Its median over the first graph's.
    pub over_first: f64,
    /// The largest absolute difference of its first output from the first graph's.
    pub max_difference: f64,
    /// The largest magnitude in the first graph's first output (the scale of `max_difference`).
    pub first_output_scale: f64,
    /// On a GPU, nodes ONNX Runtime kept on the CPU because they only compute shapes.
    pub shape_nodes_on_cpu: Vec<String>,
}

/// Times each graph (`runs` timed runs after a warm-up of ten) on `options.device`, one after another.
pub fn graph_benchmark(
    graphs: &[PathBuf],
    options: &OnnxRuntimeOptions,
    runs: usize,
) -> Result<Vec<GraphBenchmark>, BundleError> {
    let mut rows: Vec<GraphBenchmark> = Vec::new();
    let mut first: Option<(f64, Vec<f32>)> = None;
    for graph in graphs {
        let timing = time_graph(graph, options, 10, runs)?;
        let run_ms = Quantiles::of(timing.run_ms);
        let (first_p50, first_output) =
            first.get_or_insert_with(|| (run_ms.p50, timing.output.clone()));
        let max_difference = if timing.output.len() == first_output.len() {
            timing
                .output
                .iter()
                .zip(first_output.iter())
                .map(|(a, b)| f64::from((a - b).abs()))
                .fold(0.0, f64::max)
        } else {
            f64::NAN
        };
        rows.push(GraphBenchmark {
            graph: graph.clone(),
            device: options.device.to_string(),
            cuda_graphs: options.cuda_graphs && options.device != rtchunk_policy::onnx::Device::Cpu,
            over_first: run_ms.p50 / *first_p50,
            run_ms,
            max_difference,
            first_output_scale: first_output
                .iter()
                .map(|v| f64::from(v.abs()))
                .fold(0.0, f64::max),
            shape_nodes_on_cpu: timing.shape_nodes_on_cpu,
        });
    }
    Ok(rows)
}

/// The table `rtchunk bench graphs` prints.
pub fn graph_table(rows: &[GraphBenchmark]) -> String {
    let mut table = format!(
        "{:<40} {:>9} {:>9} {:>9} {:>8} {:>12}\n",
        "graph (ms per run)", "p50", "p99", "max", "/ first", "|out - first|"
    );
    for row in rows {
        table.push_str(&format!(
            "{:<40} {:>9.3} {:>9.3} {:>9.3} {:>8.2} {:>12.2e}\n",
            row.graph.display(),
            row.run_ms.p50,
            row.run_ms.p99,
            row.run_ms.max,
            row.over_first,
            row.max_difference
        ));
    }
    if let Some(first) = rows.first() {
        table.push_str(&format!(
            "on {} (CUDA graphs {}); the first graph's output reaches {:.3e}\n",
            first.device,
            if first.cuda_graphs { "on" } else { "off" },
            first.first_output_scale
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::{graph_benchmark, graph_table};
    use rtchunk_policy::onnx::OnnxRuntimeOptions;
    use std::path::PathBuf;

    /// Two graphs of one computation (the GTA toy's velocity, and the same with a determinant added times zero)
    /// give the same output for the same inputs; both are timed.
    #[test]
    fn graphs_of_one_computation_are_timed_with_the_same_inputs() {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/fixtures");
        let graphs = [
            fixtures.join("gta-toy/velocity.onnx"),
            fixtures.join("gta-toy-host-node/velocity.onnx"),
        ];
        let rows = graph_benchmark(&graphs, &OnnxRuntimeOptions::default(), 5).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].over_first, 1.0);
        assert!(rows[1].run_ms.p50 > 0.0 && rows[1].over_first > 0.0);
        assert_eq!(rows[1].max_difference, 0.0);
        assert!(rows[0].first_output_scale > 0.1);
        let table = graph_table(&rows);
        assert!(table.contains("gta-toy-host-node/velocity.onnx"), "{table}");
    }
}
