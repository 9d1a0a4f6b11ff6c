//! The ONNX Runtime backend against the JAX outputs recorded at export, against the pure-Rust reference policy
//! it was exported from, and against broken bundles.

use rtchunk_config::{SamplerConfig, SamplerMode};
use rtchunk_policy::ndarray::ArrayViewMut2;
use rtchunk_policy::onnx::{OnnxPolicy, OnnxRuntimeOptions, check_recorded, find_onnxruntime};
use rtchunk_policy::reference::MixtureFlow;
use rtchunk_policy::{
    Committed, FlowPolicy, Sampler, actions_of, chunks_of, chunks_of_mut, rows_of, tokens_of,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The exact Gaussian flow, exported through the toolchain.
fn fixture() -> PathBuf {
    fixtures().join("gaussian")
}

fn expected_of(bundle: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(bundle.join("expected.json")).unwrap()).unwrap()
}

fn expected() -> Value {
    expected_of(&fixture())
}

fn flat(value: &Value) -> Vec<f32> {
    match value {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number: {other}"),
    }
}

fn load() -> OnnxPolicy {
    load_bundle(&fixture())
}

fn load_bundle(bundle: &Path) -> OnnxPolicy {
    OnnxPolicy::load(bundle, &OnnxRuntimeOptions::default()).expect("the fixture bundle loads")
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn velocity_and_vjp_match_the_outputs_jax_recorded_at_export() {
    for bundle in [
        "gaussian",
        "gaussian-camera",
        "gta-toy",
        "gta-toy-fp16",
        "gta-toy-external",
        "gta-toy-host-node",
        "gaussian-split",
        "vla-tiny",
    ] {
        check_recorded_outputs(&fixtures().join(bundle));
    }
}

/// A graph with a fixed batch serves any batch: the last group is padded and its padding dropped, so the
/// outputs equal those of a graph with a free batch.
#[test]
fn a_fixed_batch_pads_a_batch_that_is_not_a_multiple_of_it() {
    let fixed = broken("batch-three", |d| {
        edit_manifest(d, |m| m["batch"] = 3.into())
    });
    let (mut free, mut fixed) = (load(), load_bundle(&fixed));
    let (h, a) = (free.spec().horizon, free.spec().action_dim);
    let observations: Vec<f32> = (0..5 * 4).map(|k| (k as f32 * 0.21).cos()).collect();
    for chunks in [5, 10] {
        let actions: Vec<f32> = (0..chunks * h * a)
            .map(|k| (k as f32 * 0.37).sin())
            .collect();
        let tau: Vec<f32> = (0..chunks * h).map(|k| (k % 7) as f32 * 0.1).collect();
        let cotangent: Vec<f32> = actions.iter().map(|v| v * 0.5 - 0.1).collect();
        let mut outputs = Vec::new();
        for policy in [&mut free, &mut fixed] {
            policy.prepare(rows_of(&observations, 5).unwrap()).unwrap();
            let (mut velocity, mut vjp) = (vec![0.0; actions.len()], vec![0.0; actions.len()]);
            policy
                .denoiser_vjp(
                    chunks_of(&actions, h, a).unwrap(),
                    tokens_of(&tau, h).unwrap(),
                    chunks_of(&cotangent, h, a).unwrap(),
                    chunks_of_mut(&mut velocity, h, a).unwrap(),
                    chunks_of_mut(&mut vjp, h, a).unwrap(),
                )
                .unwrap();
            outputs.push((velocity, vjp));
        }
        assert!(max_difference(&outputs[0].0, &outputs[1].0) < 1e-6);
        assert!(max_difference(&outputs[0].1, &outputs[1].1) < 1e-6);
    }
}

fn check_recorded_outputs(bundle: &Path) {
    let mut policy = load_bundle(bundle);
    let check = check_recorded(&mut policy, bundle)
        .unwrap()
        .expect("the fixture recorded outputs");
    assert!(check.passes(), "{}: {check:?}", bundle.display());
}

#[test]
fn a_full_rtc_inference_from_fixed_noise_matches_jax() {
    for bundle in [
        "gaussian",
        "gaussian-camera",
        "gta-toy",
        "gta-toy-fp16",
        "vla-tiny",
    ] {
        let bundle = fixtures().join(bundle);
        let mut policy = load_bundle(&bundle);
        let check = check_recorded(&mut policy, &bundle).unwrap().unwrap();
        let error = check
            .rtc_error
            .expect("the fixture recorded an RTC inference");
        println!("{}: RTC chunk within {error:.2e} of JAX", bundle.display());
        assert!(error <= check.tolerance, "{}: {error}", bundle.display());
    }
}

#[test]
fn rtc_over_onnx_agrees_with_rtc_over_the_pure_rust_reference() {
    let expected = expected();
    let manifest = load().manifest().clone();
    let reference = manifest.reference.as_ref().unwrap();
    let (h, a) = (manifest.horizon, manifest.action_dim);
    let mean: Vec<f64> = flat(&expected["mean"]).iter().map(|&v| v as f64).collect();
    let mut rust = MixtureFlow::gaussian(
        h,
        a,
        reference["spread"].as_f64().unwrap(),
        reference["correlation_length"].as_f64().unwrap(),
        mean,
    );
    let mut onnx = load();
    let observation = [0.1f32, -0.2, 0.3, 0.0];
    let committed: Vec<f32> = (0..4 * a).map(|k| 0.3 * (k as f32 * 0.7).sin()).collect();
    for mode in [
        SamplerMode::Rtc,
        SamplerMode::RtcIdentity,
        SamplerMode::Plain,
        SamplerMode::Bid,
    ] {
        let config = SamplerConfig {
            mode,
            bid_candidates: 4,
            ..SamplerConfig::default()
        };
        let sample = |policy: &mut dyn FlowPolicy| {
            let mut sampler = Sampler::new(config.clone(), h, a);
            let mut chunk = vec![0.0f32; h * a];
            let committed = Committed {
                actions: actions_of(&committed, a).unwrap(),
                delay: 2,
            };
            let out = ArrayViewMut2::from_shape((h, a), &mut chunk).unwrap();
            sampler
                .sample(policy, None, &observation, Some(committed), 42, out)
                .unwrap();
            chunk
        };
        let difference = max_difference(&sample(&mut onnx), &sample(&mut rust));
        assert!(
            difference <= 1e-4,
            "{mode:?}: ONNX and Rust differ by {difference}"
        );
    }
}

#[test]
fn a_fixed_batch_bundle_serves_larger_batches_in_groups() {
    let bundle = fixtures().join("gta-toy");
    let mut policy = load_bundle(&bundle);
    assert_eq!(policy.manifest().batch, Some(1));
    let (h, a) = (policy.spec().horizon, policy.spec().action_dim);
    let both = [0.1, -0.2, 0.3, 0.0, 0.5, 0.5, -0.1, 0.2];
    policy.prepare(rows_of(&both, 2).unwrap()).unwrap();
    let actions: Vec<f32> = (0..4 * h * a).map(|k| (k as f32 * 0.37).sin()).collect();
    let tau: Vec<f32> = (0..4 * h).map(|k| (k / h) as f32 * 0.2).collect();
    let mut together = vec![0.0; actions.len()];
    policy
        .velocity(
            chunks_of(&actions, h, a).unwrap(),
            tokens_of(&tau, h).unwrap(),
            chunks_of_mut(&mut together, h, a).unwrap(),
        )
        .unwrap();
    // Chunks 0-1 use the first observation's context, 2-3 the second's.
    for (chunk, observation) in [(0, [0.1f32, -0.2, 0.3, 0.0]), (3, [0.5, 0.5, -0.1, 0.2])] {
        let mut single = vec![0.0; h * a];
        policy.prepare(rows_of(&observation, 1).unwrap()).unwrap();
        policy
            .velocity(
                chunks_of(&actions[chunk * h * a..(chunk + 1) * h * a], h, a).unwrap(),
                tokens_of(&tau[chunk * h..(chunk + 1) * h], h).unwrap(),
                chunks_of_mut(&mut single, h, a).unwrap(),
            )
            .unwrap();
        assert!(max_difference(&single, &together[chunk * h * a..(chunk + 1) * h * a]) < 1e-6);
        policy.prepare(rows_of(&both, 2).unwrap()).unwrap();
    }
}

/// A copy of the fixture in a fresh directory, changed by `edit`.
fn broken(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    broken_copy_of(&fixture(), name, edit)
}

/// A copy of the bundle `source` in a fresh directory named after `name`, changed by `edit`.
fn broken_copy_of(source: &Path, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("rtchunk-bundle-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), directory.join(entry.file_name())).unwrap();
    }
    edit(&directory);
    directory
}

fn edit_manifest(directory: &Path, edit: impl FnOnce(&mut Value)) {
    let path = directory.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, manifest.to_string()).unwrap();
}

