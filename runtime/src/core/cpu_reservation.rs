//! A CPU kept for the controller thread: the controller is pinned to it and every other thread of the process
//! (the inference worker and its pool, zenoh's and tokio's threads, the I/O, collector and log threads, and the
//! threads they start later, which inherit their masks) is moved onto the process's other CPUs, until the run
//! ends. Other controllers (threads named `rtchunk-control`) keep their own pins. Companions named by the caller
//! (on the state clock, [`COMMAND_PATH_THREADS`]) join the controller on its CPU instead.
//!
//! Threads are matched by the start of their name as the kernel keeps it (`comm`: its first 15 bytes).

use serde::Serialize;

/// The controller thread's name (its threads are never moved by another run's reservation).
pub const CONTROLLER_THREAD: &str = "rtchunk-control";

/// The names zenoh gives the threads that move a message between a socket and a callback: `acc-*` and `net-*`
/// run the sockets' readiness (the reactor of the links a session accepted or opened) and wake the others,
/// `rx-*` read the links and run subscriber callbacks (the robot link's state intake among them), `tx-*` write
/// the links (a `put` hands its message to one of them).
pub const ZENOH_LINK_THREADS: [&str; 4] = ["acc-", "net-", "rx-", "tx-"];

/// The robot link's thread that publishes commands.
pub const LINK_ACTION_THREAD: &str = "rtchunk-actions";

/// The threads a state passes through on its way to the controller and its command on its way out: zenoh's link
/// threads (the reactor that sees the state's bytes, the receiving thread that decodes it, the transmitting
/// thread that writes the command) and the robot link's `rtchunk-actions`, which encodes and puts the command.
/// On the state clock the controller waits on them every tick, so they share its CPU.
pub const COMMAND_PATH_THREADS: [&str; 5] = [
    ZENOH_LINK_THREADS[0],
    ZENOH_LINK_THREADS[1],
    ZENOH_LINK_THREADS[2],
    ZENOH_LINK_THREADS[3],
    LINK_ACTION_THREAD,
];

/// A CPU held for one controller thread, and the CPUs the process's other threads had before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuReservation {
    /// The controller's CPU.
    pub cpu: usize,
    /// Other threads moved off it.
    pub threads_moved: usize,
    /// Companion threads pinned to it beside the controller.
    pub companions: usize,
    /// Threads that could not be moved (they exited meanwhile, or the system refused).
    pub threads_refused: usize,
    /// The CPUs the process could use before, restored on [`CpuReservation::release`].
    #[serde(skip)]
    allowed: Vec<usize>,
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data and zero is a valid empty set; sched_getaffinity fills it for the caller.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Sets the CPUs thread `tid` (0: the calling thread) may run on.
pub fn set_affinity(tid: libc::pid_t, cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data, zero is a valid empty set, and CPU_SET stays in bounds (checked).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(std::io::Error::other(format!("CPU {cpu} is out of range")));
            }
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// Every thread of the process: its id and name (`comm`).
fn process_threads() -> Vec<(libc::pid_t, String)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|entry| {
            entry
                .ok()?
                .file_name()
                .to_str()?
                .parse::<libc::pid_t>()
                .ok()
        })
        .map(|tid| {
            let name =
                std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
            (tid, name.trim_end().to_owned())
        })
        .collect()
}

/// The ids of the process's threads whose name starts with `name`.
pub fn threads_named(name: &str) -> Vec<libc::pid_t> {
    process_threads()
        .into_iter()
        .filter(|(_, comm)| is_named(comm, name))
        .map(|(tid, _)| tid)
        .collect()
}

/// Every other thread of the process that is not a controller: its id and name.
fn other_threads() -> Vec<(libc::pid_t, String)> {
    // SAFETY: gettid takes no arguments.
    let me = unsafe { libc::gettid() };
    process_threads()
        .into_iter()
        .filter(|(tid, name)| *tid != me && name != CONTROLLER_THREAD)
        .collect()
}

/// Whether a thread's `comm` starts with `name` (the kernel keeps the first 15 bytes of a thread's name).
fn is_named(comm: &str, name: &str) -> bool {
    comm.as_bytes()
        .starts_with(&name.as_bytes()[..name.len().min(15)])
}

