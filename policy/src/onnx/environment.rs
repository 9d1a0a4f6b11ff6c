//! Finding and loading the ONNX Runtime library once per process.

use super::BundleError;
use ort::environment::Environment;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Where a bundle's graphs run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// The CUDA execution provider on this GPU (needs the `cuda` feature and ONNX Runtime's GPU build).
    Cuda(i32),
}

impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|id| id.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    format!("{text:?} is not a device: expected \"cpu\", \"cuda\" or \"cuda:N\"")
                }),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(id) => write!(f, "cuda:{id}"),
        }
    }
}

/// How bundles are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxRuntimeOptions {
    /// The ONNX Runtime library; `None` searches `ORT_DYLIB_PATH`, then `.cache/onnxruntime/` above the
    /// executable and the working directory (where `scripts/setup.sh` puts it).
    pub library: Option<PathBuf>,
    /// Threads of each session's intra-op pool (they never spin, so the controller's core stays quiet).
    pub intra_threads: usize,
    /// Where the graphs run.
    pub device: Device,
    /// On a GPU, keep a single observation's context in device memory across the denoising steps (IoBinding).
    pub context_on_device: bool,
    /// On a GPU with the context in device memory, capture the prefix and each flow graph as a CUDA graph once
    /// and replay them at every inference and step (their buffers never move). Batched calls are then refused:
    /// they need it off.
    pub cuda_graphs: bool,
    /// On a GPU, let ONNX Runtime run nodes the CUDA provider hands to the CPU there (slow: each such node copies
    /// its tensors across) instead of refusing the bundle. Nodes that only compute shapes from shapes and
    /// constants, which ONNX Runtime keeps on the CPU on purpose, are allowed either way.
    pub allow_cpu_nodes: bool,
    /// Write ONNX Runtime's per-node timings of each graph to `<this>-<graph>_<time>.json` when its session
    /// ends (`rtchunk_train.ort_profile` sums them up).
    pub profile: Option<PathBuf>,
}

impl Default for OnnxRuntimeOptions {
    fn default() -> Self {
        OnnxRuntimeOptions {
            library: None,
            intra_threads: 1,
            device: Device::Cpu,
            context_on_device: true,
            cuda_graphs: true,
            allow_cpu_nodes: false,
            profile: None,
        }
    }
}

const CACHED_LIBRARY: &str = ".cache/onnxruntime/libonnxruntime.so";

/// The ONNX Runtime library to load: `explicit`, else `ORT_DYLIB_PATH`, else the setup script's cache.
pub fn find_onnxruntime(explicit: Option<&Path>) -> Result<PathBuf, BundleError> {
    let mut searched = Vec::new();
    let mut candidates: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    if explicit.is_none() {
        candidates.extend(std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
        let roots = [std::env::current_exe().ok(), std::env::current_dir().ok()];
        for root in roots.into_iter().flatten() {
            candidates.extend(root.ancestors().map(|dir| dir.join(CACHED_LIBRARY)));
        }
    }
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
        searched.push(candidate);
    }
    Err(BundleError::Library(format!(
        "the ONNX Runtime library was not found (looked at {}); run ./scripts/setup.sh to install it, or set \
         ORT_DYLIB_PATH",
        searched
            .first()
            .map_or("nothing".into(), |p| p.display().to_string())
    )))
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// The process's ONNX Runtime environment, loading the library on first use.
pub(crate) fn environment(
    options: &OnnxRuntimeOptions,
) -> Result<&'static Environment, BundleError> {
    if let Some(environment) = ENVIRONMENT.get() {
        return Ok(environment);
    }
    let _guard = LOADING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(environment) = ENVIRONMENT.get() {
        return Ok(environment);
    }
    let library = find_onnxruntime(options.library.as_deref())?;
    let environment = ort::init_from(&library)
        .map_err(|e| BundleError::Library(format!("cannot load {}: {e}", library.display())))?
        .with_name("rtchunk")
        .build()
        .map_err(|e| {
            BundleError::Library(format!(
                "cannot start ONNX Runtime from {}: {e}",
                library.display()
            ))
        })?;
    Ok(ENVIRONMENT.get_or_init(|| environment))
}
