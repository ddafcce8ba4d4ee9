//! Message delivery of the ESMTP listener: `discard` and durable, group-committed Maildir.
//!
//! C: the `esmtp` module's spool hooks (`Delivery`, `Maildir`); Maildir as qmail's
//! `maildir(5)` defines it (write into `tmp/`, then link into `new/`, never replacing).
//!
//! # Summary
//! [`BodyBuf`] is the engine's [`BodySink`]: the glue feeds the engine at most
//! [`BodyBuf::room`] octets at a time, so it holds at most [`SPILL`] + 511 octets of body,
//! and it says when the glue should hand them to the disk ([`BodyBuf::wants_spill`]). The
//! blocking work runs on a pool thread, on a floated session: [`MaildirWrite::spill`]
//! appends the held bytes to the message's file in `tmp/` (creating it, with its
//! `Received:` header, on the first spill), and [`MaildirWrite::stage`] writes the rest.
//!
//! A staged message is then **group-committed** by its [`Maildir`] ([`commit`]): the pool
//! thread queues it and returns at once if a commit of that Maildir is in progress, else it
//! becomes the leader and runs rounds until nothing is queued or pending. A round takes
//! every queued message and makes their data durable in one step — one `syncfs(2)` of the
//! Maildir's filesystem (Linux 5.8 and later), called on the round's earliest-created file so
//! that it reports every write-back error since that file was opened, else one `fsync` per
//! file — then links each
//! into `new/` under a fresh name (`link(2)` never replaces an entry; on `EEXIST` another
//! name is tried), makes the new entries durable with one `fsync` of `new/`, resumes each
//! session with its own result, and only then removes the `tmp/` names (a crash before that
//! leaves a second name of a delivered message in `tmp/`, which Maildir readers clean up;
//! never a message in `new/` that was not acknowledged as durable). So a message is answered
//! after one round: one `syncfs` and one `fsync` of `new/` whatever the batch size. The
//! order matters: linking before the data is durable could leave an empty or truncated
//! file in `new/` after a crash. A message waiting for its commit holds no
//! pool thread, so a batch is as large as the number of messages that finished while the
//! previous round ran, whatever the pool's `Concurrency` (the leader holds one thread: with
//! `Concurrency = 1` messages are staged only between rounds).
//!
//! # Contract
//! - `BodyBuf` is driven by the engine on the scheduler thread; `MaildirWrite` methods run
//!   only while the session is floated (one thread at a time touches it), except
//!   [`MaildirWrite::discard`], which hands the removal of a `tmp/` file to a pool.
//! - A message is answered `250` only after its data and its `new/` entry are durable. After
//!   any failure nothing of it is left in `new/` or `tmp/`, and it is answered `451 4.3.0`;
//!   the body still arriving is dropped (not held).
//! - `tmp/`, `new/` and `cur/` are created on the first delivery to a Maildir and after a
//!   failed one, not checked for every message.
//! - Before Linux 5.8, `syncfs(2)` does not report writeback errors (it returns 0 even when
//!   the disk failed, which would acknowledge a lost message), so there, off Linux, and for a
//!   round of one file, each file is `fsync`ed and `new/` `fsync`ed instead: slower, never
//!   less durable. A `syncfs` that fails is followed by the same `fsync`s, so only the
//!   messages whose own `fsync` fails get `451`.
//!
//! # Diagnostics
//! Disk errors are returned as the `451` reason and logged with `log::warn!` (path and errno);
//! nothing panics.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::threadpool::{Completion, ThreadPool};

use super::protocol::{BodySink, MAX_COMMAND_LINE};

/// Body octets held before the glue floats the session to append them to the file. With
/// the 511 octets one feed may add past it, the per-session body buffer stays under the
/// target of 16 KiB of memory per SMTP session (`BENCHMARKS.md`, "Targets"), with room for
/// the session's other state.
pub const SPILL: usize = 12 * 1024;

/// The reason given to the client when a Maildir write fails (after `451 4.3.0`).
pub const FAILED: &str = "Error: local delivery failed, try again later";

/// Names tried in `tmp/` or `new/` before giving up on `EEXIST`.
const NAME_TRIES: usize = 8;

/// Where accepted messages go. C: the `Delivery` option.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// Count and drop (benchmarks, sinks).
    Discard,
    /// Write into this Maildir (`tmp/`, `new/`, `cur/` are created as needed).
    Maildir(Arc<Maildir>),
}

