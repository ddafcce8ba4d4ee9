//! Thread pools: shutdown drains or skips queued jobs as each asks; a full backlog blocks the
//! submitter until a worker takes a job.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use netlistener::scheduler::Scheduler;
use netlistener::threadpool::{Completion, Job, ThreadPool};

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
