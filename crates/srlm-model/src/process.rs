//! Process-wide settings for programs that train or sample with this crate's tensors:
//! call [`init_process`] first thing in `main`.
//!
//! **Allocator.**
//! A training step allocates and frees hundreds of MB of activations and gradients; a sampling
//! step, KV-cache tensors of a growing size. The `srlm` binary uses mimalloc for that (glibc's
//! heap did not reuse the KV-cache blocks). By default mimalloc hands freed memory back to the
//! OS after a delay, and the next step page-faults it in again: on the default model's
//! 2 × 256-token training step that was 10–20% of the time, in kernel page-fault and TLB
//! shootdown code (and a 64-pair DPO epoch took 2× as long with immediate purging).
//! [`keep_freed_memory`] turns the purge off; the price is that RSS stays at its peak instead of
//! shrinking between phases.
//!
//! **Thread count.** candle asks for its thread count on every matmul, and without
//! `RAYON_NUM_THREADS` it re-reads `/proc/cpuinfo` each time (~10% of a 32-row decoding
//! step). [`init_process`] sets `RAYON_NUM_THREADS` once to the count candle would detect.

/// mimalloc's `mi_option_purge_delay` (index 15 in `mimalloc.h`'s `mi_option_t`, v2;
/// `libmimalloc-sys` 0.1.49 exports no constant for it; a test checks the index).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// [`keep_freed_memory`], and `RAYON_NUM_THREADS` set (when unset) to candle's own default.
/// Call it before any other thread starts.
pub fn init_process() {
    keep_freed_memory();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle_core::utils::get_num_threads();
        // SAFETY: called at the start of `main`, before other threads read the environment.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
}

/// Tells mimalloc never to return freed memory to the OS (unless `MIMALLOC_PURGE_DELAY` is set,
/// which wins). Harmless when mimalloc is not the global allocator. Call it first thing in
/// `main` (or use [`init_process`]).
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn purge_delay_option_index() {
        // Setting option 15 to a distinctive value reads back through mimalloc's own getter
        // for that option (the env name proves which option index 15 is when run by hand:
        // `MIMALLOC_PURGE_DELAY=123` makes `mi_option_get(15)` return 123).
        unsafe {
            let before = libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY);
            libmimalloc_sys::mi_option_set(super::MI_OPTION_PURGE_DELAY, 4242);
            assert_eq!(
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY),
                4242
            );
            libmimalloc_sys::mi_option_set(super::MI_OPTION_PURGE_DELAY, before);
        }
    }
}
