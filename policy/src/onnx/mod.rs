//! The ONNX Runtime backend: policy bundles (a manifest and three ONNX graphs, see `policy/BUNDLE.md`) loaded
//! through the `ort` crate and driven as a [`crate::FlowPolicy`].

mod bundle;
mod cuda_copy;
mod device;
mod environment;
mod external;
mod graph_timing;
mod manifest;
// Only CUDA sessions read their placements.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod placement;
mod policy;
mod recorded;
mod session;

pub use bundle::{BundleError, load_manifest, parse_manifest};
pub use environment::{Device, OnnxRuntimeOptions, find_onnxruntime};
pub use graph_timing::{GraphTiming, time_graph};
pub use manifest::{AttentionKind, Dtype, Manifest, Prompt, TimeConvention, TrainingData};
pub use policy::OnnxPolicy;
pub use recorded::{ChunkCheck, RecordedCheck, check_recorded, recorded_values};
