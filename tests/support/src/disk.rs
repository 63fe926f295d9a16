//! A small tmpfs, for the tests that fill a disk. Mounting needs root (CI runs as root here);
//! without it a disk-full test cannot run honestly, so it fails under CI and says so elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a given size, unmounted on drop.
pub struct SmallDisk {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts one of `size` (`4m`, as tmpfs spells it); `None` with a notice when it cannot.
    pub fn mount(test: &str, size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("a mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .status()
            .map_err(|e| e.to_string())
            .and_then(|s| {
                if s.success() {
                    Ok(())
                } else {
                    Err(format!("mount exited with {s}"))
                }
            });
        crate::required(test, "mounting a tmpfs (needs root)", mounted)?;
        Some(SmallDisk { mnt, _dir: dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}
