//! The binary session log: an 8-byte magic `RTCKLOG2`, a length-prefixed JSON header (the configuration and the
//! shapes), then records, each `u8 kind`, `u32 length`, payload (little-endian): 1 tick, 2 inference, 3 end,
//! 4 camera frame (the images that came with a state, when the run recorded every frame). A log without its end
//! record was cut short (a crash); everything before the cut still reads.

use crate::core::events::RunHeader;
use crate::core::messages::CameraFrame;
use crate::core::record::InferenceRecord;
use crate::core::record::{MAX_VALUES, PolicyTick, StepClass, TickKind, TickRecord};
use std::path::Path;
use thiserror::Error;

/// The first bytes of every log.
pub const LOG_MAGIC: [u8; 8] = *b"RTCKLOG2";
const TICK: u8 = 1;
const INFERENCE: u8 = 2;
const END: u8 = 3;
const CAMERA_FRAME: u8 = 4;

/// A log that could not be read.
#[derive(Debug, Error)]
pub enum LogError {
    /// The file could not be opened or read.
    #[error("{file}: {source}")]
    Io {
        /// The log.
        file: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The bytes are not a log of this version.
    #[error("{file}: byte {offset}: {message}")]
    Format {
        /// The log.
        file: String,
        /// Where the problem is.
        offset: usize,
        /// What was expected.
        message: String,
    },
}

/// Everything a log holds.
#[derive(Debug, Clone)]
pub struct RecordedSession {
    /// The header.
    pub header: RunHeader,
    /// Every controller tick, in order.
    pub ticks: Vec<TickRecord>,
    /// Every inference, in order of completion.
    pub inferences: Vec<InferenceRecord>,
    /// The end record was there (the writer closed the log).
    pub complete: bool,
    /// Every camera frame the robot sent, in order (empty unless the run recorded them).
    pub camera_frames: Vec<CameraFrame>,
    /// Every policy tick carries the observation the controller read (logs written before ticks recorded it
    /// lack them).
    pub policy_tick_observations: bool,
}

/// The header's bytes: magic, u32 length, JSON.
pub fn encode_header(header: &RunHeader) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("the header serialises");
    let mut out = LOG_MAGIC.to_vec();
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    out.push(kind);
    out.extend_from_slice(&[0; 4]);
    out.len()
}

fn end(out: &mut [u8], start: usize) {
    let length = (out.len() - start) as u32;
    out[start - 4..start].copy_from_slice(&length.to_le_bytes());
}

fn put_f32s(out: &mut Vec<u8>, values: &[f32]) {
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn tick_kind_byte(kind: TickKind) -> u8 {
    match kind {
        TickKind::Executed => 0,
        TickKind::Warmup => 1,
        TickKind::Paused => 2,
        TickKind::Starved => 3,
        TickKind::Held => 4,
    }
}

fn step_class_byte(class: StepClass) -> u8 {
    match class {
        StepClass::Seam => 0,
        StepClass::Within => 1,
        StepClass::Other => 2,
    }
}

/// How many values of a tick record a log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickDims {
    /// Action and command values (the policy's action dimension).
    pub action: usize,
    /// Observation values, kept on policy ticks (the observation's length, at most `MAX_VALUES`).
    pub observation: usize,
}

/// Appends a tick record, keeping `dims` of its values.
pub fn encode_tick(out: &mut Vec<u8>, tick: &TickRecord, dims: TickDims) {
    let start = begin(out, TICK);
    out.extend_from_slice(&tick.controller_tick.to_le_bytes());
    out.extend_from_slice(&tick.time_ns.to_le_bytes());
    out.extend_from_slice(&tick.lateness_ns.to_le_bytes());
    out.extend_from_slice(&tick.missed.to_le_bytes());
    out.extend_from_slice(&tick.state_seq.to_le_bytes());
    let flags = u8::from(tick.safety_rejected)
        | u8::from(tick.safety_clamped) << 1
        | u8::from(tick.policy.is_some()) << 2
        | u8::from(tick.policy.is_some()) << 3;
    out.push(flags);
    if let Some(policy) = &tick.policy {
        out.extend_from_slice(&policy.tick.to_le_bytes());
        out.push(tick_kind_byte(policy.kind));
        out.extend_from_slice(&policy.chunk_seq.to_le_bytes());
        out.extend_from_slice(&policy.index.to_le_bytes());
        out.push(u8::from(policy.swapped));
        out.extend_from_slice(&policy.observed_delay.to_le_bytes());
        out.extend_from_slice(&policy.request_seq.to_le_bytes());
        out.extend_from_slice(&policy.step.to_le_bytes());
        out.push(step_class_byte(policy.step_class));
    }
    put_f32s(out, &tick.action[..dims.action]);
    put_f32s(out, &tick.command[..dims.action]);
    if tick.policy.is_some() {
        put_f32s(out, &tick.observation[..dims.observation]);
    }
    end(out, start);
}

