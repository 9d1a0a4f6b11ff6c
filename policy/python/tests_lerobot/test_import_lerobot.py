"""The exporter against LeRobot itself: a tiny SmolVLA, π0 and π0.5 built offline from LeRobot's own classes with
random weights, exported, and their graphs run in ONNX Runtime against LeRobot's modules on the same inputs."""

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from rtchunk_lerobot.bench import lerobot_timings
from rtchunk_lerobot.checkpoint import UnsupportedCheckpoint, camera_keys, load_checkpoint, make_checkpoint
from rtchunk_lerobot.pi05 import StatePrompt
from rtchunk_lerobot.import_lerobot import (
    LeRobotReference,
    graph_inputs,
    import_checkpoint,
    preprocess,
    sample_observation,
)

PROMPT = "pick up the red cube"


@pytest.fixture(scope="module", params=["smolvla-tiny", "pi0-tiny", "pi05-tiny"])
def exported(request, tmp_path_factory):
    """(checkpoint, bundle folder) of a tiny two-camera SmolVLA, π0 or π0.5."""
    root = tmp_path_factory.mktemp(request.param)
    make_checkpoint(root / "checkpoint", request.param, cameras={"top": (24, 40), "wrist": (30, 30)}, seed=3)
    bundle = import_checkpoint(root / "checkpoint", PROMPT, root / "bundle")
    return load_checkpoint(root / "checkpoint"), bundle


def relative_error(got, expected) -> float:
    """Largest difference relative to the expected output's scale (at least 1)."""
    expected = np.asarray(expected, np.float64)
    return float(np.abs(np.asarray(got, np.float64) - expected).max() / max(1.0, np.abs(expected).max()))


def session(bundle, role: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(bundle / f"{role}.onnx"), providers=["CPUExecutionProvider"])


def test_prefix_velocity_and_vjp_equal_lerobots_modules(exported):
    checkpoint, bundle = exported
    manifest = json.loads((bundle / "manifest.json").read_text())
    observation = sample_observation(checkpoint, seed=11)
    processed = preprocess(checkpoint, observation, PROMPT)
    reference = LeRobotReference(checkpoint, processed)
    inputs = graph_inputs(observation, processed, checkpoint, manifest["prompt"]["token_ids"])
    prefix = session(bundle, "prefix")
    names = [i.name for i in prefix.get_inputs()]
    assert names == ["state", "top", "wrist", "prompt"]
    (context,) = prefix.run(None, {name: value.numpy() for name, value in zip(names, inputs)})
    # The context holds LeRobot's own key-value cache at its real positions, layer by layer.
    graphs = checkpoint.architecture.graphs(checkpoint, camera_keys(checkpoint.policy), inputs, PROMPT)
    cache, real = graphs.cached(torch.from_numpy(context))
    cache, real = cache[0][:, :, :, real[0]], reference.prefill.real[0]
    assert real.sum() == cache.shape[3] > 0
    for layer, cached in enumerate(reference.cache.layers):
        assert relative_error(cache[layer, 0], cached.keys[0][:, real]) < 1e-4
        assert relative_error(cache[layer, 1], cached.values[0][:, real]) < 1e-4
    generator = torch.Generator().manual_seed(5)
    h, a = manifest["horizon"], manifest["action_dim"]
    for t in (1.0, 0.6, 0.1):
        actions, cotangent = torch.randn(1, h, a, generator=generator), torch.randn(1, h, a, generator=generator)
        velocity, vjp = reference.vjp(actions, t, cotangent)
        feeds = {"actions": actions.numpy(), "tau": np.full((1, h), t, np.float32), "context": context}
        (got,) = session(bundle, "velocity").run(None, feeds)
        assert relative_error(got, velocity) < 1e-4
        got_velocity, got_vjp = session(bundle, "velocity_vjp").run(None, dict(feeds, cotangent=cotangent.numpy()))
        assert relative_error(got_velocity, velocity) < 1e-4
        # torch.autograd on LeRobot's module; a VJP that took the Jacobian as the identity would be far off.
        assert relative_error(got_vjp, vjp) < 1e-4
        assert relative_error(cotangent, vjp) > 1e-2


