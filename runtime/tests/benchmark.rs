//! The delay benchmark's batched harness: each robot in a batch gets exactly the trajectory it gets alone, the
//! protocol's timing holds, and a small sweep writes complete, well-formed outputs.

use rtchunk_policy::Sampler;
use rtchunk_policy::ndarray::{Array2, ArrayView2, ArrayView3, ArrayViewMut3};
use rtchunk_policy::reference::MixtureFlow;
use rtchunk_runtime::core::worker::InferenceEngine;
use rtchunk_runtime::studies::delay_benchmark::methods::Method;
use rtchunk_runtime::studies::delay_benchmark::rollouts::{RolloutSettings, run_rollouts};
use rtchunk_sim::TaskKind;

/// A two-mode policy for the catch task's single action (unconditional, so every batch row is independent).
fn engine_for(method: Method) -> InferenceEngine {
    let policy = MixtureFlow::bimodal(8, 1, 0.3, 3.0, 0.6);
    InferenceEngine::new(
        Box::new(policy),
        None,
        Sampler::new(method.sampler(), 8, 1),
        11,
    )
}

fn settings(method: Method, rollouts: usize, first_seed: u64) -> RolloutSettings {
    RolloutSettings {
        task: TaskKind::Catch,
        execution: method.execution(),
        delay: 2,
        execution_horizon: 3,
        rollouts,
        first_seed,
        max_batch: 4,
        keep_actions: true,
    }
}

#[test]
fn each_robot_in_a_batch_gets_the_trajectory_it_gets_alone() {
    for method in [
        Method::Sync,
        Method::Naive,
        Method::Rtc,
        Method::RtcHard,
        Method::Bid,
        Method::Ensemble,
    ] {
        let mut engine = engine_for(method);
        let batched = run_rollouts(&mut engine, &settings(method, 7, 30)).unwrap();
        assert_eq!(batched.rollouts, 7);
        assert_eq!(batched.successes + batched.failures + batched.timeouts, 7);
        assert!(
            batched.batches > batched.chunks / 7,
            "{method}: 7 robots in batches of at most 4"
        );
        for (i, actions) in batched.actions.iter().enumerate() {
            let alone = run_rollouts(&mut engine, &settings(method, 1, 30 + i as u64)).unwrap();
            assert!(!actions.is_empty());
            assert_eq!(&alone.actions[0], actions, "{method}: robot {i}");
        }
    }
}

/// Through an ONNX bundle (the catch benchmark policy) batching is not bit-exact: ONNX Runtime's kernels for a
/// batch of B sum in another order than for one row, so actions differ in the last bits (README states the
/// tolerance: up to about 1e-5). Each robot's actions stay within 1e-4 of its lone run, and its outcome is the
/// same.
#[test]
fn through_an_onnx_bundle_a_batched_robot_stays_within_float_rounding_of_its_lone_run() {
    let bundle =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim/policies/catch/base-s0");
    let policy = rtchunk_policy::onnx::OnnxPolicy::load(&bundle, &Default::default()).unwrap();
    let mut engine = InferenceEngine::new(
        Box::new(policy),
        None,
        Sampler::new(Method::Rtc.sampler(), 8, 1),
        11,
    );
    let rollouts = 6;
    let batched = run_rollouts(&mut engine, &settings(Method::Rtc, rollouts, 1_000_000)).unwrap();
    let (mut worst, mut successes) = (0.0f32, 0);
    for (i, actions) in batched.actions.iter().enumerate() {
        let alone =
            run_rollouts(&mut engine, &settings(Method::Rtc, 1, 1_000_000 + i as u64)).unwrap();
        successes += alone.successes;
        assert_eq!(
            alone.actions[0].len(),
            actions.len(),
            "robot {i}: same episode length"
        );
        for (a, b) in alone.actions[0].iter().zip(actions) {
            worst = worst.max((a - b).abs());
        }
    }
    println!("largest batched-against-alone action difference: {worst:e}");
    assert!(worst < 1e-4, "{worst}");
    assert_eq!(successes, batched.successes, "the same outcomes");
}

