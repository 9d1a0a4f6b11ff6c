//! The benchmark tasks: calibrated experts, multimodal demonstrations, determinism, batching and pictures.

use rtchunk_sim::{
    Canvas, Env, EnvBatch, Rgb, Status, TaskKind, collect, episode_staleness, expert_seed, palette,
    stale_success_rate,
};

#[test]
fn every_expert_still_solves_its_task_acting_on_7_step_old_states() {
    // d_max + s_max - 1 = 7 for H = 8: a task the expert fails at this staleness cannot separate the methods.
    for kind in TaskKind::ALL {
        let fresh = stale_success_rate(kind, 0, 200, 10_000);
        let stale = stale_success_rate(kind, 7, 200, 10_000);
        println!(
            "{kind}: expert success {fresh:.3} on fresh states, {stale:.3} on 7-step-old states"
        );
        assert!(fresh >= 0.95, "{kind}: {fresh}");
        assert!(stale >= 0.8, "{kind}: {stale}");
    }
}

#[test]
fn staleness_does_hurt_eventually() {
    // The check above is not vacuous: the dynamic tasks break when the state gets old enough.
    let worst = TaskKind::ALL.map(|kind| stale_success_rate(kind, 12, 100, 0));
    assert!(worst.iter().any(|&rate| rate < 0.5), "{worst:?}");
}

#[test]
fn demonstrations_are_multimodal() {
    for kind in TaskKind::ALL {
        let (dataset, report) = collect(kind, 120, 0, 0, None, |_| {});
        assert_eq!(report.rows, dataset.len());
        assert!(report.successes >= 110, "{kind}: {report:?}");
        assert!(report.modes.len() >= 2, "{kind}: {report:?}");
        for (mode, &count) in report.modes.iter().enumerate() {
            assert!(
                count as f64 >= 0.1 * report.successes as f64,
                "{kind}: mode {mode} rare: {report:?}"
            );
        }
    }
}

#[test]
fn stale_demonstrations_act_on_old_states_and_still_solve() {
    let staleness: Vec<usize> = (0..400).map(|seed| episode_staleness(seed, 7)).collect();
    for k in 0..=7 {
        let share = staleness.iter().filter(|&&s| s == k).count();
        assert!(
            (25..=75).contains(&share),
            "staleness {k} drawn {share} times in 400"
        );
    }
    for kind in TaskKind::ALL {
        let (fresh, _) = collect(kind, 40, 0, 0, None, |_| {});
        let (stale, report) = collect(kind, 40, 0, 7, None, |_| {});
        assert!(report.successes >= 32, "{kind}: {report:?}");
        assert_ne!(fresh, stale, "{kind}");
    }
}

fn rollout(
    env: &mut Env,
    seed: u64,
    actions: impl Fn(u32, &[f32], &mut [f32]),
) -> (Vec<f32>, Status) {
    env.reset(seed);
    let mut observation = vec![0.0; env.spec().observation_dim()];
    let mut action = vec![0.0; env.spec().action_dim()];
    let mut trajectory = Vec::new();
    while !env.status().is_done() {
        env.observe(&mut observation);
        trajectory.extend_from_slice(&observation);
        actions(env.steps(), &observation, &mut action);
        env.step(&action);
    }
    (trajectory, env.status())
}

fn wobble(step: u32, _: &[f32], action: &mut [f32]) {
    for (i, a) in action.iter_mut().enumerate() {
        *a = 0.5 + 0.5 * ((step as f32) * 0.3 + i as f32).sin();
    }
}

#[test]
fn episodes_are_deterministic_for_a_seed_and_differ_across_seeds() {
    for kind in TaskKind::ALL {
        let mut env = Env::new(kind);
        let (first, status) = rollout(&mut env, 7, wobble);
        let (again, status_again) = rollout(&mut env, 7, wobble);
        let (other, _) = rollout(&mut env, 8, wobble);
        assert_eq!((first.len(), status), (again.len(), status_again));
        assert!(
            first
                .iter()
                .zip(&again)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{kind}"
        );
        assert_ne!(
            first[..first.len().min(other.len())],
            other[..first.len().min(other.len())],
            "{kind}"
        );
    }
}

