//! `[io]`: the zenoh link to the robot (or to `rtchunk sim serve`): session, topics, what stale state does, and
//! who may talk to it (TLS, a zenoh configuration with access control, the loopback-only default).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Zenoh session mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZenohMode {
    /// Talks directly to other peers (the robot-local default).
    #[default]
    Peer,
    /// Talks only through a router.
    Client,
}

/// What the controller does when the newest robot state is older than `stale_after_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnStale {
    /// Pause the chunk and hold the last target until fresh state arrives, then resume.
    #[default]
    Hold,
    /// Hold, then end the run.
    Stop,
}

/// TLS on the zenoh link (`[io.tls]`): endpoints `tls/host:port` authenticate with certificates signed by one CA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate (PEM) of the CA that signs every node's certificate.
    pub ca: PathBuf,
    /// This node's certificate (PEM), signed by `ca`; presented when it listens and when it connects.
    pub certificate: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
    /// Also require every peer to present a certificate signed by `ca` (mutual TLS); false: only the
    /// listening side is authenticated, and anyone may connect.
    #[serde(default = "mutual_by_default")]
    pub mutual: bool,
}

fn mutual_by_default() -> bool {
    true
}

/// Settings of the zenoh link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IoConfig {
    /// Peer or client.
    pub mode: ZenohMode,
    /// Endpoints to listen on, e.g. `tcp/127.0.0.1:7450` (loopback only by default).
    pub listen: Vec<String>,
    /// Endpoints to connect to.
    pub connect: Vec<String>,
    /// Prefix of every topic: `<namespace>/state`, `/action`, `/status`, `/control`.
    pub namespace: String,
    /// Use zenoh's shared-memory transport (needs the `shm` build feature on both ends).
    pub shared_memory: bool,
    /// A state older than this (milliseconds since it arrived) is stale.
    pub stale_after_ms: f64,
    /// What stale state does.
    pub on_stale: OnStale,
    /// Wait for a start command on the control topic before executing (otherwise start on the first state).
    pub wait_for_start: bool,
    /// How often status is published, in Hz.
    pub status_rate_hz: f64,
    /// A hold longer than this (milliseconds) discards the chunk it interrupted: on fresh state the runtime
    /// plans again from the new observation (holding until the new chunk arrives) instead of resuming a plan
    /// made before the gap. `inf`: always resume.
    pub replan_after_ms: f64,
    /// TLS, for every `tls/` endpoint (and required to listen beyond loopback).
    pub tls: Option<TlsConfig>,
    /// A zenoh configuration file (JSON5) whose settings the session starts from, e.g. its `access_control`
    /// (who may publish state, send control messages or query the policy server); the keys above override
    /// its own.
    pub zenoh_config: Option<PathBuf>,
    /// Allow listening beyond loopback without TLS: anyone who reaches the port could send state, start or
    /// stop the robot. Refused unless set.
    pub allow_insecure: bool,
}

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            mode: ZenohMode::Peer,
            listen: vec!["tcp/127.0.0.1:7450".to_string()],
            connect: Vec::new(),
            namespace: "rtchunk".to_string(),
            shared_memory: false,
            stale_after_ms: 100.0,
            on_stale: OnStale::Hold,
            wait_for_start: false,
            status_rate_hz: 10.0,
            replan_after_ms: 500.0,
            tls: None,
            zenoh_config: None,
            allow_insecure: false,
        }
    }
}
