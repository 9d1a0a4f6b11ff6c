//! Opening a zenoh session from `[io]`, and the topic names under its namespace.

use crate::core::cpu_reservation::{ZENOH_LINK_THREADS, threads_named};
use crate::core::rt_setup::{Step, set_task_fifo};
use crate::io::exposure::check_endpoints;
use rtchunk_config::{IoConfig, TlsConfig, ZenohMode};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use thiserror::Error;
use zenoh::Wait;

/// Why the link could not be set up or used.
#[derive(Debug, Error)]
pub enum IoError {
    /// Zenoh refused a setting or a declaration.
    #[error("zenoh: {0}")]
    Zenoh(String),
    /// Anything else at set-up.
    #[error("{0}")]
    Setup(String),
}

impl IoError {
    /// A zenoh failure concerning `what` (a topic or a setting).
    pub fn zenoh(what: &str, error: impl std::fmt::Display) -> Self {
        IoError::Zenoh(format!("{what}: {error}"))
    }
}

/// The key expressions of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Robot state in.
    pub state: String,
    /// Commands out, one per controller tick.
    pub action: String,
    /// Status and counters out.
    pub status: String,
    /// Start, stop, reset, emergency stop in.
    pub control: String,
}

impl Topics {
    /// The topics under `namespace`.
    pub fn new(namespace: &str) -> Self {
        Topics {
            state: format!("{namespace}/state"),
            action: format!("{namespace}/action"),
            status: format!("{namespace}/status"),
            control: format!("{namespace}/control"),
        }
    }
}

/// The zenoh configuration `io` describes: `io.zenoh_config`'s file (or zenoh's defaults), then its mode and
/// endpoints, multicast scouting and gossip off (nothing is discovered beyond the endpoints given), shared memory
/// as asked and TLS from `[io.tls]`. Listening beyond loopback without TLS is refused unless `io.allow_insecure`
/// ([`check_endpoints`]).
pub fn zenoh_config(io: &IoConfig) -> Result<zenoh::Config, IoError> {
    check_endpoints(io).map_err(IoError::Setup)?;
    let mut config = match &io.zenoh_config {
        Some(path) => zenoh::Config::from_file(path).map_err(|e| {
            IoError::Setup(format!(
                "io.zenoh_config: {}: not a zenoh configuration: {e}",
                path.display()
            ))
        })?,
        None => zenoh::Config::default(),
    };
    let mode = match io.mode {
        ZenohMode::Peer => "\"peer\"",
        ZenohMode::Client => "\"client\"",
    };
    let json = |endpoints: &[String]| serde_json::to_string(endpoints).expect("strings serialise");
    let shared_memory = if io.shared_memory { "true" } else { "false" };
    let mut settings = vec![
        ("mode", mode.to_string()),
        ("listen/endpoints", json(&io.listen)),
        ("connect/endpoints", json(&io.connect)),
        ("scouting/multicast/enabled", "false".to_string()),
        ("scouting/gossip/enabled", "false".to_string()),
        ("transport/shared_memory/enabled", shared_memory.to_string()),
    ];
    if let Some(tls) = &io.tls {
        settings.extend(tls_settings(tls)?);
    }
    for (key, value) in settings {
        config
            .insert_json5(key, &value)
            .map_err(|e| IoError::zenoh(&format!("io setting {key} = {value}"), e))?;
    }
    Ok(config)
}

/// The zenoh keys of `[io.tls]`, its files checked to exist (an error names the setting and the path).
fn tls_settings(tls: &TlsConfig) -> Result<Vec<(&'static str, String)>, IoError> {
    let path = |file: &Path, setting: &str| {
        if !file.is_file() {
            return Err(IoError::Setup(format!(
                "io.tls.{setting}: {}: no such file",
                file.display()
            )));
        }
        Ok(serde_json::to_string(&file.display().to_string()).expect("strings serialise"))
    };
    let (ca, certificate, key) = (
        path(&tls.ca, "ca")?,
        path(&tls.certificate, "certificate")?,
        path(&tls.key, "key")?,
    );
    Ok(vec![
        ("transport/link/tls/root_ca_certificate", ca),
        ("transport/link/tls/listen_certificate", certificate.clone()),
        ("transport/link/tls/listen_private_key", key.clone()),
        ("transport/link/tls/connect_certificate", certificate),
        ("transport/link/tls/connect_private_key", key),
        ("transport/link/tls/enable_mtls", tls.mutual.to_string()),
    ])
}

