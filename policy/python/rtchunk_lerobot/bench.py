"""LeRobot's side of the speed comparison: the same checkpoint run by LeRobot itself (PyTorch eager, and
``torch.compile`` of the denoising step when asked), timed phase by phase on one device, as JSON.

Usage::

    python -m rtchunk_lerobot.bench CHECKPOINT [--device cuda] [--iterations 20] [--compile]

Phases (milliseconds, p50 and p90 of ``--iterations`` after three warm-up runs, synchronised on a GPU): ``prefix``
(images through the VLM into its key-value cache), ``step`` (one ``denoise_step``), ``plain5`` / ``plain10``
(``predict_action_chunk`` with 5 and 10 steps) and ``rtc5`` / ``rtc10`` (the same with LeRobot's RTC: d = 2, the
previous chunk's first half as its left-over). ``scripts/bench-lerobot.sh`` runs this beside ``rtchunk bench policy``.
"""

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lerobot.policies.rtc.configuration_rtc import RTCConfig

from .checkpoint import load_checkpoint
from .import_lerobot import DEFAULT_RTC, LeRobotReference, preprocess, sample_observation


def quantiles_ms(run, iterations: int, device: str) -> dict:
    """p50 and p90 of ``run()``'s wall time in milliseconds, after three warm-up calls."""

    def synchronize():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(3):
        run()
    times = []
    for _ in range(iterations):
        synchronize()
        start = time.perf_counter()
        run()
        synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return {"p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90))}


def lerobot_timings(checkpoint_dir: Path, device: str, iterations: int, compile_step: bool) -> dict:
    """The phases of LeRobot's own inference of the checkpoint on ``device``."""
    checkpoint = load_checkpoint(checkpoint_dir)
    policy = checkpoint.policy.to(device)
    config = policy.config
    processed = preprocess(checkpoint, sample_observation(checkpoint, seed=0), "pick up the cube")
    processed = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in processed.items()}
    if compile_step:
        policy.model.denoise_step = torch.compile(policy.model.denoise_step)
    h, a = config.chunk_size, config.max_action_dim
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(1, h, a, generator=generator).to(device)
    with torch.no_grad():
        reference = LeRobotReference(checkpoint, processed)
        previous = reference.chunk(noise)[:, : h // 2]
        timings = {"prefix_ms": quantiles_ms(lambda: LeRobotReference(checkpoint, processed), iterations, device),
                   "step_ms": quantiles_ms(lambda: reference.velocity(noise, 0.5), iterations, device)}
        rtc = RTCConfig(execution_horizon=h // 2, max_guidance_weight=DEFAULT_RTC.max_guidance_weight,
                        prefix_attention_schedule=DEFAULT_RTC.prefix_attention_schedule)
        for steps in (5, 10):
            reference.steps = steps
            timings[f"plain{steps}_ms"] = quantiles_ms(lambda: reference.chunk(noise), iterations, device)
            timings[f"rtc{steps}_ms"] = quantiles_ms(
                lambda: reference.chunk(noise, rtc, inference_delay=2, prev_chunk_left_over=previous,
                                        execution_horizon=h // 2), iterations, device)
    return {"device": device, "compiled": compile_step, "iterations": iterations,
            "torch": torch.__version__, **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="torch.compile LeRobot's denoising step")
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # LeRobot prints its progress
        timings = lerobot_timings(args.checkpoint, args.device, args.iterations, args.compile)
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
