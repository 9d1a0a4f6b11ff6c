//! A policy bundle run by ONNX Runtime, as a [`FlowPolicy`].

use super::bundle::{BundleError, field, read_manifest, read_verified};
use super::device::{DeviceSteps, FlowCall, FlowGraph, FlowSessions};
use super::environment::{Device, OnnxRuntimeOptions, environment};
use super::manifest::{Dtype, GraphFile, Manifest, TimeConvention};
use super::placement::shape_nodes_summary;
use super::session::{GraphSource, commit};
use crate::convention::TimeFlip;
use crate::interface::{batch_of, flat, flat_mut};
use crate::{FlowPolicy, Normalization, PolicyError, PolicySpec};
use ndarray::{ArrayView2, ArrayView3, ArrayViewMut3};
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use std::borrow::Cow;
use std::path::Path;

/// The sessions of a bundle's graphs and the prepared contexts. Whatever the bundle's time convention, it is
/// driven in the paper's (tau = 1 is data), as every [`FlowPolicy`] is.
pub struct OnnxPolicy {
    manifest: Manifest,
    spec: PolicySpec,
    normalization: Normalization,
    prefix: Session,
    velocity: Session,
    velocity_vjp: Option<Session>,
    guided: Option<Session>,
    /// The contexts of the prepared observations, one after another.
    contexts: Vec<f32>,
    context_count: usize,
    /// The contexts repeated for a batch of chunks.
    batch_contexts: Vec<f32>,
    /// Where the graphs run.
    device: Device,
    /// Whether a GPU keeps a single observation's context in its memory.
    context_on_device: bool,
    /// On a GPU, the device buffers of single-chunk steps (allocated at the first prepared observation).
    device_steps: Option<DeviceSteps>,
    /// Whether the prepared context is the one in `device_steps` (a single observation on a GPU); `contexts`
    /// is then filled from it only if a call needs it on the host.
    context_in_device: bool,
    /// Whether the flow graphs were captured as CUDA graphs (they then run on the device buffers only).
    cuda_graphs: bool,
    /// For a bundle in the t = 1 noise convention: the conversion that presents it in the paper's.
    time_flip: Option<TimeFlip>,
    /// On a GPU, the nodes ONNX Runtime keeps on the CPU that only compute shapes ("graph: OpType (name)").
    shape_nodes_on_cpu: Vec<String>,
}

fn backend(error: impl std::fmt::Display) -> PolicyError {
    PolicyError::Backend(error.to_string())
}

