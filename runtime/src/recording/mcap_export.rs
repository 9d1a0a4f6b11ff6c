//! `rtchunk export mcap`: a session log as an MCAP file (chunked, LZ4-compressed, indexed) that Foxglove, Rerun
//! and the `mcap` tools open. Messages are JSON with a JSON Schema per channel:
//!
//! - `/rtchunk/tick`: every controller tick (lateness, the action and the command, the policy tick's bookkeeping:
//!   which chunk and index, swaps, observed delay, the step and its class);
//! - `/rtchunk/inference`: every inference at the time it finished (its request tick, s, d, duration, the
//!   observation, the chunk as rows of actions, the committed prefix, an error);
//! - `/rtchunk/camera/<name>`: each inference's camera images as `foxglove.RawImage`.
//!
//! Times are the run's wall clock: its start plus each tick's monotonic offset from the first tick. The run's
//! header (label, version, configuration) is the metadata record `rtchunk`. A log cut short exports up to the cut.

use crate::core::record::{InferenceRecord, TickRecord};
use crate::recording::format::{RecordedSession, read_log};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::path::Path;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct McapSummary {
    /// Tick messages.
    pub ticks: u64,
    /// Inference messages.
    pub inferences: u64,
    /// Camera image messages.
    pub images: u64,
    /// The file's size in bytes.
    pub bytes: u64,
}

const TICK_SCHEMA: &str = r#"{"title":"rtchunk.Tick","type":"object","properties":{
"controller_tick":{"type":"integer"},"lateness_us":{"type":"number"},"missed":{"type":"integer"},
"state_seq":{"type":"integer"},"action":{"type":"array","items":{"type":"number"}},
"command":{"type":"array","items":{"type":"number"}},"safety_clamped":{"type":"boolean"},
"safety_rejected":{"type":"boolean"},"policy":{"type":["object","null"],"properties":{
"tick":{"type":"integer"},"kind":{"type":"string"},"chunk_seq":{"type":"integer"},"index":{"type":"integer"},
"swapped":{"type":"boolean"},"observed_delay":{"type":"integer"},"request_seq":{"type":"integer"},
"step":{"type":"number"},"step_class":{"type":"string"}}}}}"#;

const INFERENCE_SCHEMA: &str = r#"{"title":"rtchunk.Inference","type":"object","properties":{
"seq":{"type":"integer"},"request_tick":{"type":"integer"},"executed":{"type":"integer"},
"delay":{"type":"integer"},"duration_us":{"type":"integer"},"error":{"type":["string","null"]},
"observation":{"type":"array","items":{"type":"number"}},
"chunk":{"type":"array","items":{"type":"array","items":{"type":"number"}}},
"committed":{"type":"array","items":{"type":"array","items":{"type":"number"}}},
"image_seq":{"type":"integer"}}}"#;

/// Foxglove's `RawImage`, as its JSON Schema gives it.
const RAW_IMAGE_SCHEMA: &str = r#"{"title":"foxglove.RawImage","type":"object","properties":{
"timestamp":{"type":"object","properties":{"sec":{"type":"integer"},"nsec":{"type":"integer"}}},
"frame_id":{"type":"string"},"width":{"type":"integer"},"height":{"type":"integer"},
"encoding":{"type":"string"},"step":{"type":"integer"},
"data":{"type":"string","contentEncoding":"base64"}}}"#;

