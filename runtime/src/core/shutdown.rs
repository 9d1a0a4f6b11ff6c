//! Ending a long-running command safely on SIGINT (Ctrl-C) or SIGTERM, or after a given time.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Watches for SIGINT and SIGTERM on a thread of its own (blocked until one arrives, no polling) until dropped.
pub struct SignalWatch {
    handle: Handle,
}

/// Calls `on_signal_received` once SIGINT or SIGTERM arrives, until the returned watch is dropped. The handlers
/// are removed after the first signal, so a second one ends the process at once.
pub fn stop_on_signal(on_signal_received: impl FnOnce() + Send + 'static) -> SignalWatch {
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).expect("SIGINT and SIGTERM handlers can be installed");
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("rtchunk-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                // Stop first: logging may fail (e.g. stderr is a pipe whose reader has gone).
                on_signal_received();
                tracing::warn!("signal received: stopping");
            }
        })
        .expect("a signal-watch thread can be spawned");
    SignalWatch { handle }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// A stop flag that SIGINT, SIGTERM or the end of an optional time limit sets, for a command that polls it
/// (`rtchunk serve-policy`, `rtchunk sim serve`). Dropping it retires the signal watcher.
pub struct StopFlag {
    stop: Arc<AtomicBool>,
    _signals: SignalWatch,
}

impl StopFlag {
    /// Installs the signal handler and, with `seconds`, a timer.
    pub fn install(seconds: Option<f64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let on_signal = stop.clone();
        let signals = stop_on_signal(move || on_signal.store(true, Ordering::Relaxed));
        if let Some(seconds) = seconds {
            let timer = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs_f64(seconds));
                timer.store(true, Ordering::Relaxed);
            });
        }
        StopFlag {
            stop,
            _signals: signals,
        }
    }

    /// The flag to poll.
    pub fn flag(&self) -> &AtomicBool {
        &self.stop
    }
}
