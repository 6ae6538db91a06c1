//! A small disk of a test's own, to fill up: a tmpfs mounted on a
//! temporary directory (root only, as on the CI machine), unmounted when
//! dropped. Filling it makes the kernel answer writes with a real ENOSPC.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// A mounted tmpfs of a fixed size.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

const ENOSPC: i32 = 28;

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`4m`) on a new temporary directory.
    pub fn new(size: &str) -> Result<SmallDisk> {
        let dir = tempfile::tempdir()?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "the full-disk tests mount a tmpfs, which needs root: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(SmallDisk { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file until a write fails with ENOSPC.
    pub fn fill(&self) -> Result<()> {
        let mut f = std::fs::File::create(self.path().join("filler"))?;
        let chunk = vec![0u8; 4096];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(ENOSPC) => return Ok(()),
                Err(e) => return Err(e).context("filling the disk"),
            }
        }
    }

    /// Frees the space [`SmallDisk::fill`] took.
    pub fn free(&self) -> Result<()> {
        std::fs::remove_file(self.path().join("filler")).context("freeing the disk")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