impl OnnxPolicy {
    /// Loads and checks the bundle in `directory`: manifest, hashes, and every graph's inputs and outputs.
    pub fn load(directory: &Path, options: &OnnxRuntimeOptions) -> Result<Self, BundleError> {
        let manifest = read_manifest(directory)?;
        if manifest.dtype == Dtype::Bfloat16 && options.device == Device::Cpu {
            return Err(field(
                &directory.join("manifest.json"),
                "dtype",
                "bfloat16 needs the CUDA execution provider (ONNX Runtime has no bfloat16 CPU kernels); \
                 set policy.device = \"cuda\" or export float32 / float16",
            ));
        }
        let environment = environment(options)?;
        let element_type = element_type_of(manifest.dtype);
        let cuda_graphs = options.cuda_graphs
            && options.context_on_device
            && matches!(options.device, Device::Cuda(_));
        let mut shape_nodes_on_cpu = Vec::new();
        // ONNX Runtime gets the bytes that were hashed, never the path (which could change in between).
        let mut open = |key: &str, graph: &GraphFile, inputs: &[Outlet], outputs: &[Outlet]| {
            let verified = read_verified(directory, key, graph)?;
            let path = verified.path.clone();
            let graph = key.trim_start_matches("graphs.");
            let source = GraphSource {
                path: &path,
                bytes: &verified.bytes,
                external: &verified.external,
                profile: options.profile.as_ref().map(|profile| {
                    let mut file = profile.clone().into_os_string();
                    file.push(format!("-{graph}"));
                    file.into()
                }),
            };
            let committed = commit(environment, options, cuda_graphs, &source)?;
            shape_nodes_on_cpu.extend(
                committed
                    .shape_nodes_on_cpu
                    .iter()
                    .map(|n| format!("{graph}: {n}")),
            );
            let session = committed.session;
            check_outlets(&path, "input", session.inputs(), inputs)?;
            check_outlets(&path, "output", session.outputs(), outputs)?;
            Ok::<_, BundleError>(session)
        };
        let (h, a) = (manifest.horizon as i64, manifest.action_dim as i64);
        let b = manifest.batch.map_or(-1, |group| group as i64);
        let context: Vec<i64> = std::iter::once(b)
            .chain(manifest.context_shape.iter().map(|&d| d as i64))
            .collect();
        let float = |name: &'static str, shape: Vec<i64>| (name.to_string(), shape, element_type);
        let mut prefix_inputs: Vec<Outlet> = manifest
            .observation
            .iter()
            .map(|o| {
                let shape = std::iter::once(-1).chain(o.shape.iter().map(|&d| d as i64));
                (o.name.clone(), shape.collect(), element_type_of(o.dtype))
            })
            .collect();
        prefix_inputs.extend(manifest.cameras.iter().map(|c| {
            let shape = vec![-1, c.height as i64, c.width as i64, c.channels as i64];
            (c.name.clone(), shape, TensorElementType::Uint8)
        }));
        if let Some(prompt) = &manifest.prompt {
            let shape = vec![-1, prompt.token_ids.len() as i64];
            prefix_inputs.push((prompt.input.clone(), shape, TensorElementType::Int64));
        }
        let chunk = vec![b, h, a];
        let flow_inputs = vec![
            float("actions", chunk.clone()),
            (
                "tau".to_string(),
                vec![b, h],
                element_type_of(manifest.tau_dtype()),
            ),
            float("context", context.clone()),
        ];
        let prefix = open(
            "graphs.prefix",
            &manifest.graphs.prefix,
            &prefix_inputs,
            &[float("context", context.clone())],
        )?;
        let velocity = open(
            "graphs.velocity",
            &manifest.graphs.velocity,
            &flow_inputs,
            &[float("velocity", chunk.clone())],
        )?;
        let flow_outputs = [
            float("velocity", chunk.clone()),
            float("vjp", chunk.clone()),
        ];
        let velocity_vjp = match &manifest.graphs.velocity_vjp {
            Some(graph) => {
                let mut inputs = flow_inputs.clone();
                inputs.push(float("cotangent", chunk.clone()));
                Some(open("graphs.velocity_vjp", graph, &inputs, &flow_outputs)?)
            }
            None => None,
        };
        let guided = match &manifest.graphs.guided {
            Some(graph) => {
                let mut inputs = flow_inputs.clone();
                inputs.push(float("target", chunk.clone()));
                inputs.push(float("weights", vec![b, h]));
                Some(open("graphs.guided", graph, &inputs, &flow_outputs)?)
            }
            None => None,
        };
        let stats = &manifest.normalization;
        let normalization = Normalization {
            action_offset: stats.action.mean.clone(),
            action_scale: stats.action.std.clone(),
            observation_offset: stats.observation.mean.clone(),
            observation_scale: stats.observation.std.clone(),
        };
        let spec = PolicySpec {
            horizon: manifest.horizon,
            action_dim: manifest.action_dim,
            robot_action_dim: manifest.robot_action_dim.unwrap_or(manifest.action_dim),
            observation_dim: manifest.observation_dim(),
            cameras: manifest.cameras.clone(),
            exact_vjp: manifest.capabilities.exact_vjp,
            prefix_conditioned: manifest.capabilities.prefix_conditioned,
        };
        let time_flip =
            (manifest.time_convention == TimeConvention::TOneIsNoise).then(TimeFlip::default);
        Ok(OnnxPolicy {
            manifest,
            spec,
            normalization,
            prefix,
            velocity,
            velocity_vjp,
            guided,
            contexts: Vec::new(),
            context_count: 0,
            batch_contexts: Vec::new(),
            device: options.device,
            context_on_device: options.context_on_device,
            device_steps: None,
            context_in_device: false,
            cuda_graphs,
            time_flip,
            shape_nodes_on_cpu,
        })
    }

