//! Demonstrations in the dataset format the training toolchain reads (`policy/python/rtchunk_train/dataset.py`):
//! one `.npz` file (a ZIP of `.npy` arrays) with `observation` float32 [N, O], `action` float32 [N, A] and
//! `episode_index` int64 [N], one row per control step, episodes one after another in time order,
//! `episode_seeds` int64 [2]: the half-open range of episode seeds the demonstrations were drawn from (training
//! records it in the bundle, so evaluation can stay off the training episodes), and, for a dataset with a camera,
//! `camera0` uint8 [N, height, width, 3]: what the camera saw at each step.

use crate::lerobot::{CameraFeature, Features, LeRobotError, LeRobotWriter};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a dataset could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The dataset file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An array is too large for a plain (non-ZIP64) archive.
    #[error(
        "{path}: array {array} is {bytes} bytes; the dataset writer stores at most 4 GiB (a plain ZIP)"
    )]
    TooLarge {
        /// The dataset file.
        path: PathBuf,
        /// The array's name.
        array: &'static str,
        /// Its size.
        bytes: usize,
    },
}

/// Demonstrations being gathered, row by row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    observation_dim: usize,
    action_dim: usize,
    observations: Vec<f32>,
    actions: Vec<f32>,
    episode_index: Vec<i64>,
    episode_seeds: [u64; 2],
    /// The camera's image size (height, width) and its images, row after row; None without a camera.
    camera: Option<([usize; 2], Vec<u8>)>,
}

impl Dataset {
    /// An empty dataset for observations and actions of these lengths.
    pub fn new(observation_dim: usize, action_dim: usize) -> Self {
        Dataset {
            observation_dim,
            action_dim,
            ..Dataset::default()
        }
    }

    /// The same dataset with a camera of `height` x `width` RGB pixels: every row then carries an image.
    pub fn with_camera(mut self, height: usize, width: usize) -> Self {
        self.camera = Some(([height, width], Vec::new()));
        self
    }

    /// Bytes of one row's image (0 without a camera).
    pub fn image_bytes(&self) -> usize {
        self.camera.as_ref().map_or(0, |([h, w], _)| h * w * 3)
    }

    /// Records that the episodes were drawn from seeds `first..end`.
    pub fn set_episode_seeds(&mut self, first: u64, end: u64) {
        self.episode_seeds = [first, end];
    }

    /// Appends one control step of episode `episode`, with the camera's `image` (`image_bytes()` RGB bytes;
    /// empty without a camera).
    pub fn push(&mut self, episode: i64, observation: &[f32], action: &[f32], image: &[u8]) {
        debug_assert_eq!(
            (observation.len(), action.len(), image.len()),
            (self.observation_dim, self.action_dim, self.image_bytes())
        );
        self.observations.extend_from_slice(observation);
        self.actions.extend_from_slice(action);
        self.episode_index.push(episode);
        if let Some((_, images)) = &mut self.camera {
            images.extend_from_slice(image);
        }
    }

    /// Drops every row from `len` on (an episode that will not be kept).
    pub fn truncate(&mut self, len: usize) {
        self.observations.truncate(len * self.observation_dim);
        self.actions.truncate(len * self.action_dim);
        self.episode_index.truncate(len);
        let image_bytes = self.image_bytes();
        if let Some((_, images)) = &mut self.camera {
            images.truncate(len * image_bytes);
        }
    }

    /// Number of rows (control steps).
    pub fn len(&self) -> usize {
        self.episode_index.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.episode_index.is_empty()
    }

    /// Writes the dataset as an uncompressed `.npz` file.
    pub fn write_npz(&self, path: &Path) -> Result<(), DatasetError> {
        let rows = self.len();
        let mut arrays = vec![
            (
                "observation",
                npy(
                    "<f4",
                    &[rows, self.observation_dim],
                    &bytes_of_f32(&self.observations),
                ),
            ),
            (
                "action",
                npy(
                    "<f4",
                    &[rows, self.action_dim],
                    &bytes_of_f32(&self.actions),
                ),
            ),
            (
                "episode_index",
                npy(
                    "<i8",
                    &[rows],
                    &self
                        .episode_index
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect::<Vec<_>>(),
                ),
            ),
            (
                "episode_seeds",
                npy(
                    "<i8",
                    &[2],
                    &self
                        .episode_seeds
                        .iter()
                        .flat_map(|&v| (v as i64).to_le_bytes())
                        .collect::<Vec<_>>(),
                ),
            ),
        ];
        if let Some(([height, width], images)) = &self.camera {
            arrays.push(("camera0", npy("|u1", &[rows, *height, *width, 3], images)));
        }
        let total = arrays.iter().map(|(_, bytes)| bytes.len() + 128).sum();
        let sizes = arrays.iter().map(|(name, bytes)| (*name, bytes.len()));
        for (array, bytes) in sizes.chain([("(all of them together)", total)]) {
            if u32::try_from(bytes).is_err() {
                return Err(DatasetError::TooLarge {
                    path: path.to_path_buf(),
                    array,
                    bytes,
                });
            }
        }
        let io = |source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut out = std::io::BufWriter::new(file);
        write_stored_zip(
            &mut out,
            &arrays
                .into_iter()
                .map(|(name, bytes)| (format!("{name}.npy"), bytes))
                .collect::<Vec<_>>(),
        )
        .map_err(io)?;
        out.flush().map_err(io)
    }
}

