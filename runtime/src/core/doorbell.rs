//! A wake-up signal that a real-time thread can ring without locking or allocating (Linux futex).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Counts rings; a waiter sleeps in the kernel until the count moves. `ring` is one atomic increment plus,
/// only when someone waits, one `FUTEX_WAKE` system call: no lock, no allocation.
#[derive(Debug, Default)]
pub struct Doorbell {
    rings: AtomicU32,
    waiters: AtomicU32,
}

impl Doorbell {
    /// The number of rings so far (wrapping); pass it to [`Doorbell::wait`].
    pub fn rings(&self) -> u32 {
        self.rings.load(Ordering::SeqCst)
    }

    /// Wakes every waiter. Real-time safe.
    pub fn ring(&self) {
        self.rings.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake(&self.rings);
        }
    }

    /// Sleeps until the ring count differs from `seen` or `timeout` passes (spurious wake-ups are possible:
    /// callers re-check their condition).
    pub fn wait(&self, seen: u32, timeout: Duration) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        if self.rings.load(Ordering::SeqCst) == seen {
            futex_wait(&self.rings, seen, timeout);
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the futex word is a live AtomicU32 and the timeout a valid timespec for the call's duration.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &timeout as *const libc::timespec,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: the futex word is a live AtomicU32; FUTEX_WAKE only reads its address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Doorbell;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_ring_wakes_a_sleeping_waiter() {
        let bell = Arc::new(Doorbell::default());
        let seen = bell.rings();
        let ringer = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                bell.ring();
            })
        };
        let started = Instant::now();
        while bell.rings() == seen {
            bell.wait(seen, Duration::from_secs(5));
        }
        assert!(started.elapsed() < Duration::from_secs(4));
        ringer.join().unwrap();
    }

    #[test]
    fn a_wait_without_a_ring_times_out() {
        let bell = Doorbell::default();
        let started = Instant::now();
        bell.wait(bell.rings(), Duration::from_millis(10));
        assert!(started.elapsed() >= Duration::from_millis(5));
    }
}
