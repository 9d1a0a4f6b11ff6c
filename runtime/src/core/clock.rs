//! What paces the controller: one trait, a real clock with absolute deadlines and a simulated clock in
//! virtual ticks.

use crate::core::doorbell::Doorbell;
use rtchunk_policy::NormalRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// When a tick actually began, relative to its deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wake {
    /// How late the loop woke after the deadline, in nanoseconds (0 on the simulated clock).
    pub lateness_ns: u64,
    /// Whole periods skipped because the previous tick overran.
    pub missed: u32,
    /// When the tick began, in nanoseconds of the clock's own time base (monotonic on the real clock; 0 on
    /// the simulated clock, whose time is the tick count).
    pub time_ns: u64,
}

/// Paces the controller loop.
///
/// Real-time contract: every method is called on the controller thread and must not allocate, lock or log.
pub trait Clock: Send {
    /// Waits for the next controller tick's deadline.
    fn wait_next_tick(&mut self) -> Wake;

    /// How many policy ticks the inference requested now must last at least: the injected inference delay.
    fn inference_ticks(&mut self) -> usize;

    /// Called when the loop would have to wait for another thread: an inference's chunk is due but has not
    /// arrived, or the record ring is full. The real clock returns at once: the robot never waits. The
    /// simulated clock stops virtual time until `ready()` holds (or the worker is gone).
    fn stall_until(&mut self, ready: &dyn Fn() -> bool);
}

/// Draws injected inference delays: a fixed number of ticks plus a seeded uniform jitter.
#[derive(Debug, Clone)]
pub struct DelayInjector {
    ticks: usize,
    jitter: usize,
    rng: NormalRng,
}

impl DelayInjector {
    /// Delays of `ticks + U{0..=jitter}` policy ticks, drawn from `seed`.
    pub fn new(ticks: usize, jitter: usize, seed: u64) -> Self {
        DelayInjector {
            ticks,
            jitter,
            rng: NormalRng::new(seed),
        }
    }

    /// The next delay. Real-time safe.
    pub fn draw(&mut self) -> usize {
        if self.jitter == 0 {
            self.ticks
        } else {
            self.ticks + (self.rng.next_u64() % (self.jitter as u64 + 1)) as usize
        }
    }
}

/// Wall-clock pacing: `clock_nanosleep(TIMER_ABSTIME)` to a margin before each absolute deadline, then a spin.
/// A tick that overruns skips whole periods (counted) so the loop stays phase-locked.
pub struct RealClock {
    period_ns: u64,
    spin_margin_ns: u64,
    next_deadline_ns: Option<u64>,
    delays: DelayInjector,
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Nanoseconds since the Unix epoch: the timestamp of every message and of a run's start.
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

fn sleep_until_ns(deadline_ns: u64) {
    let deadline = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `deadline` is a valid timespec; the remainder pointer may be null with TIMER_ABSTIME.
        let result = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &deadline,
                std::ptr::null_mut(),
            )
        };
        if result != libc::EINTR {
            break;
        }
    }
}

impl RealClock {
    /// A clock of period `period`, sleeping to `spin_margin` before each deadline and spinning the rest.
    pub fn new(period: Duration, spin_margin: Duration, delays: DelayInjector) -> Self {
        RealClock {
            period_ns: period.as_nanos() as u64,
            spin_margin_ns: spin_margin.as_nanos() as u64,
            next_deadline_ns: None,
            delays,
        }
    }
}

impl Clock for RealClock {
    fn wait_next_tick(&mut self) -> Wake {
        let deadline = *self
            .next_deadline_ns
            .get_or_insert_with(|| monotonic_ns() + self.period_ns);
        if deadline > self.spin_margin_ns {
            let wake_at = deadline - self.spin_margin_ns;
            if monotonic_ns() < wake_at {
                sleep_until_ns(wake_at);
            }
        }
        let mut now = monotonic_ns();
        while now < deadline {
            std::hint::spin_loop();
            now = monotonic_ns();
        }
        let lateness_ns = now - deadline;
        let missed = lateness_ns / self.period_ns;
        self.next_deadline_ns = Some(deadline + (missed + 1) * self.period_ns);
        Wake {
            lateness_ns,
            missed: missed as u32,
            time_ns: now,
        }
    }

