//! One chunk's denoising steps on a GPU, on fixed device addresses: the context (the KV cache) the prefix graph
//! writes, and every input and output of the flow graphs, live in device buffers allocated once and bound once
//! per graph (IoBinding both ways). A step copies the chunk-sized inputs in and the outputs out (a few
//! kilobytes, through the CUDA runtime), nothing else; and since no address ever changes, ONNX Runtime may
//! capture each flow graph as a CUDA graph and replay it.

use super::cuda_copy;
use super::manifest::Dtype;
use super::policy::element_type_of;
use crate::PolicyError;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, DynTensorValueType, DynValue, Tensor, TensorElementType, ValueType};

fn backend(error: impl std::fmt::Display) -> PolicyError {
    PolicyError::Backend(error.to_string())
}

/// A tensor of the graphs' float type in device memory, and the host bytes that values are converted into
/// before they are copied to the device and out of after they are copied back.
pub(super) struct Mirrored {
    /// The tensor in device memory.
    pub(super) device: DynTensor,
    host: Vec<u8>,
    dtype: Dtype,
    len: usize,
    /// Whether `host` holds what the device holds (after a copy either way), so that an upload of the same
    /// values (RTC's target and weights, the same at every step of an inference) copies nothing.
    in_sync: bool,
}

/// An uninitialised tensor of element type `ty` and `shape` from `allocator`.
fn tensor_of(
    allocator: &Allocator,
    ty: TensorElementType,
    shape: &[i64],
) -> Result<DynTensor, PolicyError> {
    let shape = shape.to_vec();
    let tensor = match ty {
        TensorElementType::Float32 => Tensor::<f32>::new(allocator, shape).map(Tensor::upcast),
        TensorElementType::Float16 => {
            Tensor::<half::f16>::new(allocator, shape).map(Tensor::upcast)
        }
        TensorElementType::Bfloat16 => {
            Tensor::<half::bf16>::new(allocator, shape).map(Tensor::upcast)
        }
        TensorElementType::Uint8 => Tensor::<u8>::new(allocator, shape).map(Tensor::upcast),
        TensorElementType::Int32 => Tensor::<i32>::new(allocator, shape).map(Tensor::upcast),
        TensorElementType::Int64 => Tensor::<i64>::new(allocator, shape).map(Tensor::upcast),
        other => {
            return Err(PolicyError::Backend(format!(
                "a graph input of element type {other:?} cannot be placed on the GPU"
            )));
        }
    };
    tensor.map_err(backend)
}

/// The allocator of GPU `device_id`'s memory for `session`.
pub(super) fn device_allocator(
    session: &Session,
    device_id: i32,
) -> Result<Allocator, PolicyError> {
    let memory = MemoryInfo::new(
        AllocationDevice::CUDA,
        device_id,
        AllocatorType::Device,
        MemoryType::Default,
    )
    .map_err(backend)?;
    Allocator::new(session, memory).map_err(backend)
}

/// Bytes of one element of `dtype`.
fn width(dtype: Dtype) -> usize {
    match dtype {
        Dtype::Float32 => 4,
        Dtype::Float16 | Dtype::Bfloat16 => 2,
    }
}

impl Mirrored {
    pub(super) fn new(
        device: &Allocator,
        dtype: Dtype,
        shape: &[i64],
    ) -> Result<Self, PolicyError> {
        let len = shape.iter().product::<i64>() as usize;
        Ok(Mirrored {
            device: tensor_of(device, element_type_of(dtype), shape)?,
            host: vec![0; len * width(dtype)],
            dtype,
            len,
            in_sync: false,
        })
    }

