//! The state clock: the robot's states pace the controller. The I/O thread that accepts a state publishes it,
//! then rings a [`StateSignal`]; the controller, asleep on it, wakes and runs its tick (read, policy tick every
//! k-th state, controller, safety filter, write), so the command leaves right after the state arrives, the way
//! a ros2_control hardware cycle runs read -> update -> write.

use crate::core::clock::{Clock, DelayInjector, Wake, monotonic_ns};
use crate::core::doorbell::Doorbell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Rung by the state I/O thread after it publishes a state: a futex doorbell and the time of the newest ring.
/// Ringing is two atomic stores and, only when the controller sleeps, one `FUTEX_WAKE`.
#[derive(Debug, Default)]
pub struct StateSignal {
    bell: Doorbell,
    published_ns: AtomicU64,
}

impl StateSignal {
    /// Says that a state was published at `now_ns` (monotonic) and wakes the controller.
    pub fn ring(&self, now_ns: u64) {
        self.published_ns.store(now_ns, Ordering::SeqCst);
        self.bell.ring();
    }
}

/// Ticks once per state the robot sends: each wake-up follows one ring of the [`StateSignal`]. States that
/// arrive while a tick runs are coalesced (the tick reads the newest; the others count as missed). When no
/// state comes for the stale limit and one period, it ticks anyway, then once per nominal period until states
/// return: the controller sees the state go stale and holds, counting held ticks in time as on the real clock.
///
/// [`Wake::lateness_ns`] is the time from the state's publication to the controller's wake-up.
pub struct StateClock {
    signal: Arc<StateSignal>,
    seen: u32,
    period_ns: u64,
    stale_after_ns: u64,
    last_wake_ns: Option<u64>,
    /// The last tick was not a state's (no state came in time).
    waiting: bool,
    delays: DelayInjector,
}

impl StateClock {
    /// A clock that ticks on `signal`'s rings, from a robot whose states nominally come every `period`; after
    /// `stale_after` and one period without a state it ticks anyway, then every `period`. Its inferences last at
    /// least the `delays` drawn (injected latency).
    pub fn new(
        signal: Arc<StateSignal>,
        period: Duration,
        stale_after: Duration,
        delays: DelayInjector,
    ) -> Self {
        let seen = signal.bell.rings();
        StateClock {
            signal,
            seen,
            period_ns: period.as_nanos() as u64,
            stale_after_ns: stale_after.as_nanos() as u64,
            last_wake_ns: None,
            waiting: false,
            delays,
        }
    }
}

impl Clock for StateClock {
    fn wait_next_tick(&mut self) -> Wake {
        let patience = if self.waiting {
            self.period_ns
        } else {
            self.stale_after_ns + self.period_ns
        };
        let deadline = self.last_wake_ns.unwrap_or_else(monotonic_ns) + patience;
        loop {
            let rings = self.signal.bell.rings();
            let now = monotonic_ns();
            if rings != self.seen {
                let coalesced = rings.wrapping_sub(self.seen);
                self.seen = rings;
                self.last_wake_ns = Some(now);
                self.waiting = false;
                let published = self.signal.published_ns.load(Ordering::SeqCst);
                return Wake {
                    lateness_ns: now.saturating_sub(published),
                    missed: coalesced - 1,
                    time_ns: now,
                };
            }
            if now >= deadline {
                self.last_wake_ns = Some(now);
                self.waiting = true;
                return Wake {
                    lateness_ns: 0,
                    missed: 0,
                    time_ns: now,
                };
            }
            self.signal
                .bell
                .wait(self.seen, Duration::from_nanos(deadline - now));
        }
    }

    fn inference_ticks(&mut self) -> usize {
        self.delays.draw()
    }

    fn stall_until(&mut self, _ready: &dyn Fn() -> bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn clock(signal: &Arc<StateSignal>, stale_ms: u64) -> StateClock {
        StateClock::new(
            signal.clone(),
            Duration::from_millis(10),
            Duration::from_millis(stale_ms),
            DelayInjector::new(0, 0, 0),
        )
    }

    #[test]
    fn each_state_wakes_one_tick_at_once() {
        let signal = Arc::new(StateSignal::default());
        let mut clock = clock(&signal, 1000);
        let ringer = {
            let signal = signal.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(3));
                    signal.ring(monotonic_ns());
                }
            })
        };
        for _ in 0..20 {
            let wake = clock.wait_next_tick();
            assert!(
                wake.lateness_ns < 50_000_000,
                "woke {} ns after the state",
                wake.lateness_ns
            );
        }
        ringer.join().unwrap();
    }

    #[test]
    fn states_that_arrive_during_a_tick_are_coalesced_and_counted() {
        let signal = Arc::new(StateSignal::default());
        let mut clock = clock(&signal, 1000);
        for _ in 0..3 {
            signal.ring(monotonic_ns());
        }
        assert_eq!(clock.wait_next_tick().missed, 2);
    }

    #[test]
    fn without_states_it_ticks_after_the_stale_limit_then_every_period_until_one_comes() {
        let signal = Arc::new(StateSignal::default());
        let mut clock = clock(&signal, 30);
        let started = Instant::now();
        let wake = clock.wait_next_tick();
        let first = started.elapsed();
        assert!(
            first >= Duration::from_millis(40) && first < Duration::from_millis(500),
            "{first:?}"
        );
        assert_eq!((wake.lateness_ns, wake.missed), (0, 0));
        let started = Instant::now();
        clock.wait_next_tick();
        let next = started.elapsed();
        assert!(
            next >= Duration::from_millis(10) && next < Duration::from_millis(300),
            "{next:?}"
        );
        // A state ends the wait at once and restores the stale limit.
        signal.ring(monotonic_ns());
        let started = Instant::now();
        clock.wait_next_tick();
        assert!(started.elapsed() < Duration::from_millis(5));
        assert!(!clock.waiting);
    }
}