fn load_error(directory: &Path) -> String {
    match OnnxPolicy::load(directory, &OnnxRuntimeOptions::default()) {
        Ok(_) => panic!("{} loaded", directory.display()),
        Err(error) => error.to_string(),
    }
}

/// The camera fixture's chunk (plain sampling, fixed seed) for a zero observation and `image`.
fn camera_chunk(
    policy: &mut OnnxPolicy,
    image: &[u8],
) -> Result<Vec<f32>, rtchunk_policy::PolicyError> {
    let spec = policy.spec().clone();
    let mut sampler = Sampler::new(SamplerConfig::default(), spec.horizon, spec.action_dim);
    let mut chunk = vec![0.0; spec.chunk_len()];
    let request = rtchunk_policy::SampleRequest {
        observation: &[0.0; 4],
        images: image,
        committed: None,
        seed: 5,
    };
    let out = chunks_of_mut(&mut chunk, spec.horizon, spec.action_dim)?;
    sampler.sample_batch(policy, None, &[request], out)?;
    Ok(chunk)
}

#[test]
fn camera_images_reach_the_prefix_graph_and_steer_the_chunk() {
    let mut policy = load_bundle(&fixtures().join("gaussian-camera"));
    let spec = policy.spec().clone();
    assert_eq!(spec.image_bytes(), 22 * 42 * 3);
    // Light in the right half of the image against light in the left half: joint 0 (x) moves right.
    let (mut right, mut left) = (vec![0u8; spec.image_bytes()], vec![0u8; spec.image_bytes()]);
    for row in 0..22 {
        for column in 0..42 {
            let image = if column >= 21 { &mut right } else { &mut left };
            image[(row * 42 + column) * 3..][..3].fill(255);
        }
    }
    let toward_right = camera_chunk(&mut policy, &right).unwrap();
    let toward_left = camera_chunk(&mut policy, &left).unwrap();
    for token in 0..spec.horizon {
        let shift = toward_right[token * 2] - toward_left[token * 2];
        assert!(shift > 0.9, "token {token}: x moved by {shift}");
        let sideways = toward_right[token * 2 + 1] - toward_left[token * 2 + 1];
        assert!(
            sideways.abs() < 1e-3,
            "token {token}: y moved by {sideways}"
        );
    }
    // Without its images (or with the wrong number of bytes) the policy refuses, saying what it expected.
    let missing = camera_chunk(&mut policy, &[]).unwrap_err().to_string();
    assert!(
        missing.contains("camera images") && missing.contains("2772"),
        "{missing}"
    );
    let mut plain = load();
    let extra = camera_chunk(&mut plain, &right).unwrap_err().to_string();
    assert!(
        extra.contains("camera images") && extra.contains("expected 0"),
        "{extra}"
    );
}

