//! Copies between host and GPU memory through the CUDA runtime, loaded at run time (ONNX Runtime's CUDA
//! provider has loaded it already). ONNX Runtime's own tensor copy runs a session per copy, has no bfloat16
//! kernel, and cannot copy out of memory it does not own; this moves bytes, in microseconds.

use crate::PolicyError;
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

type Memcpy = unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_int) -> c_int;
type Synchronize = unsafe extern "C" fn() -> c_int;

/// `cudaMemcpyKind` values.
const HOST_TO_DEVICE: c_int = 1;
const DEVICE_TO_HOST: c_int = 2;

struct CudaRuntime {
    memcpy: Memcpy,
    synchronize: Synchronize,
    _library: libloading::Library,
}

static RUNTIME: OnceLock<Result<CudaRuntime, String>> = OnceLock::new();

fn load() -> Result<CudaRuntime, String> {
    let names = ["libcudart.so.13", "libcudart.so.12", "libcudart.so"];
    let mut failures = Vec::new();
    for name in names {
        // SAFETY: loading the CUDA runtime runs its initialisers only, and the two symbols have the C
        // signatures of the CUDA runtime API (cudaMemcpy, cudaDeviceSynchronize).
        match unsafe { libloading::Library::new(name) } {
            Ok(library) => unsafe {
                let memcpy = *library
                    .get::<Memcpy>(b"cudaMemcpy\0")
                    .map_err(|e| format!("{name}: {e}"))?;
                let synchronize = *library
                    .get::<Synchronize>(b"cudaDeviceSynchronize\0")
                    .map_err(|e| format!("{name}: {e}"))?;
                return Ok(CudaRuntime {
                    memcpy,
                    synchronize,
                    _library: library,
                });
            },
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    Err(format!(
        "the CUDA runtime library was not found ({}); put CUDA's lib folder on LD_LIBRARY_PATH",
        failures.join("; ")
    ))
}

fn runtime() -> Result<&'static CudaRuntime, PolicyError> {
    RUNTIME
        .get_or_init(load)
        .as_ref()
        .map_err(|e| PolicyError::Backend(e.clone()))
}

fn check(status: c_int, what: &str) -> Result<(), PolicyError> {
    if status == 0 {
        Ok(())
    } else {
        Err(PolicyError::Backend(format!(
            "{what} failed: CUDA error {status}"
        )))
    }
}

/// Copies `bytes` to GPU memory at `device`, which must hold at least as many, and waits until the device
/// has them (ONNX Runtime's streams read them next).
///
/// # Safety
/// `device` must point to at least `bytes.len()` bytes of GPU memory.
pub(crate) unsafe fn to_device(device: *mut c_void, bytes: &[u8]) -> Result<(), PolicyError> {
    let cuda = runtime()?;
    // SAFETY: the caller guarantees the destination; the source is a live host slice of that length.
    let status =
        unsafe { (cuda.memcpy)(device, bytes.as_ptr().cast(), bytes.len(), HOST_TO_DEVICE) };
    check(status, "copying a step's input to the GPU")?;
    // SAFETY: a plain call of the CUDA runtime.
    check(unsafe { (cuda.synchronize)() }, "waiting for the GPU")
}

/// Copies GPU memory at `device` into `bytes` (synchronous).
///
/// # Safety
/// `device` must point to at least `bytes.len()` bytes of GPU memory that no kernel is still writing.
pub(crate) unsafe fn to_host(bytes: &mut [u8], device: *const c_void) -> Result<(), PolicyError> {
    let cuda = runtime()?;
    // SAFETY: the caller guarantees the source; the destination is a live host slice of that length.
    let status = unsafe {
        (cuda.memcpy)(
            bytes.as_mut_ptr().cast(),
            device,
            bytes.len(),
            DEVICE_TO_HOST,
        )
    };
    check(status, "copying a step's output from the GPU")
}
