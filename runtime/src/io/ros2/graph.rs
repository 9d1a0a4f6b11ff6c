//! What makes rtchunk a ROS 2 participant to rmw_zenoh: the data key expression of a topic, the liveliness
//! tokens that put its node, publisher and subscriptions in the ROS graph (`ros2 node list`, `ros2 topic info`),
//! each entity's GID (XXH3-128 of its token) and the attachment every sample carries (sequence number, source
//! timestamp, publisher GID).

use crate::io::protocol::{Header, MessageKind, RejectKind, Rejection};
use crate::io::ros2::messages::RosType;
use crate::io::session::IoError;
use rtchunk_config::Distribution;
use zenoh::Wait;

/// The GID rmw_zenoh gives an entity: 16 bytes.
pub type Gid = [u8; 16];

/// The attachment's length: two `i64` and the GID behind its one-byte length prefix.
pub const ATTACHMENT_LEN: usize = 8 + 8 + 1 + 16;

/// The QoS part of a token for reliable, volatile, keep-last-10 (rmw_zenoh writes only what differs from its
/// defaults: reliable, volatile, keep last 42, infinite deadline, lifespan and lease).
const QOS_KEEP_LAST_10: &str = "::,10:,:,:,,";

/// A name resolved against the node's namespace: `a/b` in `/ns` is `/ns/a/b`; `/a/b` stays.
pub fn resolve(name: &str, namespace: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("{}/{name}", namespace.trim_end_matches('/'))
    }
}

/// The type hash part of key expressions for `distribution`.
pub fn type_hash(ros_type: &RosType, distribution: Distribution) -> &'static str {
    match distribution {
        Distribution::Jazzy => ros_type.hash,
        Distribution::Humble => "TypeHashNotSupported",
    }
}

/// The key expression samples of `topic` (resolved) travel on: `<domain>/<topic>/<dds type>/<hash>`.
pub fn topic_key(
    domain: u32,
    topic: &str,
    ros_type: &RosType,
    distribution: Distribution,
) -> String {
    format!(
        "{domain}/{}/{}/{}",
        topic.trim_matches('/'),
        ros_type.dds_name,
        type_hash(ros_type, distribution)
    )
}

/// `/` becomes `%` in token parts (rmw_zenoh's mangling).
fn mangle(name: &str) -> String {
    name.replace('/', "%")
}

/// What an entity is in the ROS graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    /// A node.
    Node,
    /// A publisher.
    Publisher,
    /// A subscription.
    Subscription,
}

/// The node rtchunk appears as, and the ids of its entities.
#[derive(Debug, Clone)]
pub struct RosNode {
    /// The domain id.
    pub domain: u32,
    /// The zenoh session id, as zenoh prints it.
    pub session_id: String,
    /// The node's namespace (`/` for none).
    pub namespace: String,
    /// The node's name.
    pub name: String,
    /// Type hashes of which distribution.
    pub distribution: Distribution,
    next_entity: u32,
}

impl RosNode {
    /// The node `name` in `namespace` on the session `session_id`.
    pub fn new(
        domain: u32,
        session_id: String,
        namespace: &str,
        name: &str,
        distribution: Distribution,
    ) -> Self {
        RosNode {
            domain,
            session_id,
            namespace: namespace.to_string(),
            name: name.to_string(),
            distribution,
            next_entity: 1,
        }
    }

    /// The liveliness token of the node itself (its entity id is 0).
    pub fn node_token(&self) -> String {
        self.token(0, EntityKind::Node, None)
    }

    /// The liveliness token of the next publisher or subscription on `topic` (resolved), and its GID.
    pub fn endpoint_token(
        &mut self,
        kind: EntityKind,
        topic: &str,
        ros_type: &RosType,
    ) -> (String, Gid) {
        let id = self.next_entity;
        self.next_entity += 1;
        let token = self.token(id, kind, Some((topic, ros_type)));
        let gid = gid_of(&token);
        (token, gid)
    }

    fn token(&self, id: u32, kind: EntityKind, topic: Option<(&str, &RosType)>) -> String {
        let kind = match kind {
            EntityKind::Node => "NN",
            EntityKind::Publisher => "MP",
            EntityKind::Subscription => "MS",
        };
        // The enclave is "/" (rcl's default), mangled like the names.
        let mut token = format!(
            "@ros2_lv/{}/{}/0/{id}/{kind}/%/{}/{}",
            self.domain,
            self.session_id,
            mangle(&self.namespace),
            mangle(&self.name)
        );
        if let Some((topic, ros_type)) = topic {
            token.push_str(&format!(
                "/{}/{}/{}/{QOS_KEEP_LAST_10}",
                mangle(topic),
                ros_type.dds_name,
                type_hash(ros_type, self.distribution)
            ));
        }
        token
    }
}

/// Declares each of `tokens` on `session`; the graph shows the entities while the returned tokens live.
pub fn declare_tokens(
    session: &zenoh::Session,
    tokens: Vec<String>,
) -> Result<Vec<Box<dyn std::any::Any + Send>>, IoError> {
    tokens
        .into_iter()
        .map(|token| {
            let declared = session
                .liveliness()
                .declare_token(token.clone())
                .wait()
                .map_err(|e| IoError::zenoh(&format!("liveliness token {token}"), e))?;
            Ok(Box::new(declared) as Box<dyn std::any::Any + Send>)
        })
        .collect()
}

