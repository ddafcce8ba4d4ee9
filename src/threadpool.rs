//! Named thread pools for blocking work, and async jobs with their completions.
//!
//! C: `ec_async_job`, the `IO` and `CPU` thread pools, `ThreadPool` configuration stanzas.
//!
//! # Summary
//! A [`ThreadPool`] has a name, a concurrency (worker threads, started on first submit) and a
//! bounded backlog (a full backlog blocks the submitter). A [`Job`] runs on a worker and
//! returns a [`Completion`]: resume a floated event with a wake mask, run a callback on the
//! scheduler thread, or nothing.
//!
//! ```
//! use netlistener::event::{Closure, Event};
//! use netlistener::scheduler::{schedule_timer, threadpool_submit, stop_scheduler, Scheduler};
//! use netlistener::threadpool::{Completion, Job};
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::{Duration, Instant};
//!
//! static RESULT: AtomicU64 = AtomicU64::new(0);
//! fn deadline(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
//!     stop_scheduler(); // the job never completed: fail below instead of hanging
//!     0
//! }
//! let sched = Scheduler::new().unwrap();
//! let job = Job::new(|| {
//!     let sum: u64 = (1..=100).sum(); // blocking work happens here, off the scheduler
//!     Completion::OnScheduler(Box::new(move || {
//!         RESULT.store(sum, Ordering::SeqCst); // back on the scheduler thread
//!         stop_scheduler();
//!     }))
//! });
//! assert!(threadpool_submit("CPU", job).is_ok());
//! schedule_timer(Duration::from_secs(10), deadline, Box::new(()));
//! sched.run();
//! assert_eq!(RESULT.load(Ordering::SeqCst), 5050);
//! ```
//!
//! # Contract
//! Jobs must not block forever: shutdown joins the workers. Pools are owned by the scheduler
//! that created them (see [`crate::scheduler::get_pool`]). Dropping the last handle to a pool
//! shuts it down as [`ThreadPool::shutdown`] does, even on one of its own workers (that worker
//! is not joined: it exits when its job returns and the queue is empty).
//!
//! # Diagnostics
//! A panicking job is caught and logged; a floated event it owned is finished (fd closed). A
//! worker thread that cannot be spawned is logged and the pool runs with fewer workers; with
//! none, each job runs inline on the thread that submits it (blocking that thread, but never
//! stuck in a queue nobody serves).

use std::collections::VecDeque;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};

use crate::scheduler::{panic_message, FloatedEvent, SchedulerHandle};

/// How a job ends, from the scheduler's point of view.
pub enum Completion {
    /// Nothing more to do.
    Nothing,
    /// Resume the floated event; its callback runs with `E_ASYNC | mask`.
    Resume(FloatedEvent, i32),
    /// Run this on the scheduler thread.
    OnScheduler(Box<dyn FnOnce() + Send>),
}

/// What a queued job does when its pool shuts down before running it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnShutdown {
    /// Run it anyway (work already promised to a client, e.g. a message write).
    Drain,
    /// Drop it (its floated event, if any, is finished).
    Skip,
}

/// A unit of blocking work. C: `ec_async_job`.
pub struct Job {
    run: Box<dyn FnOnce() -> Completion + Send>,
    /// Drain or skip at shutdown; `Drain` by default.
    pub on_shutdown: OnShutdown,
}

impl Job {
    /// A job that is drained at shutdown.
    pub fn new(f: impl FnOnce() -> Completion + Send + 'static) -> Job {
        Job {
            run: Box::new(f),
            on_shutdown: OnShutdown::Drain,
        }
    }

    /// The same job, skipped if still queued at shutdown.
    pub fn skip_on_shutdown(mut self) -> Job {
        self.on_shutdown = OnShutdown::Skip;
        self
    }
}

/// Counters of one pool, for the console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// The pool's name.
    pub name: String,
    /// Worker threads configured.
    pub concurrency: usize,
    /// Backlog bound (0: unbounded).
    pub backlog: usize,
    /// Jobs waiting.
    pub queued: usize,
    /// Jobs running now.
    pub running: usize,
    /// Jobs finished since start.
    pub completed: u64,
}

