//! Which nodes ONNX Runtime placed on the CPU, read from its verbose session log, so that a GPU session that
//! would fall back to the CPU is refused with those nodes named.

use std::sync::{Arc, Mutex};

/// The nodes one session's log placed on the CPU execution provider.
#[derive(Clone, Default)]
pub(crate) struct CpuPlacements(Arc<Mutex<Placements>>);

#[derive(Default)]
struct Placements {
    /// Whether the log's current placement list is the CPU's.
    listing_cpu: bool,
    nodes: Vec<String>,
}

impl CpuPlacements {
    /// A session logger that records the CPU's placement list (ONNX Runtime logs " Node(s) placed on [EP]" and
    /// then one "  OpType (name)" line per node at the verbose level) and drops every other message.
    pub(crate) fn logger(&self) -> ort::logging::LoggerFunction {
        let shared = Arc::clone(&self.0);
        Arc::new(move |_level, _category, _id, _location, message: &str| {
            let mut placements = shared.lock().unwrap_or_else(|p| p.into_inner());
            if message.contains("placed on [") {
                placements.listing_cpu = message.contains("[CPUExecutionProvider]");
            } else if placements.listing_cpu && message.starts_with("  ") {
                placements.nodes.push(message.trim().to_string());
            }
        })
    }

    /// The nodes on the CPU, "OpType (name)" each.
    pub(crate) fn nodes(&self) -> Vec<String> {
        let placements = self.0.lock().unwrap_or_else(|p| p.into_inner());
        placements.nodes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::CpuPlacements;
    use ort::logging::LogLevel;

    #[test]
    fn only_the_cpu_placement_list_is_kept() {
        let placements = CpuPlacements::default();
        let log = placements.logger();
        for message in [
            "Node placements",
            " Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 2",
            "  MatMul (node_MatMul_1)",
            "  Softmax (node_Softmax_2)",
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 1",
            "  Where (node_Where_7)",
            "Removing initializer 'x'",
        ] {
            log(LogLevel::Verbose, "", "", "", message);
        }
        assert_eq!(placements.nodes(), vec!["Where (node_Where_7)".to_string()]);
    }
}
