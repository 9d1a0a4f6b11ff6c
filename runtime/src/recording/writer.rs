//! The log writer: a thread off the controller that receives tick and inference records through a channel and
//! appends them to the log, flushing at least every 100 ms (a record reaches the file at most 100 ms, plus the
//! time to write it, after the previous flush) and closing the log (end record, flush, fsync) when every sender
//! has gone, whichever way the run ended.

use crate::record::TickRecord;
use crate::recording::format::{
    LogHeader, encode_end, encode_header, encode_inference, encode_tick,
};
use crate::worker::InferenceRecord;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often buffered records reach the file at the latest.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// One thing to log.
#[derive(Debug, Clone)]
pub enum LogEvent {
    /// A controller tick.
    Tick(Box<TickRecord>),
    /// A finished inference.
    Inference(InferenceRecord),
}

/// What the writer wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSummary {
    /// Tick records.
    pub ticks: u64,
    /// Inference records.
    pub inferences: u64,
    /// Bytes in the file when it was closed.
    pub bytes: u64,
}

/// A log being written by its own thread.
pub struct LogWriter {
    sender: Option<Sender<LogEvent>>,
    thread: Option<JoinHandle<std::io::Result<LogSummary>>>,
    path: PathBuf,
}

impl LogWriter {
    /// Creates `path`, writes the header and starts the writer thread.
    pub fn create(path: &Path, header: &LogHeader) -> std::io::Result<LogWriter> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        file.write_all(&encode_header(header))?;
        file.flush()?;
        let (sender, receiver) = std::sync::mpsc::channel();
        let dims = header.action_dim;
        let thread = std::thread::Builder::new()
            .name("rtchunk-log".into())
            .spawn(move || write_records(file, receiver, dims))?;
        Ok(LogWriter {
            sender: Some(sender),
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    /// A sender for the collector or the worker.
    pub fn sender(&self) -> Sender<LogEvent> {
        self.sender.clone().expect("the writer is open")
    }

    /// Closes the log once the other senders have gone: end record, flush, fsync.
    pub fn finish(mut self) -> std::io::Result<LogSummary> {
        self.close()
    }

    fn close(&mut self) -> std::io::Result<LogSummary> {
        self.sender = None;
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| {
                Err(std::io::Error::other(format!(
                    "the log writer of {} panicked",
                    self.path.display()
                )))
            }),
            None => Err(std::io::Error::other("the log was already closed")),
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.thread.is_some()
            && let Err(error) = self.close()
        {
            tracing::error!("closing the log {}: {error}", self.path.display());
        }
    }
}

fn write_records(
    mut file: std::io::BufWriter<std::fs::File>,
    receiver: Receiver<LogEvent>,
    dims: usize,
) -> std::io::Result<LogSummary> {
    let mut summary = LogSummary {
        ticks: 0,
        inferences: 0,
        bytes: 0,
    };
    let mut buffer = Vec::with_capacity(1 << 16);
    let mut last_flush = Instant::now();
    loop {
        // Wait only until the next flush is due, so that a record never waits for a whole further period.
        let event = receiver.recv_timeout(FLUSH_EVERY.saturating_sub(last_flush.elapsed()));
        match &event {
            Ok(LogEvent::Tick(tick)) => {
                encode_tick(&mut buffer, tick, dims);
                summary.ticks += 1;
            }
            Ok(LogEvent::Inference(record)) => {
                encode_inference(&mut buffer, record);
                summary.inferences += 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                encode_end(&mut buffer, summary.ticks, summary.inferences);
            }
        }
        file.write_all(&buffer)?;
        buffer.clear();
        if event.is_err() || last_flush.elapsed() >= FLUSH_EVERY {
            file.flush()?;
            last_flush = Instant::now();
        }
        if matches!(event, Err(RecvTimeoutError::Disconnected)) {
            file.flush()?;
            file.get_ref().sync_all()?;
            summary.bytes = file.get_ref().metadata()?.len();
            return Ok(summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{MAX_VALUES, TickRecord};
    use rtchunk_config::Config;

    #[test]
    fn a_record_reaches_the_file_within_the_flush_period() {
        let path = std::env::temp_dir().join(format!("rtchunk-{}-flush.log", std::process::id()));
        let header = LogHeader {
            label: "flush".into(),
            config: Config::default(),
            action_dim: 2,
            observation_dim: 4,
            started_unix_ns: 0,
            rtchunk_version: "test".into(),
        };
        let writer = LogWriter::create(&path, &header).unwrap();
        let header_bytes = std::fs::metadata(&path).unwrap().len();
        let sender = writer.sender();
        // A record arriving 95 ms after the writer's last flush must be on disk by 100 ms (plus slack for a
        // loaded machine), not wait for a further full period (195 ms).
        let created = Instant::now();
        std::thread::sleep(Duration::from_millis(95));
        let tick = TickRecord {
            controller_tick: 0,
            lateness_ns: 0,
            missed: 0,
            policy: None,
            safety_rejected: false,
            safety_clamped: false,
            state_seq: 0,
            time_ns: 0,
            action: [0.0; MAX_VALUES],
            command: [0.0; MAX_VALUES],
        };
        sender.send(LogEvent::Tick(Box::new(tick))).unwrap();
        while std::fs::metadata(&path).unwrap().len() == header_bytes {
            assert!(
                created.elapsed() < Duration::from_millis(170),
                "the record was not flushed within the period"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(sender);
        assert_eq!(writer.finish().unwrap().ticks, 1);
        std::fs::remove_file(&path).ok();
    }
}
