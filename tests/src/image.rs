//! A container image of the `weir` binary under test, for the compose cluster
//! ([`crate::compose`]). The production image (`deploy/docker/build-image.sh`) holds a
//! static release build with LTO, minutes to build; this one holds the binary the test
//! run already has ([`crate::binary`]), dynamically linked, plus the shared libraries
//! `ldd` names, copied in at the paths the loader looks for them. Its Dockerfile is the
//! production one (`deploy/docker/Dockerfile`: the same user, `/etc` files, empty
//! `/data`, ports, healthcheck, entrypoint) with one line added after `FROM scratch`:
//! `COPY libs/ /`. So what the test runs differs from what ships only in how the binary
//! is linked and optimised. No registry is needed (`FROM scratch`).
//!
//! The image is tagged uniquely by the caller and removed when the [`TestImage`] is
//! dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The uid and gid the broker runs as in the image (deploy/docker/build-image.sh).
const WEIR_UID: u32 = 10001;
/// The line the production Dockerfile starts its image with; the libraries go right
/// after it.
const FROM_SCRATCH: &str = "FROM scratch";
/// What is added to the production Dockerfile.
const COPY_LIBRARIES: &str = "COPY libs/ /";

/// A built image; removed on drop.
#[derive(Debug)]
pub struct TestImage {
    tag: String,
    /// Size in bytes, as `docker image inspect` reports it.
    pub size_bytes: u64,
    /// How long preparing the context and `docker build` took.
    pub build_time: Duration,
}

impl TestImage {
    /// Builds `tag` from `binary` (see the module docs).
    pub fn build(binary: &Path, tag: &str) -> anyhow::Result<TestImage> {
        let started = Instant::now();
        let context = tempfile::Builder::new()
            .prefix("weir-test-image-")
            .tempdir()
            .context("creating the image's build context")?;
        let dir = context.path();
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc"))?;
        std::fs::create_dir_all(rootfs.join("data"))?;
        std::fs::write(
            rootfs.join("etc/passwd"),
            format!(
                "root:x:0:0:root:/:/sbin/nologin\nweir:x:{WEIR_UID}:{WEIR_UID}:weir:/data:/sbin/nologin\n"
            ),
        )?;
        std::fs::write(
            rootfs.join("etc/group"),
            format!("root:x:0:\nweir:x:{WEIR_UID}:\n"),
        )?;
        // glibc 2.34+ has its files and dns lookups built in: no NSS module to load.
        std::fs::write(rootfs.join("etc/nsswitch.conf"), "hosts: files dns\n")?;
        copy_binary(binary, &dir.join("weir"))?;
        for library in shared_libraries(binary)? {
            let relative = library
                .strip_prefix("/")
                .with_context(|| format!("ldd named a relative path {}", library.display()))?;
            let to = dir.join("libs").join(relative);
            std::fs::create_dir_all(to.parent().expect("a path in libs/"))?;
            // Follows symlinks: the loader finds the file itself at the path ldd named.
            std::fs::copy(&library, &to)
                .with_context(|| format!("copying {} into the image", library.display()))?;
        }
        std::fs::write(dir.join("Dockerfile"), dockerfile()?)?;

        let output = Command::new("docker")
            .args(["build", "--quiet", "-t", tag])
            .arg(dir)
            .output()
            .context("running docker build")?;
        if !output.status.success() {
            bail!(
                "docker build -t {tag} failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // From here on the image exists: dropping this removes it, on error too.
        let mut image = TestImage {
            tag: tag.to_owned(),
            size_bytes: 0,
            build_time: started.elapsed(),
        };
        let output = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Size}}", tag])
            .output()
            .context("running docker image inspect")?;
        image.size_bytes = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .with_context(|| format!("docker image inspect {tag}: no size"))?;
        Ok(image)
    }

    /// The image's tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        match Command::new("docker")
            .args(["image", "rm", &self.tag])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "weir-tests: could not remove the image {}: {}",
                self.tag,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("weir-tests: could not remove the image {}: {e}", self.tag),
        }
    }
}

/// The binary without its debug information (most of a debug build: 290 MB become 60),
/// so the context, the image layer and every container start stay small; a plain copy
/// if `objcopy` is not there.
fn copy_binary(binary: &Path, to: &Path) -> anyhow::Result<()> {
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(to)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(binary, to)
            .with_context(|| format!("copying {} into the image", binary.display()))?;
    }
    Ok(())
}

/// The shared libraries `binary` loads, as `ldd` resolves them on this machine (the
/// loader itself included; the vDSO, which has no file, left out).
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "ldd {} failed ({}): {}{}",
            binary.display(),
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_ldd(&text)
}

/// The paths in `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`,
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`; `linux-vdso.so.1 (0x...)` has none.
fn parse_ldd(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("ldd cannot find a library: {line}");
        }
        if line.contains("statically linked") || line.contains("not a dynamic executable") {
            continue;
        }
        let path = line
            .split_once("=>")
            .map_or(line, |(_, resolved)| resolved)
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

/// The production Dockerfile with the libraries copied in right after its `FROM`.
fn dockerfile() -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/docker/Dockerfile");
    let production =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    with_libraries(&production).with_context(|| format!("{}", path.display()))
}

fn with_libraries(production: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut added = false;
    for line in production.lines() {
        out.push_str(line);
        out.push('\n');
        if !added && line.trim() == FROM_SCRATCH {
            out.push_str(COPY_LIBRARIES);
            out.push('\n');
            added = true;
        }
    }
    if !added {
        bail!("no `{FROM_SCRATCH}` line to add the shared libraries after");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_library_paths_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f6c)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f6c)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f6c)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
    }

    #[test]
    fn the_libraries_are_copied_right_after_from_scratch() {
        let production = "# comment\nFROM scratch\nCOPY weir /weir\n";
        assert_eq!(
            with_libraries(production).unwrap(),
            "# comment\nFROM scratch\nCOPY libs/ /\nCOPY weir /weir\n"
        );
        assert!(with_libraries("FROM debian\n").is_err());
    }

    #[test]
    fn the_production_dockerfile_takes_the_libraries() {
        assert!(
            dockerfile()
                .unwrap()
                .contains("FROM scratch\nCOPY libs/ /\n")
        );
    }
}
