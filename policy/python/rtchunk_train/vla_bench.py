"""rtchunk against JAX on one GPU: the same VLA, the same weights, the same inputs, in one run.

For each configuration (preset, attention, cameras) it builds the bfloat16 bundle from a skeleton (traced here,
or carried from a machine with the tracer: `--skeletons`), with the weights drawn from seed 0 on the GPU; checks
rtchunk's outputs (ONNX Runtime's CUDA execution provider) against JAX's on the recorded inputs, with CUDA graphs
and without; times rtchunk (`rtchunk bench policy`, both ways) while sampling the GPU's memory; times the model
jitted in JAX (`rtchunk_train.vla_timing`, the same seed, hence the same weights); and appends one object per
configuration to `--out`. Each step runs in its own process, so JAX's memory pool never shares the GPU with
ONNX Runtime's. A configuration ending in ":fused" exports the prefix and the plain step with one ONNX
`Attention` operator per layer (`vla_export --attention-op fused`), the others with attention written out; the
JAX baseline is the same model either way.

    python -m rtchunk_train.vla_bench --rtchunk target/cuda/release/rtchunk --out docs/vla/results.json \\
        vla-3b:gta:1 vla-3b:gta:3 vla-500m:gta:1 [--skeletons DIR] [--work /tmp/vla]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from .ort_profile import report, summarize_bundle
from .vla import vla_preset

# No step of a configuration (building a 3B bundle, loading it, timing it) takes this long unless it hangs.
COMMAND_TIMEOUT_S = 300


def configuration(text: str) -> tuple:
    """"preset:attention:cameras[:fused]" -> (preset, attention, cameras, fused attention in the forward graphs)."""
    preset, attention, cameras, *fused = text.split(":")
    if fused not in ([], ["fused"]):
        raise argparse.ArgumentTypeError(f"{text!r}: expected preset:attention:cameras or preset:attention:cameras:fused")
    return preset, attention, int(cameras), bool(fused)


def same_configuration(result: dict, preset: str, attention: str, cameras: int, fused: bool) -> bool:
    """Whether a results.json row measured this configuration."""
    return (result["model"], result["attention"], result["cameras"], result.get("fused_attention", False)) == (
        preset, attention, cameras, fused)


class MemorySampler:
    """The GPU's largest memory use (MiB, from nvidia-smi every 100 ms) while it runs, above its use at start."""

    def __init__(self, enabled: bool = True):
        self.samples, self.running, self.enabled = [], True, enabled
        self.thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def used_mib() -> float:
        output = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, check=True).stdout
        return float(output.split()[0])

    def _sample(self):
        while self.running:
            self.samples.append(self.used_mib())
            time.sleep(0.1)

    def __enter__(self):
        if self.enabled:
            self.baseline = self.used_mib()
            self.thread.start()
        return self

    def __exit__(self, *_):
        self.running = False
        if self.enabled:
            self.thread.join()

    def peak_mib(self):
        """The peak above the baseline, or None when not sampling (on the CPU)."""
        return max(self.samples, default=self.baseline) - self.baseline if self.enabled else None


def run(command: list, log, env: dict | None = None) -> str:
    """Runs `command` (with `env` added to the environment), logging it and its output; returns stdout; raises
    with the output's tail if it fails."""
    print("$", " ".join(map(str, command)), file=log, flush=True)
    try:
        done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as late:
        raise RuntimeError(f"{command[0]} {command[1]} ran past {COMMAND_TIMEOUT_S} s") from late
    print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=log, flush=True)
    if done.returncode:
        raise RuntimeError(f"{command[0]} {command[1]} failed ({done.returncode}): {done.stderr[-1500:]}")
    return done.stdout


def last_json(text: str):
    """The last line of `text` that parses as JSON."""
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return json.loads(text)


def nsys() -> str | None:
    """Nsight Systems' command line, where installed."""
    found = shutil.which("nsys") or next(iter(sorted(Path("/opt/nvidia").glob("nsight-systems*/*/bin/nsys"))), None)
    return str(found) if found else None