#[test]
fn broken_bundles_are_refused_with_the_file_and_field_named() {
    let corrupt = broken("corrupt", |d| {
        let path = d.join("velocity.onnx");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(path, bytes).unwrap();
    });
    let message = load_error(&corrupt);
    assert!(
        message.contains("velocity.onnx: SHA-256 is") && message.contains("corrupt"),
        "{message}"
    );

    let missing = broken("missing", |d| {
        std::fs::remove_file(d.join("prefix.onnx")).unwrap()
    });
    assert!(load_error(&missing).contains("prefix.onnx: cannot read"));

    let version = broken("version", |d| {
        edit_manifest(d, |m| m["format_version"] = 7.into())
    });
    let message = load_error(&version);
    assert!(
        message.contains("manifest.json: format_version is 7, but this runtime reads version 1"),
        "{message}"
    );

    let zero = broken("zero-std", |d| {
        edit_manifest(d, |m| m["normalization"]["action"]["std"][1] = 0.0.into())
    });
    let message = load_error(&zero);
    assert!(
        message.contains("normalization.action.std[1] is zero"),
        "{message}"
    );

    // The gaussian fixture has two action dimensions: the robot may execute the first, never three.
    let wide = broken("robot-dims", |d| {
        edit_manifest(d, |m| m["robot_action_dim"] = 3.into())
    });
    let message = load_error(&wide);
    assert!(
        message.contains("manifest.json: robot_action_dim is 3, expected 1 to action_dim = 2"),
        "{message}"
    );
    let padding = broken("padding-stats", |d| {
        edit_manifest(d, |m| {
            m["robot_action_dim"] = 1.into();
            m["normalization"]["action"]["std"][1] = 2.0.into();
        })
    });
    let message = load_error(&padding);
    assert!(
        message.contains(
            "normalization.action must have mean 0 and std 1 in the padding dimensions 1..2"
        ),
        "{message}"
    );

    let nan = broken("nan", |d| {
        let path = d.join("manifest.json");
        let text =
            std::fs::read_to_string(&path)
                .unwrap()
                .replacen("\"mean\": [", "\"mean\": [NaN, ", 1);
        std::fs::write(path, text).unwrap();
    });
    assert!(load_error(&nan).contains("manifest.json: "));

    let shape = broken("shape", |d| edit_manifest(d, |m| m["horizon"] = 10.into()));
    let message = load_error(&shape);
    assert!(
        message.contains(".onnx: input \"actions\" has shape") && message.contains("10"),
        "{message}"
    );

    let bf16 = broken("dtype", |d| {
        edit_manifest(d, |m| m["dtype"] = "bfloat16".into())
    });
    let message = load_error(&bf16);
    assert!(
        message.contains("manifest.json: dtype bfloat16 needs the CUDA execution provider"),
        "{message}"
    );

    let committed_bf16 = load_error(&fixtures().join("gta-toy-bf16"));
    assert!(
        committed_bf16.contains(
            "gta-toy-bf16/manifest.json: dtype bfloat16 needs the CUDA execution provider"
        ),
        "{committed_bf16}"
    );

    let half = broken("half", |d| {
        edit_manifest(d, |m| m["observation"][0]["dtype"] = "float16".into())
    });
    let message = load_error(&half);
    assert!(
        message.contains(".onnx: input \"observation\" is Float32, the manifest says Float16"),
        "{message}"
    );

    let outside = broken("outside", |d| {
        edit_manifest(d, |m| {
            m["graphs"]["velocity"]["file"] = "../gaussian/velocity.onnx".into()
        })
    });
    let message = load_error(&outside);
    assert!(
        message.contains(
            "graphs.velocity.file is \"../gaussian/velocity.onnx\": it must be a path inside"
        ),
        "{message}"
    );

    let batch = broken("batch", |d| edit_manifest(d, |m| m["batch"] = 0.into()));
    assert!(load_error(&batch).contains("manifest.json: batch is 0"));

    let camera = |name: &str, channels: u64| serde_json::json!([{"name": name, "height": 4, "width": 4, "channels": channels}]);
    let no_such_input = broken("camera-input", |d| {
        edit_manifest(d, |m| m["cameras"] = camera("front", 3))
    });
    let message = load_error(&no_such_input);
    assert!(
        message.contains("prefix.onnx: has no input named \"front\""),
        "{message}"
    );
    let channels = broken("camera-channels", |d| {
        edit_manifest(d, |m| m["cameras"] = camera("front", 2))
    });
    let message = load_error(&channels);
    assert!(
        message.contains("manifest.json: cameras[0] needs") && message.contains("1 or 3 channels"),
        "{message}"
    );
    let clash = broken("camera-name", |d| {
        edit_manifest(d, |m| m["cameras"] = camera("observation", 1))
    });
    let message = load_error(&clash);
    assert!(
        message.contains("cameras[0].name \"observation\" names another input too"),
        "{message}"
    );

    let unknown = broken("unknown", |d| {
        edit_manifest(d, |m| m["colour"] = "red".into())
    });
    assert!(load_error(&unknown).contains("unknown field `colour`"));
}

