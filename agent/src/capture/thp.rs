//! Opting the process out of transparent huge pages, for x264's sake.
//!
//! x264 allocates each frame buffer it holds (several per frame, a dozen frames) aligned to 2 MiB
//! and asks the kernel for transparent huge pages over it with `madvise(MADV_HUGEPAGE)`: on a
//! system whose THP mode is `madvise` (Debian's default) each buffer is then backed by whole
//! 2 MiB pages, the untouched tail of the last one included. Measured at 1920x1080 (both the
//! agent and the ffmpeg CLI, docs/PERFORMANCE.md): 8–9 MB of peak RSS is that rounding. A body
//! camera's RAM is better spent elsewhere than on the TLB savings of huge pages, so the agent
//! turns them off for itself before FFmpeg allocates anything.
//!
//! This module holds the crate's second `unsafe` call: `prctl` takes no pointers here and only
//! sets a flag of the calling process, so nothing in Rust's memory model is at stake.

/// Disables transparent huge pages for this process and the ones it starts
/// (`prctl(PR_SET_THP_DISABLE)`, Linux ≥ 3.15).
///
/// # Errors
/// The OS error of `prctl` (an older kernel, or a seccomp filter refusing it); the caller
/// logs it and goes on: huge pages cost memory, not correctness.
pub(crate) fn disable_transparent_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE with arg2 = 1 and the unused args 0 reads and writes no memory
    // of ours; it sets a flag on the process's memory descriptor.
    let ret = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
