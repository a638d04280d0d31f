//! `weir-faultfs`: a passthrough FUSE file system over a backing directory that can be
//! told to fail fsyncs or writes with EIO, for tests of a broker on a failing disk
//! (`tests/tests/it/failing_disk.rs`; `docs/operations.md` § A failing disk). Mounted with
//! the `fuser` crate's own mount (no libfuse): as root through mount(2), else through
//! `fusermount3`.

mod fs;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use fs::{FaultFs, Mode};

const HELP: &str = "\
weir-faultfs: a passthrough FUSE file system that injects disk faults (a test tool)

Usage: weir-faultfs BACKING_DIR MOUNTPOINT

Every operation a broker uses (lookup, getattr, setattr with truncate, mkdir, create,
open, read, write, fsync, fsyncdir, fallocate, flush, release, rename, unlink, rmdir,
readdir, statfs) is passed to BACKING_DIR. Pages are cached by the kernel (no direct_io),
so shared memory maps (the broker's indexes) work.

Control, by signal to this process:
  SIGUSR1   fsync-eio: every fsync and fsyncdir fails with EIO (writes still succeed)
  SIGUSR2   write-eio: every write, fallocate, truncate and fsync fails with EIO
  SIGHUP    ok: the disk heals, every operation is passed through again
  SIGTERM   (or SIGINT) unmount and exit 0

Prints `mounted MOUNTPOINT` on stdout once the mount serves, and `mode NAME` on stdout
after each change of mode has taken effect.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return;
    }
    let [backing, mountpoint] = args.as_slice() else {
        eprintln!("error: expected BACKING_DIR MOUNTPOINT\n\n{HELP}");
        std::process::exit(2);
    };
    let (backing, mountpoint) = (PathBuf::from(backing), PathBuf::from(mountpoint));
    if let Err(e) = run(backing, mountpoint) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(backing: PathBuf, mountpoint: PathBuf) -> std::io::Result<()> {
    // Blocked in every thread (the session's threads inherit the mask); this thread
    // takes them with sigwait.
    let signals = signal_set(&[
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGHUP,
        libc::SIGTERM,
        libc::SIGINT,
    ]);
    // SAFETY: pthread_sigmask with a valid, initialised set and no old set.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    let mode = Arc::new(AtomicU8::new(Mode::Ok as u8));
    let filesystem = FaultFs::new(backing.canonicalize()?, mode.clone())?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("weir-faultfs".into()),
        fuser::MountOption::RW,
    ];
    config.n_threads = Some(2);
    let session = fuser::spawn_mount(filesystem, &mountpoint, &config)?;
    println!("mounted {}", mountpoint.display());
    loop {
        let mut signal = 0;
        // SAFETY: sigwait with the set blocked above.
        let rc = unsafe { libc::sigwait(&signals, &mut signal) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let next = match signal {
            libc::SIGUSR1 => Mode::FsyncEio,
            libc::SIGUSR2 => Mode::WriteEio,
            libc::SIGHUP => Mode::Ok,
            _ => break,
        };
        mode.store(next as u8, Ordering::SeqCst);
        println!("mode {}", next.name());
    }
    session.umount_and_join()?;
    println!("unmounted {}", mountpoint.display());
    Ok(())
}

fn signal_set(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}
