"""The files of a bundle that need no tracer (policy/BUNDLE.md): hashes, the manifest, the recorded outputs. Free of
JAX, so other exporters (``rtchunk_lerobot``, in its own environment) write bundles through it too."""

import hashlib
import json
from pathlib import Path

FORMAT_VERSION = 1


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in pieces (external-data files run to gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, manifest: dict, graph_files: dict):
    """Writes manifest.json with the SHA-256 of every graph."""
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    manifest["graphs"] = {role: {"file": name, "sha256": sha256(directory / name)} for role, name in graph_files.items()}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def write_expected(out: Path, recorded: dict):
    """Writes the recorded inputs and outputs next to the bundle."""
    (out / "expected.json").write_text(json.dumps(recorded) + "\n")
