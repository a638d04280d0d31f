//! A `weir-faultfs` mount (this crate's FUSE binary, `src/bin/weir-faultfs/`): a
//! passthrough file system over a backing directory that fails fsyncs or writes with EIO
//! when told to, for a broker whose data directory is on a failing disk. The mount is
//! undone in `Drop`, even when the test panicked: SIGTERM (the binary unmounts and
//! exits), and a lazy unmount if it did not.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// Longest the binary may take to mount, or to take a new mode.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest it may take to unmount and exit after SIGTERM before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the file system does with writes and syncs (the binary's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Everything passes through.
    Ok,
    /// Every fsync fails with EIO; writes succeed.
    FsyncEio,
    /// Every write and fsync fails with EIO.
    WriteEio,
}

impl FaultMode {
    fn signal(self) -> i32 {
        match self {
            FaultMode::Ok => libc::SIGHUP,
            FaultMode::FsyncEio => libc::SIGUSR1,
            FaultMode::WriteEio => libc::SIGUSR2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FaultMode::Ok => "ok",
            FaultMode::FsyncEio => "fsync-eio",
            FaultMode::WriteEio => "write-eio",
        }
    }
}

/// Why FUSE cannot be had here, if it cannot: the test that needs it skips, printing it.
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse (FUSE is not available in this kernel or container)".into());
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let fusermount = ["/usr/bin/fusermount3", "/bin/fusermount3"]
        .iter()
        .any(|p| Path::new(p).exists());
    if !root && !fusermount {
        return Some("not root and no fusermount3 to mount FUSE with".into());
    }
    None
}

/// A mounted `weir-faultfs`.
#[derive(Debug)]
pub struct FaultFs {
    child: Option<Child>,
    mountpoint: PathBuf,
    lines: mpsc::Receiver<String>,
}

impl FaultFs {
    /// Mounts `backing` at `mountpoint` with the binary at `binary` (a test's
    /// `env!("CARGO_BIN_EXE_weir-faultfs")`) and waits until it serves.
    pub fn mount(binary: &Path, backing: &Path, mountpoint: &Path) -> anyhow::Result<FaultFs> {
        let mut child = Command::new(binary)
            .arg(backing)
            .arg(mountpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("the binary's stdout")?;
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut fs = FaultFs {
            child: Some(child),
            mountpoint: mountpoint.to_path_buf(),
            lines,
        };
        fs.expect(&format!("mounted {}", mountpoint.display()))?;
        Ok(fs)
    }

    /// Switches the mode, and waits until the file system has taken it.
    pub fn set(&mut self, mode: FaultMode) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("not mounted")?;
        // SAFETY: kill with the pid of a child this value owns and has not reaped.
        if unsafe { libc::kill(child.id() as i32, mode.signal()) } != 0 {
            bail!(
                "signalling weir-faultfs: {}",
                std::io::Error::last_os_error()
            );
        }
        self.expect(&format!("mode {}", mode.name()))
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    fn expect(&mut self, want: &str) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + CONTROL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == want => return Ok(()),
                Ok(_) => {}
                Err(_) => bail!("weir-faultfs did not say `{want}` within {CONTROL_TIMEOUT:?}"),
            }
        }
    }

    fn mounted(&self) -> bool {
        let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
            return false;
        };
        let want = self.mountpoint.to_string_lossy();
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(want.as_ref()))
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: as in `set`.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
            while child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if self.mounted() {
            // The binary died without unmounting: detach the mount so nothing hangs on it.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}
