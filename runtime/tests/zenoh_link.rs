//! The zenoh link on real loopback sessions: every kind of bad input is rejected, counted and kept from the
//! controller's plant; stale state makes the plant hold and fresh state resumes it; the threads on a state's way
//! in and its command's way out can be put under SCHED_FIFO; a stop request is repeated until the link confirms it.

use nalgebra::DVector;
use rtchunk_config::{IoConfig, OnStale};
use rtchunk_controllers::{Freshness, Plant, RobotState};
use rtchunk_policy::Camera;
use rtchunk_runtime::core::clock::wall_clock_ns;
use rtchunk_runtime::core::cpu_reservation::{
    LINK_ACTION_THREAD, ZENOH_LINK_THREADS, threads_named,
};
use rtchunk_runtime::core::rt_setup::Step;
use rtchunk_runtime::io::link::{LinkCounters, RobotLink, ZenohPlant};
use rtchunk_runtime::io::protocol::{
    ActionMessage, CameraImage, ControlCommand, Encode, RejectKind, StateMessage,
};
use rtchunk_runtime::io::session::{Topics, free_loopback_port, open_session};
use rtchunk_runtime::io::stop_request::StopRequest;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use zenoh::Wait;

const JOINTS: usize = 2;
const OBSERVATION: usize = 3;

/// A robot link listening on a fresh loopback port, and a second session (the "robot") connected to it.
fn link_and_robot(
    name: &str,
    stale_after_ms: f64,
) -> (RobotLink, ZenohPlant, zenoh::Session, Topics) {
    link_and_robot_with(name, stale_after_ms, OnStale::Hold, false, &[])
}

/// [`link_and_robot`] with what stale state does, whether to wait for a start command, and the policy's cameras.
fn link_and_robot_with(
    name: &str,
    stale_after_ms: f64,
    on_stale: OnStale,
    wait_for_start: bool,
    cameras: &[Camera],
) -> (RobotLink, ZenohPlant, zenoh::Session, Topics) {
    let endpoint = format!("tcp/127.0.0.1:{}", free_loopback_port().unwrap());
    let namespace = format!("test-{}-{name}", std::process::id());
    let io = IoConfig {
        listen: vec![endpoint.clone()],
        namespace: namespace.clone(),
        stale_after_ms,
        on_stale,
        wait_for_start,
        ..IoConfig::default()
    };
    let (link, plant) = RobotLink::open(&io, JOINTS, OBSERVATION, cameras).unwrap();
    (link, plant, robot_session(&io), Topics::new(&namespace))
}

/// A robot's session connected to the link that `io` opened.
fn robot_session(io: &IoConfig) -> zenoh::Session {
    open_session(&IoConfig {
        listen: vec![],
        connect: io.listen.clone(),
        namespace: io.namespace.clone(),
        ..IoConfig::default()
    })
    .unwrap()
}

fn state(value: f64) -> StateMessage {
    StateMessage {
        position: vec![value; JOINTS],
        velocity: vec![-value; JOINTS],
        observation: vec![value as f32; OBSERVATION],
        images: Vec::new(),
    }
}

