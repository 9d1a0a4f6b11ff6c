//! Real-time setup of the controller thread: memory locking, SCHED_FIFO, CPU pinning, timer slack, SIGINT and
//! SIGTERM blocked (the signal watcher's thread takes them) and a pre-faulted stack. Each step is attempted, and what took effect is reported: nothing is assumed.

use crate::core::cpu_reservation::{CpuReservation, set_affinity};
use rtchunk_config::RealtimeConfig;
use serde::{Deserialize, Serialize};

/// The outcome of one setup step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "kebab-case")]
pub enum Step {
    /// It took effect.
    Applied(String),
    /// It was asked for and the system refused it.
    Refused(String),
    /// It was not asked for.
    Skipped,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Applied(detail) => write!(f, "applied ({detail})"),
            Step::Refused(detail) => write!(f, "REFUSED ({detail})"),
            Step::Skipped => write!(f, "off"),
        }
    }
}

/// Which real-time measures took effect on the controller thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RealtimeReport {
    /// `mlockall(MCL_CURRENT | MCL_FUTURE)`.
    pub memory_lock: Step,
    /// `SCHED_FIFO` at the configured priority.
    pub fifo: Step,
    /// CPU pinning (and, with `realtime.reserve_cpu`, the CPU kept for the controller alone).
    pub affinity: Step,
    /// The CPU kept for the controller, released when the run ends.
    pub reservation: Option<CpuReservation>,
    /// 1 ns timer slack.
    pub timer_slack: Step,
    /// SIGINT and SIGTERM blocked on the controller thread, so their handler never runs there.
    pub signals_blocked: Step,
}

impl RealtimeReport {
    /// The report of a run that attempted nothing (the simulated clock).
    pub fn skipped() -> Self {
        RealtimeReport {
            memory_lock: Step::Skipped,
            fifo: Step::Skipped,
            affinity: Step::Skipped,
            reservation: None,
            timer_slack: Step::Skipped,
            signals_blocked: Step::Skipped,
        }
    }
}

impl std::fmt::Display for RealtimeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mlockall {}, SCHED_FIFO {}, CPU pinning {}, timer slack {}, SIGINT/SIGTERM blocked {}",
            self.memory_lock, self.fifo, self.affinity, self.timer_slack, self.signals_blocked
        )
    }
}

fn last_os_error() -> String {
    std::io::Error::last_os_error().to_string()
}

/// Locks all current and future memory of the process. Call once, before spawning the controller thread.
pub fn lock_memory(config: &RealtimeConfig) -> Step {
    if !config.lock_memory {
        return Step::Skipped;
    }
    // SAFETY: mlockall takes flags only.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
        Step::Applied("current and future pages".into())
    } else {
        Step::Refused(last_os_error())
    }
}

/// Applies SCHED_FIFO, pinning and timer slack to the calling thread and pre-faults its stack; with
/// `realtime.reserve_cpu`, the threads named in `companions` share its CPU. Call from the controller thread,
/// before its loop.
pub fn prepare_current_thread(
    config: &RealtimeConfig,
    memory_lock: Step,
    companions: &[&str],
) -> RealtimeReport {
    prefault_stack();
    let (affinity, reservation) = place(config, companions);
    RealtimeReport {
        memory_lock,
        fifo: set_fifo(config.fifo_priority),
        affinity,
        reservation,
        timer_slack: set_timer_slack(),
        signals_blocked: block_stop_signals(),
    }
}

/// Pins the calling thread: to a CPU of its own (`reserve_cpu`), falling back to a plain pin to `cpu` when the
/// process has no second CPU.
fn place(config: &RealtimeConfig, companions: &[&str]) -> (Step, Option<CpuReservation>) {
    if config.reserve_cpu {
        match CpuReservation::take(config.cpu, companions) {
            Ok(reservation) => {
                let detail = format!(
                    "CPU {} kept for the controller{}: {} other threads moved off it{}",
                    reservation.cpu,
                    match reservation.companions {
                        0 => String::new(),
                        n => format!(" and {n} threads it waits on ({})", companions.join(", ")),
                    },
                    reservation.threads_moved,
                    match reservation.threads_refused {
                        0 => String::new(),
                        n => format!(", {n} could not be"),
                    }
                );
                return (Step::Applied(detail), Some(reservation));
            }
            Err(reason) if config.cpu.is_none() => {
                return (Step::Refused(format!("no CPU of its own: {reason}")), None);
            }
            Err(_) => {}
        }
    }
    (pin(config.cpu), None)
}

