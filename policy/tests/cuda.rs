//! The CUDA execution provider path: run on a GPU machine with ONNX Runtime's CUDA build
//! (`cargo test --release --features cuda -p rtchunk-policy --test cuda -- --ignored`, `ORT_DYLIB_PATH` set).
//! `RTCHUNK_CUDA_BUNDLES` adds bundles (separated by commas) to the fixtures checked.
#![cfg(feature = "cuda")]

use rtchunk_config::{SamplerConfig, SamplerMode};
use rtchunk_policy::ndarray::{Array2, Array3};
use rtchunk_policy::onnx::{Device, Dtype, OnnxPolicy, OnnxRuntimeOptions, check_recorded};
use rtchunk_policy::{
    Committed, FlowPolicy, Sampler, chunks_of, chunks_of_mut, rows_of, tokens_of,
};
use std::path::PathBuf;

#[path = "../../tests/counting_allocator.rs"]
mod counting_allocator;

#[global_allocator]
static ALLOCATOR: counting_allocator::CountingAllocator = counting_allocator::CountingAllocator;

fn bundles() -> Vec<PathBuf> {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let fixtures = std::env::var_os("RTCHUNK_FIXTURES").map_or(fixtures, PathBuf::from);
    let mut bundles: Vec<PathBuf> = ["vla-tiny-bf16", "vla-tiny", "gta-toy", "gta-toy-bf16"]
        .iter()
        .map(|name| fixtures.join(name))
        .collect();
    if let Ok(more) = std::env::var("RTCHUNK_CUDA_BUNDLES") {
        bundles.extend(more.split(',').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    bundles
}

fn load(bundle: &std::path::Path, cuda_graphs: bool) -> OnnxPolicy {
    let options = OnnxRuntimeOptions {
        device: Device::Cuda(0),
        cuda_graphs,
        ..OnnxRuntimeOptions::default()
    };
    OnnxPolicy::load(bundle, &options)
        .unwrap_or_else(|e| panic!("{} on CUDA: {e}", bundle.display()))
}

/// RTC chunks for three observations in turn (the prefix rewrites the device context between them).
fn chunks(policy: &mut OnnxPolicy) -> Vec<f32> {
    let spec = policy.spec().clone();
    let (h, a) = (spec.horizon, spec.action_dim);
    let config = SamplerConfig {
        mode: SamplerMode::Rtc,
        ..SamplerConfig::default()
    };
    let mut sampler = Sampler::new(config, h, a);
    let committed = Array2::from_shape_fn((h / 2, a), |(i, j)| ((i * a + j) as f32 * 0.3).cos());
    let mut all = Vec::new();
    for observation in 0..3 {
        let state: Vec<f32> = (0..spec.observation_dim)
            .map(|k| ((k + observation) as f32 * 0.7).sin())
            .collect();
        let images: Vec<u8> = (0..spec.image_bytes())
            .map(|k| ((k * 13 + observation * 50) % 256) as u8)
            .collect();
        let noise = Array3::from_shape_fn((1, h, a), |(_, i, j)| ((i * a + j) as f32 * 0.61).cos());
        let mut chunk = Array2::zeros((h, a));
        let committed = Committed {
            actions: committed.view(),
            delay: 2,
        };
        sampler
            .sample_from_noise(
                policy,
                &state,
                &images,
                Some(committed),
                noise.view(),
                chunk.view_mut(),
            )
            .unwrap();
        all.extend(chunk.iter().copied());
    }
    all
}

#[test]
#[ignore = "needs a GPU and ONNX Runtime's CUDA provider"]
fn captured_cuda_graphs_give_the_chunks_of_uncaptured_steps() {
    for bundle in bundles() {
        let mut captured = load(&bundle, true);
        assert!(captured.cuda_graphs());
        // The same kernels replayed: float32 chunks agree to rounding; 16-bit ones within one ulp of their
        // type should a library pick another algorithm under capture.
        let tolerance = match captured.manifest().dtype {
            Dtype::Float32 => 1e-6,
            Dtype::Float16 | Dtype::Bfloat16 => 1e-2,
        };
        let with_graphs = chunks(&mut captured);
        let without = chunks(&mut load(&bundle, false));
        let difference = with_graphs
            .iter()
            .zip(&without)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        println!(
            "{}: captured against uncaptured chunks: {difference:.2e}",
            bundle.display()
        );
        assert!(
            difference <= tolerance,
            "{}: {difference}",
            bundle.display()
        );
    }
}

#[test]
#[ignore = "needs a GPU and ONNX Runtime's CUDA provider"]
fn bundles_match_jax_on_the_gpu_with_captured_steps() {
    for bundle in bundles() {
        let mut policy = load(&bundle, true);
        let check = check_recorded(&mut policy, &bundle).unwrap().unwrap();
        println!("{}: {check:?}", bundle.display());
        assert!(check.passes(), "{}: {check:?}", bundle.display());
    }
}

#[test]
#[ignore = "needs a GPU and ONNX Runtime's CUDA provider"]
fn denoising_steps_on_the_gpu_allocate_nothing_after_warm_up() {
    for bundle in bundles() {
        let mut policy = load(&bundle, true);
        let spec = policy.spec().clone();
        let (h, a) = (spec.horizon, spec.action_dim);
        let state = vec![0.1; spec.observation_dim];
        let images = vec![100u8; spec.image_bytes()];
        policy
            .prepare_with_images(rows_of(&state, 1).unwrap(), &images)
            .unwrap();
        let actions: Vec<f32> = (0..h * a).map(|k| (k as f32 * 0.2).sin()).collect();
        let (tau, weights) = (vec![0.4; h], vec![0.5; h]);
        let (mut velocity, mut vjp) = (vec![0.0; h * a], vec![0.0; h * a]);
        let mut step = |policy: &mut OnnxPolicy| {
            let (x, t) = (
                chunks_of(&actions, h, a).unwrap(),
                tokens_of(&tau, h).unwrap(),
            );
            policy
                .velocity(x, t, chunks_of_mut(&mut velocity, h, a).unwrap())
                .unwrap();
            let (v, g) = (
                chunks_of_mut(&mut velocity, h, a).unwrap(),
                chunks_of_mut(&mut vjp, h, a).unwrap(),
            );
            if policy.fuses_guidance() {
                let w = tokens_of(&weights, h).unwrap();
                policy.guided_vjp(x, t, x, w, v, g).unwrap();
            } else {
                policy.denoiser_vjp(x, t, x, v, g).unwrap();
            }
        };
        for _ in 0..3 {
            step(&mut policy);
        }
        counting_allocator::watch();
        for _ in 0..20 {
            step(&mut policy);
        }
        let allocations = counting_allocator::stop();
        println!(
            "{}: {allocations} allocations in 20 plain + 20 guided steps",
            bundle.display()
        );
        assert_eq!(allocations, 0, "{}", bundle.display());
    }
}

#[test]
#[ignore = "needs a GPU and ONNX Runtime's CUDA provider"]
fn a_node_that_would_run_on_the_cpu_is_refused_with_its_name() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let bundle = fixtures.join("gta-toy-host-node");
    let Err(error) = OnnxPolicy::load(
        &bundle,
        &OnnxRuntimeOptions {
            device: Device::Cuda(0),
            ..OnnxRuntimeOptions::default()
        },
    ) else {
        panic!(
            "{}: loaded on CUDA with a node the CPU would run",
            bundle.display()
        );
    };
    let message = error.to_string();
    println!("{message}");
    assert!(
        message.contains("velocity.onnx") && message.contains("Det (host_only_det)"),
        "{message}"
    );
    assert!(message.contains("--allow-cpu-nodes"), "{message}");
    // Allowed, it runs there and still replays JAX's outputs.
    let mut allowed = OnnxPolicy::load(
        &bundle,
        &OnnxRuntimeOptions {
            device: Device::Cuda(0),
            allow_cpu_nodes: true,
            cuda_graphs: false,
            ..OnnxRuntimeOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", bundle.display()));
    assert!(
        check_recorded(&mut allowed, &bundle)
            .unwrap()
            .unwrap()
            .passes()
    );
}

/// The delay benchmark's trained policies load on the GPU the way `rtchunk bench delay` and `rtchunk run` load
/// them; whatever ONNX Runtime keeps on the CPU there only computes shapes.
#[test]
#[ignore = "needs a GPU and ONNX Runtime's CUDA provider"]
fn the_simulator_tasks_policies_load_on_the_gpu() {
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim/policies");
    for task in ["reach", "cartpole", "lander", "catch"] {
        let bundle = policies.join(task).join("base-s0");
        for (context_on_device, cuda_graphs) in [(false, false), (true, true)] {
            let mut policy = OnnxPolicy::load(
                &bundle,
                &OnnxRuntimeOptions {
                    device: Device::Cuda(0),
                    context_on_device,
                    cuda_graphs,
                    ..OnnxRuntimeOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", bundle.display()));
            println!(
                "{}: {}",
                bundle.display(),
                policy
                    .shape_nodes_summary()
                    .unwrap_or("every node on the GPU".into())
            );
            if let Some(check) = check_recorded(&mut policy, &bundle).unwrap() {
                assert!(check.passes(), "{}: {check:?}", bundle.display());
            }
        }
    }
}
