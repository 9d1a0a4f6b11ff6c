"""Training and export toolchain of rtchunk: flow policies in JAX, exported as ONNX policy bundles."""

__version__ = "0.1.0"