    /// The bundle's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// On a GPU, the nodes ONNX Runtime keeps on the CPU because they only compute shapes from shapes and
    /// constants ("graph: OpType (name)"): no tensor crosses between the devices for them.
    pub fn shape_nodes_on_cpu(&self) -> &[String] {
        &self.shape_nodes_on_cpu
    }

    /// One line on [`OnnxPolicy::shape_nodes_on_cpu`]: how many per graph, the first few named; `None` when
    /// there are none.
    pub fn shape_nodes_summary(&self) -> Option<String> {
        shape_nodes_summary(&self.shape_nodes_on_cpu)
    }

    /// Whether the prefix and the flow graphs replay captured CUDA graphs.
    pub fn cuda_graphs(&self) -> bool {
        self.cuda_graphs
    }

    /// How many items one call of the graphs takes: the manifest's fixed batch, or all of them. A batch that
    /// is not a multiple of a fixed batch has its last group padded with copies of its last item, whose outputs
    /// are dropped.
    fn group_size(&self, items: usize) -> usize {
        self.manifest.batch.unwrap_or(items)
    }

    /// The flow graphs' sessions, for a device step.
    fn flow_sessions(&mut self) -> FlowSessions<'_> {
        FlowSessions {
            velocity: &mut self.velocity,
            velocity_vjp: self.velocity_vjp.as_mut(),
            guided: self.guided.as_mut(),
        }
    }

    /// [`OnnxPolicy::run_flow`] on the trait's arrays: checks their shapes and reads them as flat buffers.
    fn run_views(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        call: FlowCall<'_>,
        mut velocity: ArrayViewMut3<f32>,
        mut vjp: Option<ArrayViewMut3<f32>>,
    ) -> Result<(), PolicyError> {
        batch_of(&self.spec, &actions, &tau)?;
        let vjp = match vjp.as_mut() {
            Some(vjp) => Some(flat_mut(vjp, "the VJP")?),
            None => None,
        };
        self.run_flow(
            flat(&actions, "the action batch")?,
            flat(&tau, "tau")?,
            call,
            flat_mut(&mut velocity, "the velocity")?,
            vjp,
        )
    }

    /// Runs the flow graph `call` names in the paper's time convention, converting for a bundle in the other.
    fn run_flow(
        &mut self,
        actions: &[f32],
        tau: &[f32],
        call: FlowCall<'_>,
        velocity: &mut [f32],
        vjp: Option<&mut [f32]>,
    ) -> Result<(), PolicyError> {
        let Some(mut flip) = self.time_flip.take() else {
            return self.run_graphs(actions, tau, call, velocity, vjp);
        };
        let result = self.run_graphs(actions, flip.times(tau), call, velocity, vjp);
        self.time_flip = Some(flip);
        result?;
        TimeFlip::velocity(velocity);
        Ok(())
    }

    /// Runs the flow graph `call` names over a batch of chunks in the groups the graphs take (on a GPU, a
    /// single chunk against the context in device memory on the bound buffers), in the bundle's time convention.
    fn run_graphs(
        &mut self,
        actions: &[f32],
        tau: &[f32],
        call: FlowCall<'_>,
        velocity: &mut [f32],
        mut vjp: Option<&mut [f32]>,
    ) -> Result<(), PolicyError> {
        // The trait's entry points checked the shapes.
        let batch = actions.len() / self.spec.chunk_len();
        let group = self.group_size(batch);
        if batch == 1 && self.context_in_device {
            let mut steps = self.device_steps.take().ok_or(PolicyError::NotPrepared)?;
            let result = steps.run(self.flow_sessions(), call, actions, tau, velocity, vjp);
            self.device_steps = Some(steps);
            return result;
        }
        if self.cuda_graphs {
            return Err(batched_with_cuda_graphs(batch));
        }
        self.contexts_for(batch)?;
        let dtype = self.manifest.dtype;
        let (h, a) = (self.spec.horizon, self.spec.action_dim);
        let (len, context_len) = (h * a, self.manifest.context_len());
        let padded = batch.div_ceil(group) * group;
        let actions = pad_items(actions, batch, padded);
        let tau = pad_items(tau, batch, padded);
        let extras: Vec<_> = call
            .extra_inputs()
            .into_iter()
            .map(|(name, values, per_token)| (name, pad_items(values, batch, padded), per_token))
            .collect();
        let contexts = pad_items(&self.batch_contexts, batch, padded);
        // Outputs go straight to the caller's buffers, or, for a padded batch, to buffers that hold the padding.
        let mut spare = (padded != batch).then(|| {
            let vjp = vjp.is_some().then(|| vec![0.0; padded * len]);
            (vec![0.0; padded * len], vjp)
        });
        let (out_velocity, mut out_vjp): (&mut [f32], Option<&mut [f32]>) = match &mut spare {
            Some((velocity, vjp)) => (velocity, vjp.as_deref_mut()),
            None => (&mut *velocity, vjp.as_deref_mut()),
        };
        let context_shape: Vec<i64> = std::iter::once(group as i64)
            .chain(self.manifest.context_shape.iter().map(|&d| d as i64))
            .collect();
        let session = match call.graph() {
            FlowGraph::Velocity => &mut self.velocity,
            FlowGraph::Vjp => self.velocity_vjp.as_mut().ok_or(PolicyError::NoVjp)?,
            FlowGraph::Guided => self.guided.as_mut().ok_or(PolicyError::NoVjp)?,
        };
        let chunk_shape = vec![group as i64, h as i64, a as i64];
        for start in (0..padded).step_by(group) {
            let chunks = start * len..(start + group) * len;
            let tokens = start * h..(start + group) * h;
            let mut inputs = ort::inputs![
                "actions" => tensor(dtype, chunk_shape.clone(), &actions[chunks.clone()])?,
                "tau" => tensor(self.manifest.tau_dtype(), vec![group as i64, h as i64], &tau[tokens.clone()])?,
                "context" => tensor(dtype, context_shape.clone(), &contexts[start * context_len..(start + group) * context_len])?,
            ];
            for (name, values, per_token) in &extras {
                let value = if *per_token {
                    tensor(dtype, vec![group as i64, h as i64], &values[tokens.clone()])?
                } else {
                    tensor(dtype, chunk_shape.clone(), &values[chunks.clone()])?
                };
                inputs.push(((*name).into(), value.into()));
            }
            let outputs = session.run(inputs).map_err(backend)?;
            copy_outputs(&outputs, chunks, out_velocity, out_vjp.as_deref_mut())?;
        }
        if let Some((spare_velocity, spare_vjp)) = spare {
            velocity.copy_from_slice(&spare_velocity[..batch * len]);
            if let (Some(vjp), Some(spare_vjp)) = (vjp, spare_vjp) {
                vjp.copy_from_slice(&spare_vjp[..batch * len]);
            }
        }
        Ok(())
    }

    /// Runs the prefix graph for one observation (and its images) with its output left in the GPU's memory.
    fn prepare_on_device(
        &mut self,
        observation: &[f32],
        images: &[u8],
        device_id: i32,
    ) -> Result<(), PolicyError> {
        if self.device_steps.is_none() {
            let dtypes = (self.manifest.dtype, self.manifest.tau_dtype());
            let (h, a) = (self.spec.horizon, self.spec.action_dim);
            let shape = self.manifest.context_shape.clone();
            let steps = DeviceSteps::new(self.flow_sessions(), dtypes, h, a, &shape, device_id)?;
            self.device_steps = Some(steps);
        }
        let inputs = self.prefix_inputs(observation, images, 1)?;
        let steps = self.device_steps.as_mut().ok_or(PolicyError::NotPrepared)?;
        steps.prepare(&mut self.prefix, &inputs)?;
        self.context_in_device = true;
        self.contexts.clear();
        self.context_count = 1;
        Ok(())
    }

    /// The prefix graph's named inputs for `count` observations and their images: the observation vector, then
    /// one `uint8 [count, height, width, channels]` tensor per camera, then the prompt's ids.
    fn prefix_inputs(
        &self,
        observations: &[f32],
        images: &[u8],
        count: usize,
    ) -> Result<Vec<(String, DynValue)>, PolicyError> {
        let dim = self.spec.observation_dim;
        let mut inputs = Vec::new();
        let mut start = 0;
        for input in &self.manifest.observation {
            let size: usize = input.shape.iter().product();
            let values: Vec<f32> = observations
                .chunks(dim)
                .flat_map(|observation| &observation[start..start + size])
                .copied()
                .collect();
            let shape = std::iter::once(count)
                .chain(input.shape.iter().copied())
                .map(|d| d as i64)
                .collect();
            inputs.push((input.name.clone(), tensor(input.dtype, shape, &values)?));
            start += size;
        }
        let per_observation = self.spec.image_bytes();
        let mut offset = 0;
        for camera in &self.manifest.cameras {
            let bytes = camera.bytes();
            let pixels: Vec<u8> = images
                .chunks(per_observation)
                .flat_map(|observation| &observation[offset..offset + bytes])
                .copied()
                .collect();
            let shape = vec![
                count as i64,
                camera.height as i64,
                camera.width as i64,
                camera.channels as i64,
            ];
            let value = Tensor::from_array((shape, pixels)).map_err(backend)?;
            inputs.push((camera.name.clone(), value.into_dyn()));
            offset += bytes;
        }
        if let Some(prompt) = &self.manifest.prompt {
            let ids: Vec<i64> = (0..count)
                .flat_map(|_| prompt.token_ids.iter().copied())
                .collect();
            let shape = vec![count as i64, prompt.token_ids.len() as i64];
            let value = Tensor::from_array((shape, ids)).map_err(backend)?;
            inputs.push((prompt.input.clone(), value.into_dyn()));
        }
        Ok(inputs)
    }

    /// Repeats the prepared contexts so that chunk b of a batch of `batch` uses context b / (batch / count).
    fn contexts_for(&mut self, batch: usize) -> Result<(), PolicyError> {
        if self.context_count == 0 {
            return Err(PolicyError::NotPrepared);
        }
        if self.contexts.is_empty()
            && self.context_in_device
            && let Some(steps) = &mut self.device_steps
        {
            self.contexts = steps.context_on_host()?;
        }
        if !batch.is_multiple_of(self.context_count) {
            return Err(PolicyError::Shape {
                what: "the chunk batch (a multiple of the prepared observations)",
                got: batch,
                expected: self.context_count,
            });
        }
        let len = self.manifest.context_len();
        let repeat = batch / self.context_count;
        self.batch_contexts.clear();
        for context in self.contexts.chunks(len) {
            for _ in 0..repeat {
                self.batch_contexts.extend_from_slice(context);
            }
        }
        Ok(())
    }
}

