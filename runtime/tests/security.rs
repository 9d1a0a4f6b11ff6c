//! Who may talk to the robot: the runtime's link listens over TLS with mutual authentication, and only a peer
//! whose certificate its CA signed reaches the state and control topics. Certificates are made at test time
//! with the `openssl` command (a test CA, the robot's and the bridge's certificates, and an intruder's signed by
//! another CA). The intruders are plain zenoh sessions configured the way anyone would, not through rtchunk.
//! Access control (the committed example, `config/zenoh/access-control.json5`) then decides which
//! certified peer may publish state and which may send control messages.

use rtchunk_config::{Config, IoConfig, PolicyKind, SamplerConfig, TlsConfig};
use rtchunk_runtime::core::clock::wall_clock_ns;
use rtchunk_runtime::core::messages::InferenceRequest;
use rtchunk_runtime::core::worker::ChunkSource;
use rtchunk_runtime::io::link::RobotLink;
use rtchunk_runtime::io::protocol::{ChunkQuery, ControlCommand, Encode, StateMessage};
use rtchunk_runtime::io::remote::{
    RemoteEngine, ServerReport, ServerSettings, infer_key, serve_policy,
};
use rtchunk_runtime::io::session::{IoError, Topics, free_loopback_port, open_session};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zenoh::Wait;

const JOINTS: usize = 2;
const OBSERVATION: usize = 3;

