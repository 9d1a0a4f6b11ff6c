//! One ONNX graph timed alone on a device, to compare forms of the same computation (attention written out
//! against a fused operator, say): fixed, deterministic float32 inputs of the graph's own shapes, the time of
//! each run, and the first output. On a GPU the inputs and outputs live in device buffers bound once, so the
//! graph can be captured as a CUDA graph and each run is one replay.

use super::bundle::BundleError;
use super::device::{Mirrored, device_allocator, run_bound};
use super::environment::{Device, OnnxRuntimeOptions, environment};
use super::manifest::Dtype;
use super::session::{GraphSource, commit};
use ort::memory::Allocator;
use ort::value::{DynTensor, Tensor, TensorElementType, ValueType};
use std::path::Path;
use std::time::Instant;

/// What timing one graph measured.
#[derive(Debug, Clone)]
pub struct GraphTiming {
    /// Milliseconds of each timed run (after the warm-up runs).
    pub run_ms: Vec<f64>,
    /// The graph's first output after the last run, flattened.
    pub output: Vec<f32>,
    /// On a GPU, the nodes ONNX Runtime kept on the CPU because they only compute shapes.
    pub shape_nodes_on_cpu: Vec<String>,
}

/// A graph input or output of fixed shape.
struct Port {
    name: String,
    shape: Vec<i64>,
}

/// The same deterministic values for the same input position and size in every graph, spread over about
/// [-1.7, 1.7] (about unit variance).
fn input_values(position: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|k| (((k * 7919 + position * 104_729) % 1000) as f32 / 500.0 - 1.0) * 1.7)
        .collect()
}

/// The float32 tensors of fixed shape a graph takes or gives (`kind`: "input" or "output").
fn fixed_ports(
    path: &Path,
    kind: &str,
    outlets: &[ort::value::Outlet],
) -> Result<Vec<Port>, BundleError> {
    outlets
        .iter()
        .map(|outlet| {
            let refused = |what: String| BundleError::Graph {
                path: path.to_path_buf(),
                message: format!(
                    "{kind} \"{}\" is {what}; a graph is timed alone with float32 {kind}s of fixed shape",
                    outlet.name()
                ),
            };
            match outlet.dtype() {
                ValueType::Tensor { ty, shape, .. } if *ty == TensorElementType::Float32 => {
                    if shape.iter().any(|&d| d < 1) {
                        return Err(refused(format!("of shape {:?} (a dimension is free)", &**shape)));
                    }
                    Ok(Port {
                        name: outlet.name().to_string(),
                        shape: shape.to_vec(),
                    })
                }
                other => Err(refused(format!("{other:?}"))),
            }
        })
        .collect()
}

