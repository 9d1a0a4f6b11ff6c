"""LeRobot checkpoints (SmolVLA, π0, π0.5) as rtchunk policy bundles: ``import_lerobot`` (the exporter), ``checkpoint``
(loading one, or making one with random weights), ``graphs`` (what every bundle's graphs compute, and what the
exporter knows of an architecture), ``smolvla``, ``pi0`` and ``pi05`` (those graphs over each architecture's own LeRobot
modules), ``tracing`` (PyTorch to ONNX, exact VJPs included), ``bench`` and ``results`` (the speed comparison against
LeRobot). Runs in its own environment (Python 3.12, PyTorch, LeRobot): ``./scripts/setup.sh --with-lerobot``."""