impl PartialEq for Delivery {
    /// Two Maildirs are equal when they are the same one: [`Maildir::get`] gives one per path.
    fn eq(&self, other: &Delivery) -> bool {
        match (self, other) {
            (Delivery::Discard, Delivery::Discard) => true,
            (Delivery::Maildir(a), Delivery::Maildir(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Delivery {}

/// The body of the message being received, bounded: the glue feeds the engine at most
/// [`BodyBuf::room`] octets at a time and spills when [`BodyBuf::wants_spill`], so at most
/// [`SPILL`] + 511 octets are held; the buffer is released after each spill.
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
                self.held.reserve_exact(SPILL + MAX_COMMAND_LINE);
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

    /// How many octets of input the glue may feed the engine (and read) next without this
    /// buffer passing [`SPILL`] + 511 octets: `usize::MAX` when bytes are only counted
    /// (discard). It applies outside a body too, since one feed may hold `MAIL`, `RCPT`,
    /// `DATA` and the start of the body. Line ends and dot-stuffing only shrink what reaches
    /// the sink. Never below one command line, so a feed always makes progress and a `BDAT`
    /// line between chunks is not read a few octets at a time.
    pub fn room(&self) -> usize {
        match self.keep {
            true => SPILL.saturating_sub(self.held.len()).max(MAX_COMMAND_LINE),
            false => usize::MAX,
        }
    }

    /// Forgets the bytes written by a spill and releases the buffer, so a session waiting
    /// for the rest of its body holds none.
    pub fn spilled(&mut self) {
        self.held = Vec::new();
    }
}

/// The per-directory state of one Maildir, shared by every session delivering to it.
#[derive(Debug)]
pub struct Maildir {
    path: PathBuf,
    /// `tmp/`, `new/` and `cur/` were found or created (cleared after a failure).
    ready: AtomicBool,
    queue: Mutex<CommitQueue>,
}

#[derive(Default)]
struct CommitQueue {
    waiting: Vec<(Staged, CommitDone)>,
    leading: bool,
}

impl std::fmt::Debug for CommitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitQueue")
            .field("waiting", &self.waiting.len())
            .field("leading", &self.leading)
            .finish()
    }
}

/// How a group commit reports a message's outcome: `Ok(file name in new/)` or
/// `Err(reason)`. Called once, on the committing thread.
pub type CommitDone = Box<dyn FnOnce(Result<String, String>) + Send>;

/// A message written to `tmp/` but not yet durable, waiting for its commit.
pub struct Staged {
    file: File,
    tmp: PathBuf,
    /// When the file was created, in creation order ([`OPENED`]): `make_durable` asks the
    /// earliest file of a round for the file system's write-back errors.
    opened: u64,
    ino: u64,
    host: Arc<str>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged").field("tmp", &self.tmp).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Maildir {
    /// The shared state of the Maildir at `path` (one per path in the process). Takes a
    /// process-wide lock: sessions get theirs through the per-thread cache of the `options`
    /// module, which calls this once per configured value.
    pub fn get(path: &Path) -> Arc<Maildir> {
        static ALL: OnceLock<Mutex<HashMap<PathBuf, Arc<Maildir>>>> = OnceLock::new();
        let mut all = lock(ALL.get_or_init(Default::default));
        if let Some(md) = all.get(path) {
            return md.clone();
        }
        let md = Arc::new(Maildir {
            path: path.to_path_buf(),
            ready: AtomicBool::new(false),
            queue: Mutex::new(CommitQueue::default()),
        });
        all.insert(path.to_path_buf(), md.clone());
        md
    }

    /// The Maildir's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates `tmp/`, `new/` and `cur/` unless a delivery already found them.
    fn ensure_dirs(&self) -> io::Result<()> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.path.as_os_str().is_empty() {
            return Err(io::Error::other(
                "Delivery = maildir but Maildir is not set",
            ));
        }
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(self.path.join(sub))?;
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// After a failure the directories are checked again by the next delivery.
    fn suspect(&self) {
        self.ready.store(false, Ordering::Release);
    }
}

/// A message's file in `tmp/`, written only on a pool thread.
#[derive(Debug, Default)]
pub struct MaildirWrite {
    file: Option<(File, PathBuf, u64)>,
    /// The first error of this message; later writes are skipped.
    pub failed: bool,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creation order of the files in `tmp/` (see [`Staged::opened`]).
static OPENED: AtomicU64 = AtomicU64::new(0);

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

/// A fresh Maildir file name, `<secs>.M<usec>P<pid>[I<ino>]Q<n>.<host>` (the `maildir(5)`
/// recipe: the time with microseconds, the process, the file's inode when known, a
/// process-wide counter; `/` and `:` in the host are escaped as `\057` and `\072`). Unique
/// enough that a collision is rare, not impossible (a restarted process may reuse a PID
/// and a counter value): the callers create and link with no-replace semantics and retry.
pub fn unique_name(host: &str, ino: Option<u64>) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let host = host.replace('/', "\\057").replace(':', "\\072");
    let ino = ino.map_or(String::new(), |i| format!("I{i}"));
    let (secs, usec, pid) = (t.as_secs(), t.subsec_micros(), std::process::id());
    format!("{secs}.M{usec}P{pid}{ino}Q{n}.{host}")
}

impl MaildirWrite {
    /// Appends `held` to the message's file, creating it in `tmp/` with `header` first. On
    /// error the file is removed and [`MaildirWrite::failed`] set.
    pub fn spill(&mut self, md: &Maildir, host: &str, header: &str, held: &[u8]) {
        if self.failed {
            return;
        }
        if let Err(e) = self.append(md, host, header, held) {
            log::warn!("ESMTP maildir {}: {e}", md.path.display());
            md.suspect();
            self.fail();
        }
    }

    /// Writes the rest of the message (no `fsync`: that is the commit's) and hands its file
    /// over for [`commit`]. On `Err` (the reason for the `451`) nothing is left in `tmp/`.
    pub fn stage(
        &mut self,
        md: &Maildir,
        host: &Arc<str>,
        header: &str,
        held: &[u8],
    ) -> Result<Staged, String> {
        self.spill(md, host, header, held);
        let (file, tmp, opened) = match self.file.take() {
            Some(f) if !self.failed => f,
            other => {
                self.file = other;
                self.fail();
                return Err(FAILED.to_string());
            }
        };
        match file.metadata() {
            Ok(m) => Ok(Staged {
                file,
                tmp,
                opened,
                ino: m.ino(),
                host: host.clone(),
            }),
            Err(e) => {
                log::warn!("ESMTP maildir {}: fstat: {e}", md.path.display());
                self.file = Some((file, tmp, opened));
                self.fail();
                Err(FAILED.to_string())
            }
        }
    }

    fn append(&mut self, md: &Maildir, host: &str, header: &str, held: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            md.ensure_dirs()?;
            let (mut f, tmp) = create_tmp(&md.path.join("tmp"), host)?;
            let opened = OPENED.fetch_add(1, Ordering::Relaxed);
            let r = f.write_all(header.as_bytes());
            self.file = Some((f, tmp, opened));
            r?;
        }
        if let Some((f, _, _)) = self.file.as_mut() {
            f.write_all(held)?;
        }
        Ok(())
    }

    /// Removes the message's file from `tmp/` here and now (on a pool thread).
    fn fail(&mut self) {
        self.failed = true;
        if let Some((f, tmp, _)) = self.file.take() {
            drop(f);
            let _ = fs::remove_file(tmp);
        }
    }

    /// Forgets the message (after its reply, or when it is refused or abandoned). A file
    /// left in `tmp/` is removed by a job on `pool`, so the scheduler thread does no disk
    /// work; inline if there is no pool, it refuses the job, or this is not a scheduler
    /// thread (a pool thread may block).
    pub fn discard(&mut self, pool: Option<&ThreadPool>) {
        self.failed = false;
        let Some((f, tmp, _)) = self.file.take() else {
            return;
        };
        let remove = move || {
            drop(f);
            let _ = fs::remove_file(tmp);
            Completion::Nothing
        };
        match pool.filter(|_| crate::scheduler::is_scheduler_thread()) {
            None => drop(remove()),
            Some(pool) => {
                if let Err(remove) = pool.submit_with(remove, |remove| remove()) {
                    remove();
                }
            }
        }
    }

    /// True while a file of the current message exists in `tmp/` (for the unit tests).
    #[cfg(test)]
    pub(super) fn has_file(&self) -> bool {
        self.file.is_some()
    }
}

impl Drop for MaildirWrite {
    /// A file still in `tmp/` is removed inline: the glue calls
    /// [`MaildirWrite::discard`] first, so this only runs off the scheduler thread.
    fn drop(&mut self) {
        self.fail();
    }
}

/// Creates a new file in `dir` under a fresh name (`O_EXCL`: never an existing one).
fn create_tmp(dir: &Path, host: &str) -> io::Result<(File, PathBuf)> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..NAME_TRIES {
        let path = dir.join(unique_name(host, None));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Links `tmp` into `new_dir` under the first name from `next_name` that does not exist
/// there yet (`link(2)` never replaces: `EEXIST` means try another). Returns the name.
pub(super) fn link_no_replace(
    tmp: &Path,
    new_dir: &Path,
    mut next_name: impl FnMut() -> String,
) -> io::Result<String> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..NAME_TRIES {
        let name = next_name();
        match fs::hard_link(tmp, new_dir.join(&name)) {
            Ok(()) => return Ok(name),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Queues a staged message for the group commit of `md`, leading the commit if none is in
/// progress (see the module documentation); `done` gets the message's outcome. Runs on a
/// pool thread; returns at once when another thread leads, else when the queue is empty.
pub fn commit(md: &Maildir, staged: Staged, done: CommitDone) {
    {
        let mut q = lock(&md.queue);
        q.waiting.push((staged, done));
        if q.leading {
            return;
        }
        q.leading = true;
    }
    loop {
        let batch = {
            let mut q = lock(&md.queue);
            if q.waiting.is_empty() {
                q.leading = false;
                return;
            }
            std::mem::take(&mut q.waiting)
        };
        // A panic ends its round only: the messages of that round not answered yet are
        // dropped with it (their sessions close, nothing was acknowledged), and this thread
        // keeps the lead for what queued meanwhile, which would otherwise wait forever.
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_round(md, batch);
        }));
        if let Err(p) = round {
            log::error!(
                "ESMTP maildir {}: a commit round panicked: {}; its unanswered sessions are closed",
                md.path.display(),
                crate::scheduler::panic_message(&p)
            );
        }
    }
}

/// A message linked into `new/` whose entry is not yet known to be durable.
struct Linked {
    tmp: PathBuf,
    name: String,
    done: CommitDone,
}

/// One round of the group commit: the data of every message of `batch` is made durable in
/// one step, each is linked into `new/`, one `fsync` of `new/` makes the entries durable, and
/// each message is answered. A message that fails leaves nothing in `tmp/` or `new/`.
fn commit_round(md: &Maildir, batch: Vec<(Staged, CommitDone)>) {
    let new_dir = md.path.join("new");
    let data = make_durable(md, &batch);
    let mut linked = Vec::with_capacity(batch.len());
    for ((s, done), synced) in batch.into_iter().zip(data) {
        let got = synced
            .and_then(|_| link_no_replace(&s.tmp, &new_dir, || unique_name(&s.host, Some(s.ino))));
        match got {
            Ok(name) => linked.push(Linked {
                tmp: s.tmp,
                name,
                done,
            }),
            Err(e) => {
                let _ = fs::remove_file(&s.tmp);
                done(Err(failed(md, &s.tmp, &e)));
            }
        }
    }
    if linked.is_empty() {
        return;
    }
    let entries = crate::sys::fsync_dir(&new_dir);
    let mut tmp_names = Vec::with_capacity(linked.len());
    for l in linked {
        match &entries {
            Ok(()) => (l.done)(Ok(l.name)),
            Err(e) => {
                // Not known durable: it must not stay in new/.
                let _ = fs::remove_file(new_dir.join(&l.name));
                (l.done)(Err(failed(md, &l.tmp, e)));
            }
        }
        tmp_names.push(l.tmp);
    }
    // After the answers: removing a name is slow on some filesystems, and a crash before it
    // only leaves a second name of a delivered message in tmp/.
    for t in tmp_names {
        let _ = fs::remove_file(t);
    }
}

/// Logs a failed message, marks the Maildir for a directory check, and gives the `451`
/// reason.
fn failed(md: &Maildir, tmp: &Path, e: &io::Error) -> String {
    log::warn!(
        "ESMTP maildir {}: {}: {e}",
        md.path.display(),
        tmp.display()
    );
    md.suspect();
    FAILED.to_string()
}

/// Makes the data of every file of `batch` durable: one `syncfs(2)` of the whole filesystem
/// where it reports errors and the batch holds more than one file, else an `fsync` per file;
/// the same after a failed `syncfs`, to learn which files failed. Returns a result per file.
fn make_durable(md: &Maildir, batch: &[(Staged, CommitDone)]) -> Vec<io::Result<()>> {
    #[cfg(target_os = "linux")]
    if batch.len() > 1 && crate::sys::syncfs_reports_errors() {
        use std::os::fd::AsFd;
        // syncfs(2) reports the write-back errors recorded since *its fd* was opened (or
        // last asked): a freshly opened directory would miss an error of a batch file
        // written back, and failed, before the open. The batch's earliest file was opened
        // before any byte of the batch was written.
        let earliest = batch.iter().map(|(s, _)| s).min_by_key(|s| s.opened);
        let earliest = earliest.expect("a batch of two or more");
        match crate::sys::syncfs(earliest.file.as_fd()) {
            Ok(()) => return batch.iter().map(|_| Ok(())).collect(),
            Err(e) => log::warn!("ESMTP maildir {}: syncfs: {e}", md.path.display()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = md;
    batch.iter().map(|(s, _)| s.file.sync_all()).collect()
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
