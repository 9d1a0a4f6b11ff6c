//! The log writer: a thread off the controller that receives tick and inference records through a channel and
//! appends them to the log in one write every 100 ms (a record reaches the file at most 100 ms, plus the time to
//! write it, after the previous write) and closing the log (end record, flush, fsync) when every sender
//! has gone, whichever way the run ended. When writing fails (a full disk, a file size limit) it stops writing,
//! says so once, and keeps taking the run's records only to count them, so the run and its memory are
//! unaffected; the run's [`RecordSummary`] carries the failure and what was lost, counted exactly (a write that
//! fails part-way counts the records that reached the file whole as kept, the rest as lost). A log file deleted or replaced
//! while recording is such a failure too (checked at every flush).

use crate::core::events::{RecordSummary, Recorder, RunEvent, RunHeader};
use crate::core::record::MAX_VALUES;
use crate::recording::format::{
    TickDims, encode_camera_frame, encode_end, encode_header, encode_inference, encode_tick,
};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often buffered records reach the file at the latest.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The session log of a run: the run's [`Recorder`], writing to `path` from its own thread.
pub struct LogWriter {
    path: PathBuf,
    thread: Option<JoinHandle<std::io::Result<RecordSummary>>>,
    camera_frames: bool,
}

impl LogWriter {
    /// A log to be created at `path` when the run opens it.
    pub fn new(path: &Path) -> LogWriter {
        LogWriter {
            path: path.to_path_buf(),
            thread: None,
            camera_frames: false,
        }
    }

    /// The same log, also keeping every camera frame the robot sends (with the sequence number of its state),
    /// so that each policy tick's images are in the log, not only each inference's.
    pub fn with_camera_frames(mut self) -> LogWriter {
        self.camera_frames = true;
        self
    }

    fn close(&mut self) -> std::io::Result<RecordSummary> {
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| {
                Err(std::io::Error::other(format!(
                    "the log writer of {} panicked",
                    self.path.display()
                )))
            }),
            None => Err(std::io::Error::other(format!(
                "the log {} was never opened or already closed",
                self.path.display()
            ))),
        }
    }
}

impl Recorder for LogWriter {
    /// Creates the file, writes the header and starts the writer thread.
    fn open(&mut self, header: &RunHeader) -> std::io::Result<Sender<RunEvent>> {
        let named = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("the log {}: {e}", self.path.display()))
        };
        let mut file = std::fs::File::create(&self.path).map_err(named)?;
        file.write_all(&encode_header(header)).map_err(named)?;
        let (sender, receiver) = crossbeam_channel::unbounded();
        let dims = TickDims {
            action: header.action_dim,
            observation: header.observation_dim.min(MAX_VALUES),
        };
        let path = self.path.clone();
        self.thread = Some(
            std::thread::Builder::new()
                .name("rtchunk-log".into())
                .spawn(move || write_records(file, receiver, dims, path))?,
        );
        Ok(sender)
    }

    /// Closes the log once the run's senders have gone: end record, flush, fsync.
    fn finish(mut self: Box<Self>) -> std::io::Result<RecordSummary> {
        self.close()
    }

    fn records_camera_frames(&self) -> bool {
        self.camera_frames
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
    mut file: std::fs::File,
    receiver: Receiver<RunEvent>,
    dims: TickDims,
    path: PathBuf,
) -> std::io::Result<RecordSummary> {
    let mut summary = RecordSummary::default();
    let mut batch = Batch::default();
    let mut last_flush = Instant::now();
    loop {
        // Wait only until the next flush is due, so that a record never waits for a whole further period.
        let event = receiver.recv_timeout(FLUSH_EVERY.saturating_sub(last_flush.elapsed()));
        let ended = matches!(event, Err(RecvTimeoutError::Disconnected));
        let failed = summary.failure.is_some();
        match event {
            Ok(RunEvent::Tick(_)) if failed => summary.lost_ticks += 1,
            Ok(RunEvent::Inference(_)) if failed => summary.lost_inferences += 1,
            Ok(RunEvent::CameraFrame(_)) if failed => summary.lost_camera_frames += 1,
            Ok(RunEvent::Tick(tick)) => {
                batch.add(Record::Tick, |out| encode_tick(out, &tick, dims))
            }
            Ok(RunEvent::Inference(record)) => {
                batch.add(Record::Inference, |out| encode_inference(out, &record))
            }
            Ok(RunEvent::CameraFrame(frame)) => {
                batch.add(Record::CameraFrame, |out| encode_camera_frame(out, &frame))
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) if failed => {}
            Err(RecvTimeoutError::Disconnected) => {
                let (ticks, inferences) = (
                    summary.ticks + batch.count(Record::Tick),
                    summary.inferences + batch.count(Record::Inference),
                );
                batch.add(Record::End, |out| encode_end(out, ticks, inferences));
            }
        }
        if summary.failure.is_none() && (ended || last_flush.elapsed() >= FLUSH_EVERY) {
            last_flush = Instant::now();
            let written = batch
                .write(&mut file, &mut summary)
                .and_then(|()| still_at(&path, &file));
            if let Err(error) = written {
                tracing::error!(
                    "the log {} stopped after {} ticks and {} inferences: {error}; the run goes on unrecorded",
                    path.display(),
                    summary.ticks,
                    summary.inferences
                );
                summary.failure = Some(error.to_string());
            } else if ended {
                file.sync_all()?;
            }
        }
        if ended {
            break;
        }
    }
    summary.bytes = file.metadata()?.len();
    Ok(summary)
}

