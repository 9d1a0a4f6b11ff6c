//! Reading a bundle directory and checking everything in it before a graph runs.

use super::manifest::{FORMAT_VERSION, GraphFile, Manifest, MeanStd};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What is wrong with a bundle, naming the file and the field.
#[derive(Debug, Error)]
pub enum BundleError {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The manifest is not valid JSON or does not match the schema.
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The parser's message (it names the field and the line).
        message: String,
    },
    /// A manifest field breaks a rule.
    #[error("{path}: {field} {message}")]
    Field {
        /// The manifest file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A graph file does not match the hash in the manifest.
    #[error(
        "{path}: SHA-256 is {found}, the manifest says {expected}: the file is corrupt or was replaced"
    )]
    Hash {
        /// The graph file.
        path: PathBuf,
        /// The manifest's hash.
        expected: String,
        /// The file's hash.
        found: String,
    },
    /// A graph's inputs or outputs disagree with the manifest.
    #[error("{path}: {message}")]
    Graph {
        /// The graph file.
        path: PathBuf,
        /// What disagrees.
        message: String,
    },
    /// The ONNX Runtime library is missing or failed.
    #[error("{0}")]
    Library(String),
}

pub(crate) fn field(path: &Path, field: &str, message: impl Into<String>) -> BundleError {
    BundleError::Field {
        path: path.to_path_buf(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// Reads and validates `manifest.json` of the bundle in `directory`, and checks every file of every graph:
/// inside the bundle, and with the hash the manifest gives.
pub fn load_manifest(directory: &Path) -> Result<Manifest, BundleError> {
    let manifest = read_manifest(directory)?;
    for (name, graph) in graph_files(&manifest) {
        read_verified(directory, name, graph)?;
    }
    Ok(manifest)
}

/// Reads and validates `manifest.json` of the bundle in `directory` without reading the graphs.
pub(crate) fn read_manifest(directory: &Path) -> Result<Manifest, BundleError> {
    let path = directory.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Io {
        path: path.clone(),
        source,
    })?;
    parse_manifest(&text, &path)
}

/// Parses and validates a manifest's text (`path` names it in errors), without reading any graph.
pub fn parse_manifest(text: &str, path: &Path) -> Result<Manifest, BundleError> {
    let path = path.to_path_buf();
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| BundleError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    if version != Some(FORMAT_VERSION as u64) {
        return Err(field(
            &path,
            "format_version",
            format!(
                "is {}, but this runtime reads version {FORMAT_VERSION}",
                version.map_or("missing".into(), |v| v.to_string())
            ),
        ));
    }
    let manifest: Manifest = serde_json::from_value(value).map_err(|e| BundleError::Manifest {
        path: path.clone(),
        message: e.to_string(),
    })?;
    validate(&manifest, &path)?;
    Ok(manifest)
}

/// The graph files the manifest lists, with their manifest keys.
pub(crate) fn graph_files(manifest: &Manifest) -> impl Iterator<Item = (&'static str, &GraphFile)> {
    [
        ("graphs.prefix", Some(&manifest.graphs.prefix)),
        ("graphs.velocity", Some(&manifest.graphs.velocity)),
        ("graphs.velocity_vjp", manifest.graphs.velocity_vjp.as_ref()),
        ("graphs.guided", manifest.graphs.guided.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, graph)| Some((name, graph?)))
}

/// A graph's bytes and those of its external-data files, each checked against the manifest's hash: what ONNX
/// Runtime is given is exactly what was verified.
pub(crate) struct VerifiedGraph {
    /// The graph file.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its external-data files: the location the graph names, and the bytes.
    pub external: Vec<(String, std::sync::Arc<[u8]>)>,
}

/// Reads the graph `key` (e.g. `graphs.velocity`) and every external-data file it uses, each confined to the
/// bundle directory and checked against its hash; a file the graph uses that the manifest does not list (or
/// one listed that it does not use) is refused.
pub(crate) fn read_verified(
    directory: &Path,
    key: &str,
    graph: &GraphFile,
) -> Result<VerifiedGraph, BundleError> {
    let manifest_path = directory.join("manifest.json");
    let path = inside_bundle(directory, &graph.file, &format!("{key}.file"))?;
    let bytes = read_hashed(&path, &graph.sha256)?;
    let used =
        super::external::external_locations(&bytes).map_err(|message| BundleError::Graph {
            path: path.clone(),
            message: format!("is not an ONNX model: {message}"),
        })?;
    let listed: std::collections::BTreeSet<String> = graph.external_data.keys().cloned().collect();
    if let Some(missing) = used.difference(&listed).next() {
        return Err(field(
            &manifest_path,
            &format!("{key}.external_data"),
            format!(
                "does not list \"{missing}\", which {} stores tensors in (give its SHA-256)",
                graph.file
            ),
        ));
    }
    if let Some(unused) = listed.difference(&used).next() {
        return Err(field(
            &manifest_path,
            &format!("{key}.external_data"),
            format!("lists \"{unused}\", which {} does not use", graph.file),
        ));
    }
    let mut external = Vec::new();
    for (location, sha256) in &graph.external_data {
        let data_path = inside_bundle(directory, location, &format!("{key}.external_data"))?;
        let data = read_hashed(&data_path, sha256)?;
        external.push((location.clone(), std::sync::Arc::from(data)));
    }
    Ok(VerifiedGraph {
        path,
        bytes,
        external,
    })
}

/// `file` as a path inside `directory`: relative, without `..`, and (following links) still inside it.
fn inside_bundle(directory: &Path, file: &str, key: &str) -> Result<PathBuf, BundleError> {
    let manifest_path = directory.join("manifest.json");
    let relative = Path::new(file);
    let plain = !file.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return Err(field(
            &manifest_path,
            key,
            format!(
                "is \"{file}\": it must be a path inside the bundle folder (relative, without ..)"
            ),
        ));
    }
    let path = directory.join(relative);
    let resolved = |p: &Path| {
        p.canonicalize().map_err(|source| BundleError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    if !resolved(&path)?.starts_with(resolved(directory)?) {
        return Err(field(
            &manifest_path,
            key,
            format!("is \"{file}\", a link that leads out of the bundle folder"),
        ));
    }
    Ok(path)
}

fn validate(manifest: &Manifest, path: &Path) -> Result<(), BundleError> {
    if manifest.horizon < 2 || manifest.action_dim == 0 {
        return Err(field(
            path,
            "horizon/action_dim",
            "must be at least 2 and 1",
        ));
    }
    if let Some(robot) = manifest.robot_action_dim {
        let stats = &manifest.normalization.action;
        let padding = robot..manifest.action_dim;
        if robot == 0 || robot > manifest.action_dim {
            return Err(field(
                path,
                "robot_action_dim",
                format!(
                    "is {robot}, expected 1 to action_dim = {}",
                    manifest.action_dim
                ),
            ));
        }
        if padding
            .clone()
            .any(|i| stats.mean.get(i) != Some(&0.0) || stats.std.get(i) != Some(&1.0))
        {
            return Err(field(
                path,
                "normalization.action",
                format!(
                    "must have mean 0 and std 1 in the padding dimensions {robot}..{}",
                    manifest.action_dim
                ),
            ));
        }
    }
    if manifest.capabilities.exact_vjp && manifest.graphs.velocity_vjp.is_none() {
        return Err(field(
            path,
            "graphs.velocity_vjp",
            "is missing but capabilities.exact_vjp is true",
        ));
    }
    if manifest.graphs.guided.is_some() && !manifest.capabilities.exact_vjp {
        return Err(field(
            path,
            "graphs.guided",
            "is given but capabilities.exact_vjp is false (the guided step is exact guidance)",
        ));
    }
    if let Some(prompt) = &manifest.prompt {
        if prompt.token_ids.is_empty() {
            return Err(field(
                path,
                "prompt.token_ids",
                "is empty: give the prompt's token ids",
            ));
        }
        let taken = manifest.observation.iter().map(|o| &o.name);
        if taken
            .chain(manifest.cameras.iter().map(|c| &c.name))
            .any(|name| *name == prompt.input)
        {
            return Err(field(
                path,
                "prompt.input",
                format!("\"{}\" names another input too", prompt.input),
            ));
        }
    }
    if manifest.batch == Some(0) {
        return Err(field(
            path,
            "batch",
            "is 0: give the graphs' fixed batch size, or leave it out for any",
        ));
    }
    if manifest.context_shape.is_empty() || manifest.context_len() == 0 {
        return Err(field(
            path,
            "context_shape",
            "must list the non-zero dimensions of one context",
        ));
    }
    for (index, camera) in manifest.cameras.iter().enumerate() {
        if camera.bytes() == 0 || !matches!(camera.channels, 1 | 3) {
            return Err(field(
                path,
                &format!("cameras[{index}]"),
                "needs a non-zero height and width and 1 or 3 channels",
            ));
        }
        let mut earlier = manifest
            .observation
            .iter()
            .map(|o| &o.name)
            .chain(manifest.cameras[..index].iter().map(|c| &c.name));
        if earlier.any(|name| *name == camera.name) {
            return Err(field(
                path,
                &format!("cameras[{index}].name"),
                format!("\"{}\" names another input too", camera.name),
            ));
        }
    }
    check_statistics(
        &manifest.normalization.observation,
        manifest.observation_dim(),
        "normalization.observation",
        path,
    )?;
    check_statistics(
        &manifest.normalization.action,
        manifest.action_dim,
        "normalization.action",
        path,
    )
}

fn check_statistics(
    stats: &MeanStd,
    dim: usize,
    name: &str,
    path: &Path,
) -> Result<(), BundleError> {
    for (key, values) in [("mean", &stats.mean), ("std", &stats.std)] {
        if values.len() != dim {
            return Err(field(
                path,
                &format!("{name}.{key}"),
                format!("has {} values, expected {dim}", values.len()),
            ));
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(field(
                path,
                &format!("{name}.{key}[{index}]"),
                "is NaN or infinite",
            ));
        }
    }
    if let Some(index) = stats.std.iter().position(|v| *v == 0.0) {
        return Err(field(
            path,
            &format!("{name}.std[{index}]"),
            "is zero: the dimension cannot be normalised",
        ));
    }
    Ok(())
}

/// The bytes of `path`, which must hash to `sha256`.
fn read_hashed(path: &Path, sha256: &str) -> Result<Vec<u8>, BundleError> {
    let path = path.to_path_buf();
    let bytes = std::fs::read(&path).map_err(|source| BundleError::Io {
        path: path.clone(),
        source,
    })?;
    let found: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if found != sha256.to_lowercase() {
        return Err(BundleError::Hash {
            path,
            expected: sha256.to_string(),
            found,
        });
    }
    Ok(bytes)
}