/// A throw-away public-key infrastructure in a temporary folder.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("rtchunk-pki-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.authority("ca");
        pki.authority("rogue-ca");
        pki.certificate("robot", "ca");
        pki.certificate("bridge", "ca");
        pki.certificate("operator", "ca");
        pki.certificate("intruder", "rogue-ca");
        pki
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("the openssl command runs (install openssl)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `openssl req` making a new P-256 key `name.key` (unencrypted) and, with `then`, what to do with it.
    fn new_key(&self, name: &str, then: &[&str]) {
        let key = format!("{name}.key");
        let subject = format!("/CN={name}");
        let mut args = vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        args.extend(["-keyout", &key, "-subj", &subject]);
        args.extend(then);
        self.openssl(&args);
    }

    /// A self-signed certificate authority `name` (name.pem, name.key).
    fn authority(&self, name: &str) {
        let pem = format!("{name}.pem");
        self.new_key(
            name,
            &[
                "-x509",
                "-out",
                &pem,
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }

    /// A certificate for `name` (common name `name`, valid for localhost) signed by `authority`.
    fn certificate(&self, name: &str, authority: &str) {
        let (csr, pem, extensions) = (
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(
            self.file(&extensions),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n\
             subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        self.new_key(name, &["-out", &csr]);
        let (ca, ca_key) = (format!("{authority}.pem"), format!("{authority}.key"));
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extensions,
        ]);
    }

    /// rtchunk's TLS settings for `name`, trusting the test CA.
    fn tls(&self, name: &str) -> TlsConfig {
        TlsConfig {
            ca: self.file("ca.pem"),
            certificate: self.file(&format!("{name}.pem")),
            key: self.file(&format!("{name}.key")),
            mutual: true,
        }
    }
}

/// A client session configured directly through zenoh, as a peer that is not rtchunk would be: `tls` names
/// files for keys of `transport/link/tls`; with a certificate among them it also presents it (`enable_mtls`).
fn foreign_session(endpoint: &str, tls: &[(&str, &Path)]) -> Option<zenoh::Session> {
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", "\"client\"").unwrap();
    config
        .insert_json5("connect/endpoints", &format!("[\"{endpoint}\"]"))
        .unwrap();
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    for (key, file) in tls {
        config
            .insert_json5(
                &format!("transport/link/tls/{key}"),
                &format!("\"{}\"", file.display()),
            )
            .unwrap();
    }
    if tls.iter().any(|(key, _)| *key == "connect_certificate") {
        config
            .insert_json5("transport/link/tls/enable_mtls", "true")
            .unwrap();
    }
    zenoh::open(config)
        .wait()
        .map_err(|e| eprintln!("{endpoint}: {e}"))
        .ok()
}

/// A peer that should not get in: what it tries, its TLS files, and the endpoint it dials.
struct Intruder {
    what: &'static str,
    tls: Vec<(&'static str, PathBuf)>,
    target: String,
}

fn state() -> Vec<u8> {
    StateMessage {
        position: vec![0.5; JOINTS],
        velocity: vec![0.0; JOINTS],
        observation: vec![0.5; OBSERVATION],
        images: Vec::new(),
    }
    .encode(0, 11, 1, wall_clock_ns())
}

#[test]
fn over_mutual_tls_only_peers_certified_by_the_robots_ca_reach_its_state_and_control_topics() {
    let pki = Pki::new("mtls");
    let endpoint = format!("tls/localhost:{}", free_loopback_port().unwrap());
    let namespace = format!("tls-{}", std::process::id());
    let topics = Topics::new(&namespace);
    let io = IoConfig {
        listen: vec![endpoint.clone()],
        namespace: namespace.clone(),
        tls: Some(pki.tls("robot")),
        ..IoConfig::default()
    };
    let (link, _plant) = RobotLink::open(&io, JOINTS, OBSERVATION, &[]).unwrap();
    let counters = link.counters().clone();
    let ca = pki.file("ca.pem");
    let intruders = [
        Intruder {
            what: "no certificate",
            tls: vec![("root_ca_certificate", ca.clone())],
            target: endpoint.clone(),
        },
        Intruder {
            what: "a certificate of another CA",
            tls: vec![
                ("root_ca_certificate", ca.clone()),
                ("connect_certificate", pki.file("intruder.pem")),
                ("connect_private_key", pki.file("intruder.key")),
            ],
            target: endpoint.clone(),
        },
        Intruder {
            what: "plain TCP to the TLS port",
            tls: vec![],
            target: endpoint.replace("tls/", "tcp/"),
        },
    ];
    let mut refused = 0;
    for Intruder { what, tls, target } in &intruders {
        let tls: Vec<(&str, &Path)> = tls.iter().map(|(k, f)| (*k, f.as_path())).collect();
        let Some(session) = foreign_session(target, &tls) else {
            refused += 1;
            continue;
        };
        // Connected at all (a client that could not would have failed to open): its messages must not land.
        let _ = session.put(topics.state.clone(), state()).wait();
        let stop = ControlCommand::EmergencyStop.encode(0, 12, 1, wall_clock_ns());
        let _ = session.put(topics.control.clone(), stop).wait();
        std::thread::sleep(Duration::from_millis(500));
        let reached = counters.states_accepted.load(Ordering::Relaxed)
            + counters.emergency_stops.load(Ordering::Relaxed)
            + counters.rejected_total();
        assert_eq!(reached, 0, "{what}: a message reached the link");
        refused += 1;
        let _ = session.close().wait();
    }
    assert_eq!(refused, intruders.len(), "unauthorised attempts refused");
    // The same helper with the bridge's certificate connects: the refusals above are the certificates' doing.
    let certified = foreign_session(
        &endpoint,
        &[
            ("root_ca_certificate", ca.as_path()),
            ("connect_certificate", pki.file("bridge.pem").as_path()),
            ("connect_private_key", pki.file("bridge.key").as_path()),
        ],
    )
    .expect("a peer with a certificate of the robot's CA connects");
    certified.close().wait().unwrap();

    // The bridge, certified by the robot's CA, through rtchunk's own configuration.
    let bridge = open_session(&IoConfig {
        listen: vec![],
        connect: vec![endpoint],
        namespace,
        tls: Some(pki.tls("bridge")),
        ..IoConfig::default()
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while counters.states_accepted.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the bridge's state never arrived"
        );
        bridge.put(topics.state.clone(), state()).wait().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = ControlCommand::EmergencyStop.encode(0, 11, 2, wall_clock_ns());
    bridge.put(topics.control.clone(), stop).wait().unwrap();
    while counters.emergency_stops.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the bridge's emergency stop never arrived"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "unauthorised attempts refused: {refused} of {}",
        intruders.len()
    );
    link.close();
}

#[test]
fn a_tls_setting_that_names_a_missing_file_is_refused_naming_it() {
    let pki = Pki::new("missing");
    let mut tls = pki.tls("robot");
    tls.key = pki.file("nowhere.key");
    let error = open_session(&IoConfig {
        listen: vec![format!("tls/localhost:{}", free_loopback_port().unwrap())],
        tls: Some(tls),
        ..IoConfig::default()
    })
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("io.tls.key") && error.contains("nowhere.key"),
        "{error}"
    );
}

/// Waits up to a second for `condition`.
fn arrives(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !condition() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// The committed access-control example `name` (in config/zenoh/) for `namespace`, written into the PKI's folder.
fn access_rules(pki: &Pki, name: &str, namespace: &str) -> PathBuf {
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/zenoh")
            .join(name),
    )
    .unwrap()
    .replace("rtchunk/", &format!("{namespace}/"));
    let acl = pki.file(name);
    std::fs::write(&acl, rules).unwrap();
    acl
}

#[test]
fn access_control_lets_the_bridge_publish_state_and_only_the_operator_send_control() {
    let pki = Pki::new("acl");
    let namespace = format!("acl{}", std::process::id());
    let acl = access_rules(&pki, "access-control.json5", &namespace);
    let endpoint = format!("tls/localhost:{}", free_loopback_port().unwrap());
    let io = IoConfig {
        listen: vec![endpoint.clone()],
        namespace: namespace.clone(),
        tls: Some(pki.tls("robot")),
        zenoh_config: Some(acl),
        ..IoConfig::default()
    };
    let (link, _plant) = RobotLink::open(&io, JOINTS, OBSERVATION, &[]).unwrap();
    let counters = link.counters().clone();
    let topics = Topics::new(&namespace);
    let peer = |name: &str| {
        open_session(&IoConfig {
            listen: vec![],
            connect: vec![endpoint.clone()],
            namespace: namespace.clone(),
            tls: Some(pki.tls(name)),
            ..IoConfig::default()
        })
        .unwrap()
    };
    let (bridge, operator) = (peer("bridge"), peer("operator"));
    let stop = |source| ControlCommand::EmergencyStop.encode(0, source, 1, wall_clock_ns());
    let stops = || counters.emergency_stops.load(Ordering::Relaxed);
    let states = || counters.states_accepted.load(Ordering::Relaxed);
    // Refused: the bridge sending control, the operator publishing state.
    bridge.put(topics.control.clone(), stop(21)).wait().unwrap();
    operator.put(topics.state.clone(), state()).wait().unwrap();
    assert!(
        !arrives(|| stops() + states() + counters.rejected_total() > 0),
        "a denied message arrived"
    );
    // Allowed: the bridge's state and the operator's emergency stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while states() == 0 {
        assert!(
            Instant::now() < deadline,
            "the bridge's state never arrived"
        );
        bridge.put(topics.state.clone(), state()).wait().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    operator
        .put(topics.control.clone(), stop(22))
        .wait()
        .unwrap();
    assert!(
        arrives(|| stops() == 1),
        "the operator's emergency stop never arrived"
    );
    println!("denied by access control: 2 of 2; allowed: 2 of 2");
    link.close();
}

/// A policy server for the committed reach policy on `endpoint` (mutual TLS as "policy-server", with the zenoh
/// configuration `zenoh_config` if given), running on its own thread until the flag it returns is set.
fn start_policy_server(
    pki: &Pki,
    endpoint: &str,
    namespace: &str,
    zenoh_config: Option<PathBuf>,
) -> (
    Arc<AtomicBool>,
    std::thread::JoinHandle<Result<ServerReport, IoError>>,
) {
    pki.certificate("policy-server", "ca");
    let mut config = Config {
        sampler: SamplerConfig::left_out(),
        ..Config::default()
    };
    config.policy.kind = PolicyKind::Bundle;
    config.policy.bundle =
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/policies/reach/base-s0"));
    rtchunk_runtime::core::policies::adopt_bundle_shape(&mut config).unwrap();
    let io = IoConfig {
        listen: vec![endpoint.to_string()],
        namespace: namespace.to_string(),
        tls: Some(pki.tls("policy-server")),
        zenoh_config,
        ..IoConfig::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || serve_policy(&config, &io, ServerSettings::default(), &stop))
    };
    (stop, server)
}

