"""Where a step's time goes: ONNX Runtime's per-node profile of a bundle's graphs, summed by operator type and
split into attention and the rest.

`rtchunk bench policy BUNDLE --ort-profile PREFIX` writes one profile per graph (`PREFIX-<graph>_<time>.json`).
On a GPU run it with `--no-cuda-graphs` and `CUDA_LAUNCH_BLOCKING=1`, so that each node's time includes its kernels
(the shares are then those of an uncaptured step, whose launches the captured one does not pay).

Attention is found in the bundle's graph, not by name: a MatMul with no constant operand (scores from queries and
keys, or the weighted sum of values, and their gradients) and everything between it and the nearest projection
(a MatMul by a weight) or graph input: the rotary embedding, the keys and values assembled from the cache, the
scale, the softmax, the head layouts.

    python -m rtchunk_train.ort_profile PREFIX BUNDLE [--json OUT]
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import onnx

MATMULS = ("MatMul", "FusedMatMul", "Gemm")


def constant_values(graph: onnx.GraphProto) -> set:
    """The values that depend on initializers only (weights and what the graph derives from them)."""
    constant = {tensor.name for tensor in graph.initializer}
    for node in graph.node:  # nodes are in topological order
        if node.input and all(name in constant or name == "" for name in node.input):
            constant.update(node.output)
    return constant


def attention_nodes(graph: onnx.GraphProto) -> set:
    """Names of the nodes that compute attention (see the module's doc)."""
    constant = constant_values(graph)
    producer = {output: node for node in graph.node for output in node.output}
    readers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)

    def projection(node):
        return node.op_type in MATMULS and any(name in constant for name in node.input)

    cores = [n for n in graph.node if n.op_type in MATMULS and not any(name in constant for name in n.input)]
    found, stack = set(), []
    for core in cores:
        found.add(id(core))
        stack.extend(("up", name) for name in core.input)
        stack.extend(("down", reader) for output in core.output for reader in readers[output])
    seen = set()
    while stack:
        direction, item = stack.pop()
        node = producer.get(item) if direction == "up" else item
        if node is None or id(node) in seen or projection(node) or all(name in constant for name in node.output):
            continue
        seen.add(id(node))
        found.add(id(node))
        if direction == "up":
            stack.extend(("up", name) for name in node.input if name not in constant)
        else:
            stack.extend(("down", reader) for output in node.output for reader in readers[output])
    return {node.name for node in graph.node if id(node) in found and node.name}


def node_times(profile: Path) -> tuple:
    """({node name: (operator, total µs)}, runs) over every run after the first (which allocates and warms up)."""
    events = json.loads(profile.read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    if len(runs) < 2:
        raise ValueError(f"{profile}: {len(runs)} runs recorded; at least two are needed (the first is warm-up)")
    warm = runs[0][1]
    times = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time") or event["ts"] < warm:
            continue
        name = event["name"][: -len("_kernel_time")]
        operator, total = times.get(name, (event["args"].get("op_name", "?"), 0))
        times[name] = (operator, total + event["dur"])
    return times, len(runs) - 1


def summarize(profile: Path, graph: onnx.GraphProto) -> dict:
    """Per run of the graph: milliseconds in all, in attention, and by operator type; nodes timed."""
    times, runs = node_times(profile)
    attention = attention_nodes(graph)
    by_operator = defaultdict(float)
    attention_us = 0.0
    for name, (operator, total) in times.items():
        by_operator[operator] += total / runs
        if name in attention:
            attention_us += total / runs
    total_us = sum(by_operator.values())
    return {
        "runs": runs,
        "nodes": len(times),
        "total_ms": total_us / 1000,
        "attention_ms": attention_us / 1000,
        "attention_share": attention_us / total_us if total_us else 0.0,
        "by_operator_ms": {op: us / 1000 for op, us in sorted(by_operator.items(), key=lambda kv: -kv[1])},
    }


def summarize_bundle(prefix: Path, bundle: Path) -> dict:
    """`summarize` for every graph of `bundle` that has a profile under `prefix`."""
    summaries = {}
    for graph_file in sorted(bundle.glob("*.onnx")):
        profiles = sorted(prefix.parent.glob(f"{prefix.name}-{graph_file.stem}_[0-9]*.json"))
        if not profiles:
            continue
        try:
            summaries[graph_file.stem] = summarize(profiles[-1], onnx.load(str(graph_file), load_external_data=False).graph)
        except ValueError as unused:  # a graph the benchmark never ran twice (velocity_vjp beside guided)
            summaries[graph_file.stem] = {"skipped": str(unused)}
    return summaries


def report(summaries: dict) -> str:
    """A table per graph: time per run, attention's share and the operators that take the most."""
    lines = []
    for graph, summary in summaries.items():
        if "skipped" in summary:
            continue
        lines.append(f"{graph}: {summary['total_ms']:.3f} ms per run over {summary['nodes']} nodes, attention "
                     f"{summary['attention_ms']:.3f} ms ({100 * summary['attention_share']:.1f} %)")
        for operator, ms in list(summary["by_operator_ms"].items())[:12]:
            lines.append(f"  {operator:<24} {ms:8.3f} ms  {100 * ms / summary['total_ms']:5.1f} %")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefix", type=Path, help="the PATH given to rtchunk's --ort-profile")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="also write the summaries here")
    args = parser.parse_args()
    summaries = summarize_bundle(args.prefix, args.bundle)
    if not summaries:
        raise SystemExit(f"no profile {args.prefix}-<graph>_*.json matches a graph of {args.bundle}")
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=1) + "\n")
    print(report(summaries))


if __name__ == "__main__":
    main()
