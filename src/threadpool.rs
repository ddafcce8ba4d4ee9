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
//! use netlistener::scheduler::{threadpool_submit, stop_scheduler, Scheduler};
//! use netlistener::threadpool::{Completion, Job};
//! let sched = Scheduler::new().unwrap();
//! let job = Job::new(|| {
//!     let sum: u64 = (1..=100).sum(); // blocking work happens here, off the scheduler
//!     Completion::OnScheduler(Box::new(move || { assert_eq!(sum, 5050); stop_scheduler(); }))
//! });
//! assert!(threadpool_submit("CPU", job).is_ok());
//! sched.run();
//! ```
//!
//! # Contract
//! Jobs must not block forever: shutdown joins the workers. Pools are owned by the scheduler
//! that created them (see [`crate::scheduler::get_pool`]).
//!
//! # Diagnostics
//! A panicking job is caught and logged; a floated event it owned is finished (fd closed). A
//! worker thread that cannot be spawned is logged and the pool runs with fewer workers (with
//! none, jobs run inline on the submitter, so they are never lost).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

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

/// A named pool of worker threads.
pub struct ThreadPool {
    inner: Arc<Inner>,
    workers: Mutex<Vec<JoinHandle<()>>>,
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
            workers: Mutex::new(Vec::new()),
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

    /// Queues a job, blocking while the backlog is full. `Err(job)` after shutdown.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.start_workers();
        let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        while self.inner.backlog > 0 && st.queue.len() >= self.inner.backlog && !st.shutdown {
            st = self
                .inner
                .not_full
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
        if st.shutdown {
            return Err(job);
        }
        st.queue.push_back(job);
        drop(st);
        self.inner.not_empty.notify_one();
        Ok(())
    }

    fn start_workers(&self) {
        let mut w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if !w.is_empty() {
            return;
        }
        for n in 0..self.inner.concurrency {
            let inner = self.inner.clone();
            let b = std::thread::Builder::new().name(format!("{}-{n}", self.inner.name));
            match b.spawn(move || worker(inner)) {
                Ok(h) => w.push(h),
                Err(e) => log::error!(
                    "thread pool {}: cannot spawn worker {n}: {e}",
                    self.inner.name
                ),
            }
        }
        if w.is_empty() {
            log::error!(
                "thread pool {}: no worker could start; jobs run inline",
                self.inner.name
            );
            let inner = self.inner.clone();
            // A finished thread stands in so the pool is not retried on every submit.
            if let Ok(h) = std::thread::Builder::new().spawn(move || drop(inner)) {
                w.push(h);
            }
        }
    }

    /// Stops the pool: queued `Drain` jobs run, `Skip` jobs are dropped, workers are joined.
    pub fn shutdown(&self) {
        {
            let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
            st.shutdown = true;
            st.queue.retain(|j| j.on_shutdown == OnShutdown::Drain);
        }
        self.inner.not_empty.notify_all();
        self.inner.not_full.notify_all();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for h in workers {
            let _ = h.join();
        }
        // Nobody is left to run what is still queued (no worker could start): run it here.
        let rest = std::mem::take(
            &mut self
                .inner
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .queue,
        );
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
