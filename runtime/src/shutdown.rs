//! Ending a long-running command safely on SIGINT (Ctrl-C) or SIGTERM, or after a given time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by the SIGINT/SIGTERM handler.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Installs the SIGINT/SIGTERM handler and a thread that calls `on_signal_received` once a signal arrives
/// (until `finished` is set).
pub fn stop_on_signal(
    on_signal_received: impl FnOnce() + Send + 'static,
    finished: Arc<AtomicBool>,
) {
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
    std::thread::Builder::new()
        .name("rtchunk-signals".into())
        .spawn(move || {
            while !finished.load(Ordering::Relaxed) {
                if SIGNALLED.load(Ordering::Relaxed) {
                    // Stop first: logging may fail (e.g. stderr is a pipe whose reader has gone).
                    on_signal_received();
                    tracing::warn!("signal received: stopping");
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .expect("a signal-watch thread can be spawned");
}

/// A stop flag that SIGINT, SIGTERM or the end of an optional time limit sets, for a command that polls it
/// (`rtchunk serve-policy`, `rtchunk sim serve`). Dropping it retires the signal watcher.
pub struct StopFlag {
    stop: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
}

impl StopFlag {
    /// Installs the signal handler and, with `seconds`, a timer.
    pub fn install(seconds: Option<f64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let on_signal = stop.clone();
        stop_on_signal(
            move || on_signal.store(true, Ordering::Relaxed),
            finished.clone(),
        );
        if let Some(seconds) = seconds {
            let timer = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs_f64(seconds));
                timer.store(true, Ordering::Relaxed);
            });
        }
        StopFlag { stop, finished }
    }

    /// The flag to poll.
    pub fn flag(&self) -> &AtomicBool {
        &self.stop
    }
}

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.finished.store(true, Ordering::Relaxed);
    }
}
