//! `[clock]` and `[realtime]`: what paces the controller and how its thread is set up.

use serde::{Deserialize, Serialize};

/// Which clock paces the controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockKind {
    /// Wall-clock time with absolute deadlines.
    #[default]
    Real,
    /// Virtual time in ticks: runs as fast as the CPU allows and is deterministic.
    Simulated,
    /// The robot's states: each state a robot over zenoh sends starts a controller tick, so the command leaves
    /// right after the state arrives (no phase between two clocks). `controller_rate_hz` is then the robot's
    /// nominal state rate (every k-th state, k = controller_rate_hz / policy_rate_hz, is a policy tick; at start
    /// the robot's send rate, from its sequence numbers, must be within -30 % / +40 % of it); without a state for
    /// `io.stale_after_ms` the controller ticks anyway and holds, as on the real clock.
    State,
}

/// Settings of the clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// Which clock.
    pub kind: ClockKind,
    /// Rate of policy actions (one chunk index per policy tick), in Hz.
    pub policy_rate_hz: f64,
    /// Rate of the controller loop, an integer multiple of the policy rate; unset means equal to it.
    pub controller_rate_hz: Option<f64>,
    /// Inference delay in policy ticks: on the simulated clock every inference takes exactly this long; on the
    /// real clock a chunk is not used before this many ticks have passed (injected latency, 0 = none).
    pub inference_delay_ticks: usize,
    /// Extra delay drawn uniformly from 0..=jitter per inference, in policy ticks.
    pub inference_delay_jitter_ticks: usize,
    /// Seed of the jitter draws.
    pub seed: u64,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            kind: ClockKind::default(),
            policy_rate_hz: 50.0,
            controller_rate_hz: None,
            inference_delay_ticks: 0,
            inference_delay_jitter_ticks: 0,
            seed: 0,
        }
    }
}

impl ClockConfig {
    /// Controller ticks per policy tick.
    pub fn decimation(&self) -> usize {
        match self.controller_rate_hz {
            Some(rate) => (rate / self.policy_rate_hz).round().max(1.0) as usize,
            None => 1,
        }
    }

    /// The controller rate in Hz.
    pub fn controller_rate(&self) -> f64 {
        self.controller_rate_hz.unwrap_or(self.policy_rate_hz)
    }

    /// The largest inference delay the clock will inject, in policy ticks.
    pub fn max_injected_delay(&self) -> usize {
        self.inference_delay_ticks + self.inference_delay_jitter_ticks
    }
}

/// Real-time setup of the controller thread; each step is attempted and its outcome reported at start-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// SCHED_FIFO priority (1..=99); 0 leaves the thread under the normal scheduler.
    pub fifo_priority: u8,
    /// SCHED_FIFO priority of the threads that carry a state in and its command out (zenoh's link threads: the
    /// sockets' reactor `acc-*`/`net-*`, which sees a state's bytes arrive, the receiving threads `rx-*`, which
    /// decode each state, and the transmitting threads `tx-*`, which write each command; and the robot link's
    /// `rtchunk-actions`, which encodes and puts it), below `fifo_priority`, so the inference and other normal
    /// threads never delay a state or a command; 0 leaves them under the normal scheduler, as does a controller
    /// without SCHED_FIFO. They block between messages, so they take the CPU only for the moments their work
    /// lasts.
    pub io_fifo_priority: u8,
    /// Lock all memory (`mlockall`) so the loop never page-faults.
    pub lock_memory: bool,
    /// Pin the controller thread to this CPU (default with `reserve_cpu`: the last CPU the process may use).
    pub cpu: Option<usize>,
    /// Keep the controller's CPU for it alone where the process may use at least two: every other thread of the
    /// process (inference, zenoh, I/O, collector, log) is moved onto the other CPUs for the run. On the state
    /// clock the threads the controller waits on every tick (zenoh's link threads and the link's action thread,
    /// see `io_fifo_priority`) stay on its CPU with it. False: pin only when `cpu` is set, sharing that CPU.
    pub reserve_cpu: bool,
    /// The controller sleeps to this many microseconds before each deadline, then spins.
    pub spin_margin_us: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            fifo_priority: 80,
            io_fifo_priority: 70,
            lock_memory: true,
            cpu: None,
            reserve_cpu: true,
            spin_margin_us: 200,
        }
    }
}

impl RealtimeConfig {
    /// The SCHED_FIFO priority the link's threads get: `io_fifo_priority`, or 0 (the normal scheduler) when the
    /// controller itself runs without SCHED_FIFO.
    pub fn io_priority(&self) -> u8 {
        if self.fifo_priority == 0 {
            0
        } else {
            self.io_fifo_priority
        }
    }
}
