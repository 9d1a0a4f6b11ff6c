//! Real-time setup of the controller thread: memory locking, SCHED_FIFO, CPU pinning, timer slack and a
//! pre-faulted stack. Each step is attempted, and what took effect is reported: nothing is assumed.

use rtchunk_config::RealtimeConfig;
use serde::Serialize;

/// The outcome of one setup step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// CPU pinning.
    pub affinity: Step,
    /// 1 ns timer slack.
    pub timer_slack: Step,
}

impl RealtimeReport {
    /// The report of a run that attempted nothing (the simulated clock).
    pub fn skipped() -> Self {
        RealtimeReport {
            memory_lock: Step::Skipped,
            fifo: Step::Skipped,
            affinity: Step::Skipped,
            timer_slack: Step::Skipped,
        }
    }
}

impl std::fmt::Display for RealtimeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mlockall {}, SCHED_FIFO {}, CPU pinning {}, timer slack {}",
            self.memory_lock, self.fifo, self.affinity, self.timer_slack
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

/// Applies SCHED_FIFO, pinning and timer slack to the calling thread and pre-faults its stack. Call from the
/// controller thread, before its loop.
pub fn prepare_current_thread(config: &RealtimeConfig, memory_lock: Step) -> RealtimeReport {
    prefault_stack();
    RealtimeReport {
        memory_lock,
        fifo: set_fifo(config.fifo_priority),
        affinity: pin(config.cpu),
        timer_slack: set_timer_slack(),
    }
}

fn set_fifo(priority: u8) -> Step {
    if priority == 0 {
        return Step::Skipped;
    }
    let param = libc::sched_param {
        sched_priority: priority as i32,
    };
    // SAFETY: pid 0 is the calling thread; param is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        Step::Applied(format!("priority {priority}"))
    } else {
        Step::Refused(format!("priority {priority}: {}", last_os_error()))
    }
}

fn pin(cpu: Option<usize>) -> Step {
    let Some(cpu) = cpu else { return Step::Skipped };
    // SAFETY: cpu_set_t is plain data, zero is a valid empty set, and CPU_SET stays in bounds for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Step::Refused(format!("CPU {cpu} is out of range"));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
            Step::Applied(format!("CPU {cpu}"))
        } else {
            Step::Refused(format!("CPU {cpu}: {}", last_os_error()))
        }
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
