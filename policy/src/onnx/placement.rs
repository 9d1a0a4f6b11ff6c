//! Where ONNX Runtime placed a session's nodes, read from its verbose session log, so that a GPU session whose
//! data would cross to the CPU is refused with the nodes named, and one whose CPU nodes only compute shapes is
//! allowed and says so.

use std::sync::{Arc, Mutex};

/// Collects one session's placement log while the session is built.
#[derive(Clone, Default)]
pub(crate) struct PlacementLog(Arc<Mutex<Placement>>);

/// Where one session's nodes run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Each provider ONNX Runtime listed, with its number of nodes (empty: it listed none).
    pub providers: Vec<(String, usize)>,
    /// The nodes on the CPU execution provider, "OpType (name)" each.
    pub cpu_nodes: Vec<String>,
    /// The copies between host and device memory ONNX Runtime inserted ("MemcpyToHost (name)" and the like).
    pub copies: Vec<String>,
    /// The operator types the GPU provider has no kernel for (from ONNX Runtime's capability messages).
    pub missing_kernels: Vec<String>,
    /// Which provider the node list being read belongs to.
    listing: Option<String>,
}

/// What a GPU session's placement means for running it there.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every node runs on the GPU.
    AllOnGpu,
    /// Some nodes run on the CPU, but only on host-side shapes and constants: no tensor crosses between the
    /// devices (ONNX Runtime keeps such shape arithmetic on the CPU on purpose, and can still capture the graph).
    ShapeNodesOnCpu(Vec<String>),
    /// Tensors would cross to the CPU and back: the nodes that would run there, and why where known.
    Crossing(String),
    /// ONNX Runtime's log did not list the placements.
    Unknown,
}

const HEADER: &str = "placed on [";
const MISSING_KERNEL: &str = "kernel not found in registries for Op type: ";

impl PlacementLog {
    /// A session logger that keeps the placement lists ONNX Runtime logs at the verbose level (" Node(s) placed
    /// on [EP]. Number of nodes: N" or " All nodes placed on [EP]. ...", then one "  OpType (name)" line per
    /// node) and its messages about missing kernels, and drops every other message.
    pub(crate) fn logger(&self) -> ort::logging::LoggerFunction {
        let shared = Arc::clone(&self.0);
        Arc::new(move |_level, _category, _id, _location, message: &str| {
            let mut placement = shared.lock().unwrap_or_else(|p| p.into_inner());
            placement.read(message);
        })
    }