/// Runs the graph at `path` `warm_up` times, then `runs` times timed, on `options.device` (captured as a CUDA
/// graph there when `options.cuda_graphs`).
pub fn time_graph(
    path: &Path,
    options: &OnnxRuntimeOptions,
    warm_up: usize,
    runs: usize,
) -> Result<GraphTiming, BundleError> {
    let read = |e: std::io::Error| BundleError::Graph {
        path: path.to_path_buf(),
        message: format!("cannot read it: {e}"),
    };
    let bytes = std::fs::read(path).map_err(read)?;
    let on_gpu = matches!(options.device, Device::Cuda(_));
    let source = GraphSource {
        path,
        bytes: &bytes,
        external: &[],
        profile: None,
    };
    let committed = commit(
        environment(options)?,
        options,
        options.cuda_graphs && on_gpu,
        &source,
    )?;
    let mut session = committed.session;
    let inputs = fixed_ports(path, "input", session.inputs())?;
    let outputs = fixed_ports(path, "output", session.outputs())?;
    let failed = |e: &dyn std::fmt::Display| BundleError::Graph {
        path: path.to_path_buf(),
        message: format!("running it failed: {e}"),
    };
    let mut binding = session.create_binding().map_err(|e| failed(&e))?;
    let len = |port: &Port| port.shape.iter().product::<i64>() as usize;
    let (mut device_buffers, mut host_tensors) = (Vec::new(), Vec::new());
    if let Device::Cuda(id) = options.device {
        let allocator = device_allocator(&session, id).map_err(|e| failed(&e))?;
        for (position, port) in inputs.iter().enumerate() {
            let mut buffer =
                Mirrored::new(&allocator, Dtype::Float32, &port.shape).map_err(|e| failed(&e))?;
            buffer
                .upload(&input_values(position, len(port)))
                .map_err(|e| failed(&e))?;
            binding
                .bind_input(&port.name, &buffer.device)
                .map_err(|e| failed(&e))?;
            // The binding refers to the buffer's memory: it must outlive the runs.
            device_buffers.push(buffer);
        }
        for port in &outputs {
            let mut buffer =
                Mirrored::new(&allocator, Dtype::Float32, &port.shape).map_err(|e| failed(&e))?;
            binding
                .bind_output(&port.name, &mut buffer.device)
                .map_err(|e| failed(&e))?;
            device_buffers.push(buffer);
        }
    } else {
        for (position, port) in inputs.iter().enumerate() {
            let tensor =
                Tensor::from_array((port.shape.clone(), input_values(position, len(port))))
                    .map_err(|e| failed(&e))?;
            binding
                .bind_input(&port.name, &tensor)
                .map_err(|e| failed(&e))?;
            host_tensors.push(tensor.upcast());
        }
        for port in &outputs {
            let mut tensor: DynTensor =
                Tensor::<f32>::new(&Allocator::default(), port.shape.clone())
                    .map_err(|e| failed(&e))?
                    .upcast();
            binding
                .bind_output(&port.name, &mut tensor)
                .map_err(|e| failed(&e))?;
            host_tensors.push(tensor);
        }
    }
    let mut run_ms = Vec::with_capacity(runs);
    for run in 0..warm_up + runs {
        let start = Instant::now();
        run_bound(&mut session, &binding).map_err(|e| failed(&e))?;
        if run >= warm_up {
            run_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let first = outputs
        .first()
        .ok_or_else(|| failed(&"it has no outputs"))?;
    let mut output = vec![0.0; len(first)];
    if on_gpu {
        device_buffers[inputs.len()]
            .download(&mut output)
            .map_err(|e| failed(&e))?;
    } else {
        let (_, values) = host_tensors[inputs.len()]
            .try_extract_tensor::<f32>()
            .map_err(|e| failed(&e))?;
        output.copy_from_slice(values);
    }
    Ok(GraphTiming {
        run_ms,
        output,
        shape_nodes_on_cpu: committed.shape_nodes_on_cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::time_graph;
    use crate::onnx::OnnxRuntimeOptions;
    use std::path::Path;

    /// The CPU times a real graph and returns its output, the same for the same inputs.
    #[test]
    fn a_graph_is_timed_with_the_same_inputs_each_time() {
        let graph = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gta-toy/velocity.onnx");
        let options = OnnxRuntimeOptions::default();
        let first = time_graph(&graph, &options, 1, 3).expect("the fixture runs");
        let second = time_graph(&graph, &options, 0, 1).expect("the fixture runs");
        assert_eq!(first.run_ms.len(), 3);
        assert!(first.run_ms.iter().all(|&ms| ms > 0.0));
        assert_eq!(first.output.len(), 8 * 2);
        assert!(first.output.iter().all(|v| v.is_finite()));
        assert_eq!(first.output, second.output);
    }

    #[test]
    fn a_graph_with_a_free_dimension_is_refused_with_the_input_named() {
        let graph = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gaussian/velocity.onnx");
        let message = time_graph(&graph, &OnnxRuntimeOptions::default(), 0, 1)
            .expect_err("a free batch")
            .to_string();
        assert!(
            message.contains("velocity.onnx") && message.contains("\"actions\""),
            "{message}"
        );
        assert!(message.contains("free"), "{message}");
    }
}