/// Appends an inference record.
pub fn encode_inference(out: &mut Vec<u8>, record: &InferenceRecord) {
    let start = begin(out, INFERENCE);
    out.extend_from_slice(&record.seq.to_le_bytes());
    out.extend_from_slice(&record.tick.to_le_bytes());
    out.extend_from_slice(&(record.executed as u32).to_le_bytes());
    out.extend_from_slice(&(record.delay as u32).to_le_bytes());
    out.extend_from_slice(&record.duration_us.to_le_bytes());
    let error = record.error.as_deref().unwrap_or("");
    out.extend_from_slice(&(error.len() as u32).to_le_bytes());
    out.extend_from_slice(error.as_bytes());
    put_f32s(out, &record.chunk);
    put_f32s(out, &record.observation);
    put_f32s(out, &record.committed);
    out.extend_from_slice(&record.image_seq.to_le_bytes());
    out.extend_from_slice(&(record.images.len() as u32).to_le_bytes());
    out.extend_from_slice(&record.images);
    end(out, start);
}

/// Appends a camera frame record: the state's sequence number and every camera's pixels.
pub fn encode_camera_frame(out: &mut Vec<u8>, frame: &CameraFrame) {
    let start = begin(out, CAMERA_FRAME);
    out.extend_from_slice(&frame.state_seq.to_le_bytes());
    out.extend_from_slice(&(frame.pixels.len() as u32).to_le_bytes());
    out.extend_from_slice(&frame.pixels);
    end(out, start);
}

/// Appends the end record: how many ticks and inferences the log holds.
pub fn encode_end(out: &mut Vec<u8>, ticks: u64, inferences: u64) {
    let start = begin(out, END);
    out.extend_from_slice(&ticks.to_le_bytes());
    out.extend_from_slice(&inferences.to_le_bytes());
    end(out, start);
}

/// Reads values front to back; running out is a format error at the current offset.
struct Cursor<'a> {
    bytes: &'a [u8],
    offset: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    fn error(&self, message: impl Into<String>) -> LogError {
        LogError::Format {
            file: self.file.to_string(),
            offset: self.offset,
            message: message.into(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        if self.bytes.len() - self.offset < n {
            return Err(self.error(format!("needs {n} more bytes, the file ends")));
        }
        let slice = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], LogError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Result<u8, LogError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, LogError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, LogError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn f32(&mut self) -> Result<f32, LogError> {
        Ok(f32::from_le_bytes(self.array()?))
    }
    fn f32s(&mut self) -> Result<Vec<f32>, LogError> {
        let n = self.u32()? as usize;
        (0..n).map(|_| self.f32()).collect()
    }
    fn values(&mut self, what: &str) -> Result<[f32; MAX_VALUES], LogError> {
        let values = self.f32s()?;
        if values.len() > MAX_VALUES {
            return Err(self.error(format!(
                "{} {what} values, at most {MAX_VALUES}",
                values.len()
            )));
        }
        let mut out = [0.0; MAX_VALUES];
        out[..values.len()].copy_from_slice(&values);
        Ok(out)
    }
}

/// A tick record, and whether it carried an observation.
fn decode_tick(cursor: &mut Cursor) -> Result<(TickRecord, bool), LogError> {
    let controller_tick = cursor.u64()?;
    let time_ns = cursor.u64()?;
    let lateness_ns = cursor.u64()?;
    let missed = cursor.u32()?;
    let state_seq = cursor.u64()?;
    let flags = cursor.u8()?;
    let policy = if flags & 4 != 0 {
        let tick = cursor.u64()?;
        let kind = match cursor.u8()? {
            0 => TickKind::Executed,
            1 => TickKind::Warmup,
            2 => TickKind::Paused,
            3 => TickKind::Starved,
            4 => TickKind::Held,
            other => return Err(cursor.error(format!("tick kind {other}, expected 0..=4"))),
        };
        let chunk_seq = cursor.u64()?;
        let index = cursor.u32()?;
        let swapped = cursor.u8()? != 0;
        let observed_delay = cursor.u32()?;
        let request_seq = cursor.u64()?;
        let step = cursor.f32()?;
        let step_class = match cursor.u8()? {
            0 => StepClass::Seam,
            1 => StepClass::Within,
            2 => StepClass::Other,
            other => return Err(cursor.error(format!("step class {other}, expected 0..=2"))),
        };
        Some(PolicyTick {
            tick,
            kind,
            chunk_seq,
            index,
            swapped,
            observed_delay,
            request_seq,
            step,
            step_class,
        })
    } else {
        None
    };
    let observed = flags & 8 != 0;
    let record = TickRecord {
        controller_tick,
        lateness_ns,
        missed,
        policy,
        safety_rejected: flags & 1 != 0,
        safety_clamped: flags & 2 != 0,
        state_seq,
        time_ns,
        action: cursor.values("action")?,
        command: cursor.values("command")?,
        observation: if observed {
            cursor.values("observation")?
        } else {
            [0.0; MAX_VALUES]
        },
    };
    Ok((record, observed))
}

fn decode_inference(cursor: &mut Cursor) -> Result<InferenceRecord, LogError> {
    let seq = cursor.u64()?;
    let tick = cursor.u64()?;
    let executed = cursor.u32()? as usize;
    let delay = cursor.u32()? as usize;
    let duration_us = cursor.u64()?;
    let error_len = cursor.u32()? as usize;
    let error = String::from_utf8_lossy(cursor.take(error_len)?).into_owned();
    Ok(InferenceRecord {
        seq,
        tick,
        executed,
        delay,
        duration_us,
        error: (!error.is_empty()).then_some(error),
        chunk: cursor.f32s()?,
        observation: cursor.f32s()?,
        committed: cursor.f32s()?,
        image_seq: cursor.u64()?,
        images: {
            let n = cursor.u32()? as usize;
            cursor.take(n)?.to_vec()
        },
    })
}

/// Reads a whole log. A log cut short inside a record keeps every record before the cut (`complete` is false).
pub fn read_log(path: &Path) -> Result<RecordedSession, LogError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| LogError::Io {
        file: file.clone(),
        source,
    })?;
    read_log_bytes(&bytes, &file)
}

