//! The single-node run's disk: a small tmpfs mounted for the soak alone
//! (never the machine's shared disk), which a ballast file fills to the
//! last byte and frees again. Mounting needs root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::SoakError;

pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    pub fn mount(dir: &Path, size_mib: u64) -> Result<Self, SoakError> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir)
            .output()?;
        if !out.status.success() {
            return Err(SoakError::Setup(format!(
                "cannot mount a {size_mib} MiB tmpfs on {} for the SQLite disk-full run \
                 (it needs root; --skip-sqlite leaves that run out): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Self { dir: dir.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn ballast(&self) -> PathBuf {
        self.dir.join("ballast")
    }

    /// Writes the ballast until the disk has no room left; answers the bytes written.
    pub fn fill(&self) -> Result<u64, SoakError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.ballast())?;
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => return Err(e.into()),
            }
        }
        // The last partial page too.
        for size in [4096usize, 512, 1] {
            while file.write(&chunk[..size]).is_ok_and(|n| n > 0) {
                written += size as u64;
            }
        }
        Ok(written)
    }

    pub fn free(&self) -> Result<(), SoakError> {
        match std::fs::remove_file(self.ballast()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
