//! A global allocator that counts one thread's allocations, frees and reallocations while it is watched
//! (included by the tests that check a hot path allocates nothing: `#[path] mod`, then `#[global_allocator]`).
//! Only Rust's allocations pass here; a C library's own `malloc` calls do not.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Allocations, frees and reallocations by this thread while it is watched; `None` when not watched.
    static WATCHED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Starts counting this thread's allocations from zero.
pub fn watch() {
    WATCHED.with(|w| w.set(Some(0)));
}

/// Stops counting and returns how many there were since [`watch`] (0 if it was not called).
pub fn stop() -> u64 {
    WATCHED.with(|w| w.replace(None)).unwrap_or(0)
}

fn count() {
    let _ = WATCHED.try_with(|watched| {
        if let Some(n) = watched.get() {
            watched.set(Some(n + 1));
        }
    });
}

/// Forwards to the system allocator and counts the watched thread's calls.
pub struct CountingAllocator;

// SAFETY: every call is forwarded to the system allocator unchanged; counting touches only a thread-local.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `alloc` is the system allocator's; it is passed on as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count();
        // SAFETY: the caller's contract for `dealloc` is the system allocator's; it is passed on as received.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `realloc` is the system allocator's; it is passed on as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