def profile_kernels(bundle: Path, flags: list, args, log, out: Path) -> str | None:
    """GPU time by kernel (Nsight Systems' summary, kernels inside captured CUDA graphs counted one by one) of a
    short `rtchunk bench policy` run, written to `out`; returns its file name, or None without Nsight Systems."""
    profiler = nsys()
    if profiler is None:
        print("no nsys: kernels not profiled", file=log, flush=True)
        return None
    report = args.work / out.stem
    try:
        text = run([profiler, "profile", "--cuda-graph-trace=node", "--stats=true", "--force-overwrite=true",
                    "--output", report, args.rtchunk, "bench", "policy", bundle, "--device", args.device,
                    "--iterations", 5, *flags], log)
    except RuntimeError as failure:  # the timings stand without the profile
        print(f"profiling failed: {failure}", file=log, flush=True)
        return None
    out.write_text(text[text.find("cuda_gpu_kern_sum"):][:20000] if "cuda_gpu_kern_sum" in text else text[-20000:])
    return out.name


def profile_nodes(bundle: Path, flags: list, args, log, out: Path) -> dict | None:
    """ONNX Runtime's per-node profile of uncaptured steps with every launch waited for (`rtchunk_train.ort_profile`):
    per graph, the time per run, attention's share and the costliest operators; the table goes to `out`."""
    prefix = args.work / f"{out.stem}-ort"
    try:
        run([args.rtchunk, "bench", "policy", bundle, "--device", args.device, "--iterations", 3, "--no-cuda-graphs",
             "--ort-profile", prefix, *[f for f in flags if f != "--no-cuda-graphs"]], log, env={"CUDA_LAUNCH_BLOCKING": "1"})
        summaries = summarize_bundle(prefix, bundle)
    except (RuntimeError, ValueError) as failure:  # the timings stand without the profile
        print(f"profiling failed: {failure}", file=log, flush=True)
        return None
    finally:
        for stale in args.work.glob(f"{prefix.name}-*.json"):
            stale.unlink()
    out.write_text(report(summaries) + "\n")
    return {graph: {k: v if k != "by_operator_ms" else dict(list(v.items())[:8]) for k, v in summary.items()}
            for graph, summary in summaries.items() if "skipped" not in summary}