    /// Converts `values` into the host bytes and copies them to the device.
    pub(super) fn upload(&mut self, values: &[f32]) -> Result<(), PolicyError> {
        if values.len() != self.len {
            return Err(PolicyError::Shape {
                what: "a device step's input",
                got: values.len(),
                expected: self.len,
            });
        }
        let element = width(self.dtype);
        let mut changed = !self.in_sync;
        for (bytes, &value) in self.host.chunks_exact_mut(element).zip(values) {
            let mut encoded = [0u8; 4];
            match self.dtype {
                Dtype::Float32 => encoded = value.to_le_bytes(),
                Dtype::Float16 => {
                    encoded[..2].copy_from_slice(&half::f16::from_f32(value).to_le_bytes())
                }
                Dtype::Bfloat16 => {
                    encoded[..2].copy_from_slice(&half::bf16::from_f32(value).to_le_bytes())
                }
            }
            if bytes != &encoded[..element] {
                bytes.copy_from_slice(&encoded[..element]);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        self.in_sync = false;
        // SAFETY: the device tensor holds `len` elements of the dtype's width, as many bytes as `host`.
        unsafe { cuda_copy::to_device(self.device.data_ptr_mut(), &self.host) }?;
        self.in_sync = true;
        Ok(())
    }

    /// Copies the device tensor back and converts it into `out`.
    pub(super) fn download(&mut self, out: &mut [f32]) -> Result<(), PolicyError> {
        if out.len() != self.len {
            return Err(PolicyError::Shape {
                what: "a device step's output",
                got: out.len(),
                expected: self.len,
            });
        }
        // SAFETY: as in `upload`; the session that wrote the tensor has returned (its run synchronises).
        unsafe { cuda_copy::to_host(&mut self.host, self.device.data_ptr())? };
        self.in_sync = true;
        let element = width(self.dtype);
        for (value, bytes) in out.iter_mut().zip(self.host.chunks_exact(element)) {
            *value = match self.dtype {
                Dtype::Float32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
                Dtype::Float16 => half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
                Dtype::Bfloat16 => half::bf16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
            };
        }
        Ok(())
    }
}

/// Runs `session` on `binding` through ONNX Runtime's C API. `Session::run_binding` would also gather the
/// outputs into a new map at every step; here the outputs are the bound device buffers, which the caller reads.
pub(super) fn run_bound(session: &mut Session, binding: &IoBinding) -> Result<(), PolicyError> {
    use ort::AsPointer;
    let api = ort::api();
    // SAFETY: both pointers belong to live ort objects borrowed for the call, and the session is borrowed
    // mutably (ONNX Runtime's RunWithBinding is not thread-safe); no run options.
    let status =
        unsafe { (api.RunWithBinding)(session.ptr().cast_mut(), std::ptr::null(), binding.ptr()) };
    if status.0.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null status is ONNX Runtime's error, with its message, released once read.
    let message = unsafe {
        let message = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0))
            .to_string_lossy()
            .into_owned();
        (api.ReleaseStatus)(status.0);
        message
    };
    Err(PolicyError::Backend(message))
}

/// Which flow graph a call runs, with the inputs it takes beyond the chunk, tau and the context.
pub(crate) enum FlowCall<'a> {
    /// `velocity.onnx`.
    Velocity,
    /// `velocity_vjp.onnx` with this cotangent.
    Vjp { cotangent: &'a [f32] },
    /// `guided.onnx` with this target and these per-token weights.
    Guided {
        target: &'a [f32],
        weights: &'a [f32],
    },
}

/// The flow graphs' sessions a device step may run.
pub(crate) struct FlowSessions<'a> {
    pub velocity: &'a mut Session,
    pub velocity_vjp: Option<&'a mut Session>,
    pub guided: Option<&'a mut Session>,
}

/// The prefix graph's inputs in GPU memory, bound once with the context as the output, so that an inference
/// copies the observation, the images and the prompt in and ONNX Runtime may replay the prefix as a captured
/// CUDA graph like the steps.
struct PrefixBinding {
    /// Each input's device tensor and its size in bytes, in the order of the prefix's inputs.
    inputs: Vec<(DynTensor, usize)>,
    binding: IoBinding,
}

/// The element type, shape and size in bytes of host tensor `value`.
fn host_layout(value: &DynValue) -> Result<(TensorElementType, Vec<i64>, usize), PolicyError> {
    match value.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            let count = shape.iter().product::<i64>().max(0) as usize;
            let bytes = ty.byte_size(count).ok_or_else(|| {
                PolicyError::Backend(format!(
                    "a prefix input of element type {ty:?} has no fixed size"
                ))
            })?;
            Ok((*ty, shape.to_vec(), bytes))
        }
        other => Err(PolicyError::Backend(format!(
            "a prefix input is a {other:?}, not a tensor"
        ))),
    }
}

/// The device buffers and bindings of one chunk's steps against the context of one observation.
pub(crate) struct DeviceSteps {
    device_id: i32,
    prefix: Option<PrefixBinding>,
    context: Mirrored,
    actions: Mirrored,
    tau: Mirrored,
    cotangent: Mirrored,
    target: Mirrored,
    weights: Mirrored,
    velocity: Mirrored,
    vjp: Mirrored,
    velocity_binding: IoBinding,
    vjp_binding: Option<IoBinding>,
    guided_binding: Option<IoBinding>,
}