/// [`read_log`] of a log's bytes, named `file` in errors.
pub fn read_log_bytes(bytes: &[u8], file: &str) -> Result<RecordedSession, LogError> {
    let mut cursor = Cursor {
        bytes,
        offset: 0,
        file,
    };
    if cursor.take(8).ok() != Some(&LOG_MAGIC[..]) {
        return Err(
            cursor.error("not an rtchunk log of this version (expected the magic \"RTCKLOG2\")")
        );
    }
    let header_len = cursor.u32()? as usize;
    let header: RunHeader = serde_json::from_slice(cursor.take(header_len)?)
        .map_err(|e| cursor.error(format!("header: {e}")))?;
    let mut session = RecordedSession {
        header,
        ticks: Vec::new(),
        inferences: Vec::new(),
        complete: false,
        camera_frames: Vec::new(),
        policy_tick_observations: true,
    };
    while cursor.offset < bytes.len() {
        let record_start = cursor.offset;
        let Ok(kind) = cursor.u8() else { break };
        let Ok(length) = cursor.u32() else { break };
        let Ok(payload) = cursor.take(length as usize) else {
            tracing::warn!(
                "{file}: the log ends inside a record at byte {record_start}; it was cut short"
            );
            break;
        };
        let mut record = Cursor {
            bytes: payload,
            offset: 0,
            file,
        };
        match kind {
            TICK => {
                let (tick, observed) = decode_tick(&mut record)?;
                session.policy_tick_observations &= observed || tick.policy.is_none();
                session.ticks.push(tick);
            }
            INFERENCE => session.inferences.push(decode_inference(&mut record)?),
            CAMERA_FRAME => {
                let state_seq = record.u64()?;
                let n = record.u32()? as usize;
                let pixels = record.take(n)?.to_vec();
                session
                    .camera_frames
                    .push(CameraFrame { state_seq, pixels });
            }
            END => {
                session.complete = true;
                break;
            }
            other => {
                return Err(LogError::Format {
                    file: file.to_string(),
                    offset: record_start,
                    message: format!(
                        "record kind {other}, expected 1 (tick), 2 (inference), 3 (end) or 4 (camera frame)"
                    ),
                });
            }
        }
    }
    if !session.complete {
        drop_ticks_past_the_cut(&mut session, file);
    }
    Ok(session)
}

/// For a log cut short: drops the ticks from the first one that adopts a chunk whose inference record did not
/// make it before the cut. The writer interleaves the controller's ticks with the worker's inferences, so a
/// crash can keep a tick that swapped to a chunk and lose that chunk; the log then replays up to that tick.
fn drop_ticks_past_the_cut(session: &mut RecordedSession, file: &str) {
    let held: std::collections::HashSet<u64> = session.inferences.iter().map(|r| r.seq).collect();
    let orphan = session.ticks.iter().position(|tick| {
        tick.policy
            .as_ref()
            .is_some_and(|p| p.swapped && !held.contains(&p.chunk_seq))
    });
    if let Some(first) = orphan {
        tracing::warn!(
            "{file}: cut short after controller tick {}: its last {} ticks use chunks the log lost; replaying \
             up to there",
            session.ticks[first].controller_tick,
            session.ticks.len() - first
        );
        session.ticks.truncate(first);
    }
}