/// A graph input or output as the manifest implies it: name, shape (-1: any) and element type.
type Outlet = (String, Vec<i64>, TensorElementType);

/// Checks that a graph's inputs or outputs are tensors with the expected names, element types and fixed
/// dimensions (-1: any).
fn check_outlets(
    path: &Path,
    kind: &str,
    outlets: &[ort::value::Outlet],
    expected: &[Outlet],
) -> Result<(), BundleError> {
    let mismatch = |message: String| BundleError::Graph {
        path: path.to_path_buf(),
        message,
    };
    for (name, shape, element_type) in expected {
        let outlet = outlets
            .iter()
            .find(|o| o.name() == *name)
            .ok_or_else(|| mismatch(format!("has no {kind} named \"{name}\"")))?;
        let ValueType::Tensor {
            ty, shape: found, ..
        } = outlet.dtype()
        else {
            return Err(mismatch(format!("{kind} \"{name}\" is not a tensor")));
        };
        if ty != element_type {
            return Err(mismatch(format!(
                "{kind} \"{name}\" is {ty:?}, the manifest says {element_type:?}"
            )));
        }
        let agrees = found.len() == shape.len()
            && found
                .iter()
                .zip(shape)
                .all(|(f, e)| *e < 0 || *f < 0 || f == e);
        if !agrees {
            return Err(mismatch(format!(
                "{kind} \"{name}\" has shape {:?}, the manifest implies {shape:?} (-1: any)",
                &found[..]
            )));
        }
    }
    Ok(())
}

