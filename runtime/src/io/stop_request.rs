//! Asking a runtime over zenoh to stop, and hearing that it did: a single stop put just before the sender closes
//! its session can be lost on the way (zenoh need not flush it), so the stop is repeated until the runtime's
//! status says it stopped.

use crate::core::clock::wall_clock_ns;
use crate::io::protocol::{
    ControlCommand, Encode, MessageKind, Phase, StatusMessage, decode_header, new_source_id,
};
use crate::io::session::{IoError, Topics};
use std::time::{Duration, Instant};
use zenoh::Wait;

/// How often a stop is repeated until the runtime confirms it.
const REPEAT: Duration = Duration::from_millis(100);

/// A stop to send to the runtime under one namespace, listening for its status from the start, so that the
/// runtime's last status (phase stopped) finds a subscriber.
pub struct StopRequest {
    session: zenoh::Session,
    control_key: String,
    stopped: crossbeam_channel::Receiver<()>,
    _status: zenoh::pubsub::Subscriber<()>,
}

impl StopRequest {
    /// Listens for the status of the runtime under `topics` on `session`. Declare it well before
    /// [`StopRequest::send`]: a runtime that stops at once answers before a late subscription reaches it.
    pub fn prepare(session: &zenoh::Session, topics: &Topics) -> Result<StopRequest, IoError> {
        let (stopped_tx, stopped) = crossbeam_channel::bounded(1);
        let status = session
            .declare_subscriber(topics.status.clone())
            .callback(move |sample| {
                let bytes = sample.payload().to_bytes();
                let says_stopped = decode_header(&bytes, MessageKind::Status)
                    .and_then(|(_, body)| StatusMessage::decode(body))
                    .is_ok_and(|status| status.phase == Phase::Stopped);
                if says_stopped {
                    let _ = stopped_tx.try_send(());
                }
            })
            .wait()
            .map_err(|e| IoError::zenoh(&topics.status, e))?;
        Ok(StopRequest {
            session: session.clone(),
            control_key: topics.control.clone(),
            stopped,
            _status: status,
        })
    }

    /// Puts a stop on the control topic, again every 100 ms, until the runtime's status says it stopped or
    /// `timeout` passes; returns whether it confirmed.
    pub fn send(self, timeout: Duration) -> Result<bool, IoError> {
        let source = new_source_id();
        let deadline = Instant::now() + timeout;
        let mut seq = 0;
        while Instant::now() < deadline {
            seq += 1;
            let stop = ControlCommand::Stop.encode(0, source, seq, wall_clock_ns());
            self.session
                .put(self.control_key.as_str(), stop)
                .wait()
                .map_err(|e| IoError::zenoh(&self.control_key, e))?;
            if self.stopped.recv_timeout(REPEAT).is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
