//! The ROS 2 messages rtchunk reads and writes, in CDR: `sensor_msgs/msg/JointState` and `sensor_msgs/msg/Image`
//! in, `std_msgs/msg/Float64MultiArray` or `trajectory_msgs/msg/JointTrajectory` out, and the reverse of each for
//! the simulated robot. Decoding reuses the caller's buffers; every rejection names the field.

use crate::io::protocol::{RejectKind, Rejection};
use crate::io::ros2::cdr::{CdrReader, CdrWriter};

/// A message type as rmw_zenoh names it in key expressions and liveliness tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RosType {
    /// The ROS name, e.g. `sensor_msgs/msg/JointState`.
    pub name: &'static str,
    /// The DDS type name in key expressions, e.g. `sensor_msgs::msg::dds_::JointState_`.
    pub dds_name: &'static str,
    /// The RIHS01 type hash of Jazzy, Kilted and Rolling (`ros2 topic info -v` shows it).
    pub hash: &'static str,
}

/// `sensor_msgs/msg/JointState`.
pub const JOINT_STATE: RosType = RosType {
    name: "sensor_msgs/msg/JointState",
    dds_name: "sensor_msgs::msg::dds_::JointState_",
    hash: "RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e",
};

/// `sensor_msgs/msg/Image`.
pub const IMAGE: RosType = RosType {
    name: "sensor_msgs/msg/Image",
    dds_name: "sensor_msgs::msg::dds_::Image_",
    hash: "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47",
};

/// `std_msgs/msg/Float64MultiArray`.
pub const FLOAT64_MULTI_ARRAY: RosType = RosType {
    name: "std_msgs/msg/Float64MultiArray",
    dds_name: "std_msgs::msg::dds_::Float64MultiArray_",
    hash: "RIHS01_1025ddc6b9552d191f89ef1a8d2f60f3d373e28b283d8891ddcc974e8c55397f",
};

/// `trajectory_msgs/msg/JointTrajectory`.
pub const JOINT_TRAJECTORY: RosType = RosType {
    name: "trajectory_msgs/msg/JointTrajectory",
    dds_name: "trajectory_msgs::msg::dds_::JointTrajectory_",
    hash: "RIHS01_179b33eba59d676f6d967ac71fe35e7ca2f64b2f3928f4a018cec115e213796e",
};

/// The message type of `command_type`.
pub fn command_message(command_type: rtchunk_config::CommandType) -> &'static RosType {
    match command_type {
        rtchunk_config::CommandType::Float64MultiArray => &FLOAT64_MULTI_ARRAY,
        rtchunk_config::CommandType::JointTrajectory => &JOINT_TRAJECTORY,
    }
}

/// A decoded `sensor_msgs/msg/JointState`; its buffers are reused from one message to the next.
#[derive(Debug, Default)]
pub struct JointState<'a> {
    /// `header.stamp` in nanoseconds.
    pub stamp_ns: i64,
    /// `name`.
    pub names: Vec<&'a str>,
    /// `position` (empty or one per name).
    pub position: Vec<f64>,
    /// `velocity` (empty or one per name).
    pub velocity: Vec<f64>,
    /// `effort` (empty or one per name).
    pub effort: Vec<f64>,
}

fn read_stamp_ns(reader: &mut CdrReader<'_>) -> Result<i64, Rejection> {
    let sec = reader.i32("header.stamp.sec")?;
    let nanosec = reader.u32("header.stamp.nanosec")?;
    Ok(i64::from(sec) * 1_000_000_000 + i64::from(nanosec))
}

fn write_header(writer: &mut CdrWriter, stamp_ns: i64, frame_id: &str) {
    writer.i32(stamp_ns.div_euclid(1_000_000_000) as i32);
    writer.u32(stamp_ns.rem_euclid(1_000_000_000) as u32);
    writer.string(frame_id);
}

