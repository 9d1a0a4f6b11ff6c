//! Structure-aware fuzzing of every decoder of untrusted bytes (the targets of `rtchunk_fuzz`): each target
//! starts from its valid seeds and mutates them (bit flips, random and boundary bytes over length fields,
//! truncation, insertion, duplication, splices of two inputs); every input must be decoded or refused with an
//! error, never panic or hang. AFL++ runs the same targets guided by coverage (scripts/fuzz-afl.sh).
//!
//! `RTCHUNK_FUZZ_EXECUTIONS` sets the executions per target (default 200 000, a few seconds in all);
//! `RTCHUNK_FUZZ_SEED` the first seed. A crash prints the input's bytes to turn into a regression test.

use std::time::{Duration, Instant};

/// The inputs mutated: xorshift draws, deterministic from the seed.
struct Mutator {
    state: u64,
}

/// Values that break length fields and counters.
const BOUNDARIES: [u32; 8] = [0, 1, 2, 0x7f, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];

impl Mutator {
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to four mutations of `input`, splicing in `other` at times.
    fn mutate(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(out.len());
            match self.below(7) {
                0 if !out.is_empty() => out[at] ^= 1 << self.below(8),
                1 if !out.is_empty() => out[at] = self.next() as u8,
                2 => out.truncate(at),
                3 => {
                    let extra: Vec<u8> =
                        (0..1 + self.below(16)).map(|_| self.next() as u8).collect();
                    out.splice(at..at, extra);
                }
                4 if out.len() >= 4 => {
                    let at = self.below(out.len() - 3);
                    let value = BOUNDARIES[self.below(BOUNDARIES.len())];
                    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
                5 if !out.is_empty() => {
                    let end = (at + 1 + self.below(32)).min(out.len());
                    let copy = out[at..end].to_vec();
                    let to = self.below(out.len());
                    out.splice(to..to, copy);
                }
                _ => {
                    let from = self.below(other.len());
                    out.truncate(at);
                    out.extend_from_slice(&other[from..]);
                }
            }
        }
        out
    }
}

fn executions() -> u64 {
    std::env::var("RTCHUNK_FUZZ_EXECUTIONS").map_or(200_000, |v| v.parse().expect("a number"))
}

/// Runs the target called `name` on `executions()` mutations of its seeds; fails naming the first input that
/// panics or takes longer than a second.
fn fuzz(name: &str) {
    let target = rtchunk_fuzz::target(name).expect("a target");
    let (seeds, decode) = ((target.seeds)(), target.decode);
    let first = std::env::var("RTCHUNK_FUZZ_SEED").map_or(1, |v| v.parse().expect("a number"));
    let mut mutator = Mutator {
        state: first ^ 0x9e37_79b9_7f4a_7c15,
    };
    let executions = executions();
    let started = Instant::now();
    for seed in &seeds {
        decode(seed);
    }
    for _ in 0..executions {
        let (a, b) = (mutator.below(seeds.len()), mutator.below(seeds.len()));
        let input = mutator.mutate(&seeds[a], &seeds[b]);
        let began = Instant::now();
        let outcome = std::panic::catch_unwind(|| decode(&input));
        assert!(outcome.is_ok(), "{name}: the decoder panicked on {input:?}");
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "{name}: the decoder hung on {input:?}"
        );
    }
    println!(
        "{name}: {executions} executions in {:.1} s, 0 crashes, 0 hangs",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn protocol_messages_never_panic_the_decoders() {
    fuzz("protocol");
}

#[test]
fn ros2_messages_never_panic_the_decoders() {
    fuzz("ros2");
}

#[test]
fn session_logs_never_panic_the_reader() {
    fuzz("session-log");
}

#[test]
fn configurations_never_panic_the_reader() {
    fuzz("configuration");
}

#[test]
fn bundle_manifests_never_panic_the_reader() {
    fuzz("manifest");
}

#[test]
fn simulator_reports_never_panic_the_reader() {
    fuzz("sim-report");
}

#[test]
fn every_target_is_fuzzed_here() {
    let names: Vec<&str> = rtchunk_fuzz::TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "protocol",
            "ros2",
            "session-log",
            "configuration",
            "manifest",
            "sim-report"
        ]
    );
}
