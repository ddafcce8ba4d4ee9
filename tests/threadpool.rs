//! Thread pools: shutdown drains or skips queued jobs as each asks; a full backlog blocks the
//! submitter until a worker takes a job; a dropped pool stops its workers; no pool is handed
//! out after `shutdown_pools`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use netlistener::scheduler::{
    configure_pool, get_pool, shutdown_pools, threadpool_submit, Scheduler,
};
use netlistener::threadpool::{Completion, Job, ThreadPool};

thread_local! {
    /// Dropped when the thread exits: its sender going away tells the test the thread ended.
    static ON_EXIT: RefCell<Option<mpsc::Sender<()>>> = const { RefCell::new(None) };
}

/// A job that runs until `gate` opens, after arranging for `exited` to disconnect when its
/// worker thread ends.
fn gated_job(gate: mpsc::Receiver<()>, exited: mpsc::Sender<()>) -> Job {
    Job::new(move || {
        ON_EXIT.with(|x| *x.borrow_mut() = Some(exited));
        gate.recv_timeout(Duration::from_secs(10)).unwrap();
        Completion::Nothing
    })
}

/// True when the worker that ran the `gated_job` owning `exited`'s sender has exited.
fn worker_exited(exited: &mpsc::Receiver<()>) -> bool {
    exited.recv_timeout(Duration::from_secs(10)) == Err(mpsc::RecvTimeoutError::Disconnected)
}