struct State {
    queue: VecDeque<Job>,
    shutdown: bool,
}

struct Inner {
    name: String,
    concurrency: usize,
    backlog: usize,
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    running: AtomicUsize,
    completed: AtomicU64,
    handle: SchedulerHandle,
}

struct Workers {
    /// Spawning was attempted (once: a pool whose workers could not start runs jobs inline).
    started: bool,
    handles: Vec<JoinHandle<()>>,
}

/// How a worker thread is started (a parameter so tests can refuse it).
type Spawn = fn(&Arc<Inner>, usize) -> io::Result<JoinHandle<()>>;

/// A named pool of worker threads. Dropping it shuts it down ([`ThreadPool::shutdown`]).
pub struct ThreadPool {
    inner: Arc<Inner>,
    workers: Mutex<Workers>,
}

impl ThreadPool {
    /// A pool of `concurrency` workers (at least 1) with a backlog bound (0: unbounded),
    /// completing jobs through `handle`. Workers start on the first submit.
    pub fn new(
        name: &str,
        concurrency: usize,
        backlog: usize,
        handle: SchedulerHandle,
    ) -> ThreadPool {
        let inner = Inner {
            name: name.to_string(),
            concurrency: concurrency.max(1),
            backlog,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                shutdown: false,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            running: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            handle,
        };
        ThreadPool {
            inner: Arc::new(inner),
            workers: Mutex::new(Workers {
                started: false,
                handles: Vec::new(),
            }),
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Worker threads configured.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// Backlog bound (0: unbounded).
    pub fn backlog(&self) -> usize {
        self.inner.backlog
    }

    /// Queues a job, blocking while the backlog is full. `Err(job)` after shutdown. With no
    /// worker running (none could be spawned) the job runs here, inline.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.enqueue(job, |job| job)
    }

    /// Queues `run(value)` as a job, as [`ThreadPool::submit`] does, and hands `value` back
    /// (`Err(value)`) if the pool refuses it: the caller can still act on it (answer the
    /// client, close the session), with nothing allocated but the job itself.
    pub fn submit_with<T: Send + 'static>(
        &self,
        value: T,
        run: impl FnOnce(T) -> Completion + Send + 'static,
    ) -> Result<(), T> {
        self.enqueue(value, |v| Job::new(move || run(v)))
    }

