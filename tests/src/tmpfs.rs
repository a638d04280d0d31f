//! A size-limited tmpfs under a broker's data directory, for the "full disk" fault: the
//! harness mounts one per node ([`crate::cluster::ClusterConfig::disk_bytes`]); filling
//! it is remounting it at the size it already uses (plus a little, so the broker's next
//! writes fail with ENOSPC a moment later, not in the middle of the remount), healing it
//! is remounting it at its full size again. Mounting needs root (CI and this project's
//! machines have it); [`unavailable`] says why not elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// What a full disk leaves free above what is used: less than one batch of the workload's
/// writes per partition, so the next ones fail.
pub const FULL_HEADROOM_BYTES: u64 = 64 * 1024;
/// tmpfs sizes are whole pages.
const PAGE_BYTES: u64 = 4096;
/// Attempts at shrinking a tmpfs that grows while it is remounted (the broker writes on).
const SHRINK_ATTEMPTS: u32 = 5;

/// Why a tmpfs cannot be mounted here (`None`: it can).
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    (euid != 0).then(|| format!("mounting a tmpfs needs root (euid {euid})"))
}

/// One mounted tmpfs; unmounted (lazily: a broker may still hold files open) on drop.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
    size: u64,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes on `path` (created if missing).
    pub fn mount(path: &Path, size: u64) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "weir-soak"])
            .arg(path)
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!("mount -t tmpfs on {} failed ({status})", path.display());
        }
        Ok(Tmpfs {
            path: path.to_owned(),
            size,
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in use now.
    pub fn used(&self) -> anyhow::Result<u64> {
        let c_path = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes())
            .context("a path with a NUL byte")?;
        // SAFETY: an all-zero statvfs is a valid value of the plain C struct.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: statvfs(3) writes into the struct we own; the path is a valid C string
        // for the duration of the call.
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("statvfs {}", self.path.display()));
        }
        Ok((stat.f_blocks - stat.f_bfree) * stat.f_frsize)
    }

    /// Fills it: remounts it at the size it uses plus [`FULL_HEADROOM_BYTES`].
    pub fn fill(&self) -> anyhow::Result<()> {
        self.fill_leaving(FULL_HEADROOM_BYTES)
    }

    /// Fills it to within `headroom` bytes: remounts it at the size it uses plus that,
    /// rounded up to a page.
    pub fn fill_leaving(&self, headroom: u64) -> anyhow::Result<()> {
        for _ in 0..SHRINK_ATTEMPTS {
            let used = self.used()?;
            let size = (used + headroom).div_ceil(PAGE_BYTES) * PAGE_BYTES;
            // Refused (EINVAL) if the broker wrote past `size` meanwhile: measure again.
            if self.remount(size.min(self.size))? {
                return Ok(());
            }
        }
        bail!(
            "{} kept growing past every size it was shrunk to",
            self.path.display()
        )
    }

    /// Heals a [`Tmpfs::fill`]: remounts it at its full size.
    pub fn free(&self) -> anyhow::Result<()> {
        if !self.remount(self.size)? {
            bail!(
                "remounting {} at {} bytes failed",
                self.path.display(),
                self.size
            );
        }
        Ok(())
    }

    /// Copies what it holds to a directory beside it (its path with `.kept` added), so
    /// the files outlive the unmount: for a run whose files are kept for a look.
    pub fn copy_out(&self) -> anyhow::Result<std::path::PathBuf> {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".kept");
        let kept = std::path::PathBuf::from(name);
        std::fs::create_dir_all(&kept).with_context(|| format!("creating {}", kept.display()))?;
        let status = Command::new("cp")
            .arg("-a")
            .arg(self.path.join("."))
            .arg(&kept)
            .status()
            .context("running cp")?;
        if !status.success() {
            bail!(
                "copying {} to {} failed ({status})",
                self.path.display(),
                kept.display()
            );
        }
        Ok(kept)
    }

    fn remount(&self, size: u64) -> anyhow::Result<bool> {
        let output = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .context("running mount")?;
        Ok(output.status.success())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Writes `bytes` to a new file in `dir`, synced.
    fn write(dir: &Path, name: &str, bytes: usize) -> std::io::Result<()> {
        let mut file = std::fs::File::create(dir.join(name))?;
        file.write_all(&vec![7u8; bytes])?;
        file.sync_all()
    }

    #[test]
    fn a_filled_tmpfs_refuses_writes_and_takes_them_again_when_freed() {
        if let Some(why) = unavailable() {
            eprintln!("skipped: {why}");
            return;
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let disk = Tmpfs::mount(&dir.path().join("disk"), 4 << 20).expect("mounted");
        write(disk.path(), "before", 1 << 20).expect("room before it is filled");
        disk.fill().expect("filled");
        let error = write(disk.path(), "full", 1 << 20).expect_err("the disk is full");
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
        disk.free().expect("freed");
        write(disk.path(), "after", 1 << 20).expect("room again");
        assert!(disk.used().expect("statvfs") >= 2 << 20);
    }
}