/// A robot's session to `endpoint`, over mutual TLS with the certificate of `name`.
fn robot_session(pki: &Pki, name: &str, endpoint: &str) -> zenoh::Session {
    open_session(&IoConfig {
        listen: vec![],
        connect: vec![endpoint.to_string()],
        tls: Some(pki.tls(name)),
        ..IoConfig::default()
    })
    .unwrap()
}

/// Asks the policy server of `namespace` for one chunk through `session`, as a robot's remote engine does.
fn one_chunk(session: zenoh::Session, namespace: &str, wait: Duration) -> Result<usize, String> {
    let (engine, spec) =
        RemoteEngine::connect(session, namespace, wait).map_err(|e| e.to_string())?;
    let mut engine = engine.with_timeout(Duration::from_secs(2));
    let mut request = InferenceRequest::with_capacity(spec.chunk_len(), spec.observation_dim);
    request.set_inputs(1, 0, 0, &vec![0.1; spec.observation_dim], &[], &[]);
    let chunk = engine.sample_chunk(&request).map_err(|e| e.to_string())?;
    assert_eq!(chunk.len(), spec.chunk_len());
    Ok(chunk.len())
}

#[test]
fn over_mutual_tls_only_certified_robots_get_chunks_from_the_policy_server() {
    let pki = Pki::new("server");
    let endpoint = format!("tls/localhost:{}", free_loopback_port().unwrap());
    let namespace = format!("tls-server-{}", std::process::id());
    let (stop, server) = start_policy_server(&pki, &endpoint, &namespace, None);
    let ca = pki.file("ca.pem");
    let (intruder_pem, intruder_key) = (pki.file("intruder.pem"), pki.file("intruder.key"));
    let attempts: [&[(&str, &Path)]; 2] = [
        &[("root_ca_certificate", ca.as_path())],
        &[
            ("root_ca_certificate", ca.as_path()),
            ("connect_certificate", intruder_pem.as_path()),
            ("connect_private_key", intruder_key.as_path()),
        ],
    ];
    for tls in attempts {
        assert!(
            foreign_session(&endpoint, tls).is_none(),
            "a peer without a certificate of the CA reached the policy server"
        );
    }
    let robot = robot_session(&pki, "bridge", &endpoint);
    one_chunk(robot, &namespace, Duration::from_secs(30)).expect("the certified robot's chunk");
    stop.store(true, Ordering::Relaxed);
    let report = server.join().unwrap().unwrap();
    assert_eq!(report.served, 1, "{report:?}");
    println!(
        "policy server over mutual TLS: 2 of 2 uncertified peers refused, the certified robot served"
    );
}