/// Opens the session `io` describes.
pub fn open_session(io: &IoConfig) -> Result<zenoh::Session, IoError> {
    if io.shared_memory && !cfg!(feature = "shm") {
        return Err(IoError::Setup(
            "io.shared_memory = true needs rtchunk built with the shm feature".into(),
        ));
    }
    zenoh::open(zenoh_config(io)?).wait().map_err(|e| {
        IoError::zenoh(
            &format!(
                "opening a session (listen {:?}, connect {:?})",
                io.listen, io.connect
            ),
            e,
        )
    })
}

/// Puts zenoh's link threads in this process ([`ZENOH_LINK_THREADS`]: the sockets' reactor, the receiving and the
/// transmitting threads, shared by every session of the process) under SCHED_FIFO at `priority` (0: leaves them
/// under the normal scheduler), so that a busy normal thread (the inference) never holds a message on its way
/// between a socket and a callback. Call it once the sessions' links are up: zenoh starts these threads with
/// them. A refusal (no right to SCHED_FIFO, or no such thread yet) says why.
pub fn prioritise_zenoh_threads(priority: u8) -> Step {
    if priority == 0 {
        return Step::Skipped;
    }
    let mut count = 0;
    let mut kinds = Vec::new();
    for prefix in ZENOH_LINK_THREADS {
        let threads = threads_named(prefix);
        for &tid in &threads {
            if let Step::Refused(reason) = set_task_fifo(tid, priority) {
                return Step::Refused(format!("zenoh's {prefix}* threads at SCHED_FIFO {reason}"));
            }
        }
        if !threads.is_empty() {
            count += threads.len();
            kinds.push(format!("{prefix}*"));
        }
    }
    if count == 0 {
        return Step::Refused(format!(
            "zenoh's link threads at SCHED_FIFO priority {priority}: none of {ZENOH_LINK_THREADS:?} runs yet"
        ));
    }
    Step::Applied(format!(
        "zenoh's {count} link threads ({}) at SCHED_FIFO priority {priority}",
        kinds.join(", ")
    ))
}

/// The lowest port [`free_loopback_port`] hands out.
const LOWEST_LOOPBACK_PORT: u16 = 10_000;

/// A TCP port on loopback that was free a moment ago (for endpoints of local studies and tests). It is taken from
/// below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), which outgoing connections draw their
/// local ports from, so that no connection opened meanwhile (zenoh's own, between other sessions) can be given
/// it before its listener binds; each call in a process starts one port further along a randomly placed walk, so
/// two calls do not return the same port. When that range is empty or full, the kernel picks one.
pub fn free_loopback_port() -> std::io::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: OnceLock<u32> = OnceLock::new();
    let start = *START.get_or_init(|| RandomState::new().build_hasher().finish() as u32);
    let below_ephemeral = ephemeral_ports_start().saturating_sub(LOWEST_LOOPBACK_PORT);
    for _ in 0..below_ephemeral {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port =
            LOWEST_LOOPBACK_PORT + (start.wrapping_add(step) % u32::from(below_ephemeral)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The first port of the kernel's ephemeral range (Linux's default where it cannot be read).
fn ephemeral_ports_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ports_are_free_distinct_and_below_the_ephemeral_range() {
        let mut ports: Vec<u16> = (0..50).map(|_| free_loopback_port().unwrap()).collect();
        let ephemeral = ephemeral_ports_start();
        for &port in &ports {
            assert!(
                (LOWEST_LOOPBACK_PORT..ephemeral).contains(&port),
                "port {port} outside {LOWEST_LOOPBACK_PORT}..{ephemeral}"
            );
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 50, "a port was handed out twice");
    }
}
