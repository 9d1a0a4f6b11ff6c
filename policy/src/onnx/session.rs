//! Sessions of ONNX graphs on the configured device, with rtchunk's session settings; on a GPU, a graph that
//! would run nodes on the CPU is refused with them named, unless they only compute shapes.

use super::bundle::BundleError;
use super::environment::{Device, OnnxRuntimeOptions};
use super::placement::{PlacementLog, Verdict};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One graph's bytes as ONNX Runtime gets them (the bytes that were hashed, never a path that could change).
pub(crate) struct GraphSource<'a> {
    /// The graph file, for messages.
    pub path: &'a Path,
    /// Its bytes.
    pub bytes: &'a [u8],
    /// Its external-data files: the location the graph names, and the bytes.
    pub external: &'a [(String, Arc<[u8]>)],
    /// Where ONNX Runtime writes the session's per-node profile, if anywhere.
    pub profile: Option<PathBuf>,
}

/// A graph's session, and on a GPU the nodes ONNX Runtime keeps on the CPU that only compute shapes.
pub(crate) struct CommittedSession {
    pub session: Session,
    /// "OpType (name)" each.
    pub shape_nodes_on_cpu: Vec<String>,
}

/// The start of ONNX Runtime's refusal of a session with CPU fallback disabled and nodes placed on the CPU.
const CPU_FALLBACK_REFUSED: &str = "fallback to CPU EP has been explicitly disabled";

/// ONNX Runtime's refusal to capture a graph some of whose compute nodes are not on the GPU.
const CAPTURE_REFUSED: &str = "cannot use the graph capture feature";

/// The session of `source` on `options.device`. On a GPU, ONNX Runtime's own check refuses any node placed on
/// the CPU; when it does, the session is built again with the fallback allowed and its placement log read: nodes
/// on the CPU with no copy between host and device only compute shapes (kept, and reported), any other placement
/// is refused with the nodes, the copies and the missing kernels named (unless `options.allow_cpu_nodes`).
pub(crate) fn commit(
    environment: &ort::environment::Environment,
    options: &OnnxRuntimeOptions,
    cuda_graphs: bool,
    source: &GraphSource,
) -> Result<CommittedSession, BundleError> {
    let refused = |message: String| BundleError::Graph {
        path: source.path.to_path_buf(),
        message,
    };
    let build = |allow_cpu_nodes: bool, capture: bool, log: Option<&PlacementLog>| {
        let mut builder = session_builder(environment, options, capture, allow_cpu_nodes, log)?;
        let cannot = |e: &dyn std::fmt::Display| {
            let hint = if e.to_string().contains(CAPTURE_REFUSED) {
                " (CUDA graphs need every compute node on the GPU; --no-cuda-graphs, or policy.cuda_graphs = \
                 false, runs without them)"
            } else {
                ""
            };
            refused(format!("ONNX Runtime cannot load it: {e}{hint}"))
        };
        if let Some(profile) = &source.profile {
            builder = builder.with_profiling(profile).map_err(|e| cannot(&e))?;
        }
        for (location, bytes) in source.external {
            builder = builder
                .with_external_initializer_file_in_memory(location, bytes.clone())
                .map_err(|e| cannot(&e))?;
        }
        builder
            .commit_from_memory(source.bytes)
            .map_err(|e| cannot(&e))
    };
    let refusal = match build(options.allow_cpu_nodes, cuda_graphs, None) {
        // ONNX Runtime refuses a graph with nodes off the GPU for the disabled fallback or, when capturing, for
        // the capture (whichever it checks first).
        Err(BundleError::Graph { message, .. })
            if message.contains(CPU_FALLBACK_REFUSED) || message.contains(CAPTURE_REFUSED) =>
        {
            message
        }
        built => {
            return Ok(CommittedSession {
                session: built?,
                shape_nodes_on_cpu: Vec::new(),
            });
        }
    };
    // Which nodes, and whether any tensor would cross: ONNX Runtime lists the placements only once the session
    // is built, so build it again with the fallback allowed (and without capture, which would refuse it first)
    // and read them.
    let log = PlacementLog::default();
    let uncaptured = build(true, false, Some(&log))?;
    let session = |nodes: Vec<String>| {
        let session = if cuda_graphs {
            // ONNX Runtime captures a graph whose CPU nodes need no copies (shape computations).
            build(true, true, None)?
        } else {
            uncaptured
        };
        Ok(CommittedSession {
            session,
            shape_nodes_on_cpu: nodes,
        })
    };
    match log.placement().verdict() {
        Verdict::AllOnGpu if !refusal.contains(CPU_FALLBACK_REFUSED) => Err(refused(refusal)),
        Verdict::AllOnGpu => session(Vec::new()),
        Verdict::ShapeNodesOnCpu(nodes) => session(nodes),
        Verdict::Crossing(described) => Err(refused(format!(
            "it would not run wholly on the GPU: {described} (policy.allow_cpu_nodes = true, or \
             --allow-cpu-nodes, runs them on the CPU)"
        ))),
        Verdict::Unknown => Err(refused(format!(
            "{refusal} (ONNX Runtime did not list which nodes)"
        ))),
    }
}