/// Reads `log` and writes it to `out` as MCAP.
pub fn export_mcap(log: &Path, out: &Path) -> anyhow::Result<McapSummary> {
    let session = read_log(log)?;
    let file = std::fs::File::create(out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", out.display()))?;
    let options = mcap::WriteOptions::new()
        .compression(Some(mcap::Compression::Lz4))
        .profile("")
        .library(format!("rtchunk {}", env!("CARGO_PKG_VERSION")));
    let mut writer = options.create(BufWriter::new(file))?;
    let mut summary = write_session(&mut writer, &session)?;
    writer.finish()?;
    drop(writer);
    summary.bytes = std::fs::metadata(out)?.len();
    Ok(summary)
}

/// The wall-clock time of a monotonic instant of the run, in nanoseconds since the Unix epoch.
struct Timeline {
    started_unix_ns: u64,
    first_tick_ns: u64,
}

impl Timeline {
    fn at(&self, monotonic_ns: u64) -> u64 {
        self.started_unix_ns + monotonic_ns.saturating_sub(self.first_tick_ns)
    }
}

/// The channels of one export and what has gone through them.
struct Channels {
    tick: u16,
    inference: u16,
    cameras: Vec<u16>,
}

/// Writes messages onto the export's channels, counting them.
struct Exporter<'a, W: Write + std::io::Seek> {
    writer: &'a mut mcap::Writer<W>,
    channels: Channels,
    session: &'a RecordedSession,
    timeline: Timeline,
    summary: McapSummary,
}

impl<W: Write + std::io::Seek> Exporter<'_, W> {
    fn put(
        &mut self,
        channel_id: u16,
        sequence: u64,
        time: u64,
        body: &Value,
    ) -> anyhow::Result<()> {
        let message = mcap::records::MessageHeader {
            channel_id,
            sequence: sequence as u32,
            log_time: time,
            publish_time: time,
        };
        self.writer
            .write_to_known_channel(&message, &serde_json::to_vec(body)?)?;
        Ok(())
    }

    fn tick(&mut self, tick: &TickRecord) -> anyhow::Result<()> {
        let body = tick_json(tick, self.session.header.action_dim);
        let time = self.timeline.at(tick.time_ns);
        self.put(self.channels.tick, self.summary.ticks, time, &body)?;
        self.summary.ticks += 1;
        Ok(())
    }

    /// An inference at `finished_ns` (monotonic), and the images it saw.
    fn inference(&mut self, inference: &InferenceRecord, finished_ns: u64) -> anyhow::Result<()> {
        let time = self.timeline.at(finished_ns);
        let body = inference_json(inference, self.session.header.action_dim);
        self.put(
            self.channels.inference,
            self.summary.inferences,
            time,
            &body,
        )?;
        self.summary.inferences += 1;
        let mut pixels = inference.images.as_slice();
        let cameras = &self.session.header.cameras;
        for (index, camera) in cameras.iter().enumerate() {
            let channel_id = self.channels.cameras[index];
            let (image, rest) = pixels.split_at(camera.bytes().min(pixels.len()));
            pixels = rest;
            if image.len() == camera.bytes() {
                let body = raw_image_json(camera, image, time);
                self.put(channel_id, self.summary.images, time, &body)?;
                self.summary.images += 1;
            }
        }
        Ok(())
    }
}

fn write_session<W: Write + std::io::Seek>(
    writer: &mut mcap::Writer<W>,
    session: &RecordedSession,
) -> anyhow::Result<McapSummary> {
    let header = &session.header;
    writer.write_metadata(&mcap::records::Metadata {
        name: "rtchunk".into(),
        metadata: BTreeMap::from([
            ("label".to_string(), header.label.clone()),
            (
                "rtchunk_version".to_string(),
                header.rtchunk_version.clone(),
            ),
            ("configuration".to_string(), header.config.to_toml_string()),
            ("complete".to_string(), session.complete.to_string()),
        ]),
    })?;
    let no_metadata = BTreeMap::new();
    let mut channel = |name: &str, schema: &str, topic: &str| -> anyhow::Result<u16> {
        let schema = writer.add_schema(name, "jsonschema", schema.as_bytes())?;
        Ok(writer.add_channel(schema, topic, "json", &no_metadata)?)
    };
    let channels = Channels {
        tick: channel("rtchunk.Tick", TICK_SCHEMA, "/rtchunk/tick")?,
        inference: channel("rtchunk.Inference", INFERENCE_SCHEMA, "/rtchunk/inference")?,
        cameras: header
            .cameras
            .iter()
            .map(|camera| {
                let topic = format!("/rtchunk/camera/{}", camera.name);
                channel("foxglove.RawImage", RAW_IMAGE_SCHEMA, &topic)
            })
            .collect::<anyhow::Result<Vec<u16>>>()?,
    };
    // When each request was issued: an inference is stamped at its request's tick plus its duration.
    let mut requested_at = HashMap::new();
    for tick in &session.ticks {
        if let Some(policy) = tick.policy.as_ref().filter(|p| p.request_seq != 0) {
            requested_at.insert(policy.request_seq, tick.time_ns);
        }
    }
    let mut inferences: Vec<(u64, &InferenceRecord)> = session
        .inferences
        .iter()
        .map(|i| (finished_ns(i, &requested_at), i))
        .collect();
    inferences.sort_by_key(|&(finished, _)| finished);
    let mut exporter = Exporter {
        writer,
        channels,
        session,
        timeline: Timeline {
            started_unix_ns: header.started_unix_ns,
            first_tick_ns: session.ticks.first().map_or(0, |t| t.time_ns),
        },
        summary: McapSummary {
            ticks: 0,
            inferences: 0,
            images: 0,
            bytes: 0,
        },
    };
    let mut pending = inferences.into_iter().peekable();
    for tick in &session.ticks {
        while let Some((finished, inference)) = pending.next_if(|&(f, _)| f <= tick.time_ns) {
            exporter.inference(inference, finished)?;
        }
        exporter.tick(tick)?;
    }
    // Inferences that finished after the last tick (a run cut short) come last.
    for (finished, inference) in pending {
        exporter.inference(inference, finished)?;
    }
    Ok(exporter.summary)
}

