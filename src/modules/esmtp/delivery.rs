//! Message delivery of the ESMTP listener: `discard` and durable Maildir.
//!
//! C: the `esmtp` module's spool hooks (`Delivery`, `Maildir`); Maildir as qmail's
//! `maildir(5)` defines it (write into `tmp/`, then rename into `new/`).
//!
//! # Summary
//! [`BodyBuf`] is the engine's [`BodySink`]: it holds at most one spill's worth of body
//! ([`SPILL`] octets plus one read) and says when the glue should hand it to the disk
//! ([`BodyBuf::wants_spill`]). The blocking work runs on a pool thread, on a floated session:
//! [`MaildirWrite::spill`] appends the held bytes to the message's file in `tmp/` (creating
//! it, with its `Received:` header, on the first spill), and [`MaildirWrite::finish`] writes
//! the rest, `fsync`s the file, renames it into `new/` and `fsync`s `new/` (shared by
//! concurrent deliveries to one directory: group commit) before the client gets its `250`.
//!
//! # Contract
//! - `BodyBuf` is driven by the engine on the scheduler thread; `MaildirWrite` methods run only
//!   while the session is floated (one thread at a time touches it).
//! - After a failure nothing is left in `new/`, and the file in `tmp/` is removed; the body
//!   still arriving is dropped (not held) and the message is answered `451 4.3.0`.
//! - Dropping a `MaildirWrite` with a file in `tmp/` (client gone, message refused) removes it.
//!
//! # Diagnostics
//! Disk errors are returned as the `451` reason and logged with `log::warn!` (path and errno);
//! nothing panics.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::protocol::BodySink;

/// Body octets held before the glue floats the session to append them to the file.
pub const SPILL: usize = 16 * 1024;

/// The reason given to the client when a Maildir write fails (after `451 4.3.0`).
pub const FAILED: &str = "Error: local delivery failed, try again later";

/// Where accepted messages go. C: the `Delivery` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Count and drop (benchmarks, sinks).
    Discard,
    /// Write into this Maildir (`tmp/`, `new/`, `cur/` are created as needed).
    Maildir(Arc<Path>),
}

/// The body of the message being received, bounded: the glue reads at most
/// [`BodyBuf::room`] octets at a time, so at most [`SPILL`] octets are held.
#[derive(Debug, Default)]
pub struct BodyBuf {
    /// Body bytes not yet written.
    pub held: Vec<u8>,
    /// Octets of the current body seen so far (held or written).
    pub total: u64,
    /// True between `start` and the end or abort of a body.
    pub open: bool,
    /// The engine aborted the body: a file already in `tmp/` must go.
    pub aborted: bool,
    /// Keep the bytes (Maildir) or only count them (discard).
    pub keep: bool,
}

impl BodySink for BodyBuf {
    fn start(&mut self) {
        self.held.clear();
        self.total = 0;
        self.open = true;
        self.aborted = false;
    }

    fn data(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if self.keep {
            if self.held.capacity() == 0 {
                // One allocation of the bound, not a doubling that overshoots it.
                self.held
                    .reserve_exact(SPILL + super::protocol::MAX_COMMAND_LINE);
            }
            self.held.extend_from_slice(chunk);
        }
    }

    fn abort(&mut self) {
        // Release the memory at once: a refused body may have been large.
        self.held = Vec::new();
        self.open = false;
        self.aborted = true;
    }
}

impl BodyBuf {
    /// True when enough body is held that it should be appended to the file now.
    pub fn wants_spill(&self) -> bool {
        self.keep && self.open && self.held.len() >= SPILL
    }

    /// How much the next read may bring in without holding much more than [`SPILL`] octets
    /// of body (`usize::MAX` when nothing is held: discard, or outside a message). Line ends
    /// and dot-stuffing only shrink what reaches the sink. Never below one command line, so
    /// a `BDAT` line between chunks is not read a few octets at a time.
    pub fn room(&self) -> usize {
        match self.keep && self.open {
            true => SPILL
                .saturating_sub(self.held.len())
                .max(super::protocol::MAX_COMMAND_LINE),
            false => usize::MAX,
        }
    }
}

