//! How the `weir` binary's allocator treats freed memory: it keeps it for the next
//! allocation instead of handing it back to the kernel at once.
//!
//! glibc's malloc, by default, serves every allocation above a moving threshold (128 KiB
//! to start) with a fresh `mmap` and unmaps it when freed, and gives the free top of a
//! heap back to the kernel once it passes twice that. On the data path almost every
//! buffer is that size: a produce request's batches as tonic reads them, a fetch's read
//! buffer, the producer's batches. So at a few thousand requests a second the process
//! asked the kernel for memory a few thousand times a second, and each 4 KiB page of it
//! was faulted in and zeroed again. On a virtual machine that returns free memory to its
//! host (a balloon device with free page reporting, as the machine of BENCHMARKS.md has),
//! each of those pages can also cost the host a fault. Measured there
//! (`benches/data-path.sh`, this build against the one before it in alternating rounds,
//! medians of 3; BENCHMARKS.md § Data path, run 4): produce 100 B 4.88 M against 3.93 M
//! records/s, produce 1 KiB 665 against 571 MB/s with the bench's CPU 1.67 s against
//! 2.42 s, consume 2,010 against 1,566 MB/s.
//!
//! The settings: allocations up to [`MMAP_THRESHOLD_BYTES`] come from malloc's arenas,
//! and up to [`TRIM_THRESHOLD_BYTES`] of free memory at the top of an arena is kept. A
//! process thus keeps about its peak of buffers: the broker's is bounded by its request
//! limits (docs/ARCHITECTURE.md § Memory), as a JVM broker keeps its heap. Set through
//! `mallopt` at start, before any thread; a `GLIBC_TUNABLES` naming any
//! `glibc.malloc.` setting is left to rule instead. Other C libraries (musl) and systems
//! are left as they are.

/// Largest allocation served from malloc's arenas rather than a fresh `mmap` of its own:
/// above every request and fetch buffer of the data path (batches up to 1 MiB, fetches
/// of a few MiB); a rarer, larger one (a 64 MiB request) still gets its own mapping and
/// gives it back when freed.
pub const MMAP_THRESHOLD_BYTES: i32 = 32 * 1024 * 1024;

/// Most free memory kept at the top of an arena before the rest goes back to the
/// kernel: several times what a busy broker has in flight at once, so steady traffic
/// reuses memory instead of asking for it again, while a burst far above that (a
/// thousand partitions fetched at once, say) is still returned.
pub const TRIM_THRESHOLD_BYTES: i32 = 256 * 1024 * 1024;

/// Applies the settings above (see the module docs). Call first thing in `main`.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
            return;
        }
        // SAFETY: mallopt only changes malloc's parameters (under malloc's own lock);
        // it is called before any other thread exists and takes plain integers. glibc
        // takes any value for these two (2.36 returns 1 even for a negative one), so
        // there is no refusal to report.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        }
    }
}