def test_normalisation_round_trips_as_lerobots_processors(exported):
    checkpoint, bundle = exported
    statistics = json.loads((bundle / "manifest.json").read_text())["normalization"]
    observation = sample_observation(checkpoint, seed=12)
    normalized = preprocess(checkpoint, observation, PROMPT)["observation.state"][0].numpy()
    mean, std = (np.asarray(statistics["observation"][k]) for k in ("mean", "std"))
    assert np.abs((observation["observation.state"] - mean) / std - normalized).max() < 1e-5
    model_actions = torch.randn(1, 4, checkpoint.policy.config.action_feature.shape[0])
    raw = checkpoint.postprocessor(model_actions)[0].numpy()
    dim = raw.shape[-1]
    mean, std = (np.asarray(statistics["action"][k][:dim]) for k in ("mean", "std"))
    assert np.abs(model_actions[0].numpy() * std + mean - raw).max() < 1e-5
    assert statistics["action"]["mean"][dim:] == [0.0] * (len(statistics["action"]["mean"]) - dim)


def test_the_manifest_describes_the_checkpoint(exported):
    checkpoint, bundle = exported
    manifest = json.loads((bundle / "manifest.json").read_text())
    config = checkpoint.policy.config
    assert manifest["time_convention"] == "t-one-is-noise"
    assert (manifest["action_dim"], manifest["robot_action_dim"]) == (config.max_action_dim, 6)
    assert manifest["cameras"] == [{"name": "top", "height": 24, "width": 40, "channels": 3},
                                   {"name": "wrist", "height": 30, "width": 30, "channels": 3}]
    assert [key.removeprefix("observation.images.") for key in camera_keys(checkpoint.policy)] == ["top", "wrist"]
    # The prompt as LeRobot's processor tokenises it (with its newline), without the padding it masks; π0.5's
    # continues with the state, which the prefix graph writes.
    processed = preprocess(checkpoint, sample_observation(checkpoint, 0), PROMPT)
    real = processed["observation.language.attention_mask"][0].bool()
    tokens, ids = processed["observation.language.tokens"][0][real].tolist(), manifest["prompt"]["token_ids"]
    assert len(ids) > 3
    assert tokens == ids if config.type != "pi05" else tokens[: len(ids)] == ids and len(tokens) > len(ids)
    steps = getattr(config, checkpoint.architecture.steps_field)
    assert manifest["defaults"] == {"steps": steps, "beta": 10.0, "schedule": "linear"}
    recorded = json.loads((bundle / "expected.json").read_text())
    assert [chunk["mode"] for chunk in recorded["chunks"]] == ["plain", "rtc-identity"]


def test_what_the_exporter_cannot_reproduce_is_refused_by_name(tmp_path):
    make_checkpoint(tmp_path / "aloha")
    config = json.loads((tmp_path / "aloha" / "config.json").read_text())
    config["adapt_to_pi_aloha"] = True
    (tmp_path / "aloha" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedCheckpoint, match=r"config.json: adapt_to_pi_aloha = true"):
        load_checkpoint(tmp_path / "aloha")
    with pytest.raises(UnsupportedCheckpoint, match=r"nowhere/config.json: missing"):
        load_checkpoint(tmp_path / "nowhere")
    config["type"] = "act"
    (tmp_path / "aloha" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedCheckpoint, match=r"type = 'act'; this exporter supports 'smolvla', 'pi0'"):
        load_checkpoint(tmp_path / "aloha")
    make_checkpoint(tmp_path / "relative", "pi0-tiny")
    config = json.loads((tmp_path / "relative" / "config.json").read_text())
    config["use_relative_actions"] = True
    (tmp_path / "relative" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedCheckpoint, match=r"relative/config.json: use_relative_actions = true"):
        load_checkpoint(tmp_path / "relative")


def test_lerobots_side_of_the_speed_comparison_times_every_phase(exported):
    checkpoint, _ = exported
    timings = lerobot_timings(checkpoint.path, "cpu", iterations=1, compile_step=False)
    for phase in ("prefix_ms", "step_ms", "plain5_ms", "plain10_ms", "rtc5_ms", "rtc10_ms"):
        assert 0 < timings[phase]["p50"] <= timings[phase]["p90"], phase


def test_an_interrupted_export_resumes_with_the_graphs_it_wrote(exported, tmp_path):
    checkpoint, bundle = exported
    partial = tmp_path / "bundle"
    partial.mkdir()
    kept = ("prefix", "velocity")
    for role in kept:
        shutil.copy(bundle / f"{role}.onnx", partial / f"{role}.onnx")
    written = {role: (partial / f"{role}.onnx").stat().st_mtime_ns for role in kept}
    import_checkpoint(checkpoint.path, PROMPT, partial, resume=True)
    assert {role: (partial / f"{role}.onnx").stat().st_mtime_ns for role in kept} == written
    original, resumed = (json.loads((b / "manifest.json").read_text())["graphs"] for b in (bundle, partial))
    assert set(resumed) == set(original)
    assert {role: resumed[role] for role in kept} == {role: original[role] for role in kept}