/// Moves `threads` onto `cpus`; returns how many moved and how many could not.
fn move_threads(threads: &[(libc::pid_t, String)], cpus: &[usize]) -> (usize, usize) {
    let moved = threads
        .iter()
        .filter(|(tid, _)| set_affinity(*tid, cpus).is_ok())
        .count();
    (moved, threads.len() - moved)
}

impl CpuReservation {
    /// Pins the calling thread and the threads named in `companions` to `cpu` (default: the last CPU the process
    /// may use) and moves the process's other threads onto its other CPUs. Fails when the process may use fewer
    /// than two CPUs or the pin is refused.
    pub fn take(cpu: Option<usize>, companions: &[&str]) -> Result<CpuReservation, String> {
        let allowed = allowed_cpus();
        let cpu = cpu.or(allowed.last().copied()).ok_or("no CPU is allowed")?;
        let others: Vec<usize> = allowed.iter().copied().filter(|&c| c != cpu).collect();
        if others.is_empty() {
            return Err(format!(
                "the process may use only CPU {cpu}; nothing to keep it from"
            ));
        }
        set_affinity(0, &[cpu]).map_err(|e| format!("CPU {cpu}: {e}"))?;
        let (beside, off): (Vec<_>, Vec<_>) = other_threads()
            .into_iter()
            .partition(|(_, name)| companions.iter().any(|c| is_named(name, c)));
        let (threads_moved, threads_refused) = move_threads(&off, &others);
        let (companions, companions_refused) = move_threads(&beside, &[cpu]);
        Ok(CpuReservation {
            cpu,
            threads_moved,
            companions,
            threads_refused: threads_refused + companions_refused,
            allowed,
        })
    }

    /// Gives every thread of the process (but controllers), companions included, the CPUs it had before the
    /// reservation.
    pub fn release(&self) {
        move_threads(&other_threads(), &self.allowed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread named `name` that reports the CPUs it may use each time it is asked, until the asker goes.
    fn bystander(
        name: &str,
    ) -> (
        std::sync::mpsc::Sender<()>,
        std::sync::mpsc::Receiver<Vec<usize>>,
    ) {
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (tell, told) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    tell.send(allowed_cpus()).unwrap();
                }
            })
            .unwrap();
        (ask, told)
    }

    fn cpus_of(
        thread: &(
            std::sync::mpsc::Sender<()>,
            std::sync::mpsc::Receiver<Vec<usize>>,
        ),
    ) -> Vec<usize> {
        thread.0.send(()).unwrap();
        thread.1.recv().unwrap()
    }

    #[test]
    fn a_reservation_keeps_the_other_threads_off_the_controllers_cpu_until_released() {
        if allowed_cpus().len() < 2 {
            return; // one CPU: nothing to reserve (the controller shares it, as reported at start-up)
        }
        let other = bystander("reserve-other");
        let companions = [bystander("reserve-pair-0"), bystander("reserve-pair-1")];
        let reservation = std::thread::spawn(move || {
            let reservation = CpuReservation::take(None, &["reserve-pair-"]).unwrap();
            assert_eq!(
                allowed_cpus(),
                vec![reservation.cpu],
                "the controller runs on its CPU only"
            );
            reservation
        })
        .join()
        .unwrap();
        assert!(reservation.threads_moved >= 1, "{reservation:?}");
        assert_eq!(
            reservation.companions, 2,
            "both match by the start of their names: {reservation:?}"
        );
        assert!(
            !allowed_cpus().contains(&reservation.cpu),
            "this thread was moved off it"
        );
        assert!(
            !cpus_of(&other).contains(&reservation.cpu),
            "so was the other"
        );
        for companion in &companions {
            assert_eq!(
                cpus_of(companion),
                vec![reservation.cpu],
                "the companions share it"
            );
        }
        reservation.release();
        assert!(cpus_of(&other).contains(&reservation.cpu), "released");
        for companion in &companions {
            assert!(cpus_of(companion).len() > 1, "released");
        }
    }
}