/// Why a call of `count` observations or chunks cannot run on sessions that replay captured CUDA graphs.
fn batched_with_cuda_graphs(count: usize) -> PolicyError {
    PolicyError::Backend(format!(
        "the graphs replay CUDA graphs of one observation and one chunk, but this call has {count} \
         (or no context on the device): set policy.cuda_graphs = false for batched sampling"
    ))
}

/// A graph input of the bundle's float type from `f32` values.
/// ONNX Runtime's element type of `dtype`.
pub(super) fn element_type_of(dtype: Dtype) -> TensorElementType {
    match dtype {
        Dtype::Float32 => TensorElementType::Float32,
        Dtype::Float16 => TensorElementType::Float16,
        Dtype::Bfloat16 => TensorElementType::Bfloat16,
    }
}

/// `values`, `items` equal items long, with its last item repeated up to `padded` items (the last group of a
/// fixed-batch graph); borrowed when nothing is added.
fn pad_items<T: Copy>(values: &[T], items: usize, padded: usize) -> Cow<'_, [T]> {
    if padded <= items || items == 0 {
        return Cow::Borrowed(values);
    }
    let item = values.len() / items;
    let mut out = values.to_vec();
    for _ in items..padded {
        out.extend_from_within(values.len() - item..values.len());
    }
    Cow::Owned(out)
}

