//! Writes a LeRobotDataset v3.0 directory (Hugging Face LeRobot's dataset format), so demonstrations and robot
//! runs open in LeRobot's tools and train its policies:
//!
//! - `meta/info.json`: codebase version, fps, the features (dtype, shape, names), totals, path templates;
//! - `meta/stats.json`: per feature min, max, mean, std, count and quantiles (see [`stats`]);
//! - `meta/tasks.parquet`: task strings and their indices (a pandas frame indexed by the task);
//! - `meta/episodes/chunk-000/file-000.parquet`: one row per episode (length, task, where its rows are);
//! - `data/chunk-CCC/file-FFF.parquet`: one row per frame: `observation.state` and `action` (float32 lists),
//!   one `observation.images.<camera>` per camera (PNG in `struct<bytes, path>`, LeRobot's `image` dtype), and
//!   `timestamp`, `frame_index`, `episode_index`, `index`, `task_index`. A file holds whole episodes and grows to
//!   about 100 MB (the format's default), 1000 files per chunk.
//!
//! Frames are stamped `frame_index / fps`, as LeRobot's recorder stamps them.

mod parquet;
mod stats;
mod thrift;

use parquet::{Column, Table, Values};
use serde_json::{Value, json};
use stats::{PixelHistogram, vector_stats};
use std::path::{Path, PathBuf};

/// The format version written.
pub const CODEBASE_VERSION: &str = "v3.0";
const CHUNKS_SIZE: usize = 1000;
const DATA_FILE_MB: usize = 100;

/// Why a LeRobotDataset could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LeRobotError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The output directory already holds something.
    #[error(
        "{0}: exists and is not empty; a LeRobotDataset is written into a new (or empty) directory"
    )]
    NotEmpty(PathBuf),
    /// A camera image could not be encoded.
    #[error("camera {camera}: {message}")]
    Image {
        /// The camera.
        camera: String,
        /// What went wrong.
        message: String,
    },
    /// There is nothing to write.
    #[error("no frames to write: every episode was empty")]
    Empty,
}

/// A camera stored as the `observation.images.<name>` image feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraFeature {
    /// The camera's name (the feature is `observation.images.<name>`).
    pub name: String,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 (grey) or 3 (RGB), interleaved.
    pub channels: usize,
}

/// What every frame holds: the state's and the action's values (with names when known) and the cameras.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// Values of `observation.state`.
    pub state_dim: usize,
    /// Names of the state's values (`null` in `info.json` without them).
    pub state_names: Option<Vec<String>>,
    /// Values of `action`.
    pub action_dim: usize,
    /// Names of the action's values.
    pub action_names: Option<Vec<String>>,
    /// The cameras, each an image per frame.
    pub cameras: Vec<CameraFeature>,
}

/// An episode written so far.
#[derive(Debug, Clone)]
struct Episode {
    from: usize,
    to: usize,
    task_index: usize,
}

/// A LeRobotDataset v3.0 being gathered frame by frame, episode by episode, then written with
/// [`write`](Self::write).
pub struct LeRobotWriter {
    fps: u32,
    robot_type: Option<String>,
    features: Features,
    state: Vec<f32>,
    action: Vec<f32>,
    /// Per camera: the PNG of every frame.
    images: Vec<Vec<Vec<u8>>>,
    histograms: Vec<PixelHistogram>,
    frame_index: Vec<i64>,
    episode_index: Vec<i64>,
    task_index: Vec<i64>,
    episodes: Vec<Episode>,
    tasks: Vec<String>,
}

