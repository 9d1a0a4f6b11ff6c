//! Flow policies and the samplers that turn them into action chunks.
//!
//! A [`FlowPolicy`] follows the RTC paper's convention: tau = 0 is noise, tau = 1 is data, and the Euler step is
//! `A <- A + v / n`. It prepares a context once per inference (one per observation), then answers batched velocity
//! queries with a tau per token, and optionally the vector-Jacobian product of its denoiser
//! `A1_hat(A) = A + (1 - tau) v(A, tau)`. [`NoiseAtOne`] adapts policies exported in the opposite convention.
//!
//! [`Sampler`] runs one Euler loop in the guidance mode chosen by configuration: plain, RTC (exact ΠGDM guidance
//! under the soft mask of Eq. 5), RTC with the Jacobian taken as the identity, prefix overwrite, training-time RTC
//! and bidirectional decoding.
//!
//! ```
//! use rtchunk_policy::{ndarray::{array, Array2}, reference, Committed, FlowPolicy, Sampler};
//! use rtchunk_config::SamplerConfig;
//!
//! // Chunks of H = 8 actions of one value; the previous chunk's last four actions are committed.
//! let mut policy = reference::MixtureFlow::gaussian(8, 1, 0.5, 2.0, vec![0.0; 8]);
//! let mut sampler = Sampler::new(SamplerConfig::default(), 8, 1);
//! let previous = array![[0.2f32], [0.3], [0.4], [0.5]];
//! let mut chunk = Array2::zeros((8, 1));
//! let committed = Committed { actions: previous.view(), delay: 2 };
//! sampler.sample(&mut policy, None, &[], Some(committed), 7, chunk.view_mut()).unwrap();
//! assert!((chunk[[0, 0]] - 0.2).abs() < 0.1);
//! ```

mod bid;
mod convention;
mod error;
mod gaussian;
mod guidance;
mod interface;
mod normalize;
pub mod onnx;
pub mod reference;
mod rng;
mod sampler;

pub use convention::NoiseAtOne;
pub use error::PolicyError;
pub use guidance::{guidance_weight, pad_committed, soft_mask};
pub use interface::{
    Camera, FlowPolicy, PolicySpec, actions_of, chunks_of, chunks_of_mut, rows_of, tokens_of,
    widen_actions,
};
/// The array crate of the policy boundary, for callers that build its views.
pub use ndarray;
pub use normalize::Normalization;
pub use rng::NormalRng;
pub use sampler::{Committed, SampleRequest, Sampler};