/// An entity's GID: the XXH3-128 of its liveliness token, low half then high half, little-endian.
pub fn gid_of(token: &str) -> Gid {
    let hash = xxhash_rust::xxh3::xxh3_128(token.as_bytes());
    let mut gid = [0; 16];
    gid[..8].copy_from_slice(&(hash as u64).to_le_bytes());
    gid[8..].copy_from_slice(&((hash >> 64) as u64).to_le_bytes());
    gid
}

/// The attachment of one sample as rmw_zenoh reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    /// Per publisher, from 1.
    pub sequence: i64,
    /// The publisher's wall clock at publishing, nanoseconds since the Unix epoch.
    pub source_timestamp_ns: i64,
    /// The publisher's GID.
    pub gid: Gid,
}

impl Attachment {
    /// zenoh-ext's serialization: `i64`, `i64`, then the GID as a sequence (LEB128 length 16, the bytes).
    pub fn encode(&self) -> [u8; ATTACHMENT_LEN] {
        let mut bytes = [0; ATTACHMENT_LEN];
        bytes[..8].copy_from_slice(&self.sequence.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.source_timestamp_ns.to_le_bytes());
        bytes[16] = 16;
        bytes[17..].copy_from_slice(&self.gid);
        bytes
    }

    /// Reads an attachment; a sample without one, or with another layout, is malformed (rmw_zenoh drops it too).
    pub fn decode(bytes: Option<&[u8]>) -> Result<Self, Rejection> {
        let Some(bytes) = bytes else {
            return Err(Rejection::new(
                RejectKind::Malformed,
                "no attachment (rmw_zenoh samples carry sequence number, timestamp and GID)",
            ));
        };
        if bytes.len() != ATTACHMENT_LEN || bytes[16] != 16 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                format!(
                    "an attachment of {} bytes (expected {ATTACHMENT_LEN}: i64 sequence, i64 timestamp, 16-byte GID)",
                    bytes.len()
                ),
            ));
        }
        let sequence = i64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if sequence < 1 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                format!("sequence number {sequence} (they start at 1)"),
            ));
        }
        Ok(Attachment {
            sequence,
            source_timestamp_ns: i64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            gid: bytes[17..].try_into().expect("16 bytes"),
        })
    }

    /// The header rtchunk's sequence guard checks for a sample of `kind` carrying this attachment: the GID as
    /// its source, the sequence number and the source timestamp.
    pub fn header(&self, kind: MessageKind) -> Header {
        Header {
            kind,
            flags: 0,
            source: self.source(),
            seq: self.sequence as u64,
            stamp_ns: u64::try_from(self.source_timestamp_ns).unwrap_or(0),
        }
    }

    /// The GID folded into the 32-bit source id rtchunk's sequence guard tracks publishers by.
    fn source(&self) -> u32 {
        self.gid
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .fold(0, |acc, word| acc ^ word)
            | 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::ros2::messages::{FLOAT64_MULTI_ARRAY, JOINT_STATE};

    #[test]
    fn keys_and_tokens_follow_rmw_zenoh() {
        assert_eq!(
            topic_key(0, "/joint_states", &JOINT_STATE, Distribution::Jazzy),
            "0/joint_states/sensor_msgs::msg::dds_::JointState_/\
             RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e"
        );
        assert_eq!(
            topic_key(3, "/arm/cmd/", &JOINT_STATE, Distribution::Humble),
            "3/arm/cmd/sensor_msgs::msg::dds_::JointState_/TypeHashNotSupported"
        );
        assert_eq!(resolve("cmd", "/arm"), "/arm/cmd");
        assert_eq!(resolve("cmd", "/"), "/cmd");
        assert_eq!(resolve("/cmd", "/arm"), "/cmd");
        let mut node = RosNode::new(0, "ab12".into(), "/", "rtchunk", Distribution::Jazzy);
        assert_eq!(node.node_token(), "@ros2_lv/0/ab12/0/0/NN/%/%/rtchunk");
        let (token, gid) =
            node.endpoint_token(EntityKind::Publisher, "/a/cmd", &FLOAT64_MULTI_ARRAY);
        assert_eq!(
            token,
            "@ros2_lv/0/ab12/0/1/MP/%/%/rtchunk/%a%cmd/std_msgs::msg::dds_::Float64MultiArray_/\
             RIHS01_1025ddc6b9552d191f89ef1a8d2f60f3d373e28b283d8891ddcc974e8c55397f/::,10:,:,:,,"
        );
        assert_eq!(gid, gid_of(&token));
    }

    #[test]
    fn an_attachment_reads_back_and_bad_ones_are_refused() {
        let attachment = Attachment {
            sequence: 7,
            source_timestamp_ns: 1_700_000_000_000_000_000,
            gid: [3; 16],
        };
        let bytes = attachment.encode();
        assert_eq!(Attachment::decode(Some(&bytes)).unwrap(), attachment);
        assert!(Attachment::decode(None).is_err());
        assert!(Attachment::decode(Some(&bytes[..32])).is_err());
        let mut zero = bytes;
        zero[..8].copy_from_slice(&0i64.to_le_bytes());
        assert!(Attachment::decode(Some(&zero)).is_err());
    }
}
