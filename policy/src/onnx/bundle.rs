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

/// Reads and validates `manifest.json` of the bundle in `directory`, and checks every graph's hash.
pub fn load_manifest(directory: &Path) -> Result<Manifest, BundleError> {
    let path = directory.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Io {
        path: path.clone(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| BundleError::Manifest {
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
    for graph in graph_files(&manifest) {
        check_hash(directory, graph)?;
    }
    Ok(manifest)
}

/// The graph files the manifest lists.
pub(crate) fn graph_files(manifest: &Manifest) -> impl Iterator<Item = &GraphFile> {
    [
        Some(&manifest.graphs.prefix),
        Some(&manifest.graphs.velocity),
        manifest.graphs.velocity_vjp.as_ref(),
    ]
    .into_iter()
    .flatten()
}

fn validate(manifest: &Manifest, path: &Path) -> Result<(), BundleError> {
    if manifest.horizon < 2 || manifest.action_dim == 0 {
        return Err(field(
            path,
            "horizon/action_dim",
            "must be at least 2 and 1",
        ));
    }
    if manifest.capabilities.exact_vjp && manifest.graphs.velocity_vjp.is_none() {
        return Err(field(
            path,
            "graphs.velocity_vjp",
            "is missing but capabilities.exact_vjp is true",
        ));
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

fn check_hash(directory: &Path, graph: &GraphFile) -> Result<(), BundleError> {
    let path = directory.join(&graph.file);
    let bytes = std::fs::read(&path).map_err(|source| BundleError::Io {
        path: path.clone(),
        source,
    })?;
    let found: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if found != graph.sha256.to_lowercase() {
        return Err(BundleError::Hash {
            path,
            expected: graph.sha256.clone(),
            found,
        });
    }
    Ok(())
}
