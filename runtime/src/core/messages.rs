//! The fixed-size messages between the controller thread and the inference worker. Every buffer is sized
//! once, before the controller starts; the controller only copies into them.

/// A request for the next chunk: Algorithm 1's snapshot, taken by the controller at the tick the inference
/// loop's wait condition (t >= s_min) becomes true.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceRequest {
    /// Request number, from 1.
    pub seq: u64,
    /// The policy tick T_s at which the request was made; the new chunk's action i is meant for tick
    /// T_s + 1 + i.
    pub tick: u64,
    /// The chunk may not be used before this policy tick (T_s plus the injected inference delay).
    pub release_tick: u64,
    /// s: actions executed from the current chunk when the request was made.
    pub executed: usize,
    /// d: the forecast inference delay, the maximum of the last b observed delays, clamped to H - s.
    pub delay: usize,
    /// Number of valid values in `committed` (0: nothing to continue, e.g. the first chunk).
    pub committed_len: usize,
    /// The current chunk's not-yet-executed actions A_cur[s..H], token-major (capacity H x action_dim).
    pub committed: Vec<f32>,
    /// The newest observation.
    pub observation: Vec<f32>,
    /// The camera images the inference uses (every camera, in the policy's order; empty without cameras). The
    /// controller never touches them: the inference worker fills them from the newest frame before sampling.
    pub images: Vec<u8>,
    /// The sequence number of the state message the images came with (0: none).
    pub image_seq: u64,
}

impl InferenceRequest {
    /// An empty request with buffers for chunks of `chunk_len` values and observations of `observation_dim`.
    pub fn with_capacity(chunk_len: usize, observation_dim: usize) -> Self {
        InferenceRequest {
            seq: 0,
            tick: 0,
            release_tick: 0,
            executed: 0,
            delay: 0,
            committed_len: 0,
            committed: vec![0.0; chunk_len],
            observation: vec![0.0; observation_dim],
            images: Vec::new(),
            image_seq: 0,
        }
    }

    /// Fills in request `seq`'s inputs as they reach an engine from outside the controller (a policy server's
    /// query, a recorded inference): s, d, the observation, its camera images and the committed actions (which must
    /// fit the buffers).
    pub fn set_inputs(
        &mut self,
        seq: u64,
        executed: usize,
        delay: usize,
        observation: &[f32],
        images: &[u8],
        committed: &[f32],
    ) {
        self.seq = seq;
        self.executed = executed;
        self.delay = delay;
        self.committed_len = committed.len();
        self.committed[..committed.len()].copy_from_slice(committed);
        self.observation.copy_from_slice(observation);
        self.images.clear();
        self.images.extend_from_slice(images);
    }

    /// The committed actions, if any.
    pub fn committed(&self) -> Option<&[f32]> {
        (self.committed_len > 0).then(|| &self.committed[..self.committed_len])
    }
}

/// A chunk (or a failure) answering one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkMessage {
    /// The request it answers.
    pub seq: u64,
    /// The request's tick T_s: action i is meant for policy tick `start_tick + 1 + i`.
    pub start_tick: u64,
    /// The chunk may not be used before this policy tick.
    pub release_tick: u64,
    /// Whether inference succeeded; on failure `actions` is meaningless.
    pub ok: bool,
    /// H x action_dim actions, token-major.
    pub actions: Vec<f32>,
}

impl ChunkMessage {
    /// An empty message with room for `chunk_len` values.
    pub fn with_capacity(chunk_len: usize) -> Self {
        ChunkMessage {
            seq: 0,
            start_tick: 0,
            release_tick: 0,
            ok: false,
            actions: vec![0.0; chunk_len],
        }
    }
}

/// The newest camera images, written by the state I/O thread and read by the inference worker (never by the
/// controller, which has no use for pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraFrame {
    /// The sequence number of the state message the images came with (0: none yet).
    pub state_seq: u64,
    /// Every camera's pixels, in the policy's camera order.
    pub pixels: Vec<u8>,
}

/// The inference worker's end of the camera images.
pub type CameraFeed = triple_buffer::Output<CameraFrame>;
