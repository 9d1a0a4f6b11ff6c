//! How an inference failed: the policy returned an error, panicked, or ran past the inference timeout. The
//! kind travels in the inference record's error text (and so in the session log), written and read here only;
//! [`InferenceFaultCounters`] counts the kinds as they happen, for whoever reports them live (the status topic).

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Starts the error of an inference whose policy panicked.
const PANICKED: &str = "the policy panicked: ";
/// Starts the error of an inference that ran past the inference timeout.
const TIMED_OUT: &str = "timed out: ";

/// The kind of an inference failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferenceFault {
    /// The policy (or the policy server) returned an error: non-finite output, a wrong shape, an ONNX Runtime
    /// failure, no answer from the server.
    Error,
    /// The policy panicked; the worker caught it and serves the next request.
    Panic,
    /// The policy ran past `policy.inference_timeout_ms`, then answered a chunk, which was discarded (a late
    /// failure keeps its own kind).
    Timeout,
}

impl InferenceFault {
    /// The kind of the failure an inference record's `error` describes.
    pub fn of(error: &str) -> Self {
        if error.starts_with(PANICKED) {
            InferenceFault::Panic
        } else if error.starts_with(TIMED_OUT) {
            InferenceFault::Timeout
        } else {
            InferenceFault::Error
        }
    }

    /// The error of an inference whose policy panicked with `payload`.
    pub fn panicked(payload: &(dyn Any + Send)) -> String {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        format!("{PANICKED}{message}")
    }

    /// The error of an inference that ran past `limit` and took `took` in all.
    pub fn timed_out(limit: Duration, took: Duration) -> String {
        format!(
            "{TIMED_OUT}no chunk within {:.0} ms (the policy answered after {:.0} ms; that chunk was discarded)",
            limit.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e3
        )
    }
}

/// Failed inferences counted as they happen, by kind; shared between the inference worker, which counts, and a
/// reporter such as the robot link's status publisher, which reads (wait-free atomics).
#[derive(Debug, Default)]
pub struct InferenceFaultCounters {
    failures: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
}

impl InferenceFaultCounters {
    /// Counts the failure an inference record's `error` describes.
    pub fn count(&self, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        match InferenceFault::of(error) {
            InferenceFault::Panic => self.panics.fetch_add(1, Ordering::Relaxed),
            InferenceFault::Timeout => self.timeouts.fetch_add(1, Ordering::Relaxed),
            InferenceFault::Error => 0,
        };
    }

    /// Failed inferences, all kinds together.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Of those, inferences whose policy panicked.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Of those, inferences that ran past the inference timeout.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_read_back_from_the_error_it_wrote() {
        let panic = std::panic::catch_unwind(|| panic!("index {} out of range", 7)).unwrap_err();
        let panicked = InferenceFault::panicked(panic.as_ref());
        assert_eq!(panicked, "the policy panicked: index 7 out of range");
        assert_eq!(InferenceFault::of(&panicked), InferenceFault::Panic);
        let literal = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert!(InferenceFault::panicked(literal.as_ref()).ends_with("plain"));
        let timed_out =
            InferenceFault::timed_out(Duration::from_millis(100), Duration::from_millis(612));
        assert_eq!(InferenceFault::of(&timed_out), InferenceFault::Timeout);
        assert!(
            timed_out.contains("100 ms") && timed_out.contains("612 ms"),
            "{timed_out}"
        );
        assert_eq!(
            InferenceFault::of("the sampled chunk is not finite"),
            InferenceFault::Error
        );
    }
}