#[test]
fn chunks_arrive_every_s_steps_and_seams_are_measured() {
    // With d = 2 and s = 3 a rollout of T executed steps takes the cold chunk plus one request every 3 steps.
    let mut engine = engine_for(Method::Naive);
    let outcome = run_rollouts(&mut engine, &settings(Method::Naive, 1, 5)).unwrap();
    let steps = outcome.actions[0].len() as u64;
    assert!(steps > 10);
    assert_eq!(outcome.chunks, 1 + steps / 3, "{steps} steps");
    assert_eq!(outcome.starved_ticks, 0);
    assert!(outcome.seam_jump > 0.0 && outcome.within_step > 0.0);
    // Synchronous execution pauses d steps per chunk (with zero force) and so takes more steps per chunk.
    let mut sync_engine = engine_for(Method::Sync);
    let sync = run_rollouts(&mut sync_engine, &settings(Method::Sync, 1, 5)).unwrap();
    let paused = sync.actions[0].iter().filter(|a| **a == 0.0).count();
    assert!(
        paused as u64 >= 2 * (sync.chunks - 2),
        "{paused} paused steps for {} chunks",
        sync.chunks
    );
}

/// A policy whose chunk is exact and readable: action i of the chunk for observation o is o[0] + 10 i (the
/// straight flow to that target reaches it exactly in any number of Euler steps, from any noise).
struct EchoPolicy {
    spec: rtchunk_policy::PolicySpec,
    /// Each context's target chunk, `[P, H]` (one joint).
    targets: Array2<f32>,
}

impl rtchunk_policy::FlowPolicy for EchoPolicy {
    fn spec(&self) -> &rtchunk_policy::PolicySpec {
        &self.spec
    }

    fn prepare(
        &mut self,
        observations: ArrayView2<f32>,
    ) -> Result<(), rtchunk_policy::PolicyError> {
        self.targets = Array2::from_shape_fn((observations.nrows(), 8), |(p, i)| {
            observations[[p, 0]] + 10.0 * i as f32
        });
        Ok(())
    }

    fn velocity(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        mut velocity: ArrayViewMut3<f32>,
    ) -> Result<(), rtchunk_policy::PolicyError> {
        let per_context = actions.shape()[0] / self.targets.nrows();
        for ((b, i, j), v) in velocity.indexed_iter_mut() {
            let target = self.targets[[b / per_context, i]];
            *v = (target - actions[[b, i, j]]) / (1.0 - tau[[b, i]]);
        }
        Ok(())
    }
}

#[test]
fn every_chunk_is_planned_from_the_state_its_first_action_starts_in() {
    // Action k executed from chunk index i must equal x(state after k - i steps) + 10 i: the chunk was computed
    // from the state in which its index 0 would have started, whichever path (at adoption or later) requested it.
    for (delay, s) in [(0, 1), (1, 1), (2, 2), (4, 4), (1, 3), (2, 5)] {
        let spec = rtchunk_policy::PolicySpec {
            horizon: 8,
            action_dim: 1,
            robot_action_dim: 1,
            observation_dim: 6,
            cameras: Vec::new(),
            exact_vjp: false,
            prefix_conditioned: false,
        };
        let policy = EchoPolicy {
            spec,
            targets: Array2::zeros((0, 8)),
        };
        let mut engine = InferenceEngine::new(
            Box::new(policy),
            None,
            Sampler::new(Method::Naive.sampler(), 8, 1),
            3,
        );
        let settings = RolloutSettings {
            delay,
            execution_horizon: s,
            ..settings(Method::Naive, 1, 9)
        };
        let outcome = run_rollouts(&mut engine, &settings).unwrap();
        let actions = &outcome.actions[0];
        // Replay the episode to get the paddle position before every step.
        let mut env = rtchunk_sim::Env::new(TaskKind::Catch);
        env.reset(9);
        let mut positions = Vec::new();
        let mut observation = [0.0f32; 6];
        for action in actions {
            env.observe(&mut observation);
            positions.push(observation[0]);
            env.step(&[*action]);
        }
        assert!(actions.len() > 20);
        for (k, action) in actions.iter().enumerate() {
            let index = (action / 10.0).round() as usize;
            assert!(
                index < 8 && index <= k,
                "d = {delay}, s = {s}, step {k}: index {index}"
            );
            let planned_from = positions[k - index];
            assert!(
                (action - 10.0 * index as f32 - planned_from).abs() < 1e-4,
                "d = {delay}, s = {s}, step {k}: action {action} from index {index}, state x {planned_from}"
            );
            // The cold chunk runs from index 0 until its successor arrives (s steps, then d more); every later
            // chunk is adopted d steps after its request and runs indices d..d + s.
            let expected = if k < s + delay {
                k
            } else {
                delay + (k - s - delay) % s
            };
            assert_eq!(index, expected, "d = {delay}, s = {s}, step {k}");
        }
    }
}
