//! A progress bar on standard error for long commands (one redrawn line on a terminal, a few lines otherwise).

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Progress of `total` units of work.
pub struct Progress {
    label: String,
    total: u64,
    shown: u64,
    started: Instant,
    terminal: bool,
}

impl Progress {
    /// A bar for `total` units, labelled `label`.
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        Progress {
            label: label.into(),
            total: total.max(1),
            shown: u64::MAX,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Reports `done` units finished; redraws when the shown percentage (a quarter, off a terminal) changes.
    pub fn update(&mut self, done: u64) {
        let percent = done.min(self.total) * 100 / self.total;
        let step = if self.terminal {
            percent
        } else {
            percent / 25 * 25
        };
        if step == self.shown {
            return;
        }
        self.shown = step;
        let elapsed = self.started.elapsed().as_secs_f64();
        let remaining = if done > 0 {
            elapsed * (self.total - done.min(self.total)) as f64 / done as f64
        } else {
            0.0
        };
        let filled = (percent / 4) as usize;
        let bar = format!("[{}{}]", "#".repeat(filled), ".".repeat(25 - filled));
        let line = format!(
            "{} {bar} {percent:3}% {done}/{} {elapsed:.0} s, about {remaining:.0} s left",
            self.label, self.total
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        self.update(self.total);
        if self.terminal {
            eprintln!();
        }
    }
}
