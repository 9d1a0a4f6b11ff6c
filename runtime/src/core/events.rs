//! What a run hands to whatever records it: a header once, then every tick and every inference (and, when the
//! recorder asks for them, every camera frame the robot sent), through a channel off the controller thread. `recording` implements [`Recorder`] for the session log; the core knows
//! nothing of its format.

use crate::core::messages::CameraFrame;
use crate::core::record::InferenceRecord;
use crate::core::record::TickRecord;
use crossbeam_channel::Sender;
use rtchunk_config::Config;
use serde::{Deserialize, Serialize};

/// What a run says about itself before its first record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// The run's label.
    pub label: String,
    /// The whole configuration.
    pub config: Config,
    /// Values per action and command.
    pub action_dim: usize,
    /// Values per observation.
    pub observation_dim: usize,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub started_unix_ns: u64,
    /// The rtchunk version that ran it.
    pub rtchunk_version: String,
    /// The policy's cameras, in the order their images are recorded (absent in logs of older versions).
    #[serde(default)]
    pub cameras: Vec<rtchunk_policy::Camera>,
}

/// One record of a run.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A controller tick (sent by the collector thread, never by the controller).
    Tick(Box<TickRecord>),
    /// A finished inference (sent by the inference worker).
    Inference(InferenceRecord),
    /// The camera images that came with a state (sent by the robot link's state intake, when the recorder
    /// [asks for them](Recorder::records_camera_frames)).
    CameraFrame(CameraFrame),
}

/// What a recorder kept, and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSummary {
    /// Tick records written.
    pub ticks: u64,
    /// Inference records written.
    pub inferences: u64,
    /// Bytes written, when the records went to a file.
    pub bytes: u64,
    /// Why the recorder stopped writing before the run ended (a full disk, a file size limit), if it did; the
    /// log then reads up to the last record that reached it, and the records after are counted below.
    pub failure: Option<String>,
    /// Tick records the run sent after the failure, not written.
    pub lost_ticks: u64,
    /// Inference records the run sent after the failure, not written.
    pub lost_inferences: u64,
    /// Camera frames written.
    pub camera_frames: u64,
    /// Camera frames the run sent after the failure, not written.
    pub lost_camera_frames: u64,
}

/// Where a run's records go besides its metrics: the run opens it with its header before the controller starts,
/// its collector and worker send their events to the sender it returns, and the run finishes it once both have
/// gone, whichever way the run ended.
pub trait Recorder: Send {
    /// Starts recording the run that `header` describes.
    fn open(&mut self, header: &RunHeader) -> std::io::Result<Sender<RunEvent>>;

    /// Waits until every sender has gone and closes the record.
    fn finish(self: Box<Self>) -> std::io::Result<RecordSummary>;

    /// Whether the recorder wants every camera frame the robot sends (not only those each inference saw).
    fn records_camera_frames(&self) -> bool {
        false
    }
}
