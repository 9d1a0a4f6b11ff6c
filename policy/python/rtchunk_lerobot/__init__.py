"""LeRobot checkpoints as rtchunk policy bundles: ``import_lerobot`` (the exporter), ``checkpoint`` (loading one, or
making one with random weights), ``smolvla`` (what the graphs compute, over LeRobot's own modules), ``tracing``
(PyTorch to ONNX, exact VJPs included), ``bench`` and ``results`` (the speed comparison against LeRobot).
Runs in its own environment (Python 3.12, PyTorch, LeRobot): ``./scripts/setup.sh --with-lerobot``."""
