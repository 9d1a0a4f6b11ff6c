//! How long robot state takes over zenoh on loopback, as a function of its size (camera images make state
//! messages large): a bare publish/subscribe hop, and the same state through rtchunk's link (decode, validate,
//! hand the images to the inference side), measured in the same command. `rtchunk bench transport`.

use crate::core::clock::monotonic_ns;
use crate::core::clock::wall_clock_ns;
use crate::core::metrics::Quantiles;
use crate::core::rt_setup::Step;
use crate::io::link::RobotLink;
use crate::io::protocol::{CameraImage, Encode, StateMessage};
use crate::io::session::{Topics, free_loopback_port, open_session, prioritise_zenoh_threads};
use rtchunk_config::IoConfig;
use rtchunk_policy::Camera;
use serde::Serialize;
use std::time::{Duration, Instant};
use zenoh::Wait;

/// Two sessions on a fresh loopback port, one listening and one connected to it, and the configuration of the
/// listening one (its namespace).
fn session_pair(
    name: &str,
    shared_memory: bool,
) -> anyhow::Result<(IoConfig, zenoh::Session, zenoh::Session)> {
    let endpoint = format!("tcp/127.0.0.1:{}", free_loopback_port()?);
    let io = IoConfig {
        listen: vec![endpoint.clone()],
        namespace: format!("{name}{}", std::process::id()),
        shared_memory,
        ..IoConfig::default()
    };
    let listening = open_session(&io)?;
    let connected = open_session(&IoConfig {
        listen: vec![],
        connect: vec![endpoint],
        ..io.clone()
    })?;
    Ok((io, listening, connected))
}

/// Calls `hop(n)` for messages n = 1, 2, ... at `rate_hz` until `samples` have answered (or `limit` passes);
/// `hop` sends message n and returns its one-way time in milliseconds, or `None` when it got no answer. The first
/// five times (connection set-up) are dropped; fewer than half the answers is an error naming `what`.
fn sample_hops(
    samples: usize,
    rate_hz: f64,
    limit: Duration,
    what: &str,
    mut hop: impl FnMut(u64) -> anyhow::Result<Option<f64>>,
) -> anyhow::Result<Quantiles> {
    let period = Duration::from_secs_f64(1.0 / rate_hz);
    let mut hops = Vec::with_capacity(samples);
    let deadline = Instant::now() + limit;
    let mut seq = 0u64;
    while hops.len() < samples && Instant::now() < deadline {
        seq += 1;
        let started = Instant::now();
        hops.extend(hop(seq)?);
        std::thread::sleep(period.saturating_sub(started.elapsed()));
    }
    anyhow::ensure!(
        hops.len() > samples / 2,
        "{what}: {} of {samples} messages answered",
        hops.len()
    );
    Ok(Quantiles::of(hops.split_off(hops.len().min(5))))
}

/// One-way time of `payload` bytes (at least 16) from one zenoh session's `put` to a subscriber's callback in
/// another on loopback, `samples` times at `rate_hz`. Each message carries its sequence number and its send time
/// on this host's monotonic clock, which both sessions share; the callback reads the clock as it runs on zenoh's
/// receiving thread, where the robot link decodes a state, so nothing but zenoh stands between the two readings.
/// With `fifo_priority` above 0 this process's zenoh link threads run under SCHED_FIFO at it, as the runtime's
/// and the simulated robot's do in the latency study (a refusal is logged).
pub fn bare_zenoh_hop(
    samples: usize,
    rate_hz: f64,
    payload: usize,
    shared_memory: bool,
    fifo_priority: u8,
) -> anyhow::Result<Quantiles> {
    let (io, sending, receiving) = session_pair("bare", shared_memory)?;
    if let Step::Refused(reason) = prioritise_zenoh_threads(fifo_priority) {
        tracing::warn!("the bare hop runs under the normal scheduler: {reason}");
    }
    let topic = format!("{}/hop", io.namespace);
    let (arrivals, arrived) = crossbeam_channel::unbounded::<(u64, u64)>();
    let _subscriber = receiving
        .declare_subscriber(topic.clone())
        .callback(move |sample| {
            let now = monotonic_ns();
            let bytes = sample.payload().to_bytes();
            if let (Some(seq), Some(sent)) = (read_u64(&bytes, 0), read_u64(&bytes, 8)) {
                let _ = arrivals.send((seq, now.saturating_sub(sent)));
            }
        })
        .wait()
        .map_err(anyhow::Error::msg)?;
    let publisher = sending
        .declare_publisher(topic)
        .express(true)
        .wait()
        .map_err(anyhow::Error::msg)?;
    sample_hops(
        samples,
        rate_hz,
        Duration::from_secs(30),
        "bare zenoh hop",
        |seq| {
            let mut bytes = vec![0u8; payload.max(16)];
            bytes[..8].copy_from_slice(&seq.to_le_bytes());
            bytes[8..16].copy_from_slice(&monotonic_ns().to_le_bytes());
            publisher.put(bytes).wait().map_err(anyhow::Error::msg)?;
            let give_up = Instant::now() + Duration::from_millis(200);
            // An earlier message that arrived after its own wait gave up is skipped.
            while let Ok((arrived_seq, one_way_ns)) = arrived.recv_deadline(give_up) {
                if arrived_seq == seq {
                    return Ok(Some(one_way_ns as f64 / 1e6));
                }
            }
            Ok(None)
        },
    )
}