fn tensor(dtype: Dtype, shape: Vec<i64>, values: &[f32]) -> Result<DynValue, PolicyError> {
    Ok(match dtype {
        Dtype::Float16 => {
            let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
            Tensor::from_array((shape, halves))
                .map_err(backend)?
                .into_dyn()
        }
        Dtype::Bfloat16 => {
            let halves: Vec<half::bf16> = values.iter().map(|&v| half::bf16::from_f32(v)).collect();
            Tensor::from_array((shape, halves))
                .map_err(backend)?
                .into_dyn()
        }
        Dtype::Float32 => Tensor::from_array((shape, values.to_vec()))
            .map_err(backend)?
            .into_dyn(),
    })
}

/// The values of a float32, float16 or bfloat16 tensor as `f32`.
fn read_f32(value: &DynValue) -> Result<Vec<f32>, PolicyError> {
    match value.dtype().tensor_type() {
        Some(TensorElementType::Float16) => {
            let (_, values) = value.try_extract_tensor::<half::f16>().map_err(backend)?;
            Ok(values.iter().map(|v| v.to_f32()).collect())
        }
        Some(TensorElementType::Bfloat16) => {
            let (_, values) = value.try_extract_tensor::<half::bf16>().map_err(backend)?;
            Ok(values.iter().map(|v| v.to_f32()).collect())
        }
        _ => Ok(value
            .try_extract_tensor::<f32>()
            .map_err(backend)?
            .1
            .to_vec()),
    }
}

