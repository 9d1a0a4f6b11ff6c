"""The fused attention forms compute the decomposed GTA attention the exporter writes."""

from pathlib import Path

import onnx

from rtchunk_train.attention_bench import FUSED, check_on_cpu, write_graphs


def test_fused_attention_forms_match_the_decomposed_one(tmp_path: Path):
    paths = write_graphs("vla-tiny", tmp_path)
    assert set(paths) == {"decomposed", *FUSED}
    decomposed = onnx.load(str(paths["decomposed"]))
    fused = onnx.load(str(paths["attention-bf16"]))
    assert not any(node.op_type == "Attention" for node in decomposed.graph.node)
    assert sum(node.op_type == "Attention" for node in fused.graph.node) == 2  # one per expert layer
    errors = check_on_cpu("vla-tiny", seed=3)
    assert set(errors) == {"attention-f32", "mha-f32"}
    assert all(error < 1e-5 for error in errors.values()), errors