/// The little-endian `u64` at `offset` of `bytes`, if it holds one.
fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(offset..offset + 8)?.try_into().ok()?,
    ))
}

/// One-way time of a state message carrying one RGB image of `height` x `width`, from the robot's `put` to its
/// pixels in the inference side's camera buffer, through a [`RobotLink`]; `samples` times at `rate_hz`.
pub fn camera_state_hop(
    samples: usize,
    rate_hz: f64,
    height: usize,
    width: usize,
    shared_memory: bool,
) -> anyhow::Result<Quantiles> {
    let (io, runtime_side, robot) = session_pair("camera", shared_memory)?;
    let camera = Camera {
        name: "front".into(),
        height,
        width,
        channels: 3,
    };
    let (mut link, _plant) =
        RobotLink::attach(runtime_side, &io, 2, 4, std::slice::from_ref(&camera))?;
    let mut feed = link
        .take_camera_feed()
        .ok_or_else(|| anyhow::anyhow!("the link made no camera feed"))?;
    // Published as the bare hop publishes: express (no batching).
    let publisher = robot
        .declare_publisher(Topics::new(&io.namespace).state)
        .express(true)
        .wait()
        .map_err(anyhow::Error::msg)?;
    let hops = sample_hops(
        samples,
        rate_hz,
        Duration::from_secs(60),
        "camera states",
        |seq| {
            let message = StateMessage {
                position: Vec::new(),
                velocity: Vec::new(),
                observation: vec![0.5; 4],
                images: vec![CameraImage {
                    height: height as u16,
                    width: width as u16,
                    channels: 3,
                    pixels: vec![(seq % 251) as u8; camera.bytes()],
                }],
            };
            let bytes = message.encode(0, 1, seq, wall_clock_ns());
            let sent = monotonic_ns();
            publisher.put(bytes).wait().map_err(anyhow::Error::msg)?;
            let give_up = sent + 200_000_000;
            while monotonic_ns() < give_up {
                feed.update();
                if feed.output_buffer().state_seq == seq {
                    return Ok(Some((monotonic_ns() - sent) as f64 / 1e6));
                }
                // Poll without spinning: a spinning reader would take a core from zenoh's receiving threads.
                std::thread::sleep(Duration::from_micros(20));
            }
            Ok(None)
        },
    );
    link.close();
    hops
}

/// One image size's row of the transport benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct TransportRow {
    /// Image rows x columns (RGB).
    pub image: String,
    /// Bytes of the state message.
    pub message_bytes: usize,
    /// A bare zenoh hop of the same number of bytes, milliseconds.
    pub bare_ms: Quantiles,
    /// The state through rtchunk's link to the camera buffer, milliseconds.
    pub rtchunk_ms: Quantiles,
}

/// Measures every `(height, width)` image at `rate_hz`, `samples` messages each.
pub fn transport_benchmark(
    images: &[(usize, usize)],
    samples: usize,
    rate_hz: f64,
    shared_memory: bool,
) -> anyhow::Result<Vec<TransportRow>> {
    images
        .iter()
        .map(|&(height, width)| {
            // Header, sizes, a 4-value observation, the image section.
            let message_bytes = 28 + 4 + 16 + 1 + 6 + height * width * 3;
            Ok(TransportRow {
                image: format!("{height} x {width}"),
                message_bytes,
                bare_ms: bare_zenoh_hop(samples, rate_hz, message_bytes, shared_memory, 0)?,
                rtchunk_ms: camera_state_hop(samples, rate_hz, height, width, shared_memory)?,
            })
        })
        .collect()
}

/// The benchmark as a table, with rtchunk's p50 as a multiple of the bare hop's.
pub fn transport_table(rows: &[TransportRow], shared_memory: bool) -> String {
    let mut text = format!(
        "state messages over zenoh on loopback (shared memory {}): one-way milliseconds\n\
         {:<12} {:>10} {:>22} {:>22} {:>8}\n",
        if shared_memory { "on" } else { "off" },
        "image",
        "bytes",
        "bare hop p50 / p99",
        "rtchunk link p50 / p99",
        "ratio"
    );
    for row in rows {
        text += &format!(
            "{:<12} {:>10} {:>22} {:>22} {:>7.2}x\n",
            row.image,
            row.message_bytes,
            format!("{:.3} / {:.3}", row.bare_ms.p50, row.bare_ms.p99),
            format!("{:.3} / {:.3}", row.rtchunk_ms.p50, row.rtchunk_ms.p99),
            row.rtchunk_ms.p50 / row.bare_ms.p50
        );
    }
    text
}