fn copy_output(
    outputs: &ort::session::SessionOutputs<'_>,
    name: &str,
    out: &mut [f32],
) -> Result<(), PolicyError> {
    let values = read_f32(&outputs[name])?;
    if values.len() != out.len() {
        return Err(PolicyError::Shape {
            what: "a graph output",
            got: values.len(),
            expected: out.len(),
        });
    }
    out.copy_from_slice(&values);
    Ok(())
}

/// Copies the velocity (and, when asked, the VJP) of the chunks in `range` out of a run's outputs.
fn copy_outputs(
    outputs: &ort::session::SessionOutputs<'_>,
    range: std::ops::Range<usize>,
    velocity: &mut [f32],
    vjp: Option<&mut [f32]>,
) -> Result<(), PolicyError> {
    copy_output(outputs, "velocity", &mut velocity[range.clone()])?;
    match vjp {
        Some(vjp) => copy_output(outputs, "vjp", &mut vjp[range]),
        None => Ok(()),
    }
}

impl FlowPolicy for OnnxPolicy {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn normalization(&self) -> Option<&Normalization> {
        Some(&self.normalization)
    }

    fn prepare(&mut self, observations: ArrayView2<f32>) -> Result<(), PolicyError> {
        self.prepare_with_images(observations, &[])
    }

    fn prepare_with_images(
        &mut self,
        observations: ArrayView2<f32>,
        images: &[u8],
    ) -> Result<(), PolicyError> {
        let (count, dim) = observations.dim();
        if count == 0 || dim != self.spec.observation_dim {
            return Err(PolicyError::Dims {
                what: "the observation batch",
                got: observations.shape().to_vec(),
                expected: vec![count.max(1), self.spec.observation_dim],
            });
        }
        let observations = flat(&observations, "the observation batch")?;
        if images.len() != count * self.spec.image_bytes() {
            return Err(PolicyError::Shape {
                what: "the camera images (bytes of every camera of every observation)",
                got: images.len(),
                expected: count * self.spec.image_bytes(),
            });
        }
        let group = self.group_size(count);
        self.context_in_device = false;
        if let (Device::Cuda(id), 1, true) = (self.device, count, self.context_on_device) {
            return self.prepare_on_device(observations, images, id);
        }
        if self.cuda_graphs {
            return Err(batched_with_cuda_graphs(count));
        }
        self.contexts.clear();
        let padded = count.div_ceil(group) * group;
        let observations = pad_items(observations, count, padded);
        let images = pad_items(images, count, padded);
        let image_group = group * self.spec.image_bytes();
        for (index, batch) in observations.chunks(group * dim).enumerate() {
            let pixels = &images[index * image_group..(index + 1) * image_group];
            let inputs = self.prefix_inputs(batch, pixels, group)?;
            let outputs = self.prefix.run(inputs).map_err(backend)?;
            self.contexts
                .extend_from_slice(&read_f32(&outputs["context"])?);
        }
        self.contexts.truncate(count * self.manifest.context_len());
        self.context_count = count;
        Ok(())
    }

    fn velocity(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        velocity: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        self.run_views(actions, tau, FlowCall::Velocity, velocity, None)
    }

    fn denoiser_vjp(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        cotangent: ArrayView3<f32>,
        velocity: ArrayViewMut3<f32>,
        vjp: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        let call = FlowCall::Vjp {
            cotangent: flat(&cotangent, "the cotangent")?,
        };
        self.run_views(actions, tau, call, velocity, Some(vjp))
    }

    fn fuses_guidance(&self) -> bool {
        self.guided.is_some()
    }

    fn guided_vjp(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        target: ArrayView3<f32>,
        weights: ArrayView2<f32>,
        velocity: ArrayViewMut3<f32>,
        vjp: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        let call = FlowCall::Guided {
            target: flat(&target, "the guidance target")?,
            weights: flat(&weights, "the guidance weights")?,
        };
        self.run_views(actions, tau, call, velocity, Some(vjp))
    }
}