    /// `submit` of `job(value)`; the refusals are decided before the job is made, so the
    /// value comes back as it was.
    fn enqueue<T>(&self, value: T, job: impl FnOnce(T) -> Job) -> Result<(), T> {
        if !self.start_workers(spawn_worker) {
            if self.lock_state().shutdown {
                return Err(value);
            }
            run_job(&self.inner, job(value));
            return Ok(());
        }
        let mut st = self.lock_state();
        while self.inner.backlog > 0 && st.queue.len() >= self.inner.backlog && !st.shutdown {
            st = self
                .inner
                .not_full
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
        if st.shutdown {
            return Err(value);
        }
        st.queue.push_back(job(value));
        drop(st);
        self.inner.not_empty.notify_one();
        Ok(())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spawns the workers on first use; true while at least one is running.
    fn start_workers(&self, spawn: Spawn) -> bool {
        let mut w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if w.started {
            return !w.handles.is_empty();
        }
        w.started = true;
        for n in 0..self.inner.concurrency {
            match spawn(&self.inner, n) {
                Ok(h) => w.handles.push(h),
                Err(e) => log::error!(
                    "thread pool {}: cannot spawn worker {n}: {e}",
                    self.inner.name
                ),
            }
        }
        if w.handles.is_empty() {
            log::error!(
                "thread pool {}: no worker could start; jobs run inline on the submitter",
                self.inner.name
            );
        }
        !w.handles.is_empty()
    }

    /// Stops the pool: queued `Drain` jobs run, `Skip` jobs are dropped, workers are joined
    /// (all but the calling thread, if it is one of them). Idempotent.
    pub fn shutdown(&self) {
        let skipped: VecDeque<Job> = {
            let mut st = self.lock_state();
            st.shutdown = true;
            let (drain, skip) = std::mem::take(&mut st.queue)
                .into_iter()
                .partition(|j| j.on_shutdown == OnShutdown::Drain);
            st.queue = drain;
            skip
        };
        // Dropped unlocked: a job's captures may call back into the pool (stats, submit).
        drop(skipped);
        self.inner.not_empty.notify_all();
        self.inner.not_full.notify_all();
        let workers = std::mem::take(
            &mut self
                .workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .handles,
        );
        let me = thread::current().id();
        let mut on_a_worker = false;
        for h in workers {
            // Joining ourselves would deadlock: this worker exits once its job returns.
            if h.thread().id() == me {
                on_a_worker = true;
            } else {
                let _ = h.join();
            }
        }
        if on_a_worker {
            // This worker's loop runs what is still queued once the current job returns,
            // before it sees the shutdown: not nested inside that job.
            return;
        }
        // What is still queued has nobody else to run it (no worker could start): run it
        // here.
        let rest = std::mem::take(&mut self.lock_state().queue);
        for job in rest {
            run_job(&self.inner, job);
        }
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        let queued = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue
            .len();
        PoolStats {
            name: self.inner.name.clone(),
            concurrency: self.inner.concurrency,
            backlog: self.inner.backlog,
            queued,
            running: self.inner.running.load(Ordering::Relaxed),
            completed: self.inner.completed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spawn_worker(inner: &Arc<Inner>, n: usize) -> io::Result<JoinHandle<()>> {
    let inner = inner.clone();
    thread::Builder::new()
        .name(format!("{}-{n}", inner.name))
        .spawn(move || worker(inner))
}

fn worker(inner: Arc<Inner>) {
    inner.handle.enter();
    loop {
        let job = {
            let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(j) = st.queue.pop_front() {
                    break Some(j);
                }
                if st.shutdown {
                    break None;
                }
                st = inner.not_empty.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some(job) = job else { return };
        inner.not_full.notify_one();
        run_job(&inner, job);
    }
}

fn run_job(inner: &Inner, job: Job) {
    inner.running.fetch_add(1, Ordering::Relaxed);
    let result = catch_unwind(AssertUnwindSafe(job.run));
    inner.running.fetch_sub(1, Ordering::Relaxed);
    inner.completed.fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(Completion::Nothing) => {}
        Ok(Completion::Resume(fe, mask)) => fe.resume(mask),
        Ok(Completion::OnScheduler(f)) => inner.handle.run_on_scheduler(f),
        Err(p) => log::error!(
            "thread pool {}: job panicked: {}",
            inner.name,
            panic_message(&p)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::Scheduler;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn with_no_worker_jobs_run_inline_on_the_submitter() {
        let s = Scheduler::new().unwrap();
        let pool = Arc::new(ThreadPool::new("NoWorkers", 2, 1, s.handle()));
        let refuse: Spawn = |_, _| Err(io::Error::other("refused by the test"));
        assert!(!pool.start_workers(refuse), "no worker runs");
        let (ran_tx, ran_rx) = mpsc::channel();
        let p = pool.clone();
        // Three jobs against a backlog of one: queued, the third would block forever.
        let submitter = thread::spawn(move || {
            for _ in 0..3 {
                let tx = ran_tx.clone();
                let job = Job::new(move || {
                    tx.send(thread::current().id()).unwrap();
                    Completion::Nothing
                });
                assert!(p.submit(job).is_ok());
            }
            thread::current().id()
        });
        let mut ran = Vec::new();
        for _ in 0..3 {
            let id = ran_rx.recv_timeout(Duration::from_secs(10));
            ran.push(id.expect("each job runs at once, inline"));
        }
        let submitter = submitter.join().unwrap();
        assert_eq!(ran, vec![submitter; 3], "on the submitting thread");
        pool.shutdown();
        assert!(pool.submit(Job::new(|| Completion::Nothing)).is_err());
        assert_eq!(pool.stats().completed, 3);
    }
}