/// A message's file in `tmp/`, written only on a pool thread.
#[derive(Debug, Default)]
pub struct MaildirWrite {
    file: Option<(File, PathBuf)>,
    /// The first error of this message; later writes are skipped.
    pub failed: bool,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Process-wide delivery counters (every scheduler thread), for the console and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Messages accepted and dropped (`Delivery = discard`).
    pub discarded: u64,
    /// Messages written to a Maildir and acknowledged.
    pub stored: u64,
    /// Maildir deliveries that failed (answered `451 4.3.0`).
    pub failed: u64,
    /// Body octets of the accepted messages (discarded or stored).
    pub octets: u64,
}

static DISCARDED: AtomicU64 = AtomicU64::new(0);
static STORED: AtomicU64 = AtomicU64::new(0);
static FAILED_N: AtomicU64 = AtomicU64::new(0);
static OCTETS: AtomicU64 = AtomicU64::new(0);

/// Counts one delivery outcome (`stored`: `None` for discard).
pub fn count(stored: Option<bool>, octets: u64) {
    let c = match stored {
        None => &DISCARDED,
        Some(true) => &STORED,
        Some(false) => &FAILED_N,
    };
    c.fetch_add(1, Ordering::Relaxed);
    if stored != Some(false) {
        OCTETS.fetch_add(octets, Ordering::Relaxed);
    }
}

/// The counters so far.
pub fn delivery_stats() -> DeliveryStats {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    DeliveryStats {
        discarded: l(&DISCARDED),
        stored: l(&STORED),
        failed: l(&FAILED_N),
        octets: l(&OCTETS),
    }
}

/// A unique Maildir file name, `<secs>.P<pid>Q<n>.<host>` (the `maildir(5)` recipe with a
/// process-wide counter; `/` and `:` in the host are escaped as `\057` and `\072`).
pub fn unique_name(host: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let host = host.replace('/', "\\057").replace(':', "\\072");
    format!("{secs}.P{}Q{n}.{host}", std::process::id())
}

impl MaildirWrite {
    /// Appends `held` to the message's file, creating it with `header` first. On error the
    /// file is removed and [`MaildirWrite::failed`] set.
    pub fn spill(&mut self, dir: &Path, name: &str, header: &str, held: &[u8]) {
        if self.failed {
            return;
        }
        if let Err(e) = self.append(dir, name, header, held) {
            log::warn!("ESMTP maildir {}: {e}", dir.display());
            self.fail();
        }
    }

    /// Writes the rest, `fsync`s, renames into `new/` and `fsync`s `new/`. `Ok(name)` is the
    /// queue id; on `Err` nothing of this message is left in `tmp/` or `new/`.
    pub fn finish(
        &mut self,
        dir: &Path,
        name: &str,
        header: &str,
        held: &[u8],
    ) -> Result<String, String> {
        self.spill(dir, name, header, held);
        if self.failed {
            return Err(FAILED.to_string());
        }
        let Some((file, tmp)) = self.file.take() else {
            return Err(FAILED.to_string());
        };
        let new = dir.join("new").join(name);
        let r = file
            .sync_all()
            .and_then(|_| fs::rename(&tmp, &new))
            .and_then(|_| group_sync_dir(&dir.join("new")));
        drop(file);
        match r {
            Ok(()) => Ok(name.to_string()),
            Err(e) => {
                log::warn!("ESMTP maildir {}: {name}: {e}", dir.display());
                let _ = fs::remove_file(&tmp);
                let _ = fs::remove_file(&new);
                self.failed = true;
                Err(FAILED.to_string())
            }
        }
    }