/// A session builder with the optimisation, the (quiet, non-spinning) threading and the device rtchunk uses. A
/// device that cannot be registered is an error, never a silent fall-back to the CPU, and on a GPU so is a node
/// ONNX Runtime would place on the CPU unless `allow_cpu_nodes`. `cuda_graph`: capture the graph as a CUDA graph
/// on its first runs. On a GPU with `log`, the session logs verbosely to it (which reads where the nodes were
/// placed); only a session built to be diagnosed has one, so the sessions that run keep ONNX Runtime's quiet
/// default logging.
fn session_builder(
    environment: &ort::environment::Environment,
    options: &OnnxRuntimeOptions,
    cuda_graph: bool,
    allow_cpu_nodes: bool,
    log: Option<&PlacementLog>,
) -> Result<ort::session::builder::SessionBuilder, BundleError> {
    let runtime =
        |e: ort::Error| BundleError::Library(format!("ONNX Runtime session options: {e}"));
    let builder = Session::builder(environment)
        .map_err(runtime)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| runtime(e.into()))?
        .with_intra_threads(options.intra_threads.max(1))
        .map_err(|e| runtime(e.into()))?
        .with_intra_op_spinning(false)
        .map_err(|e| runtime(e.into()))?
        .with_inter_op_spinning(false)
        .map_err(|e| runtime(e.into()))?;
    match options.device {
        Device::Cpu => Ok(builder),
        #[cfg(feature = "cuda")]
        Device::Cuda(id) => {
            let mut builder = builder
                .with_config_entry(
                    "session.disable_cpu_ep_fallback",
                    if allow_cpu_nodes { "0" } else { "1" },
                )
                .map_err(|e| runtime(e.into()))?;
            if let Some(log) = log {
                builder = builder
                    .with_log_level(ort::logging::LogLevel::Verbose)
                    .map_err(|e| runtime(e.into()))?
                    .with_logger(log.logger())
                    .map_err(|e| runtime(e.into()))?;
            }
            builder
                .with_execution_providers([ort::ep::CUDA::default()
                    .with_device_id(id)
                    .with_tf32(false)
                    .with_cuda_graph(cuda_graph)
                    .build()
                    .error_on_failure()])
                .map_err(|e| {
                    BundleError::Library(format!(
                        "the CUDA execution provider (device {id}) failed to register: {e}"
                    ))
                })
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => {
            let _ = (cuda_graph, allow_cpu_nodes, log);
            Err(BundleError::Library(
                "this rtchunk was built without the CUDA execution provider: build it with --features cuda".into(),
            ))
        }
    }
}
