"""Profiles of real ONNX Runtime runs of the committed VLA bundle, attributed to attention and the rest."""

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from rtchunk_train.ort_profile import attention_nodes, report, summarize_bundle

BUNDLE = Path(__file__).resolve().parents[2] / "fixtures" / "vla-tiny"


def test_attention_is_the_scores_the_softmax_and_the_weighted_values_not_the_projections():
    graph = onnx.load(str(BUNDLE / "velocity.onnx"), load_external_data=False).graph
    attention = attention_nodes(graph)
    operators = Counter(n.op_type for n in graph.node if n.name in attention)
    layers = sum(1 for n in graph.node if n.op_type == "Softmax")
    # GTA: scores against the tied vectors, scores against the shared RoPE key, the weighted values.
    assert operators["Softmax"] == layers and operators["MatMul"] == 3 * layers
    projections = [n for n in graph.node if n.op_type == "MatMul" and n.name not in attention]
    assert len(projections) > 4 * layers  # queries, keys/values, output, MLP: none of them attention
    assert not any(n.op_type in ("LayerNormalization", "Gelu") for n in graph.node if n.name in attention)


def test_a_profile_of_three_runs_sums_up_per_run(tmp_path):
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "run-velocity")
    session = ort.InferenceSession(str(BUNDLE / "velocity.onnx"), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.normal(size=[d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
             for i in session.get_inputs()}
    for _ in range(3):
        session.run(None, feeds)
    session.end_profiling()
    summary = summarize_bundle(tmp_path / "run", BUNDLE)["velocity"]
    assert summary["runs"] == 2 and summary["nodes"] > 50
    assert 0 < summary["attention_ms"] < summary["total_ms"]
    assert abs(sum(summary["by_operator_ms"].values()) - summary["total_ms"]) < 1e-9
    assert "velocity:" in report({"velocity": summary})
