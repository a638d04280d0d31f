//! CPU affinity of the bench's threads: "weir (validated ahead)" runs its request thread
//! and its appending thread on two different CPUs.
//!
//! Left to itself, Linux often wakes the request thread on the CPU of the thread that woke
//! it (the appending thread handing buffers back), where it preempts the appends: measured
//! here in group-commit, up to 80% of the request thread's work ran on the appending
//! thread's CPU in some runs and none in others, which moved the result by 10-20%.
//! Pinning measures what the pipeline is for, validation on the other core, every time.

use std::io;
use std::mem;

/// A set of CPUs (`cpu_set_t`).
#[derive(Clone, Copy)]
pub struct CpuSet(libc::cpu_set_t);

impl CpuSet {
    fn empty() -> CpuSet {
        // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is the empty set.
        CpuSet(unsafe { mem::zeroed() })
    }

    fn single(cpu: usize) -> CpuSet {
        let mut set = CpuSet::empty();
        // SAFETY: `CPU_SET` only writes the bit for `cpu` inside `set`; callers pass a CPU
        // taken from a set the kernel returned, so it lies within `CPU_SETSIZE`.
        unsafe { libc::CPU_SET(cpu, &mut set.0) };
        set
    }

    /// The CPUs the calling thread may run on.
    fn of_this_thread() -> io::Result<CpuSet> {
        let mut set = CpuSet::empty();
        // SAFETY: pid 0 is the calling thread; the kernel writes at most
        // `size_of::<cpu_set_t>()` bytes into `set`, which is that large.
        let status =
            unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set.0) };
        if status != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(set)
    }

    fn contains(&self, cpu: usize) -> bool {
        // SAFETY: `CPU_ISSET` only reads the bit for `cpu`, which lies within
        // `CPU_SETSIZE` (callers iterate below it).
        unsafe { libc::CPU_ISSET(cpu, &self.0) }
    }

    fn cpus(&self) -> impl Iterator<Item = usize> + '_ {
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| self.contains(cpu))
    }

    /// Restricts the calling thread to this set.
    fn apply_to_this_thread(&self) -> io::Result<()> {
        // SAFETY: pid 0 is the calling thread; the kernel reads
        // `size_of::<cpu_set_t>()` bytes of `self.0`, which is that large.
        let status =
            unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &self.0) };
        if status != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The CPU the calling thread is running on.
fn current_cpu() -> Option<usize> {
    // SAFETY: `sched_getcpu` takes no arguments and touches no memory of ours.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// Two different CPUs the calling thread may run on, the one it is on first; `None` if
/// it may run on only one.
pub fn two_cpus() -> io::Result<Option<(usize, usize)>> {
    let allowed = CpuSet::of_this_thread()?;
    let here = current_cpu()
        .filter(|&cpu| allowed.contains(cpu))
        .or_else(|| allowed.cpus().next());
    let Some(here) = here else {
        return Ok(None);
    };
    Ok(allowed
        .cpus()
        .find(|&cpu| cpu != here)
        .map(|other| (here, other)))
}

/// The calling thread, pinned to one CPU until this is dropped, when it gets back the
/// CPUs it had.
pub struct Pinned {
    previous: CpuSet,
}

/// Pins the calling thread to `cpu`.
pub fn pin_this_thread(cpu: usize) -> io::Result<Pinned> {
    let previous = CpuSet::of_this_thread()?;
    CpuSet::single(cpu).apply_to_this_thread()?;
    Ok(Pinned { previous })
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // Widening a thread's own affinity back to a set it had cannot fail short of a
        // kernel bug, and a drop has no one to report to; the worst case is a thread that
        // stays pinned.
        let _ = self.previous.apply_to_this_thread();
    }
}