/// What a record in a [`Batch`] is, for counting what reached the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Tick,
    Inference,
    CameraFrame,
    End,
}

/// The records encoded since the last write, with where each ends, so that a write that fails part-way counts
/// exactly the records that reached the file whole and those that did not.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<(usize, Record)>,
}

impl Batch {
    /// Appends one record, encoded by `encode`.
    fn add(&mut self, record: Record, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.bytes);
        self.ends.push((self.bytes.len(), record));
    }

    /// Records of kind `record` in the batch.
    fn count(&self, record: Record) -> u64 {
        self.ends.iter().filter(|(_, r)| *r == record).count() as u64
    }

    /// Writes the batch to `file` and empties it, counting in `summary` the records that reached the file whole
    /// and, if the write failed part-way, those that did not.
    fn write(
        &mut self,
        file: &mut std::fs::File,
        summary: &mut RecordSummary,
    ) -> std::io::Result<()> {
        let mut written = 0;
        let result = loop {
            if written == self.bytes.len() {
                break Ok(());
            }
            match file.write(&self.bytes[written..]) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => break Err(error),
            }
        };
        for &(end, record) in &self.ends {
            match (record, end <= written) {
                (Record::Tick, true) => summary.ticks += 1,
                (Record::Tick, false) => summary.lost_ticks += 1,
                (Record::Inference, true) => summary.inferences += 1,
                (Record::Inference, false) => summary.lost_inferences += 1,
                (Record::CameraFrame, true) => summary.camera_frames += 1,
                (Record::CameraFrame, false) => summary.lost_camera_frames += 1,
                (Record::End, _) => {}
            }
        }
        self.bytes.clear();
        self.ends.clear();
        result
    }
}

/// Fails when the file at `path` is no longer `file` (the log was deleted or replaced while recording: what is
/// written would be lost when it is closed).
fn still_at(path: &Path, file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(named) if named.ino() == open.ino() && named.dev() == open.dev() => Ok(()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the log file was deleted or replaced while recording",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::TickRecord;
    use rtchunk_config::Config;

    #[test]
    fn a_record_reaches_the_file_within_the_flush_period() {
        let path = std::env::temp_dir().join(format!("rtchunk-{}-flush.log", std::process::id()));
        let header = RunHeader {
            label: "flush".into(),
            config: Config::default(),
            action_dim: 2,
            observation_dim: 4,
            started_unix_ns: 0,
            rtchunk_version: "test".into(),
            cameras: Vec::new(),
        };
        let mut writer = Box::new(LogWriter::new(&path));
        let sender = writer.open(&header).unwrap();
        let header_bytes = std::fs::metadata(&path).unwrap().len();
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
            observation: [0.0; MAX_VALUES],
        };
        sender.send(RunEvent::Tick(Box::new(tick))).unwrap();
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
