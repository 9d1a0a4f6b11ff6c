//! The `rtchunk` binary, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rtchunk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtchunk"))
        .args(args)
        .output()
        .expect("rtchunk runs")
}

/// Runs rtchunk, checks it succeeded, and returns its standard output and error.
fn rtchunk_ok(args: &[&str]) -> (String, String) {
    let output = rtchunk(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "rtchunk {}: {stderr}",
        args.join(" ")
    );
    (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
}

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rtchunk-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_example_configuration_is_valid() {
    let files = examples();
    assert!(files.len() >= 2);
    for file in files {
        let output = rtchunk(&["check-config", file.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains(": ok"));
    }
}

/// A bundle's suggested sampler settings (its manifest's `defaults`, e.g. LeRobot's n = 10, beta = 10, linear
/// mask) apply to whatever `[sampler]` leaves out; what the file gives wins.
#[test]
fn a_bundles_suggested_sampling_fills_what_the_configuration_leaves_out() {
    let bundle = std::env::temp_dir().join(format!("rtchunk-{}-defaults", std::process::id()));
    let _ = std::fs::remove_dir_all(&bundle);
    std::fs::create_dir_all(&bundle).unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/fixtures/gaussian");
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, bundle.join(path.file_name().unwrap())).unwrap();
    }
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).unwrap())
            .unwrap();
    manifest["defaults"] = serde_json::json!({"steps": 9, "beta": 7.5, "schedule": "linear"});
    std::fs::write(bundle.join("manifest.json"), manifest.to_string()).unwrap();
    let policy = format!(
        "[policy]\nkind = \"bundle\"\nbundle = \"{}\"\n",
        bundle.display()
    );
    for (sampler, expected) in [
        ("", "n = 9, beta = 7.5, schedule Linear"),
        (
            "[sampler]\nbeta = 2.0\nschedule = \"exp\"\n",
            "n = 9, beta = 2, schedule Exp",
        ),
    ] {
        let file = temp_file("suggested.toml", &format!("{policy}{sampler}"));
        let output = rtchunk(&["check-config", file.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(expected),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&bundle);
}

#[test]
fn a_bad_configuration_is_rejected_with_file_key_value_and_rule() {
    let file = temp_file(
        "bad.toml",
        "[policy]\nhorizon = 8\n[scheduler]\nexecution_horizon = 2\n[clock]\ninference_delay_ticks = 3\n",
    );
    let output = rtchunk(&["check-config", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}: scheduler.execution_horizon = 2 is below the inference delay 3: need d <= s <= H - d", file.display())), "{stderr}");
    let typo = temp_file("typo.toml", "[sampler]\nbetta = 5.0\n");
    let output = rtchunk(&["check-config", typo.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("betta") && stderr.contains("typo.toml"),
        "{stderr}"
    );
}

/// Runs an example configuration for `seconds` and returns its JSON metrics.
fn run_example(name: &str, seconds: &str) -> serde_json::Value {
    let file = examples().into_iter().find(|f| f.ends_with(name)).unwrap();
    let output = rtchunk(&[
        "run",
        file.to_str().unwrap(),
        "--seconds",
        seconds,
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn run_on_the_simulated_clock_prints_metrics_as_json() {
    let metrics = run_example("simulated-bimodal.toml", "4");
    assert_eq!(metrics["policy_ticks"], 200);
    assert!(metrics["swaps"].as_u64().unwrap() > 40);
    assert_eq!(metrics["observed_delay_ticks"]["max"], 3.0);
    assert_eq!(metrics["starved_ticks"], 0);
}

/// The demo shows what README says it shows (6 s, injected delay 4 ticks): RTC commits to one side of the
/// obstacle and never touches it, naive asynchronous chunking switches sides and hits it, and RTC's seams are
/// several times smaller. The injected delay fixes the schedule in ticks, so the run is the same every time.
#[test]
fn the_demo_shows_rtc_committing_where_naive_switches() {
    let output = rtchunk(&["demo", "--seconds", "6", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let runs: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    let labels: Vec<&str> = runs
        .iter()
        .map(|r| r["metrics"]["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["rtc", "naive async"]);
    let (rtc, naive) = (&runs[0], &runs[1]);
    for run in runs {
        assert_eq!(run["metrics"]["policy_ticks"], 300);
        assert!(run["metrics"]["swaps"].as_u64().unwrap() >= 30);
        assert!(run["plant"]["reached_goal_at"].as_f64().is_some(), "{run}");
    }
    let count = |run: &serde_json::Value, key: &str| run[key].as_u64().unwrap();
    assert_eq!(count(rtc, "side_switches"), 0, "{rtc}");
    assert_eq!(count(&rtc["plant"], "obstacle_contacts"), 0, "{rtc}");
    assert!(count(naive, "side_switches") >= 3, "{naive}");
    assert!(count(&naive["plant"], "obstacle_contacts") >= 1, "{naive}");
    let seam = |run: &serde_json::Value| run["metrics"]["seam_jump"]["mean"].as_f64().unwrap();
    assert!(
        seam(rtc) * 2.0 < seam(naive),
        "seams {} vs {}",
        seam(rtc),
        seam(naive)
    );
    let goal = |run: &serde_json::Value| run["plant"]["reached_goal_at"].as_f64().unwrap();
    assert!(goal(rtc) < goal(naive));
}

#[test]
fn inspect_checks_a_bundle_and_prints_its_manifest() {
    let bundle = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/fixtures/gaussian");
    let output = rtchunk(&["inspect", bundle.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("\"name\": \"gaussian-reference\"")
            && stdout.contains("ok (manifest, hashes and graphs")
    );
    let output = rtchunk(&["inspect", "/nonexistent/bundle"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("/nonexistent/bundle/manifest.json: cannot read")
    );
}

/// The VLA fixture (two cameras, a prompt, a guided graph) through the two commands the GPU benchmark script
/// reads: the replay against JAX and the timings, both as JSON with the fields the script takes.
#[test]
fn the_vla_fixture_replays_jax_and_times_its_phases_as_json() {
    let bundle = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/fixtures/vla-tiny");
    let bundle = bundle.to_str().unwrap();
    let (stdout, _) = rtchunk_ok(&["inspect", bundle, "--json"]);
    let check: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let tolerance = check["tolerance"].as_f64().unwrap();
    for error in ["velocity_error", "vjp_error", "guided_error", "rtc_error"] {
        let value = check[error].as_f64().unwrap_or(f64::INFINITY);
        assert!(value <= tolerance, "{error}: {value}");
    }
    let (stdout, _) = rtchunk_ok(&["bench", "policy", bundle, "--json", "--iterations", "3"]);
    let timings: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(timings["fused_guidance"], true);
    assert_eq!(timings["cuda_graphs"], false);
    for phase in [
        "prefix_ms",
        "plain_step_ms",
        "guided_step_ms",
        "plain5_ms",
        "plain10_ms",
        "rtc5_ms",
    ] {
        assert!(timings[phase]["p50"].as_f64().unwrap() > 0.0, "{phase}");
    }
}

#[test]
fn a_bundle_runs_through_the_scheduler_from_a_configuration_file() {
    let metrics = run_example("gaussian-bundle.toml", "2");
    assert_eq!(metrics["policy_ticks"], 100);
    assert!(metrics["swaps"].as_u64().unwrap() > 15);
    assert_eq!(metrics["inference_failures"], 0);
}

#[test]
fn the_demo_runs_a_bundle() {
    let bundle = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/fixtures/gaussian");
    let output = rtchunk(&[
        "demo",
        "--seconds",
        "1",
        "--json",
        "--policy",
        bundle.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let runs: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(runs[0]["metrics"]["swaps"].as_u64().unwrap() >= 3);
}

/// The project's Python environment, made by ./scripts/setup.sh (always there in CI, which runs it first).
fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "run ./scripts/setup.sh first: {} is missing",
        python.display()
    );
    python
}

/// Runs the toolchain's Python with `args`, checks it succeeded, and returns its standard output.
fn toolchain(args: &[&str]) -> String {
    let output = Command::new(python())
        .args(args)
        .env(
            "PYTHONPATH",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/python"),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The whole numbers `script` prints when the toolchain's Python runs it with `file` as its argument.
fn numbers_from_python(script: &str, file: &std::path::Path) -> Vec<usize> {
    toolchain(&["-c", script, file.to_str().unwrap()])
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

/// Runs `rtchunk sim collect` for `episodes` episodes of `task` (with `extra` options) into `out`; returns its
/// standard output and error.
/// `rtchunk bench delay` of naive and RTC execution on reach at `delays` (comma-separated), the policies of
/// `policies`, results in `out`.
fn reach_sweep(
    delays: &str,
    rollouts: u32,
    policies: &std::path::Path,
    out: &std::path::Path,
) -> (String, String) {
    let rollouts = rollouts.to_string();
    rtchunk_ok(&[
        "bench",
        "delay",
        "--task",
        "reach",
        "--methods",
        "naive,rtc",
        "--delays",
        delays,
        "--rollouts",
        &rollouts,
        "--policies",
        policies.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

fn collect_demonstrations(
    task: &str,
    episodes: u32,
    extra: &[&str],
    out: &std::path::Path,
) -> (String, String) {
    let episodes = episodes.to_string();
    let mut args = vec!["sim", "collect", "--task", task, "--episodes", &episodes];
    args.extend_from_slice(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    rtchunk_ok(&args)
}

#[test]
fn collected_demonstrations_load_in_the_training_toolchain() {
    let out = std::env::temp_dir().join(format!("rtchunk-{}-lander.npz", std::process::id()));
    let (stdout, stderr) = collect_demonstrations("lander", 40, &["--seed", "7"], &out);
    assert!(
        stdout.contains("expert episodes solved and kept"),
        "{stdout}"
    );
    assert!(stderr.contains("100%"), "a progress bar");
    let check = "import sys; from pathlib import Path; from rtchunk_train import dataset; \
                 d = dataset.load(Path(sys.argv[1])); \
                 print(d.observation.shape[1], d.action.shape[1], int(d.episode_index[-1]) + 1, len(d.action), \
                 *dataset.episode_seeds(Path(sys.argv[1])))";
    let shape = numbers_from_python(check, &out);
    assert_eq!(shape[..2], [6, 2], "lander: 6 observations, 2 thrusters");
    assert_eq!(
        shape[4..],
        [7, 47],
        "the episode seeds travel with the data"
    );
    assert!(shape[2] >= 35 && shape[3] > 35 * 60, "{shape:?}");
    assert!(
        stdout.contains(&format!("({} control steps)", shape[3])),
        "{stdout}"
    );
}

#[test]
fn collected_camera_images_load_with_the_demonstrations() {
    let out = std::env::temp_dir().join(format!("rtchunk-{}-reach-camera.npz", std::process::id()));
    let (stdout, _) = collect_demonstrations("reach", 3, &["--camera-width", "42"], &out);
    assert!(stdout.contains("expert episodes solved"), "{stdout}");
    // Reach's view is 4.2 x 2.2 world units: 42 x 22 pixels. The goal (blue) is in every image, and the agent
    // (green) moves: images 20 steps apart differ (a pixel is 0.1 world units).
    let check = "import sys; from pathlib import Path; import numpy as np; from rtchunk_train import dataset; \
                 d = dataset.load(Path(sys.argv[1])); c = d.camera; \
                 blue = np.all(c == [45, 110, 220], axis=-1).any(axis=(1, 2)); \
                 moved = np.any(c[20:] != c[:-20], axis=(1, 2, 3)); \
                 print(*c.shape, len(d.action), int(blue.all()), int(moved.mean() > 0.5))";
    let fields = numbers_from_python(check, &out);
    assert_eq!(fields[1..4], [22, 42, 3], "{fields:?}");
    assert_eq!(fields[0], fields[4], "one image per row");
    assert_eq!(
        fields[5..],
        [1, 1],
        "the goal in every image, the agent moving"
    );
}

#[test]
fn a_vla_trained_on_the_simulators_camera_replays_jax_and_runs_the_task_closed_loop() {
    let dir = std::env::temp_dir().join(format!("rtchunk-{}-vla-reach", std::process::id()));
    let data = dir.join("reach.npz");
    std::fs::create_dir_all(&dir).unwrap();
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    collect_demonstrations("reach", 40, &["--camera-width", "42"], &data);
    let policies = dir.join("policies");
    let bundle = policies.join("reach/base-s0");
    let report = toolchain(&[
        "-m",
        "rtchunk_train.vla_train",
        "--dataset",
        &path(&data),
        "--out",
        &path(&bundle),
        "--steps",
        "300",
    ]);
    let report: serde_json::Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    let (before, after) = (
        report["held_out_loss_before"].as_f64().unwrap(),
        report["held_out_loss_after"].as_f64().unwrap(),
    );
    assert!(after < 0.7 * before, "it learned: {report}");
    // rtchunk replays JAX's recorded outputs of the trained weights (exported float32: within 1e-5).
    let (inspected, _) = rtchunk_ok(&["inspect", &path(&bundle), "--json"]);
    let inspected: serde_json::Value =
        serde_json::from_str(inspected.lines().last().unwrap()).unwrap();
    let tolerance = inspected["tolerance"].as_f64().unwrap();
    for error in ["velocity_error", "vjp_error", "guided_error", "rtc_error"] {
        assert!(
            inspected[error].as_f64().unwrap() <= tolerance,
            "{inspected}"
        );
    }
    // Closed loop on the task, the camera drawn from each request's state: RTC's seams are smoother than
    // naive chunking's at d = 1.
    let out = dir.join("bench");
    reach_sweep("1", 8, &policies, &out);
    let points: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("delay.json")).unwrap()).unwrap();
    let seam = |method: &str| {
        points
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["method"] == method && p["policy_seed"] == 0)
            .map(|p| p["seam_jump"].as_f64().unwrap())
            .unwrap()
    };
    assert!(seam("rtc") < seam("naive"), "{points}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_task_is_named_with_the_choices() {
    let output = rtchunk(&["sim", "collect", "--task", "pong", "--out", "/dev/null"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown task \"pong\": expected one of reach, cartpole, lander, catch"),
        "{stderr}"
    );
}

#[test]
fn render_draws_an_expert_rollout() {
    let out = std::env::temp_dir().join(format!("rtchunk-{}-catch.png", std::process::id()));
    let (stdout, _) = rtchunk_ok(&[
        "sim",
        "render",
        "--task",
        "catch",
        "--seed",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("Success"), "{stdout}");
    assert_eq!(&std::fs::read(&out).unwrap()[..4], b"\x89PNG");
}

/// A small delay sweep on reach writes every output, and shows what README says of reach: without delay both
/// methods solve it, at d = 4 naive execution loses episodes that RTC keeps (README, 2 048 rollouts: naive
/// 1.000 -> 0.792, RTC 0.995). Evaluated on episodes the policy never saw (the default seeds).
#[test]
fn a_small_delay_sweep_writes_complete_outputs_and_rtc_keeps_reach_solved() {
    let out = std::env::temp_dir().join(format!("rtchunk-{}-delay", std::process::id()));
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim/policies");
    let (stdout, _) = reach_sweep("0,4", 32, &policies, &out);
    assert!(
        stdout.contains("reach") && stdout.contains("average") && stdout.contains("rtc"),
        "{stdout}"
    );
    let rate = |method: &str, delay: &str| -> f64 {
        let csv = std::fs::read_to_string(out.join("delay.csv")).unwrap();
        let row = csv
            .lines()
            .find(|l| l.starts_with(&format!("delay,reach,0,{method},{delay},")))
            .unwrap_or_else(|| panic!("no {method} d = {delay} row: {csv}"));
        row.split(',').nth(8).unwrap().parse().unwrap()
    };
    assert!(
        rate("naive", "0") >= 0.9 && rate("rtc", "0") >= 0.9,
        "{stdout}"
    );
    assert!(rate("rtc", "4") >= 0.9, "{stdout}");
    assert!(rate("rtc", "4") - rate("naive", "4") >= 0.1, "{stdout}");
    let csv = std::fs::read_to_string(out.join("delay.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    // Header, then per seed, per task and averaged: 2 methods x 2 delays each.
    assert_eq!(lines.len(), 1 + 3 * 4, "{csv}");
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 15, "{line}");
        let (rate, low, high): (f64, f64, f64) = (
            fields[8].parse().unwrap(),
            fields[9].parse().unwrap(),
            fields[10].parse().unwrap(),
        );
        assert!(
            (0.0..=1.0).contains(&rate) && low <= rate && rate <= high,
            "{line}"
        );
        assert_eq!(fields[6], "32");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("delay.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 12);
    assert_eq!(
        &std::fs::read(out.join("delay.png")).unwrap()[..4],
        b"\x89PNG"
    );
}

/// A bundle in openpi's and LeRobot's time convention (t = 1 is noise; the reach policy rewritten by the
/// toolchain to take t = 1 - tau and return the velocity negated) is driven by every command exactly as the
/// original: `inspect` replays its recording, `bench policy` times it, and `bench delay` and `run` (whose loader
/// `serve-policy`, `demo` and `replay` share) give the original's results, up to float rounding.
#[test]
fn every_command_drives_a_noise_at_one_bundle_as_the_original() {
    let dir = std::env::temp_dir().join(format!("rtchunk-{}-noise-at-one", std::process::id()));
    let original = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim/policies");
    let rewritten = dir.join("policies");
    let bundle = rewritten.join("reach/base-s0");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    toolchain(&[
        "-m",
        "rtchunk_train.rebundle",
        &path(&original.join("reach/base-s0")),
        &path(&bundle),
        "--noise-at-one",
    ]);
    let manifest = std::fs::read_to_string(bundle.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"t-one-is-noise\""), "{manifest}");
    let (inspected, _) = rtchunk_ok(&["inspect", &path(&bundle), "--json"]);
    let inspected: serde_json::Value = serde_json::from_str(inspected.trim()).unwrap();
    let tolerance = inspected["tolerance"].as_f64().unwrap();
    for error in ["velocity_error", "vjp_error", "rtc_error"] {
        assert!(
            inspected[error].as_f64().unwrap() <= tolerance,
            "{inspected}"
        );
    }
    let (timings, _) = rtchunk_ok(&[
        "bench",
        "policy",
        &path(&bundle),
        "--json",
        "--iterations",
        "2",
    ]);
    let timings: serde_json::Value = serde_json::from_str(&timings).unwrap();
    assert!(timings["rtc5_ms"]["p50"].as_f64().unwrap() > 0.0);
    let sweep = |policies: &std::path::Path, name: &str| -> Vec<serde_json::Value> {
        let out = dir.join(name);
        reach_sweep("2", 8, policies, &out);
        serde_json::from_str(&std::fs::read_to_string(out.join("delay.json")).unwrap()).unwrap()
    };
    let (expected, got) = (sweep(&original, "original"), sweep(&rewritten, "rewritten"));
    assert_eq!(expected.len(), got.len());
    for (expected, got) in expected.iter().zip(&got) {
        assert_eq!(expected["successes"], got["successes"], "{got}");
        let (a, b) = (
            expected["seam_jump"].as_f64().unwrap(),
            got["seam_jump"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-4 * a.abs().max(1.0),
            "seam jump {a} against {b}"
        );
    }
    let run = |bundle: &std::path::Path| -> serde_json::Value {
        let config = dir.join(format!(
            "{}.toml",
            bundle.file_name().unwrap().to_str().unwrap()
        ));
        let example = examples()
            .into_iter()
            .find(|f| f.ends_with("gaussian-bundle.toml"))
            .unwrap();
        let text = std::fs::read_to_string(example).unwrap().replace(
            "bundle = \"../../policy/fixtures/gaussian\"",
            &format!("bundle = {:?}", path(bundle)),
        );
        std::fs::write(&config, text).unwrap();
        let (stdout, _) = rtchunk_ok(&["run", &path(&config), "--seconds", "2", "--json"]);
        serde_json::from_str(&stdout).unwrap()
    };
    let gaussian = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/fixtures/gaussian");
    let flipped = dir.join("gaussian-noise-at-one");
    toolchain(&[
        "-m",
        "rtchunk_train.rebundle",
        &path(&gaussian),
        &path(&flipped),
        "--noise-at-one",
    ]);
    let (expected, got) = (run(&gaussian), run(&flipped));
    assert_eq!(expected["swaps"], got["swaps"]);
    let seam = |m: &serde_json::Value| m["seam_jump"]["mean"].as_f64().unwrap();
    assert!(
        (seam(&expected) - seam(&got)).abs() <= 1e-4,
        "{expected}\n{got}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A float16 bundle rewritten to take the time in float32 (`time_dtype`, cast inside the graphs) is loaded with
/// its `tau` input in float32 and replays the original's recording exactly as the original does.
#[test]
fn a_half_precision_bundle_can_take_the_time_in_float32() {
    let dir = std::env::temp_dir().join(format!("rtchunk-{}-time-f32", std::process::id()));
    let original =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/fixtures/gta-toy-fp16");
    let rewritten = dir.join("gta-toy-fp16-time-f32");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    toolchain(&[
        "-m",
        "rtchunk_train.rebundle",
        &path(&original),
        &path(&rewritten),
        "--time-float32",
    ]);
    let manifest = std::fs::read_to_string(rewritten.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("\"time_dtype\": \"float32\""),
        "{manifest}"
    );
    let inspect = |bundle: &std::path::Path| -> serde_json::Value {
        let (out, _) = rtchunk_ok(&["inspect", &path(bundle), "--json"]);
        serde_json::from_str(out.trim()).unwrap()
    };
    let (expected, got) = (inspect(&original), inspect(&rewritten));
    for error in ["velocity_error", "vjp_error", "rtc_error"] {
        assert_eq!(expected[error], got[error], "{error}: {got}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_delay_benchmark_refuses_to_evaluate_on_training_episodes() {
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim/policies");
    let output = rtchunk(&[
        "bench",
        "delay",
        "--task",
        "reach",
        "--methods",
        "naive",
        "--delays",
        "0",
        "--rollouts",
        "20",
        "--seed",
        "3990",
        "--policies",
        policies.to_str().unwrap(),
        "--out",
        "/tmp",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("reach/base-s0: trained on episode seeds 0..4000, which overlap the evaluation's 3990..4010"),
        "{stderr}"
    );
}

#[test]
fn a_missing_policy_bundle_names_the_script_that_trains_it() {
    let output = rtchunk(&[
        "bench",
        "delay",
        "--task",
        "reach",
        "--rollouts",
        "2",
        "--policies",
        "/nonexistent",
        "--out",
        "/tmp",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/reach/")
            && stderr.contains("scripts/train-bench-policies.sh"),
        "{stderr}"
    );
}

/// Every numeric key of the configuration, set one at a time to ordinary and extreme values: whatever
/// `check-config` accepts, `rtchunk run` either runs or fails with an error; it never panics or hangs.
#[test]
fn every_configuration_check_config_accepts_runs_or_fails_cleanly() {
    const FLOATS: [&str; 10] = [
        "0.0", "1e-300", "-1.0", "1e-3", "0.5", "3.0", "1e6", "1e300", "inf", "nan",
    ];
    const INTEGERS: [&str; 7] = ["0", "1", "2", "7", "1000", "100000", "9223372036854775807"];
    let float_keys = [
        ("clock", "policy_rate_hz"),
        ("clock", "controller_rate_hz"),
        ("io", "stale_after_ms"),
        ("io", "status_rate_hz"),
        ("io", "replan_after_ms"),
        ("policy", "server_timeout_ms"),
        ("policy", "spread"),
        ("policy", "correlation_length"),
        ("policy", "separation"),
        ("policy", "path_speed"),
        ("sampler", "beta"),
        ("plant", "mass"),
        ("plant", "damping"),
        ("plant", "goal_radius"),
        ("plant", "obstacle_radius"),
        ("plant", "half_extent"),
        ("safety", "max_velocity"),
        ("safety", "max_delta"),
        ("safety", "position_min"),
        ("safety", "position_max"),
        ("controller", "kp"),
        ("controller", "kd"),
        ("controller", "max_effort"),
    ];
    let integer_keys = [
        ("policy", "horizon"),
        ("policy", "intra_threads"),
        ("sampler", "steps"),
        ("sampler", "seed"),
        ("scheduler", "execution_horizon"),
        ("scheduler", "delay_buffer"),
        ("scheduler", "initial_delay"),
        ("clock", "inference_delay_ticks"),
        ("clock", "inference_delay_jitter_ticks"),
        ("clock", "seed"),
        ("realtime", "fifo_priority"),
        ("realtime", "io_fifo_priority"),
        ("realtime", "cpu"),
        ("realtime", "spin_margin_us"),
    ];
    let mut cases = Vec::new();
    for (section, key) in float_keys {
        for value in FLOATS {
            cases.push(format!("[{section}]\n{key} = {value}\n"));
        }
    }
    for (section, key) in integer_keys {
        for value in INTEGERS {
            cases.push(format!("[{section}]\n{key} = {value}\n"));
        }
    }
    // Keep the runs short and unprivileged (no memory locking, no SCHED_FIFO), except for the key under test.
    let base = |case: &str| {
        ["lock_memory = false\n", "fifo_priority = 0\n"]
            .into_iter()
            .filter(|line| !case.contains(line.split(' ').next().unwrap()))
            .collect::<String>()
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let (cases, next, accepted) = (&cases, &next, &accepted);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { return };
                    let realtime = format!("[realtime]\n{}", base(case));
                    let text = if case.starts_with("[realtime]") {
                        case.replace("[realtime]\n", &realtime)
                    } else {
                        format!("{realtime}{case}")
                    };
                    let file = temp_file(&format!("fuzz-{worker}-{i}.toml"), &text);
                    let path = file.to_str().unwrap();
                    let check = rtchunk(&["check-config", path]);
                    let stderr = String::from_utf8_lossy(&check.stderr);
                    assert!(
                        matches!(check.status.code(), Some(0 | 1)) && !stderr.contains("panicked"),
                        "check-config on {case:?}: {:?} {stderr}",
                        check.status
                    );
                    if check.status.success() {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let (code, stderr) = run_briefly(path);
                        assert!(
                            matches!(code, Some(0 | 1)) && !stderr.contains("panicked"),
                            "run on {case:?} (accepted by check-config): {code:?} {stderr}"
                        );
                    }
                    std::fs::remove_file(&file).ok();
                }
            });
        }
    });
    let accepted = accepted.into_inner();
    assert!(
        accepted > cases.len() / 4 && accepted < cases.len(),
        "{accepted} of {} cases accepted: the set probes both sides of the rules",
        cases.len()
    );
}

/// Runs `rtchunk run FILE --seconds 0.2`; returns its exit code and standard error, failing the test
/// if it has not ended within 20 s.
fn run_briefly(config: &str) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtchunk"))
        .args(["run", config, "--seconds", "0.2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rtchunk starts");
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waits") {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).ok();
            return (status.code(), stderr);
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().ok();
            panic!("rtchunk run {config} did not end within 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_stalled_runtime_skips_and_counts_the_periods_it_missed_and_executes_no_action_twice() {
    // The point mass at 500 Hz on the real clock; the whole process is stopped for 300 ms, as a CPU hog that
    // takes the controller's core would stop it, only harder.
    let (config, log) = point_mass_on_the_real_clock("stall");
    let child = spawn_recorded_run(&config, &log, "3");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let stall = std::time::Duration::from_millis(300);
    // SAFETY: stops and continues the child process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
    std::thread::sleep(stall);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let metrics: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let missed = metrics["missed_ticks"].as_u64().unwrap();
    // 300 ms at 500 Hz is 150 periods; the stop and continue signals take a little of it.
    assert!(
        (120..=400).contains(&missed),
        "{missed} periods missed: {metrics}"
    );
    let session = rtchunk_runtime::recording::format::read_log(&log).unwrap();
    assert!(session.complete);
    assert_eq!(
        session.ticks.len(),
        1500,
        "every controller tick ran, none twice"
    );
    let counted: u64 = session.ticks.iter().map(|t| u64::from(t.missed)).sum();
    assert_eq!(
        counted, missed,
        "each skip is in the log, at the tick after it"
    );
    let mut executed: Vec<(u64, u32)> = session
        .ticks
        .iter()
        .filter_map(|t| t.policy)
        .filter(|p| p.kind == rtchunk_runtime::core::record::TickKind::Executed)
        .map(|p| (p.chunk_seq, p.index))
        .collect();
    let count = executed.len();
    executed.dedup();
    assert_eq!(executed.len(), count, "no action executed twice");
    // The schedule, stall included, replays exactly.
    use rtchunk_runtime::recording::replay::{ReplayMode, replay};
    let replayed = replay(&session, ReplayMode::ExactOutput, None).unwrap();
    assert!(replayed.identical(), "{replayed:?}");
    println!("a 300 ms stall at 500 Hz: {missed} periods skipped and counted");
}

#[test]
fn a_log_that_cannot_grow_stops_and_says_so_while_the_run_goes_on() {
    use std::os::unix::process::CommandExt;
    // The point mass at 500 Hz for 2 s, recorded into a file the kernel lets grow to 64 KiB only: the writes
    // beyond fail.
    let (config, log) = point_mass_on_the_real_clock("full");
    const LIMIT: u64 = 64 * 1024;
    let mut command = Command::new(env!("CARGO_BIN_EXE_rtchunk"));
    command
        .args(["run", config.to_str().unwrap(), "--seconds", "2", "--json"])
        .args(["--record", log.to_str().unwrap()]);
    // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe and touches no memory the
    // parent shares.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    check_cut_short(command.output().unwrap(), &log, "File too large", LIMIT);
}

#[test]
fn a_log_on_a_disk_that_fills_up_stops_and_says_so_while_the_run_goes_on() {
    // The same run recorded onto a 64 KiB tmpfs of its own (a private mount namespace: root, util-linux's
    // unshare and mount); the log is copied out before the namespace, and the tmpfs with it, goes away.
    let (config, log) = point_mass_on_the_real_clock("tmpfs");
    let disk = log.with_extension("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let on_disk = disk.join("run.log");
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs -o size=64k rtchunk-test {disk} || exit 99
         {rtchunk} run {config} --seconds 2 --json --record {on_disk}; status=$?
         cp {on_disk} {log}; exit $status",
        disk = disk.display(),
        rtchunk = env!("CARGO_BIN_EXE_rtchunk"),
        config = config.display(),
        on_disk = on_disk.display(),
        log = log.display(),
    );
    let output = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .expect("util-linux's unshare runs");
    assert_ne!(
        output.status.code(),
        Some(99),
        "this test mounts a tmpfs in a mount namespace of its own, which needs root: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_cut_short(output, &log, "No space left on device", 64 * 1024);
}

/// Checks a recorded run of 1 000 ticks whose log stopped early with `error`: the run went on and said so, and
/// the log (at most `limit` bytes) reads as a clean prefix of the run.
fn check_cut_short(output: std::process::Output, log: &Path, error: &str, limit: u64) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let metrics: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        metrics["controller_ticks"], 1000,
        "the run went on: {metrics}"
    );
    assert!(
        stderr.contains(&format!("the log stopped early: {error}")),
        "{stderr}"
    );
    let size = std::fs::metadata(log).unwrap().len();
    assert!(size <= limit, "{size} bytes");
    let session = rtchunk_runtime::recording::format::read_log(log).unwrap();
    assert!(!session.complete);
    assert!(
        session.ticks.len() > 100,
        "{} ticks kept",
        session.ticks.len()
    );
    for (i, tick) in session.ticks.iter().enumerate() {
        assert_eq!(tick.controller_tick, i as u64, "a clean prefix of the run");
    }
    // Every tick is either in the log or counted as lost.
    let report = stderr
        .lines()
        .find(|l| l.contains("stopped early"))
        .unwrap();
    let lost: usize = report
        .split(" ticks, ")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of lost ticks in {report:?}"));
    assert_eq!(session.ticks.len() + lost, 1000, "{report}");
    println!(
        "{} of 1000 ticks kept in {size} bytes; {}",
        session.ticks.len(),
        stderr
            .lines()
            .find(|l| l.contains("stopped early"))
            .unwrap()
    );
}

/// The point-mass example on the real clock without real-time privileges, written as `name`.toml in a folder of
/// its own; returns it and the path of a log beside it.
fn point_mass_on_the_real_clock(name: &str) -> (PathBuf, PathBuf) {
    let example =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/examples/point-mass-rtc.toml");
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("fifo_priority = 80", "fifo_priority = 0")
        .replace("lock_memory = true", "lock_memory = false");
    let dir = std::env::temp_dir().join(format!("rtchunk-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (config, log) = (
        dir.join(format!("{name}.toml")),
        dir.join(format!("{name}.log")),
    );
    std::fs::write(&config, text).unwrap();
    (config, log)
}

#[test]
fn a_log_deleted_while_recording_is_reported_and_the_run_goes_on() {
    let (config, log) = point_mass_on_the_real_clock("deleted");
    let child = spawn_recorded_run(&config, &log, "2");
    std::thread::sleep(std::time::Duration::from_millis(800));
    std::fs::remove_file(&log).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let metrics: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        metrics["controller_ticks"], 1000,
        "the run went on: {metrics}"
    );
    assert!(
        stderr.contains(
            "the log stopped early: the log file was deleted or replaced while recording"
        ),
        "{stderr}"
    );
}

#[test]
fn a_robot_configuration_listening_beyond_loopback_needs_tls_files_that_exist_or_allow_insecure() {
    let example =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/examples/robot-zenoh.toml");
    let bundle = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim/policies/reach/base-s0");
    let text = std::fs::read_to_string(example).unwrap().replace(
        "bundle = \"../../sim/policies/reach/base-s0\"",
        &format!("bundle = {:?}", bundle.display().to_string()),
    );
    let write = |name: &str, text: String| {
        let path = std::env::temp_dir().join(format!("rtchunk-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    };
    let open = text.replace("tcp/127.0.0.1:7450", "tcp/0.0.0.0:7450");
    let tls = format!(
        "{}\n[io.tls]\nca = \"/nonexistent/ca.pem\"\ncertificate = \"/nonexistent/robot.pem\"\nkey = \"/nonexistent/robot.key\"\n",
        text.replace("tcp/127.0.0.1:7450", "tls/0.0.0.0:7450")
    );
    for (name, text, expected) in [
        (
            "open",
            open,
            "io.listen: tcp/0.0.0.0:7450 can be reached beyond this machine without TLS",
        ),
        ("tls", tls, "io.tls.ca: /nonexistent/ca.pem: no such file"),
    ] {
        let config = write(name, text);
        // Valid as a configuration; refused when the link opens, naming what to change.
        rtchunk_ok(&["check-config", config.to_str().unwrap()]);
        let output = rtchunk(&["run", config.to_str().unwrap(), "--seconds", "1"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "{name}: {stderr}"
        );
    }
}

/// `rtchunk run CONFIG --seconds SECONDS --json --record LOG`, started with its output piped.
fn spawn_recorded_run(
    config: &std::path::Path,
    log: &std::path::Path,
    seconds: &str,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_rtchunk"))
        .args([
            "run",
            config.to_str().unwrap(),
            "--seconds",
            seconds,
            "--json",
        ])
        .args(["--record", log.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// A LeRobotDataset directory as LeRobot's own `LeRobotDataset` loads it (`runtime/tests/read_lerobot.py`, which
/// also checks `meta/stats.json` against the frames).
fn loaded_by_lerobot(dir: &Path) -> serde_json::Value {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(repo.join(".venv-lerobot/bin/python"))
        .arg(repo.join("runtime/tests/read_lerobot.py"))
        .arg(dir)
        .output()
        .expect("LeRobot's Python runs (scripts/setup.sh --with-lerobot installs it)");
    assert!(
        output.status.success(),
        "LeRobot could not load {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A JSON array of numbers as f32 values (exact: the numbers were f32 to begin with).
fn f32s(value: &serde_json::Value) -> Vec<f32> {
    let numbers = value.as_array().unwrap();
    numbers.iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

#[test]
fn demonstrations_collected_as_a_lerobot_dataset_load_in_lerobot_value_for_value() {
    let dir = std::env::temp_dir().join(format!("rtchunk-{}-reach-lerobot", std::process::id()));
    let npz = dir.with_extension("npz");
    let options = ["--seed", "11", "--camera-width", "42"];
    collect_demonstrations("reach", 3, &options, &npz);
    let lerobot_options = [&options[..], &["--format", "lerobot"]].concat();
    collect_demonstrations("reach", 3, &lerobot_options, &dir);
    let loaded = loaded_by_lerobot(&dir);
    // The .npz the same command writes, read by numpy, is the truth.
    let script = "import sys, json, numpy as np; d = np.load(sys.argv[1]); \
                  print(json.dumps({'observation': d['observation'].tolist(), 'action': d['action'].tolist(), \
                  'episode_index': d['episode_index'].tolist(), 'camera0': [i.tobytes().hex() for i in d['camera0']]}))";
    let truth: serde_json::Value =
        serde_json::from_str(&toolchain(&["-c", script, npz.to_str().unwrap()])).unwrap();
    let frames = &loaded["frames"];
    let rows = truth["action"].as_array().unwrap().len();
    assert_eq!(loaded["total_frames"], rows);
    assert_eq!(loaded["fps"], 30);
    for row in 0..rows {
        assert_eq!(
            f32s(&frames["state"][row]),
            f32s(&truth["observation"][row]),
            "row {row}"
        );
        assert_eq!(
            f32s(&frames["action"][row]),
            f32s(&truth["action"][row]),
            "row {row}"
        );
        assert_eq!(
            frames["episode_index"][row], truth["episode_index"][row],
            "row {row}"
        );
        assert_eq!(frames["index"][row], row);
        let frame_index = frames["frame_index"][row].as_u64().unwrap();
        assert_eq!(
            frames["timestamp"][row].as_f64().unwrap() as f32,
            (frame_index as f64 / 30.0) as f32
        );
        assert_eq!(
            loaded["images"]["observation.images.camera0"][row], truth["camera0"][row],
            "row {row}: the image LeRobot decodes is the one the simulator drew"
        );
    }
    let episodes = loaded["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 3);
    assert_eq!(episodes[0]["dataset_from_index"], 0);
    assert_eq!(episodes[2]["dataset_to_index"], rows);
    assert!(
        frames["task"][0].as_str().unwrap().contains("point mass"),
        "{}",
        frames["task"][0]
    );
    assert_eq!(
        loaded["features"]["observation.state"]["names"],
        serde_json::json!(["x", "y", "vx", "vy"])
    );
    assert_eq!(
        loaded["features"]["observation.images.camera0"]["shape"],
        serde_json::json!([22, 42, 3])
    );
    // The training toolchain reads the directory into exactly the arrays of the .npz.
    let same = "import sys, numpy as np; from pathlib import Path; from rtchunk_train import dataset; \
                a, b = dataset.load(Path(sys.argv[1])), dataset.load(Path(sys.argv[2])); \
                print(int(all(np.array_equal(getattr(a, f), getattr(b, f)) \
                for f in ('observation', 'action', 'episode_index', 'camera'))))";
    assert_eq!(
        toolchain(&["-c", same, dir.to_str().unwrap(), npz.to_str().unwrap()]).trim(),
        "1"
    );
    // A second export into the same directory is refused, naming it.
    let again = rtchunk(
        &[
            &[
                "sim",
                "collect",
                "--task",
                "reach",
                "--episodes",
                "1",
                "--out",
                dir.to_str().unwrap(),
            ][..],
            &["--format", "lerobot"],
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && stderr.contains("not empty") && stderr.contains("reach-lerobot"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_file(&npz).ok();
}

#[test]
fn recorded_runs_export_as_a_lerobot_dataset_one_episode_per_log() {
    use rtchunk_runtime::recording::format::read_log;
    let config = examples()
        .into_iter()
        .find(|f| f.ends_with("point-mass-rtc.toml"))
        .unwrap();
    let logs: Vec<PathBuf> = ["2", "1"]
        .iter()
        .enumerate()
        .map(|(i, seconds)| {
            let log =
                std::env::temp_dir().join(format!("rtchunk-{}-export-{i}.log", std::process::id()));
            rtchunk_ok(&[
                "run",
                config.to_str().unwrap(),
                "--seconds",
                seconds,
                "--record",
                log.to_str().unwrap(),
            ]);
            log
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("rtchunk-{}-runs-lerobot", std::process::id()));
    let mut args = vec!["export", "lerobot"];
    args.extend(logs.iter().map(|l| l.to_str().unwrap()));
    args.extend(["--out", dir.to_str().unwrap(), "--task", "reach the goal"]);
    let (stdout, _) = rtchunk_ok(&args);
    assert!(stdout.contains("2 episodes"), "{stdout}");
    let loaded = loaded_by_lerobot(&dir);
    let frames = &loaded["frames"];
    let mut row = 0;
    for (episode, log) in logs.iter().enumerate() {
        let session = read_log(log).unwrap();
        let (observation_dim, action_dim) =
            (session.header.observation_dim, session.header.action_dim);
        let policy_ticks = session
            .ticks
            .iter()
            .filter_map(|t| t.policy.map(|p| (t, p)));
        for (frame_index, (tick, policy)) in policy_ticks.enumerate() {
            let action = if policy.kind.carries_action() {
                &tick.action
            } else {
                &tick.command
            };
            assert_eq!(
                f32s(&frames["state"][row]),
                tick.observation[..observation_dim],
                "row {row}"
            );
            assert_eq!(
                f32s(&frames["action"][row]),
                action[..action_dim],
                "row {row}"
            );
            assert_eq!(frames["episode_index"][row], episode);
            assert_eq!(frames["frame_index"][row], frame_index);
            assert_eq!(frames["task"][row], "reach the goal");
            row += 1;
        }
        assert!(row > 0);
    }
    assert_eq!(
        loaded["total_frames"], row,
        "every policy tick is a frame, nothing else"
    );
    assert_eq!(loaded["total_episodes"], 2);
    assert_eq!(loaded["fps"], 50, "the policy rate");
    std::fs::remove_dir_all(&dir).ok();
    logs.iter().for_each(|l| drop(std::fs::remove_file(l)));
}
