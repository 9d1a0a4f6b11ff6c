//! The error type of policies and samplers.

use thiserror::Error;

/// What went wrong while querying a policy or sampling a chunk.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// A buffer passed to the policy has the wrong length.
    #[error("{what} has {got} values, expected {expected}")]
    Shape {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length the policy's spec requires.
        expected: usize,
    },
    /// An array passed to the policy has the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected:?}")]
    Dims {
        /// Which array.
        what: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// The shape the policy's spec requires.
        expected: Vec<usize>,
    },
    /// An array passed to a backend that reads flat buffers is not in standard (row-major, contiguous) layout.
    #[error("{0} is not in standard (row-major, contiguous) layout")]
    Layout(&'static str),
    /// The policy cannot answer vector-Jacobian products.
    #[error(
        "the policy has no vector-Jacobian product; use sampler.mode = \"rtc-identity\" instead of \"rtc\""
    )]
    NoVjp,
    /// The policy was not trained with per-token prefix conditioning.
    #[error(
        "the policy was not trained with prefix conditioning; sampler.mode = \"trained-prefix\" needs such a policy"
    )]
    NotPrefixConditioned,
    /// A query came before `prepare`.
    #[error("the policy was queried before an observation was prepared")]
    NotPrepared,
    /// The policy produced NaN or Inf.
    #[error("the policy produced a non-finite value in {0}")]
    NonFinite(&'static str),
    /// A backend failure, described by the backend.
    #[error("policy backend: {0}")]
    Backend(String),
}