#[test]
fn access_control_serves_chunks_only_to_the_robots_it_names() {
    let pki = Pki::new("server-acl");
    pki.certificate("robot-arm-1", "ca");
    pki.certificate("visitor", "ca");
    let namespace = format!("acl-server-{}", std::process::id());
    let acl = access_rules(&pki, "policy-server-access.json5", &namespace);
    let endpoint = format!("tls/localhost:{}", free_loopback_port().unwrap());
    let (stop, server) = start_policy_server(&pki, &endpoint, &namespace, Some(acl));
    // Named in the rules: served.
    let robot = robot_session(&pki, "robot-arm-1", &endpoint);
    one_chunk(robot, &namespace, Duration::from_secs(30)).expect("the named robot's chunk");
    // Certified by the same CA but not named: its session opens (TLS admits it), but it is not told of the
    // server, and a chunk query sent anyway gets no answer and is never sampled.
    let visitor = robot_session(&pki, "visitor", &endpoint);
    let refused = one_chunk(visitor.clone(), &namespace, Duration::from_secs(2))
        .expect_err("the visitor got a chunk");
    assert!(refused.contains("no policy server answered"), "{refused}");
    let query = ChunkQuery {
        request_seq: 1,
        stream: 99,
        executed: 0,
        delay: 0,
        observation: vec![0.1; 8],
        committed: Vec::new(),
        images: Vec::new(),
    };
    let replies = visitor
        .get(infer_key(&namespace))
        .payload(query.encode(0, 99, 1, wall_clock_ns()))
        .timeout(Duration::from_secs(1))
        .wait()
        .unwrap();
    assert!(
        replies
            .recv_timeout(Duration::from_secs(2))
            .ok()
            .flatten()
            .is_none(),
        "the visitor's chunk query was answered"
    );
    stop.store(true, Ordering::Relaxed);
    let report = server.join().unwrap().unwrap();
    assert_eq!(
        (report.served, report.refused, report.not_admitted.len()),
        (1, 0, 0),
        "only the named robot's query reached the server: {report:?}"
    );
    println!(
        "policy server access control: 2 of 2 of the visitor's queries denied, the named robot served"
    );
}