    /// What the log said.
    pub(crate) fn placement(&self) -> Placement {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Placement {
    fn read(&mut self, message: &str) {
        if let Some(start) = message.find(HEADER) {
            let provider = &message[start + HEADER.len()..];
            let provider = provider.split(']').next().unwrap_or_default().to_string();
            let count = message
                .rsplit(": ")
                .next()
                .and_then(|n| n.trim().parse().ok());
            self.providers.push((provider.clone(), count.unwrap_or(0)));
            // "All nodes placed on [EP]" lists no nodes.
            self.listing = (!message.trim_start().starts_with("All")).then_some(provider);
        } else if let Some(start) = message.find(MISSING_KERNEL) {
            let op = message[start + MISSING_KERNEL.len()..]
                .split_whitespace()
                .next();
            if let Some(op) = op.filter(|op| !self.missing_kernels.iter().any(|m| m == op)) {
                self.missing_kernels.push(op.to_string());
            }
        } else if message.starts_with("  ") {
            let node = message.trim().to_string();
            match self.listing.as_deref() {
                Some("CPUExecutionProvider") => self.cpu_nodes.push(node),
                Some(_) if node.starts_with("Memcpy") => self.copies.push(node),
                _ => {}
            }
        } else {
            self.listing = None;
        }
    }

    /// What this placement means for a session meant to run on the GPU.
    pub(crate) fn verdict(&self) -> Verdict {
        if self.providers.is_empty() {
            return Verdict::Unknown;
        }
        let on_cpu: usize = self
            .providers
            .iter()
            .filter(|(provider, _)| provider == "CPUExecutionProvider")
            .map(|(_, count)| count)
            .sum();
        let total: usize = self.providers.iter().map(|(_, count)| count).sum();
        if on_cpu == 0 {
            return Verdict::AllOnGpu;
        }
        if on_cpu == total {
            return Verdict::Crossing(format!("all {total} nodes would run on the CPU"));
        }
        if self.copies.is_empty() {
            return Verdict::ShapeNodesOnCpu(self.cpu_nodes.clone());
        }
        let mut described = format!(
            "{} node(s) would run on the CPU: {}; {} cop{} between host and device: {}",
            self.cpu_nodes.len(),
            first_few(&self.cpu_nodes, LISTED),
            self.copies.len(),
            if self.copies.len() == 1 { "y" } else { "ies" },
            first_few(&self.copies, LISTED)
        );
        if !self.missing_kernels.is_empty() {
            described.push_str(&format!(
                "; the CUDA provider has no kernel for {}",
                self.missing_kernels.join(", ")
            ));
        }
        Verdict::Crossing(described)
    }
}

/// One line on shape nodes kept on the CPU ("graph: OpType (name)" each): how many per graph, the first few
/// named; `None` when there are none.
pub(crate) fn shape_nodes_summary(nodes: &[String]) -> Option<String> {
    if nodes.is_empty() {
        return None;
    }
    let mut per_graph: Vec<(&str, usize)> = Vec::new();
    for node in nodes {
        let graph = node.split(':').next().unwrap_or_default();
        match per_graph.iter_mut().find(|(g, _)| *g == graph) {
            Some((_, count)) => *count += 1,
            None => per_graph.push((graph, 1)),
        }
    }
    let counts: Vec<String> = per_graph.iter().map(|(g, n)| format!("{g} {n}")).collect();
    Some(format!(
        "ONNX Runtime keeps {} shape computations on the CPU, where no tensor crosses to it ({}): {}",
        nodes.len(),
        counts.join(", "),
        first_few(nodes, 4)
    ))
}

/// How many nodes or copies a refusal names.
const LISTED: usize = 20;

/// The first `shown` items joined, then ", ..." if there are more (the callers state the total).
fn first_few(items: &[String], shown: usize) -> String {
    let mut joined = items[..items.len().min(shown)].join(", ");
    if items.len() > shown {
        joined.push_str(", ...");
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::{PlacementLog, Verdict, shape_nodes_summary};
    use crate::onnx::environment::{OnnxRuntimeOptions, environment};
    use ort::logging::LogLevel;

    fn read(messages: &[&str]) -> Verdict {
        let log = PlacementLog::default();
        let logger = log.logger();
        for message in messages {
            logger(LogLevel::Verbose, "", "", "", message);
        }
        log.placement().verdict()
    }

    #[test]
    fn cpu_nodes_with_copies_are_named_with_the_missing_kernels() {
        let verdict = read(&[
            "CUDA kernel not found in registries for Op type: Where node name: node_Where_7",
            "Node placements",
            " Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 3",
            "  MatMul (node_MatMul_1)",
            "  MemcpyFromHost (Memcpy)",
            "  MemcpyToHost (Memcpy_token_2)",
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 1",
            "  Where (node_Where_7)",
            "Removing initializer 'x'",
            "  an indented message after the lists",
        ]);
        assert_eq!(
            verdict,
            Verdict::Crossing(
                "1 node(s) would run on the CPU: Where (node_Where_7); 2 copies between host and device: \
                 MemcpyFromHost (Memcpy), MemcpyToHost (Memcpy_token_2); the CUDA provider has no kernel for \
                 Where"
                    .into()
            )
        );
    }

    #[test]
    fn cpu_nodes_without_copies_only_compute_shapes() {
        let verdict = read(&[
            " Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 2",
            "  MatMul (node_MatMul_1)",
            "  Reshape (node_Reshape_2)",
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2",
            "  Shape (node_Shape_3)",
            "  Gather (node_Gather_4)",
        ]);
        assert_eq!(
            verdict,
            Verdict::ShapeNodesOnCpu(vec![
                "Shape (node_Shape_3)".into(),
                "Gather (node_Gather_4)".into()
            ])
        );
        assert_eq!(
            read(&[" All nodes placed on [CUDAExecutionProvider]. Number of nodes: 9"]),
            Verdict::AllOnGpu
        );
        assert_eq!(
            read(&["Session successfully initialized."]),
            Verdict::Unknown
        );
    }

    #[test]
    fn shape_nodes_are_summarised_per_graph_with_the_first_named() {
        assert_eq!(shape_nodes_summary(&[]), None);
        let nodes: Vec<String> = [
            "prefix: Gather (g1)",
            "velocity: Concat (c1)",
            "velocity: Gather (g2)",
        ]
        .iter()
        .chain(["velocity: Shape (s1)", "velocity_vjp: Gather (g3)"].iter())
        .map(|n| n.to_string())
        .collect();
        assert_eq!(
            shape_nodes_summary(&nodes).unwrap(),
            "ONNX Runtime keeps 5 shape computations on the CPU, where no tensor crosses to it (prefix 1, \
             velocity 3, velocity_vjp 1): prefix: Gather (g1), velocity: Concat (c1), velocity: Gather (g2), \
             velocity: Shape (s1), ..."
        );
    }

    /// ONNX Runtime itself logs the list to the session's logger: a CPU session lists every node on the CPU.
    #[test]
    fn onnx_runtime_lists_a_real_sessions_placements() {
        let environment = environment(&OnnxRuntimeOptions::default()).expect("ONNX Runtime");
        let log = PlacementLog::default();
        let graph = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/gta-toy/velocity.onnx"
        );
        let _session = ort::session::Session::builder(environment)
            .expect("a session builder")
            .with_log_level(LogLevel::Verbose)
            .expect("verbose log")
            .with_logger(log.logger())
            .expect("a session logger")
            .commit_from_file(graph)
            .expect("the fixture loads");
        let placement = log.placement();
        let [(provider, nodes)] = &placement.providers[..] else {
            panic!(
                "expected one provider's list, got {:?}",
                placement.providers
            );
        };
        assert_eq!(provider, "CPUExecutionProvider");
        assert!(*nodes > 10, "{nodes} nodes");
        // Meant for a GPU, this placement is refused.
        assert_eq!(
            placement.verdict(),
            Verdict::Crossing(format!("all {nodes} nodes would run on the CPU"))
        );
    }
}