fn put(robot: &zenoh::Session, topic: &str, bytes: Vec<u8>) {
    robot.put(topic, bytes).wait().unwrap();
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn read(plant: &mut ZenohPlant) -> (RobotState, Vec<f32>, Freshness) {
    let mut robot_state = RobotState::zeros(JOINTS);
    let mut observation = vec![0.0f32; OBSERVATION];
    plant.read(&mut robot_state, &mut observation);
    (robot_state, observation, plant.freshness())
}

fn accepted(counters: &LinkCounters) -> u64 {
    counters.states_accepted.load(Ordering::Relaxed)
}

/// Sends states from `source` (sequence numbers from `first_seq` on) until the link accepts one (zenoh delivers
/// once the sessions have connected); returns the last sequence number sent.
fn send_until_accepted(
    robot: &zenoh::Session,
    topics: &Topics,
    counters: &LinkCounters,
    source: u32,
    first_seq: u64,
) -> u64 {
    let mut seq = first_seq - 1;
    wait_for("the first state", || {
        seq += 1;
        put(
            robot,
            &topics.state,
            state(1.0).encode(0, source, seq, wall_clock_ns()),
        );
        std::thread::sleep(Duration::from_millis(20));
        accepted(counters) > 0
    });
    seq
}

#[test]
fn every_kind_of_bad_input_is_rejected_counted_and_kept_from_the_controller() {
    let (link, mut plant, robot, topics) = link_and_robot("bad", 5_000.0);
    let counters = link.counters().clone();
    let seq = send_until_accepted(&robot, &topics, &counters, 7, 1);
    let good = accepted(&counters);

    let valid = state(2.0).encode(0, 7, seq + 100, wall_clock_ns());
    let mut wrong_magic = valid.clone();
    wrong_magic[0] = b'X';
    let mut wrong_version = valid.clone();
    wrong_version[4] = 9;
    let mut truncated = valid.clone();
    truncated.pop();
    let wrong_kind = ActionMessage {
        tick: 1,
        state_seq: 1,
        command: vec![0.0; JOINTS],
    }
    .encode(0, 7, seq + 101, wall_clock_ns());
    let wrong_dimensions = StateMessage {
        position: vec![0.0; JOINTS + 1],
        velocity: vec![0.0; JOINTS + 1],
        observation: vec![0.0; OBSERVATION],
        images: Vec::new(),
    }
    .encode(0, 7, seq + 102, wall_clock_ns());
    let mut nan = state(3.0);
    nan.observation[1] = f32::NAN;
    let mut infinite = state(3.0);
    infinite.velocity[0] = f64::INFINITY;
    let out_of_order = state(4.0).encode(0, 7, 1, wall_clock_ns());
    let mut bad_control = ControlCommand::Start.encode(0, 7, 1, wall_clock_ns());
    *bad_control.last_mut().unwrap() = 99;

    let cases: Vec<(&str, Vec<u8>, RejectKind)> = vec![
        ("five bytes", vec![1, 2, 3, 4, 5], RejectKind::Malformed),
        ("wrong magic", wrong_magic, RejectKind::Malformed),
        ("truncated body", truncated, RejectKind::Malformed),
        ("schema version 9", wrong_version, RejectKind::Version),
        (
            "an action on the state topic",
            wrong_kind,
            RejectKind::WrongKind,
        ),
        ("three joints", wrong_dimensions, RejectKind::Dimensions),
        (
            "NaN observation",
            nan.encode(0, 7, seq + 103, wall_clock_ns()),
            RejectKind::NonFinite,
        ),
        (
            "infinite velocity",
            infinite.encode(0, 7, seq + 104, wall_clock_ns()),
            RejectKind::NonFinite,
        ),
        (
            "an old sequence number",
            out_of_order,
            RejectKind::OutOfOrder,
        ),
    ];
    for (name, bytes, kind) in cases {
        let before = counters.rejected(kind);
        put(&robot, &topics.state, bytes);
        wait_for(name, || counters.rejected(kind) == before + 1);
        let (robot_state, observation, freshness) = read(&mut plant);
        assert_eq!(freshness, Freshness::Fresh, "{name}");
        assert_eq!(
            robot_state.position.as_slice(),
            &[1.0; JOINTS],
            "{name} reached the controller"
        );
        assert_eq!(
            robot_state.velocity.as_slice(),
            &[-1.0; JOINTS],
            "{name} reached the controller"
        );
        assert_eq!(
            observation,
            vec![1.0f32; OBSERVATION],
            "{name} reached the controller"
        );
    }
    put(&robot, &topics.control, bad_control);
    wait_for("the bad control command", || {
        counters.rejected(RejectKind::WrongKind) == 2
    });
    assert_eq!(accepted(&counters), good);
    assert!(!link.control().stop.load(Ordering::Relaxed));

    // The controller keeps working: the next good state gets through, and a command goes out.
    put(&robot, &topics.state, valid);
    wait_for("the next good state", || accepted(&counters) == good + 1);
    let (robot_state, observation, _) = read(&mut plant);
    assert_eq!(robot_state.position.as_slice(), &[2.0; JOINTS]);
    assert_eq!(observation, vec![2.0f32; OBSERVATION]);
    plant.write(&DVector::from_element(JOINTS, 0.5));
    wait_for("the command", || {
        counters.actions_published.load(Ordering::Relaxed) == 1
    });

    // An emergency stop on the control topic ends the run.
    put(
        &robot,
        &topics.control,
        ControlCommand::EmergencyStop.encode(0, 7, 2, wall_clock_ns()),
    );
    wait_for("the emergency stop", || {
        counters.emergency_stops.load(Ordering::Relaxed) == 1
    });
    assert_eq!(read(&mut plant).2, Freshness::Stop);
    link.close();
}

#[test]
fn stale_state_holds_and_fresh_state_resumes() {
    let stale_after_ms = 100.0;
    let (link, mut plant, robot, topics) = link_and_robot("stale", stale_after_ms);
    let counters = link.counters().clone();
    assert_eq!(read(&mut plant).2, Freshness::Stale, "no state yet: hold");
    let mut seq = 0u64;
    let mut publish_for = |duration: Duration, plant: &mut ZenohPlant| {
        let end = Instant::now() + duration;
        let mut fresh = 0;
        while Instant::now() < end {
            seq += 1;
            put(
                &robot,
                &topics.state,
                state(seq as f64).encode(0, 9, seq, wall_clock_ns()),
            );
            std::thread::sleep(Duration::from_millis(10));
            fresh += usize::from(read(plant).2 == Freshness::Fresh);
        }
        fresh
    };
    assert!(publish_for(Duration::from_millis(500), &mut plant) > 10);
    // The robot goes quiet: within the limit (plus a little transport slack) the plant holds.
    let quiet = Instant::now();
    while read(&mut plant).2 == Freshness::Fresh {
        std::thread::sleep(Duration::from_millis(1));
    }
    let held_after = quiet.elapsed().as_secs_f64() * 1e3;
    assert!(
        held_after <= stale_after_ms + 50.0,
        "held only after {held_after:.0} ms"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(read(&mut plant).2, Freshness::Stale);
    // It comes back: the plant resumes.
    assert!(publish_for(Duration::from_millis(300), &mut plant) > 5);
    assert_eq!(read(&mut plant).2, Freshness::Fresh);
    assert!(accepted(&counters) > 20);
    link.close();
}

#[test]
fn a_start_command_gates_execution_and_stale_state_can_stop_the_run() {
    let (link, mut plant, robot, topics) =
        link_and_robot_with("gate", 100.0, OnStale::Stop, true, &[]);
    let counters = link.counters().clone();
    let mut seq = 0u64;
    let mut publish = |robot: &zenoh::Session| {
        seq += 1;
        put(
            robot,
            &topics.state,
            state(1.0).encode(0, 3, seq, wall_clock_ns()),
        );
    };
    wait_for("the first state", || {
        publish(&robot);
        std::thread::sleep(Duration::from_millis(10));
        accepted(&counters) > 0
    });
    publish(&robot);
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(
        read(&mut plant).2,
        Freshness::Stale,
        "fresh state, but no start command yet"
    );
    put(
        &robot,
        &topics.control,
        ControlCommand::Start.encode(0, 3, 1, wall_clock_ns()),
    );
    wait_for("the start command", || {
        publish(&robot);
        std::thread::sleep(Duration::from_millis(10));
        read(&mut plant).2 == Freshness::Fresh
    });
    // With on_stale = "stop", state that goes stale after the run has started ends it.
    wait_for("the stop on stale state", || {
        std::thread::sleep(Duration::from_millis(10));
        read(&mut plant).2 == Freshness::Stop
    });
    link.close();
}

/// With the `shm` feature both sessions use zenoh's shared-memory transport; state with a camera image far above
/// zenoh's 3 KB shared-memory threshold still flows, is validated and reaches the inference side.
#[cfg(feature = "shm")]
#[test]
fn state_flows_over_shared_memory() {
    let camera = Camera {
        name: "front".into(),
        height: 224,
        width: 224,
        channels: 3,
    };
    let (mut link, mut plant, robot, topics) = {
        let endpoint = format!("tcp/127.0.0.1:{}", free_loopback_port().unwrap());
        let namespace = format!("test-{}-shm", std::process::id());
        let io = IoConfig {
            listen: vec![endpoint.clone()],
            namespace: namespace.clone(),
            shared_memory: true,
            ..IoConfig::default()
        };
        let (link, plant) =
            RobotLink::open(&io, JOINTS, OBSERVATION, std::slice::from_ref(&camera)).unwrap();
        let robot = open_session(&IoConfig {
            listen: vec![],
            connect: vec![endpoint],
            ..io.clone()
        })
        .unwrap();
        (link, plant, robot, Topics::new(&namespace))
    };
    let mut feed = link.take_camera_feed().unwrap();
    let counters = link.counters().clone();
    let mut seq = 0;
    wait_for("state over shared memory", || {
        seq += 1;
        let message = StateMessage {
            images: vec![CameraImage {
                height: 224,
                width: 224,
                channels: 3,
                pixels: vec![200; camera.bytes()],
            }],
            ..state(4.0)
        };
        put(
            &robot,
            &topics.state,
            message.encode(0, 5, seq, wall_clock_ns()),
        );
        std::thread::sleep(Duration::from_millis(10));
        accepted(&counters) > 0
    });
    assert_eq!(read(&mut plant).1, vec![4.0f32; OBSERVATION]);
    feed.update();
    assert_eq!(feed.output_buffer().pixels, vec![200; camera.bytes()]);
    assert_eq!(counters.rejected_total(), 0);
    link.close();
}

#[test]
fn camera_images_go_to_the_inference_side_and_bad_ones_are_rejected() {
    let cameras = [
        Camera {
            name: "wrist".into(),
            height: 4,
            width: 6,
            channels: 3,
        },
        Camera {
            name: "depth".into(),
            height: 2,
            width: 2,
            channels: 1,
        },
    ];
    let (mut link, mut plant, robot, topics) =
        link_and_robot_with("camera", 1000.0, OnStale::Hold, false, &cameras);
    let mut feed = link
        .take_camera_feed()
        .expect("a policy with cameras gets a feed");
    let counters = link.counters().clone();
    let image = |height: u16, width: u16, channels: u8, value: u8| CameraImage {
        height,
        width,
        channels,
        pixels: vec![value; usize::from(height) * usize::from(width) * usize::from(channels)],
    };
    let with_images = |value: f64, images: Vec<CameraImage>| StateMessage {
        images,
        ..state(value)
    };
    let mut seq = 0;
    let mut send = |message: StateMessage| {
        seq += 1;
        put(
            &robot,
            &topics.state,
            message.encode(0, 5, seq, wall_clock_ns()),
        );
        // One at a time: the state subscriber keeps only the newest few (drop-oldest).
        std::thread::sleep(Duration::from_millis(30));
        seq
    };
    let good = send(with_images(1.0, vec![image(4, 6, 3, 7), image(2, 2, 1, 9)]));
    wait_for("the first state", || accepted(&counters) == 1);
    wait_for("its images", || {
        feed.update();
        feed.output_buffer().state_seq == good
    });
    let mut expected = vec![7u8; 72];
    expected.extend([9u8; 4]);
    assert_eq!(feed.output_buffer().pixels, expected);
    let (_, observation, _) = read(&mut plant);
    assert_eq!(observation, vec![1.0; OBSERVATION]);

    let mut truncated = with_images(2.0, vec![image(4, 6, 3, 1), image(2, 2, 1, 1)]).encode(
        0,
        5,
        100,
        wall_clock_ns(),
    );
    truncated.pop();
    let mut raw_encoding = with_images(2.0, vec![image(4, 6, 3, 1), image(2, 2, 1, 1)]).encode(
        0,
        5,
        101,
        wall_clock_ns(),
    );
    let encoding_at = 28 + 4 + 16 * JOINTS + 4 * OBSERVATION + 1 + 5;
    raw_encoding[encoding_at] = 3;
    let cases = [
        ("no images", send(state(2.0)), RejectKind::Dimensions),
        (
            "one camera missing",
            send(with_images(2.0, vec![image(4, 6, 3, 1)])),
            RejectKind::Dimensions,
        ),
        (
            "wrong size",
            send(with_images(2.0, vec![image(6, 4, 3, 1), image(2, 2, 1, 1)])),
            RejectKind::Dimensions,
        ),
    ];
    for bytes in [truncated, raw_encoding] {
        put(&robot, &topics.state, bytes);
        std::thread::sleep(Duration::from_millis(30));
    }
    wait_for("every bad state to be rejected", || {
        counters.rejected_total() == cases.len() as u64 + 2
    });
    assert_eq!(counters.rejected(RejectKind::Dimensions), 3);
    assert_eq!(counters.rejected(RejectKind::Malformed), 2);
    // Nothing rejected reached either side.
    feed.update();
    assert_eq!(feed.output_buffer().state_seq, good);
    let (_, observation, _) = read(&mut plant);
    assert_eq!(observation, vec![1.0; OBSERVATION]);
    assert_eq!(accepted(&counters), 1, "{cases:?}");
    link.close();
}

#[test]
fn the_transport_benchmark_measures_both_paths_for_each_image_size() {
    use rtchunk_runtime::studies::transport::{transport_benchmark, transport_table};
    let rows = transport_benchmark(&[(4, 6), (30, 40)], 20, 200.0, false).unwrap();
    assert_eq!(rows.len(), 2);
    for (row, (height, width)) in rows.iter().zip([(4u16, 6u16), (30, 40)]) {
        let message = StateMessage {
            position: Vec::new(),
            velocity: Vec::new(),
            observation: vec![0.5; 4],
            images: vec![CameraImage {
                height,
                width,
                channels: 3,
                pixels: vec![0; usize::from(height) * usize::from(width) * 3],
            }],
        };
        assert_eq!(row.message_bytes, message.encode(0, 1, 1, 0).len());
        // Every message but the five warm-up ones was timed on both paths.
        assert!(
            row.bare_ms.count >= 10 && row.rtchunk_ms.count >= 10,
            "{row:?}"
        );
        assert!(row.bare_ms.p50 > 0.0 && row.rtchunk_ms.p50 > 0.0, "{row:?}");
    }
    let table = transport_table(&rows, false);
    assert!(
        table.contains("30 x 40") && table.contains("shared memory off"),
        "{table}"
    );
}

/// Two bridge processes publish states (an old one lingering beside its replacement): the link locks onto one
/// source and takes the other only once the first has gone quiet for the stale limit; a backlog of states
/// delivered late is judged by when it was sent, and a source's states must all carry joints or all not.
#[test]
fn one_source_at_a_time_and_late_states_are_stale() {
    let stale_after_ms = 150.0;
    let io = IoConfig {
        listen: vec![format!("tcp/127.0.0.1:{}", free_loopback_port().unwrap())],
        namespace: format!("test-{}-sources", std::process::id()),
        stale_after_ms,
        ..IoConfig::default()
    };
    let (link, mut plant) = RobotLink::open(&io, JOINTS, OBSERVATION, &[]).unwrap();
    let (old_bridge, new_bridge) = (robot_session(&io), robot_session(&io));
    let topics = Topics::new(&io.namespace);
    let counters = link.counters().clone();
    let (old_source, new_source) = (11, 22);
    let settled = |what: &str, before: (u64, u64)| {
        wait_for(what, || {
            (accepted(&counters), counters.rejected_total()) != before
        });
    };
    let counts = || (accepted(&counters), counters.rejected_total());
    // The old bridge is first: it is locked on (repeated until the sessions are connected).
    let mut seq = send_until_accepted(&old_bridge, &topics, &counters, old_source, 100);
    let send =
        |session: &zenoh::Session, source: u32, seq: u64, message: StateMessage, stamp: u64| {
            let before = counts();
            put(
                session,
                &topics.state,
                message.encode(0, source, seq, stamp),
            );
            settled("the state to be judged", before);
        };
    // The new bridge (repeated until its session is connected), then an old sequence number of the old
    // bridge: both rejected.
    let mut new_seq = 0;
    wait_for("the new bridge's state", || {
        new_seq += 1;
        let message = state(5.0).encode(0, new_source, new_seq, wall_clock_ns());
        put(&new_bridge, &topics.state, message);
        std::thread::sleep(Duration::from_millis(20));
        counters.rejected(RejectKind::OtherSource) > 0
    });
    wait_for("every repeat", || {
        counters.rejected(RejectKind::OtherSource) == new_seq
    });
    assert_eq!(accepted(&counters), 1);
    send(&old_bridge, old_source, 5, state(6.0), wall_clock_ns());
    assert_eq!(counters.rejected(RejectKind::OutOfOrder), 1);
    seq += 1;
    send(&old_bridge, old_source, seq, state(2.0), wall_clock_ns());
    let (robot_state, _, freshness) = read(&mut plant);
    assert_eq!(
        (robot_state.position[0], freshness),
        (2.0, Freshness::Fresh)
    );
    // The old bridge goes quiet: after the stale limit the new one takes over, and the old one is shut out.
    std::thread::sleep(Duration::from_millis(stale_after_ms as u64 + 50));
    send(
        &new_bridge,
        new_source,
        new_seq + 2,
        state(3.0),
        wall_clock_ns(),
    );
    let (robot_state, _, freshness) = read(&mut plant);
    assert_eq!(
        (robot_state.position[0], freshness),
        (3.0, Freshness::Fresh)
    );
    seq += 1;
    send(&old_bridge, old_source, seq, state(7.0), wall_clock_ns());
    assert_eq!(counters.rejected(RejectKind::OtherSource), new_seq + 1);
    // A state without joints from a source that sends them is refused, not paired with old positions.
    let mut no_joints = state(8.0);
    no_joints.position.clear();
    no_joints.velocity.clear();
    send(
        &new_bridge,
        new_source,
        new_seq + 3,
        no_joints,
        wall_clock_ns(),
    );
    assert_eq!(counters.rejected(RejectKind::Dimensions), 1);
    // A state sent 1 s ago, delivered now (a backlog after a stall): accepted, but stale.
    send(
        &new_bridge,
        new_source,
        new_seq + 4,
        state(4.0),
        wall_clock_ns() - 1_000_000_000,
    );
    let (robot_state, _, freshness) = read(&mut plant);
    assert_eq!(
        (robot_state.position[0], freshness),
        (4.0, Freshness::Stale)
    );
    send(
        &new_bridge,
        new_source,
        new_seq + 5,
        state(5.0),
        wall_clock_ns(),
    );
    assert_eq!(read(&mut plant).2, Freshness::Fresh);
    new_bridge.close().wait().unwrap();
    link.close();
}

/// The scheduling policy of thread `tid` of this process.
fn policy_of(tid: libc::pid_t) -> i32 {
    // SAFETY: sched_getscheduler only reads the thread's policy (-1 for a thread that has gone).
    unsafe { libc::sched_getscheduler(tid) }
}

#[test]
fn the_threads_that_carry_a_state_in_and_its_command_out_run_under_sched_fifo() {
    let (link, _plant, robot, topics) = link_and_robot("fifo", 5_000.0);
    send_until_accepted(&robot, &topics, link.counters(), 7, 1);
    assert_eq!(link.prioritise_command_path(0), Step::Skipped);
    // Other tests' links run action threads of the same name in this process; only this link's is prioritised.
    let fifo_action_threads = || {
        threads_named(LINK_ACTION_THREAD)
            .into_iter()
            .filter(|&tid| policy_of(tid) == libc::SCHED_FIFO)
            .collect::<Vec<_>>()
    };
    assert!(fifo_action_threads().is_empty());
    // The receiving and the transmitting threads, and the reactor of the links (accepted or opened).
    for prefix in ["rx-", "tx-"] {
        assert!(
            !threads_named(prefix).is_empty(),
            "zenoh's {prefix}* threads run"
        );
    }
    assert!(!threads_named("acc-").is_empty() || !threads_named("net-").is_empty());
    let zenoh_threads: Vec<_> = ZENOH_LINK_THREADS
        .iter()
        .flat_map(|prefix| threads_named(prefix))
        .collect();
    let zenoh_threads = || zenoh_threads.iter();
    match link.prioritise_command_path(10) {
        Step::Applied(what) => {
            assert!(
                what.contains("rx-*")
                    && what.contains("tx-*")
                    && what.contains("rtchunk-actions")
                    && what.contains("priority 10"),
                "{what}"
            );
            for &tid in zenoh_threads() {
                assert_eq!(policy_of(tid), libc::SCHED_FIFO, "zenoh thread {tid}");
            }
            let actions = fifo_action_threads();
            assert_eq!(actions.len(), 1, "this link's action thread");
            // Leave this process's threads as the other tests expect them.
            let normal = libc::sched_param { sched_priority: 0 };
            for &tid in zenoh_threads().chain(&actions) {
                // SAFETY: a valid parameter for SCHED_OTHER on a thread of this process.
                unsafe { libc::sched_setscheduler(tid, libc::SCHED_OTHER, &normal) };
            }
        }
        Step::Refused(reason) => {
            // Without the right to SCHED_FIFO the run goes on under the normal scheduler, and says why.
            assert!(reason.contains("priority 10"), "{reason}");
            assert!(fifo_action_threads().is_empty());
            for &tid in zenoh_threads() {
                assert_eq!(policy_of(tid), libc::SCHED_OTHER, "zenoh thread {tid}");
            }
        }
        Step::Skipped => panic!("a priority above 0 is never skipped"),
    }
}

#[test]
fn a_stop_request_is_repeated_until_the_link_says_it_stopped() {
    let (link, _plant, robot, topics) = link_and_robot("stop", 150.0);
    // The runtime's side misses the first stop (as if it were lost on the way), then closes the link (final
    // status: stopped) once a repeated stop arrives.
    let control = link.control().clone();
    let runtime = std::thread::spawn(move || {
        wait_for("the stop", || control.stop.load(Ordering::Relaxed));
        control.stop.store(false, Ordering::Relaxed);
        wait_for("the stop again", || control.stop.load(Ordering::Relaxed));
        link.close();
    });
    let request = StopRequest::prepare(&robot, &topics).unwrap();
    assert!(request.send(Duration::from_secs(10)).unwrap());
    runtime.join().unwrap();
    // With no runtime left to answer, the request gives up after its timeout and says so.
    let unanswered = StopRequest::prepare(&robot, &topics).unwrap();
    let started = Instant::now();
    assert!(!unanswered.send(Duration::from_millis(300)).unwrap());
    assert!(started.elapsed() >= Duration::from_millis(300));
}