def test_state_tables_that_differ_from_lerobots_tokenizer_are_refused(exported):
    checkpoint, bundle = exported
    if checkpoint.architecture.kind != "pi05":
        pytest.skip("only π0.5 writes the state into its prompt")
    head = json.loads((bundle / "manifest.json").read_text())["prompt"]["token_ids"]
    tables = StatePrompt.of(checkpoint, len(head))
    tables.check(checkpoint, head, PROMPT)
    tables.segments[129, 0] += 1  # the tokens of one bin (" 128"), as a tokenizer that merged across seams would
    with pytest.raises(UnsupportedCheckpoint, match=r"policy_preprocessor.json: tokenizer_processor splits"):
        tables.check(checkpoint, head, PROMPT)


def test_a_bfloat16_export_has_bfloat16_inputs_and_outputs_and_lerobots_bfloat16_outputs(exported, tmp_path):
    checkpoint, _ = exported
    if checkpoint.architecture.to_bfloat16 is None:
        kind = checkpoint.architecture.kind
        with pytest.raises(UnsupportedCheckpoint, match=rf"config.json: type = '{kind}' cannot be exported in bfloat16"):
            import_checkpoint(checkpoint.path, PROMPT, tmp_path / "bf16", dtype="bfloat16")
        return
    bundle = import_checkpoint(checkpoint.path, PROMPT, tmp_path / "bf16", dtype="bfloat16")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["dtype"] == "bfloat16"
    # The time stays float32: a time embedding's shortest periods need it.
    assert manifest["time_dtype"] == "float32"
    bf16, f32 = onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT
    for role in ("prefix", "velocity", "velocity_vjp", "guided"):
        graph = onnx.load(bundle / f"{role}.onnx").graph
        types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)}
        for name, elem in types.items():
            assert elem == (f32 if name in ("state", "tau") else onnx.TensorProto.UINT8 if name in ("top", "wrist")
                            else onnx.TensorProto.INT64 if name == "prompt" else bf16), (role, name)
        # LeRobot's bfloat16 mode: PaliGemma's and the expert's weights in bfloat16 inside.
        assert any(t.data_type == bf16 for t in graph.initializer), role
    # What LeRobot computes in its bfloat16 mode is recorded, with the tolerance of that precision.
    recorded = json.loads((bundle / "expected.json").read_text())
    assert recorded["tolerance"] == 5e-2
    float32 = json.loads((exported[1] / "expected.json").read_text())
    gap = np.abs(np.asarray(recorded["velocity"]) - np.asarray(float32["velocity"])).max()
    assert 0 < gap < 5e-2


def test_cameras_the_checkpoint_declares_empty_are_masked_as_lerobot_masks_them(exported, tmp_path):
    checkpoint, bundle = exported
    config = json.loads((checkpoint.path / "config.json").read_text())
    config["empty_cameras"] = 1
    shutil.copytree(checkpoint.path, tmp_path / "checkpoint")
    (tmp_path / "checkpoint" / "config.json").write_text(json.dumps(config))
    padded = import_checkpoint(tmp_path / "checkpoint", PROMPT, tmp_path / "bundle")
    manifest = json.loads((padded / "manifest.json").read_text())
    # The robot still sends its two cameras; the empty one's tokens are in the prefix, masked.
    assert [c["name"] for c in manifest["cameras"]] == ["top", "wrist"]
    before = json.loads((bundle / "manifest.json").read_text())["context_shape"]
    assert np.prod(manifest["context_shape"]) > np.prod(before)
    with_empty = load_checkpoint(tmp_path / "checkpoint")
    observation = sample_observation(with_empty, seed=13)
    processed = preprocess(with_empty, observation, PROMPT)
    inputs = graph_inputs(observation, processed, with_empty, manifest["prompt"]["token_ids"])
    prefix = session(padded, "prefix")
    (context,) = prefix.run(None, {i.name: v.numpy() for i, v in zip(prefix.get_inputs(), inputs)})
    h, a = manifest["horizon"], manifest["action_dim"]
    actions = torch.randn(1, h, a, generator=torch.Generator().manual_seed(2))
    expected = LeRobotReference(with_empty, processed).velocity(actions, 0.4)
    feeds = {"actions": actions.numpy(), "tau": np.full((1, h), 0.4, np.float32), "context": context}
    (got,) = session(padded, "velocity").run(None, feeds)
    assert relative_error(got, expected.detach()) < 1e-4