#[test]
fn a_missing_runtime_library_says_how_to_install_it() {
    let error = find_onnxruntime(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
    assert!(
        error.to_string().contains("run ./scripts/setup.sh"),
        "{error}"
    );
}

/// The external-data files of a graph are hashed and confined like the graph: a changed file, one the manifest
/// does not list and one it lists in vain are all refused by name.
#[test]
fn external_data_files_are_verified_like_the_graph() {
    let external = fixtures().join("gta-toy-external");
    let copy = |name: &str, edit: &dyn Fn(&Path)| broken_copy_of(&external, name, edit);
    let tampered = copy("weights", &|d| {
        let path = d.join("velocity.weights");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(path, bytes).unwrap();
    });
    let message = load_error(&tampered);
    assert!(
        message.contains("velocity.weights: SHA-256 is"),
        "{message}"
    );
    let unlisted = copy("unlisted", &|d| {
        edit_manifest(d, |m| {
            m["graphs"]["velocity"]
                .as_object_mut()
                .unwrap()
                .remove("external_data");
        })
    });
    let message = load_error(&unlisted);
    assert!(
        message.contains("graphs.velocity.external_data does not list \"velocity.weights\""),
        "{message}"
    );
    let extra = copy("extra", &|d| {
        edit_manifest(d, |m| {
            m["graphs"]["prefix"]["external_data"]["velocity.weights"] = "00".into()
        })
    });
    let message = load_error(&extra);
    assert!(
        message.contains(
            "graphs.prefix.external_data lists \"velocity.weights\", which prefix.onnx does not use"
        ),
        "{message}"
    );
}

/// An RTC chunk of the VLA fixture (two cameras, a prompt) from fixed noise, with half the chunk committed.
fn vla_rtc_chunk(policy: &mut dyn FlowPolicy, state: &[f32], images: &[u8]) -> Vec<f32> {
    let spec = policy.spec().clone();
    let config = SamplerConfig {
        mode: SamplerMode::Rtc,
        ..SamplerConfig::default()
    };
    let (h, a) = (spec.horizon, spec.action_dim);
    let noise: Vec<f32> = (0..h * a).map(|k| (k as f32 * 0.73).sin()).collect();
    let committed: Vec<f32> = (0..(h / 2) * a).map(|k| (k as f32 * 0.3).cos()).collect();
    let mut chunk = vec![0.0; spec.chunk_len()];
    Sampler::new(config, h, a)
        .sample_from_noise(
            policy,
            state,
            images,
            Some(Committed {
                actions: actions_of(&committed, a).unwrap(),
                delay: 2,
            }),
            chunks_of(&noise, h, a).unwrap(),
            ArrayViewMut2::from_shape((h, a), &mut chunk).unwrap(),
        )
        .unwrap();
    chunk
}

fn vla_inputs(policy: &OnnxPolicy, seed: u32) -> (Vec<f32>, Vec<u8>) {
    let spec = policy.spec();
    let state = (0..spec.observation_dim)
        .map(|k| ((k as u32 + seed) as f32 * 0.9).sin())
        .collect();
    let images = (0..spec.image_bytes())
        .map(|k| ((k as u32 * 31 + seed * 7) % 256) as u8)
        .collect();
    (state, images)
}

/// The guided graph does a guided step's model work in one call: the chunk equals the one the velocity and
/// VJP graphs give when the sampler forms the weighted error itself.
#[test]
fn the_fused_guided_step_gives_the_chunk_of_the_velocity_and_vjp_calls() {
    let bundle = fixtures().join("vla-tiny");
    let unfused = broken_copy_of(&bundle, "vla-unfused", |d| {
        edit_manifest(d, |m| {
            m["graphs"].as_object_mut().unwrap().remove("guided");
        })
    });
    let (mut fused, mut separate) = (load_bundle(&bundle), load_bundle(&unfused));
    assert!(fused.fuses_guidance() && !separate.fuses_guidance());
    for seed in 0..3 {
        let (state, images) = vla_inputs(&fused, seed);
        let one_call = vla_rtc_chunk(&mut fused, &state, &images);
        let two_calls = vla_rtc_chunk(&mut separate, &state, &images);
        let difference = max_difference(&one_call, &two_calls);
        assert!(
            difference < 1e-5,
            "seed {seed}: chunks differ by {difference}"
        );
    }
}

/// The prompt's token ids in the manifest reach the prefix graph: other ids, another chunk; no ids, a refusal
/// that names the field.
#[test]
fn the_manifest_prompt_conditions_the_vla_and_an_empty_one_is_refused() {
    let bundle = fixtures().join("vla-tiny");
    let other_prompt = broken_copy_of(&bundle, "vla-other-prompt", |d| {
        edit_manifest(d, |m| {
            let ids = m["prompt"]["token_ids"].as_array_mut().unwrap();
            for id in ids.iter_mut() {
                *id = ((id.as_i64().unwrap() + 1) % 64).into();
            }
        })
    });
    let (mut policy, mut other) = (load_bundle(&bundle), load_bundle(&other_prompt));
    let (state, images) = vla_inputs(&policy, 1);
    let chunk = vla_rtc_chunk(&mut policy, &state, &images);
    let prompted_otherwise = vla_rtc_chunk(&mut other, &state, &images);
    assert!(max_difference(&chunk, &prompted_otherwise) > 1e-4);
    let empty = broken_copy_of(&bundle, "vla-empty-prompt", |d| {
        edit_manifest(d, |m| m["prompt"]["token_ids"] = serde_json::json!([]))
    });
    let message = load_error(&empty);
    assert!(message.contains("prompt.token_ids"), "{message}");
    let fewer = broken_copy_of(&bundle, "vla-short-prompt", |d| {
        edit_manifest(d, |m| m["prompt"]["token_ids"] = serde_json::json!([1, 2]))
    });
    let message = load_error(&fewer);
    assert!(
        message.contains("prefix.onnx") && message.contains("\"prompt\""),
        "{message}"
    );
}