    fn append(&mut self, dir: &Path, name: &str, header: &str, held: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            if dir.as_os_str().is_empty() {
                return Err(io::Error::other(
                    "Delivery = maildir but Maildir is not set",
                ));
            }
            for sub in ["tmp", "new", "cur"] {
                fs::create_dir_all(dir.join(sub))?;
            }
            let tmp = dir.join("tmp").join(name);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            self.file = Some((f.try_clone()?, tmp));
            f.write_all(header.as_bytes())?;
        }
        if let Some((f, _)) = self.file.as_mut() {
            f.write_all(held)?;
        }
        Ok(())
    }

    fn fail(&mut self) {
        self.failed = true;
        if let Some((_, tmp)) = self.file.take() {
            let _ = fs::remove_file(tmp);
        }
    }

    /// Forgets the message (after its reply), removing a file left in `tmp/`.
    pub fn reset(&mut self) {
        self.fail();
        self.failed = false;
    }

    /// True while a file of the current message exists in `tmp/`.
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }
}

impl Drop for MaildirWrite {
    fn drop(&mut self) {
        self.fail();
    }
}

/// Group commit of directory `fsync`s: deliveries that renamed into `dir` before an `fsync`
/// of it started are covered by that `fsync` and do not issue their own.
struct DirSync {
    /// (renames announced, renames covered by a completed fsync).
    seq: Mutex<(u64, u64)>,
    io: Mutex<()>,
}

fn group_sync_dir(dir: &Path) -> io::Result<()> {
    static DIRS: OnceLock<Mutex<HashMap<PathBuf, Arc<DirSync>>>> = OnceLock::new();
    let ds = {
        let mut m = DIRS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.entry(dir.to_path_buf())
            .or_insert_with(|| {
                Arc::new(DirSync {
                    seq: Mutex::new((0, 0)),
                    io: Mutex::new(()),
                })
            })
            .clone()
    };
    let lock = |m: &Mutex<(u64, u64)>| *m.lock().unwrap_or_else(|p| p.into_inner());
    // Our rename is complete: announce it. Any fsync that starts after this covers it.
    let mine = {
        let mut s = ds.seq.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.0
    };
    let _io = ds.io.lock().unwrap_or_else(|p| p.into_inner());
    if lock(&ds.seq).1 >= mine {
        return Ok(()); // a concurrent delivery's fsync started after our rename
    }
    let target = lock(&ds.seq).0;
    crate::sys::fsync_dir(dir)?;
    let mut s = ds.seq.lock().unwrap_or_else(|p| p.into_inner());
    s.1 = s.1.max(target);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nl-maildir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn spill_then_finish_lands_in_new_only() {
        let d = tmpdir("ok");
        let mut w = MaildirWrite::default();
        let name = unique_name("h/o:st");
        assert!(name.ends_with(".h\\057o\\072st"), "{name}");
        w.spill(&d, &name, "Received: x\r\n", b"a\r\n");
        assert!(w.has_file());
        let id = w.finish(&d, &name, "ignored", b"b\r\n").unwrap();
        assert_eq!(id, name);
        let got = fs::read(d.join("new").join(&name)).unwrap();
        assert_eq!(got, b"Received: x\r\na\r\nb\r\n");
        assert_eq!(fs::read_dir(d.join("tmp")).unwrap().count(), 0);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn failure_leaves_nothing_and_reports() {
        let base = tmpdir("fail");
        fs::create_dir_all(&base).unwrap();
        let file = base.join("plain");
        fs::write(&file, b"x").unwrap();
        let d = file.join("Maildir"); // under a regular file: mkdir fails even for root
        let mut w = MaildirWrite::default();
        assert_eq!(w.finish(&d, "n", "h", b"body").unwrap_err(), FAILED);
        assert!(w.failed && !w.has_file());
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn body_buf_bounds_and_abort_releases() {
        let mut b = BodyBuf {
            keep: true,
            ..BodyBuf::default()
        };
        b.start();
        b.data(&vec![b'x'; SPILL]);
        assert!(b.wants_spill());
        b.abort();
        assert_eq!(b.held.capacity(), 0);
        assert!(!b.wants_spill() && b.aborted);
    }
}
