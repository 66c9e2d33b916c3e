//! Tuning of the C allocator (glibc malloc) around model loading.
//!
//! glibc serves a large allocation with its own `mmap` and returns it to the system on free,
//! but after each such free it raises that threshold (up to 32 MiB) to the freed size. Loading
//! a model frees several multi-megabyte buffers (protobuf, unpacked weights), after which such
//! buffers land in the heap, and the heap keeps the freed memory resident for good. While
//! loading, a small fixed threshold returns every large buffer to the system. Once loaded, a
//! large threshold lets tract's per-window scratch tensors (an im2col buffer alone is 5.5 MB)
//! be reused from the heap instead of being mapped and zeroed for every window. Measured in
//! docs/benchmarks.md (peak RSS and latency).

/// While loading: allocations from this size up get their own mapping, returned when freed.
pub const LOADING_MMAP_THRESHOLD: usize = 128 * 1024;
/// While running: glibc's ceiling for the threshold (its `DEFAULT_MMAP_THRESHOLD_MAX`: 32 MiB on
/// 64-bit targets, 512 KiB on 32-bit ones, where per-window buffers are mapped per window anyway).
pub const RUNNING_MMAP_THRESHOLD: usize = if cfg!(target_pointer_width = "64") {
    32 * 1024 * 1024
} else {
    512 * 1024
};
/// While running, free memory at the top of a heap is kept up to this much (glibc's dynamic
/// rule: twice the mmap threshold) so the next window reuses it without page faults.
pub const RUNNING_TRIM_THRESHOLD: usize = 2 * RUNNING_MMAP_THRESHOLD;

/// Runs `load` with large buffers returned to the system as soon as they are freed, then sets
/// the threshold for steady running. Either setting also turns off glibc's dynamic threshold.
/// Only glibc is tuned; elsewhere this just runs `load`.
pub fn while_loading<T>(load: impl FnOnce() -> T) -> T {
    set(LOADING_MMAP_THRESHOLD, LOADING_MMAP_THRESHOLD);
    let out = load();
    trim();
    set(RUNNING_MMAP_THRESHOLD, RUNNING_TRIM_THRESHOLD);
    out
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(mmap_threshold: usize, trim_threshold: usize) {
    let int = |b: usize| b.min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: mallopt only sets malloc parameters; glibc rejects values it cannot use.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, int(mmap_threshold));
        libc::mallopt(libc::M_TRIM_THRESHOLD, int(trim_threshold));
    }
}

/// Returns the free memory left by loading to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_mmap_threshold: usize, _trim_threshold: usize) {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
