//! Seals a thread for the duration of the controller loop and reports what it did that the loop may not:
//! - **system calls**: a seccomp filter, installed on the controller thread only (no TSYNC), allows the calls
//!   the loop may make (clock reads, `clock_nanosleep`/`nanosleep`, `futex` for the doorbells, `sched_yield`,
//!   and the thread's own exit and signal return) and traps every other one: file or socket I/O, memory
//!   mapping, thread creation. The trap's handler records the call (it is not executed) while the loop runs;
//! - **logging**: a tracing subscriber counts events emitted on a thread while its loop runs.
//!
//! The system-call filter is x86-64's (its call numbers and the trap's register); elsewhere only the log events
//! are watched. A seal cannot be lifted: after the loop the filter stays, so calls outside the allowed set made on the way
//! out of the thread (freeing its stack) are skipped, which only leaks a little in a test process.

use std::cell::Cell;
use std::sync::Once;

thread_local! {
    /// Whether this thread's loop is running (read by the signal handler and the subscriber, which run on the
    /// thread that made the call or emitted the event).
    static IN_LOOP: Cell<bool> = const { Cell::new(false) };
    /// System calls trapped during this thread's loop, and the number of the last one (+1; 0: none).
    static TRAPPED: Cell<u64> = const { Cell::new(0) };
    static LAST_TRAPPED: Cell<u64> = const { Cell::new(0) };
    /// Tracing events emitted during this thread's loop.
    static EVENTS: Cell<u64> = const { Cell::new(0) };
}

/// The x86-64 system calls the loop may make.
#[cfg(target_arch = "x86_64")]
const ALLOWED: [u32; 9] = [
    228, // clock_gettime (the vDSO usually answers without a call)
    96,  // gettimeofday
    230, // clock_nanosleep
    35,  // nanosleep
    202, // futex
    24,  // sched_yield
    15,  // rt_sigreturn (returning from the trap's own handler)
    60,  // exit
    231, // exit_group
];

/// What a sealed loop did that a loop may not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaches {
    /// System calls outside the allowed set.
    pub system_calls: u64,
    /// The number of the last one (x86-64), if any.
    pub last_system_call: Option<u64>,
    /// Tracing events.
    pub log_events: u64,
}

#[cfg(target_arch = "x86_64")]
extern "C" fn on_trapped_call(
    _: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SIGSYS, whose union holds the call address (offset 16) and
    // the call number (i32 at offset 24) on x86-64, and a valid ucontext.
    unsafe {
        let number = *(info as *const u8).add(24).cast::<i32>();
        if IN_LOOP.with(Cell::get) {
            TRAPPED.with(|n| n.set(n.get() + 1));
            LAST_TRAPPED.with(|last| last.set(number as u64 + 1));
        }
        let context = &mut *context.cast::<libc::ucontext_t>();
        context.uc_mcontext.gregs[libc::REG_RAX as usize] = -(libc::ENOSYS as i64);
    }
}

struct LoopEvents;

impl tracing::Subscriber for LoopEvents {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        if IN_LOOP.with(Cell::get) {
            EVENTS.with(|n| n.set(n.get() + 1));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Installs the trap handler and the subscriber, once per process.
fn install_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a zeroed sigaction with a valid handler and SA_SIGINFO is a valid disposition for SIGSYS.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_trapped_call as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            assert_eq!(
                libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()),
                0
            );
        }
        tracing::subscriber::set_global_default(LoopEvents).expect("no other subscriber");
    });
}

/// Seals the calling thread: from now on it may make only the allowed system calls, and its loop counts as
/// running until [`loop_ended`].
pub fn seal_this_thread() {
    install_once();
    IN_LOOP.with(|flag| flag.set(true));
    #[cfg(target_arch = "x86_64")]
    install_filter();
}

/// Installs the seccomp filter on the calling thread.
#[cfg(target_arch = "x86_64")]
fn install_filter() {
    const LOAD_ARCH: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JUMP_IF_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let statement = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let mut program = vec![
        statement(LOAD_ARCH, 4),
        libc::sock_filter {
            code: JUMP_IF_EQUAL,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        },
        statement(RETURN, libc::SECCOMP_RET_KILL_PROCESS),
        statement(LOAD_ARCH, 0),
    ];
    for number in ALLOWED {
        program.push(libc::sock_filter {
            code: JUMP_IF_EQUAL,
            jt: 0,
            jf: 1,
            k: number,
        });
        program.push(statement(RETURN, libc::SECCOMP_RET_ALLOW));
    }
    program.push(statement(RETURN, libc::SECCOMP_RET_TRAP));
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl with these arguments only sets flags of the calling thread; the filter program is valid
    // and outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &filter as *const libc::sock_fprog
            ),
            0,
            "installing the seccomp filter"
        );
    }
}

/// Marks the end of the calling sealed thread's loop (the filter stays; breaches are no longer counted) and
/// returns what the loop did that it may not.
pub fn loop_ended() -> Breaches {
    IN_LOOP.with(|flag| flag.set(false));
    Breaches {
        system_calls: TRAPPED.with(|n| n.replace(0)),
        last_system_call: LAST_TRAPPED.with(|n| n.replace(0)).checked_sub(1),
        log_events: EVENTS.with(|n| n.replace(0)),
    }
}