impl<'a> JointState<'a> {
    /// Decodes `payload` into `self`. Each of position, velocity and effort must be empty or hold one value per
    /// name.
    pub fn decode_into(&mut self, payload: &'a [u8]) -> Result<(), Rejection> {
        let mut reader = CdrReader::new(payload)?;
        self.stamp_ns = read_stamp_ns(&mut reader)?;
        reader.string("header.frame_id")?;
        reader.strings(Some(&mut self.names), "name")?;
        reader.f64s(&mut self.position, "position")?;
        reader.f64s(&mut self.velocity, "velocity")?;
        reader.f64s(&mut self.effort, "effort")?;
        for (field, values) in [
            ("position", &self.position),
            ("velocity", &self.velocity),
            ("effort", &self.effort),
        ] {
            if !values.is_empty() && values.len() != self.names.len() {
                return Err(Rejection::new(
                    RejectKind::Dimensions,
                    format!(
                        "{field} has {} values for {} names",
                        values.len(),
                        self.names.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The values of `field` (`position`, `velocity` or `effort`).
    pub fn field(&self, field: rtchunk_config::JointField) -> &[f64] {
        match field {
            rtchunk_config::JointField::Position => &self.position,
            rtchunk_config::JointField::Velocity => &self.velocity,
            rtchunk_config::JointField::Effort => &self.effort,
        }
    }
}

/// Encodes a `sensor_msgs/msg/JointState` (no effort).
pub fn encode_joint_state(
    stamp_ns: i64,
    names: &[String],
    position: &[f64],
    velocity: &[f64],
) -> Vec<u8> {
    let mut writer = CdrWriter::new();
    write_header(&mut writer, stamp_ns, "");
    writer.strings(names);
    writer.f64s(position.iter().copied());
    writer.f64s(velocity.iter().copied());
    writer.f64s([].into_iter());
    writer.finish()
}

/// Encodes a `std_msgs/msg/Float64MultiArray` holding `values` (an empty layout, as `ros2 topic pub` writes
/// it and ros2_control's forward command controllers read it).
pub fn encode_float64_multi_array(values: &[f64]) -> Vec<u8> {
    let mut writer = CdrWriter::new();
    writer.u32(0); // layout.dim: none
    writer.u32(0); // layout.data_offset
    writer.f64s(values.iter().copied());
    writer.finish()
}

/// Decodes a `std_msgs/msg/Float64MultiArray`'s data into `out`.
pub fn decode_float64_multi_array(payload: &[u8], out: &mut Vec<f64>) -> Result<(), Rejection> {
    let mut reader = CdrReader::new(payload)?;
    let dims = reader.count(12, "layout.dim")?;
    for _ in 0..dims {
        reader.string("layout.dim.label")?;
        reader.u32("layout.dim.size")?;
        reader.u32("layout.dim.stride")?;
    }
    reader.u32("layout.data_offset")?;
    reader.f64s(out, "data")
}

/// Encodes a `trajectory_msgs/msg/JointTrajectory` with one point: `positions` of `joints`, reached
/// `time_from_start_ns` after it arrives (header stamp 0: start on arrival).
pub fn encode_joint_trajectory(
    joints: &[String],
    positions: &[f64],
    time_from_start_ns: i64,
) -> Vec<u8> {
    let mut writer = CdrWriter::new();
    write_header(&mut writer, 0, "");
    writer.strings(joints);
    writer.u32(1); // points
    writer.f64s(positions.iter().copied());
    for _ in ["velocities", "accelerations", "effort"] {
        writer.f64s([].into_iter());
    }
    writer.i32(time_from_start_ns.div_euclid(1_000_000_000) as i32);
    writer.u32(time_from_start_ns.rem_euclid(1_000_000_000) as u32);
    writer.finish()
}

/// Decodes a `trajectory_msgs/msg/JointTrajectory`'s joint names and its first point's positions into
/// `out` (in the message's joint order).
pub fn decode_joint_trajectory<'a>(
    payload: &'a [u8],
    joints: &mut Vec<&'a str>,
    out: &mut Vec<f64>,
) -> Result<(), Rejection> {
    let mut reader = CdrReader::new(payload)?;
    read_stamp_ns(&mut reader)?;
    reader.string("header.frame_id")?;
    reader.strings(Some(joints), "joint_names")?;
    if reader.count(24, "points")? == 0 {
        return Err(Rejection::new(
            RejectKind::Dimensions,
            "a trajectory without points",
        ));
    }
    reader.f64s(out, "points[0].positions")?;
    if out.len() != joints.len() {
        return Err(Rejection::new(
            RejectKind::Dimensions,
            format!("{} positions for {} joints", out.len(), joints.len()),
        ));
    }
    Ok(())
}

/// A decoded `sensor_msgs/msg/Image`, borrowing its pixels.
#[derive(Debug)]
pub struct Image<'a> {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `encoding`, e.g. `rgb8`.
    pub encoding: &'a str,
    /// Bytes per row (at least width times the pixel size).
    pub step: usize,
    /// The pixel rows.
    pub data: &'a [u8],
}

impl<'a> Image<'a> {
    /// Decodes `payload`, checking that `data` holds `height` rows of `step` bytes.
    pub fn decode(payload: &'a [u8]) -> Result<Self, Rejection> {
        let mut reader = CdrReader::new(payload)?;
        read_stamp_ns(&mut reader)?;
        reader.string("header.frame_id")?;
        let height = reader.u32("height")? as usize;
        let width = reader.u32("width")? as usize;
        let encoding = reader.string("encoding")?;
        reader.u8("is_bigendian")?;
        let step = reader.u32("step")? as usize;
        let data = reader.byte_sequence("data")?;
        if data.len() < height.saturating_mul(step) {
            return Err(Rejection::new(
                RejectKind::Dimensions,
                format!("data has {} bytes for {height} rows of {step}", data.len()),
            ));
        }
        Ok(Image {
            height,
            width,
            encoding,
            step,
            data,
        })
    }

    /// Appends the pixels as tightly packed RGB (3 channels) or grey (1), the layout the policy's cameras take;
    /// `rgb8`, `bgr8`, `rgba8`, `bgra8` and `mono8` are converted, anything else is refused.
    pub fn append_pixels(&self, channels: usize, out: &mut Vec<u8>) -> Result<(), Rejection> {
        let (size, order): (usize, &[usize]) = match (self.encoding, channels) {
            ("rgb8" | "8UC3", 3) => (3, &[0, 1, 2]),
            ("bgr8", 3) => (3, &[2, 1, 0]),
            ("rgba8", 3) => (4, &[0, 1, 2]),
            ("bgra8", 3) => (4, &[2, 1, 0]),
            ("mono8" | "8UC1", 1) => (1, &[0]),
            (encoding, _) => {
                return Err(Rejection::new(
                    RejectKind::WrongKind,
                    format!(
                        "image encoding {encoding:?} for a camera of {channels} channels (expected rgb8, bgr8, \
                         rgba8 or bgra8 for 3, mono8 for 1)"
                    ),
                ));
            }
        };
        let row_bytes = self.width.checked_mul(size).filter(|&bytes| bytes > 0);
        let Some(row_bytes) = row_bytes.filter(|&bytes| bytes <= self.step) else {
            return Err(Rejection::new(
                RejectKind::Dimensions,
                format!(
                    "step {} for {} pixels of {size} bytes per row",
                    self.step, self.width
                ),
            ));
        };
        for row in self.data.chunks_exact(self.step).take(self.height) {
            for pixel in row[..row_bytes].chunks_exact(size) {
                out.extend(order.iter().map(|&channel| pixel[channel]));
            }
        }
        Ok(())
    }
}

/// Encodes a `sensor_msgs/msg/Image` of tightly packed 8-bit pixels: `rgb8` for 3 channels, `mono8` for 1.
pub fn encode_image(
    stamp_ns: i64,
    height: usize,
    width: usize,
    channels: u8,
    pixels: &[u8],
) -> Vec<u8> {
    let mut writer = CdrWriter::new();
    write_header(&mut writer, stamp_ns, "camera");
    writer.u32(height as u32);
    writer.u32(width as u32);
    writer.string(if channels == 1 { "mono8" } else { "rgb8" });
    writer.u8(0); // is_bigendian
    writer.u32((width * usize::from(channels)) as u32);
    writer.byte_sequence(pixels);
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joint_state_reads_back() {
        let names = vec!["a".to_string(), "bc".to_string()];
        let bytes = encode_joint_state(1_500_000_000, &names, &[1.0, 2.0], &[]);
        let mut state = JointState::default();
        state.decode_into(&bytes).unwrap();
        assert_eq!(state.stamp_ns, 1_500_000_000);
        assert_eq!(state.names, ["a", "bc"]);
        assert_eq!(state.position, [1.0, 2.0]);
        assert!(state.velocity.is_empty() && state.effort.is_empty());
    }

    #[test]
    fn commands_read_back() {
        let mut values = Vec::new();
        decode_float64_multi_array(&encode_float64_multi_array(&[0.5, -1.0]), &mut values).unwrap();
        assert_eq!(values, [0.5, -1.0]);
        let joints = vec!["x".to_string(), "y".to_string()];
        let bytes = encode_joint_trajectory(&joints, &[0.25, 0.75], 20_000_000);
        let mut names = Vec::new();
        decode_joint_trajectory(&bytes, &mut names, &mut values).unwrap();
        assert_eq!((names, values), (vec!["x", "y"], vec![0.25, 0.75]));
    }

    #[test]
    fn an_image_reads_back_and_converts_to_the_cameras_layout() {
        let bgr = [1, 2, 3, 4, 5, 6];
        let bytes = encode_image(0, 1, 2, 3, &bgr);
        let image = Image::decode(&bytes).unwrap();
        assert_eq!(
            (image.height, image.width, image.encoding, image.step),
            (1, 2, "rgb8", 6)
        );
        let mut pixels = Vec::new();
        image.append_pixels(3, &mut pixels).unwrap();
        assert_eq!(pixels, bgr);
        assert!(image.append_pixels(1, &mut pixels).is_err());
    }
}