impl DeviceSteps {
    /// Allocates every buffer on GPU `device_id` (chunks of `horizon` x `action_dim`, a context of
    /// `context_shape`, all of `dtype` but `tau`, of `tau_dtype`) and binds them to the flow graphs.
    pub(crate) fn new(
        sessions: FlowSessions<'_>,
        (dtype, tau_dtype): (Dtype, Dtype),
        horizon: usize,
        action_dim: usize,
        context_shape: &[usize],
        device_id: i32,
    ) -> Result<Self, PolicyError> {
        let device = device_allocator(sessions.velocity, device_id)?;
        let (h, a) = (horizon as i64, action_dim as i64);
        let chunk = [1, h, a];
        let per_token = [1, h];
        let context: Vec<i64> = std::iter::once(1)
            .chain(context_shape.iter().map(|&d| d as i64))
            .collect();
        let mirrored = |shape: &[i64]| Mirrored::new(&device, dtype, shape);
        let mut steps = DeviceSteps {
            device_id,
            prefix: None,
            context: mirrored(&context)?,
            actions: mirrored(&chunk)?,
            tau: Mirrored::new(&device, tau_dtype, &per_token)?,
            cotangent: mirrored(&chunk)?,
            target: mirrored(&chunk)?,
            weights: mirrored(&per_token)?,
            velocity: mirrored(&chunk)?,
            vjp: mirrored(&chunk)?,
            velocity_binding: sessions.velocity.create_binding().map_err(backend)?,
            vjp_binding: None,
            guided_binding: None,
        };
        steps.bind_flow(FlowGraph::Velocity)?;
        if let Some(session) = sessions.velocity_vjp {
            steps.vjp_binding = Some(session.create_binding().map_err(backend)?);
            steps.bind_flow(FlowGraph::Vjp)?;
        }
        if let Some(session) = sessions.guided {
            steps.guided_binding = Some(session.create_binding().map_err(backend)?);
            steps.bind_flow(FlowGraph::Guided)?;
        }
        Ok(steps)
    }

    fn bind_flow(&mut self, which: FlowGraph) -> Result<(), PolicyError> {
        let binding = match which {
            FlowGraph::Velocity => &mut self.velocity_binding,
            FlowGraph::Vjp => self.vjp_binding.as_mut().ok_or(PolicyError::NoVjp)?,
            FlowGraph::Guided => self.guided_binding.as_mut().ok_or(PolicyError::NoVjp)?,
        };
        binding
            .bind_input("actions", &self.actions.device)
            .map_err(backend)?;
        binding
            .bind_input("tau", &self.tau.device)
            .map_err(backend)?;
        binding
            .bind_input("context", &self.context.device)
            .map_err(backend)?;
        match which {
            FlowGraph::Velocity => {}
            FlowGraph::Vjp => binding
                .bind_input("cotangent", &self.cotangent.device)
                .map_err(backend)?,
            FlowGraph::Guided => {
                binding
                    .bind_input("target", &self.target.device)
                    .map_err(backend)?;
                binding
                    .bind_input("weights", &self.weights.device)
                    .map_err(backend)?;
            }
        }
        binding
            .bind_output("velocity", &mut self.velocity.device)
            .map_err(backend)?;
        if !matches!(which, FlowGraph::Velocity) {
            binding
                .bind_output("vjp", &mut self.vjp.device)
                .map_err(backend)?;
        }
        Ok(())
    }

    /// Runs the prefix graph on `inputs` (host tensors by input name, the same names and shapes at every call)
    /// into the device context: the inputs are copied into device buffers bound at the first call.
    pub(crate) fn prepare(
        &mut self,
        prefix: &mut Session,
        inputs: &[(String, DynValue)],
    ) -> Result<(), PolicyError> {
        if self.prefix.is_none() {
            self.prefix = Some(self.bind_prefix(prefix, inputs)?);
        }
        let bound = self.prefix.as_mut().ok_or(PolicyError::NotPrepared)?;
        for ((_, host), (device, expected)) in inputs.iter().zip(&mut bound.inputs) {
            let (_, _, bytes) = host_layout(host)?;
            if bytes != *expected {
                return Err(PolicyError::Shape {
                    what: "a prefix input (bytes)",
                    got: bytes,
                    expected: *expected,
                });
            }
            let host = host
                .view()
                .downcast::<DynTensorValueType>()
                .map_err(backend)?;
            // SAFETY: `host` is a live CPU tensor of `bytes` bytes, and `device` was allocated with its shape
            // and element type.
            unsafe {
                let source = std::slice::from_raw_parts(host.data_ptr().cast::<u8>(), bytes);
                cuda_copy::to_device(device.data_ptr_mut(), source)?;
            }
        }
        self.context.in_sync = false;
        run_bound(prefix, &bound.binding)
    }