/// When `inference` finished, on the run's monotonic clock (its request's tick plus its duration).
fn finished_ns(inference: &InferenceRecord, requested_at: &HashMap<u64, u64>) -> u64 {
    requested_at.get(&inference.seq).copied().unwrap_or(0) + inference.duration_us * 1000
}

fn tick_json(tick: &TickRecord, dims: usize) -> Value {
    json!({
        "controller_tick": tick.controller_tick,
        "lateness_us": tick.lateness_ns as f64 / 1e3,
        "missed": tick.missed,
        "state_seq": tick.state_seq,
        "action": &tick.action[..dims],
        "command": &tick.command[..dims],
        "safety_clamped": tick.safety_clamped,
        "safety_rejected": tick.safety_rejected,
        "policy": tick.policy.as_ref().map(|p| json!({
            "tick": p.tick,
            "kind": format!("{:?}", p.kind).to_lowercase(),
            "chunk_seq": p.chunk_seq,
            "index": p.index,
            "swapped": p.swapped,
            "observed_delay": p.observed_delay,
            "request_seq": p.request_seq,
            "step": p.step,
            "step_class": format!("{:?}", p.step_class).to_lowercase(),
        })),
    })
}

fn rows(values: &[f32], dims: usize) -> Vec<&[f32]> {
    values.chunks(dims.max(1)).collect()
}

fn inference_json(inference: &InferenceRecord, dims: usize) -> Value {
    json!({
        "seq": inference.seq,
        "request_tick": inference.tick,
        "executed": inference.executed,
        "delay": inference.delay,
        "duration_us": inference.duration_us,
        "error": inference.error,
        "observation": inference.observation,
        "chunk": rows(&inference.chunk, dims),
        "committed": rows(&inference.committed, dims),
        "image_seq": inference.image_seq,
    })
}

fn raw_image_json(camera: &rtchunk_policy::Camera, pixels: &[u8], time_ns: u64) -> Value {
    json!({
        "timestamp": {"sec": time_ns / 1_000_000_000, "nsec": time_ns % 1_000_000_000},
        "frame_id": camera.name,
        "width": camera.width,
        "height": camera.height,
        "encoding": if camera.channels == 1 { "mono8" } else { "rgb8" },
        "step": camera.width * camera.channels,
        "data": base64(pixels),
    })
}

/// Standard base64 with padding (how JSON carries a `bytes` field).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let word = group
            .iter()
            .enumerate()
            .fold(0u32, |word, (i, &b)| word | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                text.push(char::from(ALPHABET[(word >> (18 - 6 * i) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_pads_like_the_standard() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xff\x00\x10", "/wAQ"),
        ] {
            assert_eq!(base64(bytes), text);
        }
    }
}