#[test]
fn shutdown_drains_or_skips_as_each_job_asks() {
    let s = Scheduler::new().unwrap();
    let pool = ThreadPool::new("T", 1, 0, s.handle());
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let ran = Arc::new(AtomicUsize::new(0));
    // The first job holds the only worker until released, so the others stay queued.
    pool.submit(Job::new(move || {
        gate_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Completion::Nothing
    }))
    .ok()
    .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while pool.stats().running == 0 {
        assert!(Instant::now() < end, "worker never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..6 {
        let r = ran.clone();
        let job = Job::new(move || {
            r.fetch_add(1 << (i * 4), Ordering::SeqCst);
            Completion::Nothing
        });
        let job = if i % 2 == 0 {
            job
        } else {
            job.skip_on_shutdown()
        };
        pool.submit(job).ok().unwrap();
    }
    assert_eq!(pool.stats().queued, 6);
    let p2 = Arc::new(pool);
    let p3 = p2.clone();
    let t = std::thread::spawn(move || p3.shutdown());
    // Shutdown drops the skipped jobs from the queue at once: wait for that, then release.
    while p2.stats().queued != 3 {
        assert!(
            Instant::now() < end,
            "shutdown did not drop the skipped jobs"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    gate_tx.send(()).unwrap();
    t.join().unwrap();
    // Jobs 0, 2, 4 (drain) ran once each; 1, 3, 5 (skip) never ran.
    assert_eq!(ran.load(Ordering::SeqCst), 1 | 1 << 8 | 1 << 16);
    assert!(
        p2.submit(Job::new(|| Completion::Nothing)).is_err(),
        "no submit after shutdown"
    );
    drop(s);
}

#[test]
fn a_full_backlog_blocks_the_submitter() {
    let s = Scheduler::new().unwrap();
    let pool = Arc::new(ThreadPool::new("B", 1, 1, s.handle()));
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    pool.submit(Job::new(move || {
        gate_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Completion::Nothing
    }))
    .ok()
    .unwrap();
    // Wait until the worker has taken the first job, so the next one fills the backlog.
    let end = Instant::now() + Duration::from_secs(10);
    while pool.stats().running == 0 {
        assert!(Instant::now() < end, "worker never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    pool.submit(Job::new(|| Completion::Nothing)).ok().unwrap();
    let p2 = pool.clone();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        p2.submit(Job::new(|| Completion::Nothing)).ok().unwrap();
        done_tx.send(Instant::now()).unwrap();
    });
    assert!(
        done_rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "third submit must block while the backlog is full"
    );
    gate_tx.send(()).unwrap();
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("submit returns once the worker frees a place");
    pool.shutdown();
    assert_eq!(pool.stats().completed, 3);
}

#[test]
fn dropping_a_pool_without_shutdown_drains_it_and_stops_its_workers() {
    let s = Scheduler::new().unwrap();
    let pool = ThreadPool::new("D", 1, 0, s.handle());
    let (gate_tx, gate_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel();
    pool.submit(gated_job(gate_rx, exit_tx)).ok().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    pool.submit(Job::new(move || {
        r.fetch_add(1, Ordering::SeqCst);
        Completion::Nothing
    }))
    .ok()
    .unwrap();
    let dropper = std::thread::spawn(move || drop(pool));
    gate_tx.send(()).unwrap();
    dropper.join().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the queued job was drained");
    assert!(worker_exited(&exit_rx), "the worker is still parked");
}

#[test]
fn the_last_handle_dropped_on_its_own_worker_does_not_deadlock() {
    let s = Scheduler::new().unwrap();
    let pool = Arc::new(ThreadPool::new("W", 1, 0, s.handle()));
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (exit_tx, exit_rx) = mpsc::channel();
    let mine = pool.clone();
    // The job owns the last handle once the test drops its own: the pool drops on the worker.
    pool.submit(Job::new(move || {
        ON_EXIT.with(|x| *x.borrow_mut() = Some(exit_tx));
        gate_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        drop(mine);
        Completion::Nothing
    }))
    .ok()
    .unwrap();
    drop(pool);
    gate_tx.send(()).unwrap();
    assert!(worker_exited(&exit_rx), "the worker never exited");
}

#[test]
fn jobs_queued_behind_a_worker_that_drops_the_pool_run_after_its_job_not_inside_it() {
    let s = Scheduler::new().unwrap();
    let pool = Arc::new(ThreadPool::new("W", 1, 0, s.handle()));
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (order_tx, order_rx) = mpsc::channel();
    let (mine, tx1, tx2) = (pool.clone(), order_tx.clone(), order_tx);
    pool.submit(Job::new(move || {
        gate_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        drop(mine); // the last handle: the pool shuts down on its own worker
        tx1.send("first job returned").unwrap();
        Completion::Nothing
    }))
    .ok()
    .unwrap();
    pool.submit(Job::new(move || {
        tx2.send("second job").unwrap();
        Completion::Nothing
    }))
    .ok()
    .unwrap();
    drop(pool);
    gate_tx.send(()).unwrap();
    let got: Vec<&str> = (0..2)
        .map(|_| order_rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(got, ["first job returned", "second job"]);
}

/// Reports the pool's queue length from its destructor: it takes the pool's lock.
struct ReportsOnDrop {
    pool: Arc<ThreadPool>,
    tx: mpsc::Sender<usize>,
}

impl Drop for ReportsOnDrop {
    fn drop(&mut self) {
        let _ = self.tx.send(self.pool.stats().queued);
    }
}

#[test]
fn submit_with_runs_the_value_or_hands_it_back_after_shutdown() {
    let s = Scheduler::new().unwrap();
    let pool = ThreadPool::new("V", 1, 0, s.handle());
    let (tx, rx) = mpsc::channel();
    let ran = tx.clone();
    assert!(pool
        .submit_with(String::from("kept"), move |v| {
            ran.send(v).unwrap();
            Completion::Nothing
        })
        .is_ok());
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "kept");
    pool.shutdown();
    let back = pool.submit_with(String::from("refused"), move |v| {
        tx.send(v).unwrap();
        Completion::Nothing
    });
    assert_eq!(
        back,
        Err(String::from("refused")),
        "the value comes back whole"
    );
    assert!(rx.try_recv().is_err(), "a refused job never runs");
}

#[test]
fn skipped_jobs_are_dropped_outside_the_pool_lock() {
    let s = Scheduler::new().unwrap();
    let pool = Arc::new(ThreadPool::new("S", 1, 0, s.handle()));
    let (gate_tx, gate_rx) = mpsc::channel();
    let (exit_tx, _exit_rx) = mpsc::channel();
    pool.submit(gated_job(gate_rx, exit_tx)).ok().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while pool.stats().running == 0 {
        assert!(Instant::now() < end, "worker never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (tx, rx) = mpsc::channel();
    let guard = ReportsOnDrop {
        pool: pool.clone(),
        tx,
    };
    let job = Job::new(move || {
        drop(guard);
        Completion::Nothing
    });
    pool.submit(job.skip_on_shutdown()).ok().unwrap();
    let p = pool.clone();
    let stopper = std::thread::spawn(move || p.shutdown());
    let queued = rx.recv_timeout(Duration::from_secs(10));
    assert_eq!(queued, Ok(0), "the skipped job's destructor ran, unlocked");
    gate_tx.send(()).unwrap();
    stopper.join().unwrap();
}

#[test]
fn no_pool_is_handed_out_after_shutdown_pools() {
    let _s = Scheduler::new().unwrap();
    assert!(get_pool("IO").is_some());
    shutdown_pools();
    assert!(get_pool("IO").is_none());
    assert!(get_pool("CPU").is_none());
    assert!(threadpool_submit("IO", Job::new(|| Completion::Nothing)).is_err());
    let late = configure_pool("Late", 2, 0);
    assert!(late.submit(Job::new(|| Completion::Nothing)).is_err());
    assert!(get_pool("Late").is_none());
}