    /// Device buffers shaped like the host tensors `inputs`, bound to the prefix graph with the context.
    fn bind_prefix(
        &mut self,
        prefix: &mut Session,
        inputs: &[(String, DynValue)],
    ) -> Result<PrefixBinding, PolicyError> {
        let allocator = device_allocator(prefix, self.device_id)?;
        let mut binding = prefix.create_binding().map_err(backend)?;
        let mut buffers = Vec::with_capacity(inputs.len());
        for (name, host) in inputs {
            let (ty, shape, bytes) = host_layout(host)?;
            let device = tensor_of(&allocator, ty, &shape)?;
            binding.bind_input(name, &device).map_err(backend)?;
            buffers.push((device, bytes));
        }
        binding
            .bind_output("context", &mut self.context.device)
            .map_err(backend)?;
        Ok(PrefixBinding {
            inputs: buffers,
            binding,
        })
    }

    /// The context on the host, as `f32`.
    pub(crate) fn context_on_host(&mut self) -> Result<Vec<f32>, PolicyError> {
        let mut context = vec![0.0; self.context.len];
        self.context.download(&mut context)?;
        Ok(context)
    }

    /// One step of one chunk: `actions` and `tau` (and the step's own inputs) in, the velocity (and the VJP,
    /// for the VJP and guided graphs) out.
    pub(crate) fn run(
        &mut self,
        sessions: FlowSessions<'_>,
        call: FlowCall<'_>,
        actions: &[f32],
        tau: &[f32],
        velocity: &mut [f32],
        vjp: Option<&mut [f32]>,
    ) -> Result<(), PolicyError> {
        self.actions.upload(actions)?;
        self.tau.upload(tau)?;
        let (session, binding) = match call {
            FlowCall::Velocity => (sessions.velocity, &self.velocity_binding),
            FlowCall::Vjp { cotangent } => {
                self.cotangent.upload(cotangent)?;
                (
                    sessions.velocity_vjp.ok_or(PolicyError::NoVjp)?,
                    self.vjp_binding.as_ref().ok_or(PolicyError::NoVjp)?,
                )
            }
            FlowCall::Guided { target, weights } => {
                self.target.upload(target)?;
                self.weights.upload(weights)?;
                (
                    sessions.guided.ok_or(PolicyError::NoVjp)?,
                    self.guided_binding.as_ref().ok_or(PolicyError::NoVjp)?,
                )
            }
        };
        run_bound(session, binding)?;
        self.velocity.download(velocity)?;
        match vjp {
            Some(vjp) => self.vjp.download(vjp),
            None => Ok(()),
        }
    }
}

impl FlowCall<'_> {
    /// The graph it runs.
    pub(crate) fn graph(&self) -> FlowGraph {
        match self {
            FlowCall::Velocity => FlowGraph::Velocity,
            FlowCall::Vjp { .. } => FlowGraph::Vjp,
            FlowCall::Guided { .. } => FlowGraph::Guided,
        }
    }

    /// Its inputs beyond the chunk, tau and the context: name, values of the whole batch, and whether they
    /// are per token (`[B, H]`) rather than per action (`[B, H, A]`).
    pub(crate) fn extra_inputs(&self) -> Vec<(&'static str, &[f32], bool)> {
        match self {
            FlowCall::Velocity => Vec::new(),
            FlowCall::Vjp { cotangent } => vec![("cotangent", cotangent, false)],
            FlowCall::Guided { target, weights } => {
                vec![("target", target, false), ("weights", weights, true)]
            }
        }
    }
}

/// A flow graph of a bundle.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowGraph {
    /// `velocity.onnx`: the velocity.
    Velocity,
    /// `velocity_vjp.onnx`: the velocity and the VJP against a cotangent.
    Vjp,
    /// `guided.onnx`: the velocity and the VJP against the weighted error.
    Guided,
}