#[test]
fn a_batch_steps_each_environment_exactly_as_alone() {
    for kind in TaskKind::ALL {
        let mut batch = EnvBatch::new(kind, 5, 100);
        let (o, a) = (
            batch.envs()[0].spec().observation_dim(),
            batch.envs()[0].spec().action_dim(),
        );
        let mut observations = vec![0.0; 5 * o];
        let mut actions = vec![0.0; 5 * a];
        let mut trajectories = vec![Vec::new(); 5];
        let mut step = 0;
        while !batch.all_done() {
            batch.observe(&mut observations);
            for (i, env) in batch.envs().iter().enumerate() {
                if !env.status().is_done() {
                    trajectories[i].extend_from_slice(&observations[i * o..][..o]);
                }
                wobble(step, &[], &mut actions[i * a..][..a]);
            }
            batch.step(&actions);
            step += 1;
        }
        let mut env = Env::new(kind);
        for (i, trajectory) in trajectories.iter().enumerate() {
            let (alone, status) = rollout(&mut env, 100 + i as u64, wobble);
            assert_eq!(&alone, trajectory, "{kind} env {i}");
            assert_eq!(status, batch.envs()[i].status());
        }
    }
}

#[test]
fn a_non_finite_action_fails_the_episode() {
    let mut env = Env::new(TaskKind::Reach);
    let nan = vec![f32::NAN; env.spec().action_dim()];
    assert_eq!(env.step(&nan), Status::Failure);
    assert_eq!(
        env.step(&[0.0, 0.0]),
        Status::Failure,
        "an ended episode stays ended"
    );
}

#[test]
fn every_task_draws_its_agent_and_goal() {
    for kind in TaskKind::ALL {
        let mut env = Env::new(kind);
        let mut expert = env.expert();
        env.reset(3);
        expert.reset(expert_seed(3));
        let mut observation = vec![0.0; env.spec().observation_dim()];
        let mut action = vec![0.0; env.spec().action_dim()];
        for _ in 0..20 {
            env.observe(&mut observation);
            expert.act(&observation, &mut action);
            env.step(&action);
        }
        let mut canvas = Canvas::new(320, [-3.0, 4.5], [-0.5, 5.0]);
        env.draw(&mut canvas);
        let (width, height) = canvas.size();
        let count = |color| {
            (0..height)
                .flat_map(|y| (0..width).map(move |x| (x, y)))
                .filter(|&(x, y)| canvas.pixel(x, y) == color)
                .count()
        };
        assert!(count(palette::AGENT) > 10, "{kind}");
        assert!(count(palette::GOAL) > 10, "{kind}");
        let path = std::env::temp_dir().join(format!("rtchunk-sim-{kind}.png"));
        canvas.write_png(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}

#[test]
fn the_camera_sees_each_task_in_its_view_with_agent_and_goal() {
    for kind in TaskKind::ALL {
        let mut env = Env::new(kind);
        env.reset(5);
        let canvas = env.camera(96);
        let (width, height) = canvas.size();
        let ([x0, x1], [y0, y1]) = kind.view();
        assert_eq!(width, 96, "{kind}");
        assert_eq!(
            height,
            ((y1 - y0) * 96.0 / (x1 - x0)).round() as usize,
            "{kind}"
        );
        let rgb = canvas.rgb();
        assert_eq!(rgb.len(), width * height * 3);
        let count = |color: Rgb| rgb.chunks(3).filter(|p| *p == color).count();
        assert!(count(palette::AGENT) > 0, "{kind}: the agent is in view");
        assert!(count(palette::GOAL) > 0, "{kind}: the goal is in view");
    }
}
