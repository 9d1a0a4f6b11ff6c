//! The log writer: a thread off the controller that receives tick and inference records through a channel and
//! appends them to the log, flushing at least every 100 ms and closing the log (end record, flush, fsync)
//! when every sender has gone, whichever way the run ended.

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
        let event = receiver.recv_timeout(FLUSH_EVERY);
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
