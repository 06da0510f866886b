//! The process allocator: mimalloc (feature `mimalloc`, which the `weir`
//! binary turns on) or the system allocator, except that very large
//! requests get their own `MAP_NORESERVE` mapping.
//!
//! Why mimalloc: the store's buffers and the pipelines make and drop
//! millions of small values a second while megabyte-sized Arrow and
//! Parquet buffers come and go; glibc's malloc spent over 40% of an
//! ingest in `_int_malloc` and `malloc_consolidate` (`perf record` of
//! `weir bench store`, BENCHMARKS.md "Embedded store"). It is built
//! without transparent huge pages (`no_thp`), which otherwise grew a
//! stalled pipeline's memory past its bound in 2 MiB steps.
//!
//! Why: the Kafka request decoder pre-allocates arrays from the element
//! count on the wire. A hostile 20-byte request can declare 2^31 elements,
//! and an allocation the system refuses aborts the process (Rust cannot
//! turn that into an error). A `MAP_NORESERVE` mapping reserves address
//! space without committing memory, so such a request costs nothing: the
//! decoder fails on the missing bytes, the mapping is unmapped, and only
//! that connection is closed. Legitimate allocations are far below the
//! threshold and go to the system allocator unchanged.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};

/// What serves every allocation below [`HUGE`].
#[cfg(feature = "mimalloc")]
const INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(not(feature = "mimalloc"))]
const INNER: std::alloc::System = std::alloc::System;

/// Allocations at least this large get their own mapping (no legitimate
/// buffer in Weir comes near it: requests are capped at
/// `socket.request.max.bytes`).
const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

/// Install it with `#[global_allocator]` in any process that decodes
/// requests from the network (the `weir` binary, the fuzz targets).
#[derive(Debug, Clone, Copy, Default)]
pub struct WeirAlloc;

fn huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: every method forwards to `INNER` except for huge layouts, which
// are served by anonymous mappings of exactly `layout.size()` bytes (page
// aligned, so any alignment up to a page holds) and released with munmap
// of the same size; a layout is always freed with the method family that
// allocated it because `huge` depends only on the layout.
unsafe impl GlobalAlloc for WeirAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !huge(&layout) {
            // SAFETY: same contract as ours.
            return unsafe { INNER.alloc(layout) };
        }
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if huge(&layout) {
            // SAFETY: `ptr` came from our mmap of `layout.size()` bytes.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: `ptr` came from `INNER.alloc` with this layout.
            unsafe { INNER.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !huge(&layout) && !huge(&new_layout) {
            // SAFETY: both sides are `INNER` allocations.
            return unsafe { INNER.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the overlap, free the old block, each with
        // the method family matching its layout.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// Keeps allocations up to 64 MiB in glibc's heap instead of a fresh
/// mapping each: a fetch's megabyte-sized read buffer otherwise maps new
/// pages, takes a page fault on each, and unmaps them again, every time
/// (27% of the broker's time while consuming, per `perf record`). Freed
/// heap memory is kept up to 256 MiB before it is returned to the system.
/// With mimalloc this still holds for what the C libraries (librdkafka,
/// SQLite, zstd) allocate through malloc.
/// Call once at start, before threads. Does nothing on other C libraries.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; it is
    // called at start-up, before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The unit-test binary runs on this allocator, like the `weir` binary.
    #[global_allocator]
    static ALLOC: WeirAlloc = WeirAlloc;

    #[test]
    fn a_huge_unused_allocation_costs_nothing() {
        // 64 GiB of address space on a machine with far less memory.
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        // SAFETY: non-zero size; freed with the same layout.
        unsafe {
            let p = WeirAlloc.alloc(layout);
            assert!(!p.is_null());
            p.write(7);
            assert_eq!(p.read(), 7);
            WeirAlloc.dealloc(p, layout);
        }
        let v: Vec<u64> = Vec::with_capacity(1 << 33);
        assert!(v.capacity() >= 1 << 33);
    }
}