fn block_stop_signals() -> Step {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask changes the calling thread's
    // mask only.
    let status = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if status == 0 {
        Step::Applied("the signal watcher's thread takes them".into())
    } else {
        Step::Refused(std::io::Error::from_raw_os_error(status).to_string())
    }
}

fn set_fifo(priority: u8) -> Step {
    // SAFETY: pthread_self takes no arguments and names the calling thread.
    set_thread_fifo(unsafe { libc::pthread_self() }, priority)
}

/// Puts `thread`, a live thread of this process, under SCHED_FIFO at `priority` (0: leaves it as it is).
pub fn set_thread_fifo(thread: libc::pthread_t, priority: u8) -> Step {
    fifo_step(priority, |param| {
        // SAFETY: the caller names a thread that has not been joined; param is a valid sched_param.
        unsafe { libc::pthread_setschedparam(thread, libc::SCHED_FIFO, param) }
    })
}

/// Puts the thread with kernel id `tid` (of this process, not the caller: 0 would name it) under SCHED_FIFO at
/// `priority` (0: leaves it as it is); for threads this process did not start, e.g. zenoh's.
pub fn set_task_fifo(tid: libc::pid_t, priority: u8) -> Step {
    fifo_step(priority, |param| {
        // SAFETY: param is a valid sched_param; a tid that has exited meanwhile only fails with ESRCH.
        match unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, param) } {
            0 => 0,
            _ => std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL),
        }
    })
}

/// Runs `set` (returning 0 or an errno) with `priority`'s parameter, unless `priority` is 0.
fn fifo_step(priority: u8, set: impl FnOnce(&libc::sched_param) -> i32) -> Step {
    if priority == 0 {
        return Step::Skipped;
    }
    let param = libc::sched_param {
        sched_priority: priority as i32,
    };
    match set(&param) {
        0 => Step::Applied(format!("priority {priority}")),
        status => Step::Refused(format!(
            "priority {priority}: {}",
            std::io::Error::from_raw_os_error(status)
        )),
    }
}

fn pin(cpu: Option<usize>) -> Step {
    let Some(cpu) = cpu else { return Step::Skipped };
    match set_affinity(0, &[cpu]) {
        Ok(()) => Step::Applied(format!("CPU {cpu} (shared)")),
        Err(error) => Step::Refused(format!("CPU {cpu}: {error}")),
    }
}

fn set_timer_slack() -> Step {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument.
    if unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) } == 0 {
        Step::Applied("1 ns".into())
    } else {
        Step::Refused(last_os_error())
    }
}

/// Touches 256 KiB of stack so the loop never faults a stack page in.
fn prefault_stack() {
    let mut page = [0u8; 256 * 1024];
    for i in (0..page.len()).step_by(4096) {
        page[i] = 1;
    }
    std::hint::black_box(&page);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `signal` is blocked on the calling thread.
    fn blocked(signal: libc::c_int) -> bool {
        // SAFETY: queries the calling thread's mask into an initialised set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
            libc::sigismember(&set, signal) == 1
        }
    }

    #[test]
    fn the_prepared_thread_leaves_stop_signals_to_the_watcher_and_others_keep_them() {
        let config = RealtimeConfig::default();
        let (report, stop_blocked) = std::thread::spawn(move || {
            let report = prepare_current_thread(&config, Step::Skipped, &[]);
            (report, blocked(libc::SIGINT) && blocked(libc::SIGTERM))
        })
        .join()
        .unwrap();
        assert!(
            matches!(report.signals_blocked, Step::Applied(_)),
            "{report}"
        );
        assert!(stop_blocked);
        assert!(!std::thread::spawn(|| blocked(libc::SIGINT)).join().unwrap());
    }
}
