"""Turns a PyTorch function (a LeRobot module's forward, or its exact VJP through ``torch.autograd``) into an ONNX
graph.

A forward function is exported by ``torch.onnx.export`` directly. A function that differentiates is first traced to
ATen with ``make_fx``, which records the backward pass that ``torch.autograd.grad`` runs as ordinary operators, decomposed to core ATen (backward kernels such as ``silu_backward`` have no ONNX
translation); that graph is then exported by ``torch.onnx.export``. LeRobot's RoPE writes halves of a tensor in
place, whose backward becomes strided scatters with no ONNX translation either, so while tracing it is replaced by
the same arithmetic written with a concatenation (``functional_rope``).
"""

import contextlib
from pathlib import Path

import onnx
import torch
from torch.fx.experimental.proxy_tensor import make_fx

# Above this many parameter bytes a graph keeps its tensors in an external-data file (ONNX's 2 GB limit).
EXTERNAL_DATA_BYTES = 1 << 30


def rope(x: torch.Tensor, positions: torch.Tensor, max_wavelength: float = 10_000) -> torch.Tensor:
    """LeRobot's ``apply_rope`` (RoPE over the two halves of the last axis, in float32), without in-place writes."""
    d_half = x.shape[-1] // 2
    dtype = x.dtype
    x = x.to(torch.float32)
    exponents = (2.0 / x.shape[-1]) * torch.arange(d_half, dtype=torch.float32, device=x.device)
    timescale = max_wavelength**exponents
    radians = (positions[..., None].to(torch.float32) / timescale[None, None, :])[..., None, :]
    sin, cos = torch.sin(radians), torch.cos(radians)
    x1, x2 = x.split(d_half, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(dtype)


@contextlib.contextmanager
def functional_rope(*modules):
    """Within the block, every module of ``modules`` that defines ``apply_rope`` uses :func:`rope` instead."""
    saved = [(module, module.apply_rope) for module in modules]
    try:
        for module, _ in saved:
            module.apply_rope = rope
        yield
    finally:
        for module, original in saved:
            module.apply_rope = original


def _decompositions() -> dict:
    """Core ATen decompositions, and ``empty_permuted`` (from ``empty_like``) as a plain ``empty``."""
    table = torch._decomp.core_aten_decompositions()

    def empty_permuted(size, physical_layout, **kwargs):
        return torch.empty(size, **kwargs)

    table[torch.ops.aten.empty_permuted.default] = empty_permuted
    return table


class _Forward(torch.nn.Module):
    """A function as a module, for ``torch.onnx.export``."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, *args):
        return self.function(*args)


def export_function(function, args: tuple, path: Path, input_names: list, output_names: list,
                    differentiates: bool = False) -> Path:
    """Exports ``function(*args)`` (tensors in, a tensor or a tuple of tensors out) as the ONNX graph ``path`` with
    the given input and output names; ``differentiates`` says it calls ``torch.autograd.grad``. A graph whose
    constants exceed ``EXTERNAL_DATA_BYTES`` keeps them in an external-data file beside it. Returns ``path``."""
    if differentiates:
        traced = make_fx(lambda *inputs: function(*inputs), decomposition_table=_decompositions())(*args).eval()
    else:
        traced = _Forward(function).eval()
    program = torch.onnx.export(traced, args, dynamo=True, input_names=input_names, output_names=output_names,
                                optimize=True, verbose=False)
    initializers = program.model.graph.initializers.values()
    weights = sum(v.const_value.nbytes for v in initializers if v.const_value is not None)
    program.save(str(path), external_data=weights > EXTERNAL_DATA_BYTES)
    return path


def external_data_files(path: Path) -> list:
    """The external-data files the ONNX graph ``path`` reads, relative to its folder."""
    model = onnx.load(path, load_external_data=False)
    files = {entry.value for tensor in model.graph.initializer for entry in tensor.external_data
             if entry.key == "location"}
    return sorted(files)