impl Dataset {
    /// Writes the dataset as a LeRobotDataset v3.0 directory: one LeRobot episode per episode, frames at `fps`,
    /// every episode under `task`, the state and action values named `names` (state, action), the camera as
    /// the image feature `observation.images.camera0`.
    pub fn write_lerobot(
        &self,
        dir: &Path,
        fps: u32,
        task: &str,
        names: [&[&str]; 2],
    ) -> Result<(), LeRobotError> {
        let to_strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let features = Features {
            state_dim: self.observation_dim,
            state_names: Some(to_strings(names[0])),
            action_dim: self.action_dim,
            action_names: Some(to_strings(names[1])),
            cameras: self
                .camera
                .iter()
                .map(|([height, width], _)| CameraFeature {
                    name: "camera0".into(),
                    height: *height,
                    width: *width,
                    channels: 3,
                })
                .collect(),
        };
        let mut writer = LeRobotWriter::new(fps, Some("rtchunk-sim".into()), features);
        let image_bytes = self.image_bytes();
        for row in 0..self.len() {
            if row > 0 && self.episode_index[row] != self.episode_index[row - 1] {
                writer.end_episode(task);
            }
            let image = self
                .camera
                .as_ref()
                .map(|(_, images)| &images[row * image_bytes..(row + 1) * image_bytes]);
            writer.push_frame(
                &self.observations[row * self.observation_dim..(row + 1) * self.observation_dim],
                &self.actions[row * self.action_dim..(row + 1) * self.action_dim],
                image.as_slice(),
            )?;
        }
        writer.end_episode(task);
        writer.write(dir)
    }
}

fn bytes_of_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A `.npy` (format 1.0) file: magic, header dictionary padded to a multiple of 64 bytes, little-endian data.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// A ZIP archive of uncompressed ("stored") entries; every entry must be under 4 GiB.
fn write_stored_zip(out: &mut impl Write, entries: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    const DOS_DATE_1980_01_01: u16 = 0x21;
    let mut central = Vec::new();
    let mut offset = 0u32;
    for (name, data) in entries {
        let (crc, size, name_len) = (crc32fast::hash(data), data.len() as u32, name.len() as u16);
        let mut common = Vec::new();
        common.extend_from_slice(&20u16.to_le_bytes()); // version needed
        common.extend_from_slice(&0u16.to_le_bytes()); // flags
        common.extend_from_slice(&0u16.to_le_bytes()); // stored
        common.extend_from_slice(&0u16.to_le_bytes()); // time
        common.extend_from_slice(&DOS_DATE_1980_01_01.to_le_bytes());
        common.extend_from_slice(&crc.to_le_bytes());
        common.extend_from_slice(&size.to_le_bytes());
        common.extend_from_slice(&size.to_le_bytes());
        common.extend_from_slice(&name_len.to_le_bytes());
        common.extend_from_slice(&0u16.to_le_bytes()); // extra length
        out.write_all(&0x0403_4b50u32.to_le_bytes())?;
        out.write_all(&common)?;
        out.write_all(name.as_bytes())?;
        out.write_all(data)?;
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        central.extend_from_slice(&common);
        central.extend_from_slice(&[0u8; 8]); // comment length, disk, internal and external attributes (low half)
        central.extend_from_slice(&[0u8; 2]); // external attributes (high half)
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        offset += 30 + u32::from(name_len) + size;
    }
    out.write_all(&central)?;
    out.write_all(&0x0605_4b50u32.to_le_bytes())?;
    out.write_all(&[0u8; 4])?; // this disk, disk of the central directory
    let count = entries.len() as u16;
    out.write_all(&count.to_le_bytes())?;
    out.write_all(&count.to_le_bytes())?;
    out.write_all(&(central.len() as u32).to_le_bytes())?;
    out.write_all(&offset.to_le_bytes())?;
    out.write_all(&0u16.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_headers_are_padded_to_64_bytes() {
        let bytes = npy("<f4", &[3, 2], &[0; 24]);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes.len(), 10 + header_len + 24);
        assert!(
            std::str::from_utf8(&bytes[10..10 + header_len])
                .unwrap()
                .contains("'shape': (3, 2)")
        );
    }
}