def measure(preset: str, attention: str, cameras: int, fused: bool, args, log) -> dict:
    """One configuration, end to end (see the module's doc)."""
    name = f"{preset}-{attention}-{cameras}" + ("-fused" if fused else "")
    python = [sys.executable, "-m"]
    skeleton = args.skeletons / name if args.skeletons else args.work / f"{name}-skeleton"
    if not args.skeletons:
        run(python + ["rtchunk_train.vla_export", "skeleton", "--preset", preset, "--attention", attention,
                      "--cameras", cameras, "--dtype", args.dtype, "--batch", 1, "--out", skeleton]
            + ["--attention-op", "fused" if fused else "written-out"], log)
    bundle = args.work / name
    started = time.perf_counter()
    run(python + ["rtchunk_train.vla_export", "attach", skeleton, "--seed", 0, "--out", bundle], log)
    dtype = json.loads((skeleton / "skeleton.json").read_text())["dtype"]
    result = {"model": preset, "attention": attention, "cameras": cameras, "fused_attention": fused, "dtype": dtype,
              "device": args.device, "bundle_build_s": round(time.perf_counter() - started, 1)}
    kv_heads = {"kv_heads": vla_preset(preset).expert.heads} if attention == "mha" else {}
    config = replace(vla_preset(preset, attention=attention, **kv_heads), cameras=cameras)
    result["kv_bytes_per_token_layer"] = config.kv_bytes_per_token_layer()
    result["prefix_tokens"] = config.prefix_tokens()
    allow = []

    def inspect(flags):
        return last_json(run([args.rtchunk, "inspect", bundle, "--device", args.device, "--json", *flags], log))

    for graphs in (True, False) if args.uncaptured else (True,):
        flags = ([] if graphs else ["--no-cuda-graphs"]) + allow
        key = "cuda_graphs" if graphs else "no_cuda_graphs"
        try:
            # The captured steps' outputs against JAX's (the GPU tests compare captured and uncaptured chunks).
            if graphs:
                try:
                    check = inspect(flags)
                except RuntimeError as refused:
                    if "would not run wholly on the GPU" not in str(refused):
                        raise
                    # Measured anyway, with the nodes named and the run marked.
                    result["cpu_nodes"] = str(refused)[-800:]
                    allow = ["--allow-cpu-nodes"]
                    flags += allow
                    check = inspect(flags)
                result["max_error_vs_jax"] = max(v for k, v in check.items() if k.endswith("_error") and v is not None)
                result["tolerance"] = check["tolerance"]
            with MemorySampler(enabled=args.device != "cpu") as memory:
                bench = last_json(run([args.rtchunk, "bench", "policy", bundle, "--device", args.device, "--json",
                                       "--iterations", args.iterations, *flags], log))
            result[f"{key}_gpu_memory_mib"] = memory.peak_mib()
            if graphs and args.profile:
                result["profile"] = profile_nodes(bundle, flags, args, log, args.out.parent / f"{name}-profile.txt")
                result["kernel_profile"] = profile_kernels(bundle, flags, args, log, args.out.parent / f"{name}-kernels.txt")
        except RuntimeError as failure:
            result[f"{key}_failure"] = str(failure)[-600:]
            continue
        prefix = "rtchunk" if graphs else "rtchunk_no_graphs"
        for field, timing in (("prefix", "prefix_ms"), ("plain_step", "plain_step_ms"),
                              ("guided_step", "guided_step_ms"), ("plain5", "plain5_ms"),
                              ("plain10", "plain10_ms"), ("rtc", "rtc5_ms")):
            result[f"{prefix}_{field}_ms"] = bench[timing]["p50"]
        if graphs:
            result["cuda_graphs"] = bench["cuda_graphs"]
            result["fused_guidance"] = bench["fused_guidance"]
    shutil.rmtree(bundle, ignore_errors=True)
    if not args.jax:
        return result
    timing = args.work / f"{name}-jax.json"
    run(python + ["rtchunk_train.vla_timing", "--preset", preset, "--cameras", cameras, "--attention", attention,
                  "--repeats", args.iterations, "--out", timing], log)
    result.update({k: v for k, v in json.loads(timing.read_text())[0].items() if k.startswith("jax_")})
    result["jax_device"] = json.loads(timing.read_text())[0]["device"]
    if "rtchunk_rtc_ms" in result:
        result["rtchunk_over_jax_rtc"] = result["rtchunk_rtc_ms"] / result["jax_rtc_ms"]
        result["rtchunk_guided_over_plain_step"] = result["rtchunk_guided_step_ms"] / result["rtchunk_plain_step_ms"]
        result["rtchunk_rtc_over_plain5"] = result["rtchunk_rtc_ms"] / result["rtchunk_plain5_ms"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configurations", nargs="+", type=configuration, help="preset:attention:cameras[:fused]")
    parser.add_argument("--rtchunk", type=Path, required=True, help="an rtchunk built with --features cuda")
    parser.add_argument("--out", type=Path, required=True, help="results (JSON list; appended to if it exists)")
    parser.add_argument("--skeletons", type=Path, default=None, help="traced skeletons, one folder per configuration")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rtchunk-vla"))
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--device", default="cuda", help="where rtchunk runs the graphs (cpu: a dry run of this script)")
    parser.add_argument("--dtype", default="bfloat16", help="the graphs' float type when tracing here")
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--no-jax", dest="jax", action="store_false",
                        help="time rtchunk only (the JAX baseline measured in another run)")
    parser.add_argument("--no-uncaptured", dest="uncaptured", action="store_false",
                        help="time the steps with CUDA graphs only (not also without)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the steps: ONNX Runtime's per-node times (uncaptured, each launch waited for) "
                             "and, where Nsight Systems is installed, the captured run's kernels")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    log = args.log.open("a") if args.log else sys.stderr
    for preset, attention, cameras, fused in args.configurations:
        try:
            result = measure(preset, attention, cameras, fused, args, log)
        except RuntimeError as failure:
            result = {"model": preset, "attention": attention, "cameras": cameras, "fused_attention": fused,
                      "failure": str(failure)[-1500:]}
        print(json.dumps(result), flush=True)
        results = [r for r in results if not same_configuration(r, preset, attention, cameras, fused)]
        results.append(result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