impl LeRobotWriter {
    /// An empty dataset of frames at `fps` holding `features`, from a robot of `robot_type` (recorded in
    /// `info.json`).
    pub fn new(fps: u32, robot_type: Option<String>, features: Features) -> Self {
        let cameras = features.cameras.len();
        LeRobotWriter {
            fps,
            robot_type,
            images: vec![Vec::new(); cameras],
            histograms: features
                .cameras
                .iter()
                .map(|c| PixelHistogram::new(c.channels))
                .collect(),
            features,
            state: Vec::new(),
            action: Vec::new(),
            frame_index: Vec::new(),
            episode_index: Vec::new(),
            task_index: Vec::new(),
            episodes: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Frames gathered so far.
    pub fn frames(&self) -> usize {
        self.frame_index.len()
    }

    /// Appends a frame to the open episode: the state, the action and one image per camera (height x width x
    /// channels bytes, interleaved).
    pub fn push_frame(
        &mut self,
        state: &[f32],
        action: &[f32],
        images: &[&[u8]],
    ) -> Result<(), LeRobotError> {
        debug_assert_eq!(
            (state.len(), action.len()),
            (self.features.state_dim, self.features.action_dim)
        );
        debug_assert_eq!(images.len(), self.features.cameras.len());
        for ((camera, pixels), (encoded, histogram)) in self
            .features
            .cameras
            .iter()
            .zip(images)
            .zip(self.images.iter_mut().zip(&mut self.histograms))
        {
            encoded.push(encode_png(camera, pixels)?);
            histogram.add(pixels);
        }
        let episode_start = self.episodes.last().map_or(0, |e| e.to);
        self.frame_index
            .push((self.frames() - episode_start) as i64);
        self.episode_index.push(self.episodes.len() as i64);
        self.task_index.push(-1);
        self.state.extend_from_slice(state);
        self.action.extend_from_slice(action);
        Ok(())
    }

    /// Closes the open episode (its frames since the last close) under `task`; an episode without frames is
    /// not kept.
    pub fn end_episode(&mut self, task: &str) {
        let from = self.episodes.last().map_or(0, |e| e.to);
        let to = self.frames();
        if to == from {
            return;
        }
        let task_index = match self.tasks.iter().position(|t| t == task) {
            Some(index) => index,
            None => {
                self.tasks.push(task.to_string());
                self.tasks.len() - 1
            }
        };
        self.task_index[from..to].fill(task_index as i64);
        self.episodes.push(Episode {
            from,
            to,
            task_index,
        });
    }

    /// Writes the closed episodes into `dir` (created; it must not hold anything yet). Frames of an episode
    /// left open are dropped.
    pub fn write(mut self, dir: &Path) -> Result<(), LeRobotError> {
        let closed = self.episodes.last().map_or(0, |e| e.to);
        if closed == 0 {
            return Err(LeRobotError::Empty);
        }
        self.truncate(closed);
        if dir
            .read_dir()
            .is_ok_and(|mut entries| entries.next().is_some())
        {
            return Err(LeRobotError::NotEmpty(dir.to_path_buf()));
        }
        let files = self.data_files();
        for (file_number, episodes) in files.iter().enumerate() {
            let (from, to) = (
                self.episodes[episodes.start].from,
                self.episodes[episodes.end - 1].to,
            );
            let path = dir.join(data_path(file_number));
            write_table(&path, &self.frame_table(from..to))?;
        }
        write_table(&dir.join("meta/tasks.parquet"), &self.task_table())?;
        write_table(
            &dir.join("meta/episodes/chunk-000/file-000.parquet"),
            &self.episode_table(&files),
        )?;
        write_json(&dir.join("meta/info.json"), &self.info())?;
        write_json(&dir.join("meta/stats.json"), &self.stats())
    }

    fn truncate(&mut self, frames: usize) {
        self.state.truncate(frames * self.features.state_dim);
        self.action.truncate(frames * self.features.action_dim);
        self.images.iter_mut().for_each(|i| i.truncate(frames));
        self.frame_index.truncate(frames);
        self.episode_index.truncate(frames);
        self.task_index.truncate(frames);
    }

    /// The episodes each data file holds: whole episodes, a new file once one passes about 100 MB.
    fn data_files(&self) -> Vec<std::ops::Range<usize>> {
        let frame_bytes = 4 * (self.features.state_dim + self.features.action_dim) + 32;
        let mut files = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (index, episode) in self.episodes.iter().enumerate() {
            bytes += (episode.from..episode.to)
                .map(|frame| {
                    frame_bytes + self.images.iter().map(|i| i[frame].len()).sum::<usize>()
                })
                .sum::<usize>();
            if bytes >= DATA_FILE_MB << 20 || index + 1 == self.episodes.len() {
                files.push(start..index + 1);
                (start, bytes) = (index + 1, 0);
            }
        }
        files
    }

    fn frame_table(&self, frames: std::ops::Range<usize>) -> Table {
        let (s, a) = (self.features.state_dim, self.features.action_dim);
        let mut table = Table::new()
            .column(
                "observation.state",
                Column::fixed_lists(
                    Values::Float32(self.state[frames.start * s..frames.end * s].to_vec()),
                    s,
                ),
            )
            .column(
                "action",
                Column::fixed_lists(
                    Values::Float32(self.action[frames.start * a..frames.end * a].to_vec()),
                    a,
                ),
            );
        for (camera, images) in self.features.cameras.iter().zip(&self.images) {
            table = table.column(
                image_key(camera),
                Column::Image(images[frames.clone()].to_vec()),
            );
        }
        let int64 = |values: &[i64]| Column::Scalar(Values::Int64(values[frames.clone()].to_vec()));
        let timestamps = self.frame_index[frames.clone()]
            .iter()
            .map(|&i| (i as f64 / f64::from(self.fps)) as f32)
            .collect();
        let index: Vec<i64> = (frames.start as i64..frames.end as i64).collect();
        table
            .column("timestamp", Column::Scalar(Values::Float32(timestamps)))
            .column("frame_index", int64(&self.frame_index))
            .column("episode_index", int64(&self.episode_index))
            .column("index", Column::Scalar(Values::Int64(index)))
            .column("task_index", int64(&self.task_index))
            .metadata("huggingface", self.huggingface_features().to_string())
    }

    /// The `datasets` library's description of the data files' columns.
    fn huggingface_features(&self) -> Value {
        let list = |length: usize| json!({"feature": {"dtype": "float32", "_type": "Value"}, "length": length, "_type": "List"});
        let value = |dtype: &str| json!({"dtype": dtype, "_type": "Value"});
        let mut features = serde_json::Map::new();
        features.insert("observation.state".into(), list(self.features.state_dim));
        features.insert("action".into(), list(self.features.action_dim));
        for camera in &self.features.cameras {
            features.insert(image_key(camera), json!({"_type": "Image"}));
        }
        features.insert("timestamp".into(), value("float32"));
        for key in ["frame_index", "episode_index", "index", "task_index"] {
            features.insert(key.into(), value("int64"));
        }
        json!({"info": {"features": features}})
    }

    fn task_table(&self) -> Table {
        let pandas = json!({
            "index_columns": ["task"],
            "column_indexes": [{"name": null, "field_name": null, "pandas_type": "unicode", "numpy_type": "object",
                                "metadata": {"encoding": "UTF-8"}}],
            "columns": [
                {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                 "metadata": null},
                {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                 "metadata": null},
            ],
            "attributes": {},
            "creator": {"library": "rtchunk", "version": env!("CARGO_PKG_VERSION")},
            "pandas_version": "2.3.3",
        });
        Table::new()
            .column(
                "task_index",
                Column::Scalar(Values::Int64((0..self.tasks.len() as i64).collect())),
            )
            .column("task", Column::Scalar(Values::Utf8(self.tasks.clone())))
            .metadata("pandas", pandas.to_string())
    }

    fn episode_table(&self, files: &[std::ops::Range<usize>]) -> Table {
        let column = |f: &dyn Fn(usize, &Episode) -> i64| {
            Column::Scalar(Values::Int64(
                self.episodes
                    .iter()
                    .enumerate()
                    .map(|(i, e)| f(i, e))
                    .collect(),
            ))
        };
        let file_of = |episode: usize| {
            files
                .iter()
                .position(|f| f.contains(&episode))
                .expect("every episode has a file")
        };
        let tasks: Vec<String> = self
            .episodes
            .iter()
            .map(|e| self.tasks[e.task_index].clone())
            .collect();
        Table::new()
            .column("episode_index", column(&|i, _| i as i64))
            .column("tasks", Column::fixed_lists(Values::Utf8(tasks), 1))
            .column("length", column(&|_, e| (e.to - e.from) as i64))
            .column(
                "data/chunk_index",
                column(&|i, _| (file_of(i) / CHUNKS_SIZE) as i64),
            )
            .column(
                "data/file_index",
                column(&|i, _| (file_of(i) % CHUNKS_SIZE) as i64),
            )
            .column("dataset_from_index", column(&|_, e| e.from as i64))
            .column("dataset_to_index", column(&|_, e| e.to as i64))
            .column("meta/episodes/chunk_index", column(&|_, _| 0))
            .column("meta/episodes/file_index", column(&|_, _| 0))
    }

    fn info(&self) -> Value {
        let vector = |dim: usize, names: &Option<Vec<String>>| json!({"dtype": "float32", "shape": [dim], "names": names});
        let scalar = |dtype: &str| json!({"dtype": dtype, "shape": [1], "names": null});
        let mut features = serde_json::Map::new();
        features.insert(
            "observation.state".into(),
            vector(self.features.state_dim, &self.features.state_names),
        );
        features.insert(
            "action".into(),
            vector(self.features.action_dim, &self.features.action_names),
        );
        for camera in &self.features.cameras {
            features.insert(
                image_key(camera),
                json!({"dtype": "image", "shape": [camera.height, camera.width, camera.channels],
                       "names": ["height", "width", "channels"]}),
            );
        }
        features.insert("timestamp".into(), scalar("float32"));
        for key in ["frame_index", "episode_index", "index", "task_index"] {
            features.insert(key.into(), scalar("int64"));
        }
        json!({
            "codebase_version": CODEBASE_VERSION,
            "fps": self.fps,
            "features": features,
            "total_episodes": self.episodes.len(),
            "total_frames": self.frames(),
            "total_tasks": self.tasks.len(),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILE_MB,
            "video_files_size_in_mb": 200,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": null,
            "robot_type": self.robot_type,
            "splits": {"train": format!("0:{}", self.episodes.len())},
        })
    }

    fn stats(&self) -> Value {
        let mut stats = serde_json::Map::new();
        let floats = |values: &[f32]| values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
        let ints = |values: &[i64]| values.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let state = floats(&self.state);
        let action = floats(&self.action);
        stats.insert(
            "observation.state".into(),
            vector_stats(state.iter().copied(), self.features.state_dim),
        );
        stats.insert(
            "action".into(),
            vector_stats(action.iter().copied(), self.features.action_dim),
        );
        for (camera, histogram) in self.features.cameras.iter().zip(&self.histograms) {
            stats.insert(image_key(camera), histogram.to_json());
        }
        let timestamps: Vec<f64> = self
            .frame_index
            .iter()
            .map(|&i| f64::from((i as f64 / f64::from(self.fps)) as f32))
            .collect();
        let index: Vec<f64> = (0..self.frames()).map(|i| i as f64).collect();
        for (key, values) in [
            ("timestamp", timestamps),
            ("frame_index", ints(&self.frame_index)),
            ("episode_index", ints(&self.episode_index)),
            ("index", index),
            ("task_index", ints(&self.task_index)),
        ] {
            stats.insert(key.into(), vector_stats(values.into_iter(), 1));
        }
        Value::Object(stats)
    }
}

/// The feature key of a camera.
pub fn image_key(camera: &CameraFeature) -> String {
    format!("observation.images.{}", camera.name)
}

/// The data file of number `file` (in order), under the format's chunk/file template.
fn data_path(file: usize) -> String {
    format!(
        "data/chunk-{:03}/file-{:03}.parquet",
        file / CHUNKS_SIZE,
        file % CHUNKS_SIZE
    )
}

fn encode_png(camera: &CameraFeature, pixels: &[u8]) -> Result<Vec<u8>, LeRobotError> {
    let error = |message: String| LeRobotError::Image {
        camera: camera.name.clone(),
        message,
    };
    let color = match camera.channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        other => {
            return Err(error(format!(
                "{other} channels; images have 1 (grey) or 3 (RGB)"
            )));
        }
    };
    if pixels.len() != camera.height * camera.width * camera.channels {
        return Err(error(format!(
            "an image of {} bytes; {}x{}x{} expected",
            pixels.len(),
            camera.height,
            camera.width,
            camera.channels
        )));
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, camera.width as u32, camera.height as u32);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|e| error(e.to_string()))?;
    writer
        .write_image_data(pixels)
        .map_err(|e| error(e.to_string()))?;
    writer.finish().map_err(|e| error(e.to_string()))?;
    Ok(bytes)
}

fn create_parent(path: &Path) -> Result<(), LeRobotError> {
    let parent = path.parent().expect("dataset files live in a directory");
    std::fs::create_dir_all(parent).map_err(|source| LeRobotError::Io {
        path: parent.to_path_buf(),
        source,
    })
}

fn write_table(path: &Path, table: &Table) -> Result<(), LeRobotError> {
    create_parent(path)?;
    let io = |source| LeRobotError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    table.write(&mut out, 64 << 20).map_err(io)?;
    std::io::Write::flush(&mut out).map_err(io)
}

fn write_json(path: &Path, value: &Value) -> Result<(), LeRobotError> {
    create_parent(path)?;
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    std::fs::write(path, text + "\n").map_err(|source| LeRobotError::Io {
        path: path.to_path_buf(),
        source,
    })
}