    fn inference_ticks(&mut self) -> usize {
        self.delays.draw()
    }

    fn stall_until(&mut self, _ready: &dyn Fn() -> bool) {}
}

/// Virtual time in ticks: every tick is on time, every inference takes exactly the drawn number of ticks, and
/// the whole run goes as fast as the CPU allows, deterministically.
pub struct SimClock {
    delays: DelayInjector,
    chunk_bell: Arc<Doorbell>,
    worker_alive: Arc<AtomicBool>,
}

impl SimClock {
    /// A simulated clock whose inferences last `delays` ticks; it waits for chunks on `chunk_bell` while
    /// `worker_alive` holds.
    pub fn new(
        delays: DelayInjector,
        chunk_bell: Arc<Doorbell>,
        worker_alive: Arc<AtomicBool>,
    ) -> Self {
        SimClock {
            delays,
            chunk_bell,
            worker_alive,
        }
    }
}

impl Clock for SimClock {
    fn wait_next_tick(&mut self) -> Wake {
        Wake::default()
    }

    fn inference_ticks(&mut self) -> usize {
        self.delays.draw()
    }

    fn stall_until(&mut self, ready: &dyn Fn() -> bool) {
        loop {
            let seen = self.chunk_bell.rings();
            if ready() || !self.worker_alive.load(Ordering::SeqCst) {
                return;
            }
            self.chunk_bell.wait(seen, Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_clock_keeps_absolute_deadlines_never_early_and_rarely_late() {
        let period_ns = 2_000_000;
        let mut clock = RealClock::new(
            Duration::from_nanos(period_ns),
            Duration::from_micros(200),
            DelayInjector::new(0, 0, 0),
        );
        let start = monotonic_ns();
        let wakes: Vec<Wake> = (0..50).map(|_| clock.wait_next_tick()).collect();
        let elapsed = monotonic_ns() - start;
        let missed: u64 = wakes.iter().map(|w| u64::from(w.missed)).sum();
        // Never early: 50 ticks (plus skipped periods) of 2 ms have passed.
        assert!(elapsed >= (50 + missed) * period_ns, "{elapsed}");
        // Phase-locked: each deadline is the previous one plus whole periods (one, plus any skipped).
        for pair in wakes.windows(2) {
            let deadline = |w: &Wake| w.time_ns - w.lateness_ns;
            assert_eq!(
                deadline(&pair[1]) - deadline(&pair[0]),
                (u64::from(pair[0].missed) + 1) * period_ns,
                "{pair:?}"
            );
        }
        // Not late: sleeping to 200 us before each deadline and spinning the rest wakes within microseconds; the
        // median stays below half a period even on a loaded machine (a clock that aimed past its deadlines, by
        // the spin margin or half a period, would not).
        let mut lateness: Vec<u64> = wakes.iter().map(|w| w.lateness_ns).collect();
        lateness.sort_unstable();
        assert!(
            lateness[25] < period_ns / 2,
            "median lateness {} ns",
            lateness[25]
        );
    }

    #[test]
    fn an_overrun_skips_whole_periods_and_counts_them() {
        let mut clock = RealClock::new(
            Duration::from_millis(2),
            Duration::from_micros(200),
            DelayInjector::new(0, 0, 0),
        );
        clock.wait_next_tick();
        std::thread::sleep(Duration::from_millis(7));
        let wake = clock.wait_next_tick();
        assert!(wake.missed >= 2, "{wake:?}");
    }

    #[test]
    fn injected_delays_stay_in_range_and_repeat_for_a_seed() {
        let draws = |seed| {
            let mut injector = DelayInjector::new(2, 3, seed);
            (0..200).map(|_| injector.draw()).collect::<Vec<_>>()
        };
        let first = draws(9);
        assert!(first.iter().all(|d| (2..=5).contains(d)));
        assert!((2..=5).all(|d| first.contains(&d)));
        assert_eq!(first, draws(9));
    }
}
