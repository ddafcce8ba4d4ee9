//! Temporary directories for tests, removed with everything in them when the guard drops
//! (also when the test fails). Only `std`: the configuration tests include it by
//! `#[path = "util/temp_dir.rs"]` without the scheduler helpers of `util/mod.rs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

/// Creates `<temp>/nl-test-<tag>-<pid>-<instant>`, unique per call.
pub fn tempdir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(
        format!("nl-test-{tag}-{}-{:?}", std::process::id(), Instant::now())
            .replace([' ', ':', '.'], "_"),
    );
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A directory under the system temp dir, removed with everything in it when dropped (also
/// when the test fails). Derefs to its path.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Replaces the file `name` in the directory atomically (written aside, then renamed), as
    /// an administrator's editor would: a concurrent reader sees the old text or the new.
    pub fn replace(&self, name: &str, text: &str) {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.0.join(name)).unwrap();
    }
}

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
