//! Unit tests of Maildir delivery (kept beside `delivery.rs`, compiled as its `tests` module).

use super::*;
use std::sync::mpsc;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nl-maildir-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Writes one message to `tmp/` and stages it.
fn staged(md: &Maildir, host: &str, body: &[u8]) -> Staged {
    let mut w = MaildirWrite::default();
    w.spill(md, host, "Received: x\r\n", &body[..body.len() / 2]);
    assert!(w.has_file());
    let s = w.stage(md, &Arc::from(host), "ignored", &body[body.len() / 2..]);
    assert!(!w.has_file());
    s.unwrap()
}

/// Runs one group-commit round on `batch`, which answers every message; the outcomes in
/// batch order.
fn commit_now(md: &Maildir, batch: Vec<Staged>) -> Vec<Result<String, String>> {
    let (tx, rx) = mpsc::channel();
    let batch = batch
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let tx = tx.clone();
            let done: CommitDone = Box::new(move |r| tx.send((i, r)).unwrap());
            (s, done)
        })
        .collect();
    commit_round(md, batch);
    drop(tx);
    let mut got: Vec<_> = rx.iter().collect();
    got.sort_by_key(|(i, _)| *i);
    got.into_iter().map(|(_, r)| r).collect()
}

#[test]
fn names_follow_maildir_5() {
    let n = unique_name("h/o:st", None);
    assert!(n.ends_with(".h\\057o\\072st"), "{n}");
    let pid = format!("P{}Q", std::process::id());
    assert!(n.contains(".M") && n.contains(&pid), "{n}");
    let n = unique_name("h", Some(4242));
    assert!(n.contains(&format!("P{}I4242Q", std::process::id())), "{n}");
    assert_ne!(unique_name("h", None), unique_name("h", None));
}

/// `make_durable` asks the earliest file of a round for write-back errors: files must be
/// numbered in the order they were created, whatever order they are staged in.
#[test]
fn files_are_numbered_in_creation_order() {
    let d = tmpdir("order");
    let md = Maildir::get(&d);
    let mut first = MaildirWrite::default();
    first.spill(&md, "h", "Received: x\r\n", b"first");
    let second = staged(&md, "h", b"second\r\n");
    let first = first.stage(&md, &Arc::from("h"), "", b"\r\n").unwrap();
    assert!(
        first.opened < second.opened,
        "{} {}",
        first.opened,
        second.opened
    );
    let r = commit_now(&md, vec![second, first]);
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn a_round_that_panics_does_not_strand_the_messages_queued_meanwhile() {
    let d = tmpdir("panic");
    let md = Maildir::get(&d);
    let (first, second) = (staged(&md, "h", b"1\r\n"), staged(&md, "h", b"2\r\n"));
    let (tx, rx) = mpsc::channel();
    let md2 = md.clone();
    commit(
        &md,
        first,
        Box::new(move |_| {
            // Queued while this round runs (this thread leads), then the round panics.
            commit(&md2, second, Box::new(move |r| tx.send(r).unwrap()));
            panic!("a completion that panics (expected in this test)");
        }),
    );
    let r = rx.recv_timeout(std::time::Duration::from_secs(10));
    assert!(matches!(r, Ok(Ok(_))), "{r:?}");
    assert_eq!(names(&d.join("new")).len(), 2);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn staged_message_commits_into_new_only() {
    let d = tmpdir("ok");
    let md = Maildir::get(&d);
    let s = staged(&md, "host", b"a\r\nb\r\n");
    let ino = s.ino;
    let r = commit_now(&md, vec![s]);
    let name = r[0].clone().unwrap();
    assert!(name.contains(&format!("I{ino}Q")), "{name}");
    let got = fs::read(d.join("new").join(&name)).unwrap();
    assert_eq!(got, b"Received: x\r\na\r\nb\r\n");
    assert!(names(&d.join("tmp")).is_empty());
    assert!(d.join("cur").is_dir());
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn failure_leaves_nothing_and_reports() {
    let base = tmpdir("fail");
    fs::create_dir_all(&base).unwrap();
    let file = base.join("plain");
    fs::write(&file, b"x").unwrap();
    let d = file.join("Maildir"); // under a regular file: mkdir fails even for root
    let md = Maildir::get(&d);
    let mut w = MaildirWrite::default();
    let host: Arc<str> = Arc::from("h");
    assert_eq!(w.stage(&md, &host, "h", b"body").unwrap_err(), FAILED);
    assert!(w.failed && !w.has_file());
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn link_never_replaces_an_existing_name() {
    let d = tmpdir("eexist");
    fs::create_dir_all(d.join("new")).unwrap();
    fs::write(d.join("new/taken"), b"accepted earlier").unwrap();
    fs::write(d.join("msg"), b"new message").unwrap();
    let mut tries = ["taken", "free"].into_iter();
    let name = link_no_replace(&d.join("msg"), &d.join("new"), || {
        tries.next().unwrap().to_string()
    })
    .unwrap();
    assert_eq!(name, "free");
    assert_eq!(fs::read(d.join("new/taken")).unwrap(), b"accepted earlier");
    assert_eq!(fs::read(d.join("new/free")).unwrap(), b"new message");
    // Every name taken: an error, nothing replaced.
    let e = link_no_replace(&d.join("msg"), &d.join("new"), || "taken".into()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(d.join("new/taken")).unwrap(), b"accepted earlier");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn one_failure_in_a_batch_fails_only_that_message() {
    let d = tmpdir("batch");
    let md = Maildir::get(&d);
    let batch: Vec<Staged> = (0..3)
        .map(|i| staged(&md, "h", format!("message {i}\r\n").as_bytes()))
        .collect();
    // The second message's tmp/ entry vanishes before the commit: its link fails.
    fs::remove_file(&batch[1].tmp).unwrap();
    let r = commit_now(&md, batch);
    assert!(r[0].is_ok() && r[2].is_ok(), "{r:?}");
    assert_eq!(r[1], Err(FAILED.to_string()));
    let new = names(&d.join("new"));
    assert_eq!(new.len(), 2);
    for (i, r) in [(0, &r[0]), (2, &r[2])] {
        let got = fs::read(d.join("new").join(r.as_ref().unwrap())).unwrap();
        assert_eq!(got, format!("Received: x\r\nmessage {i}\r\n").as_bytes());
    }
    assert!(names(&d.join("tmp")).is_empty());
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn concurrent_commits_deliver_every_message_once() {
    let d = tmpdir("group");
    let md = Maildir::get(&d);
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (md, tx) = (md.clone(), tx.clone());
            std::thread::spawn(move || {
                for m in 0..25 {
                    let body = format!("thread {t} message {m}\r\n");
                    let s = staged(&md, "h", body.as_bytes());
                    let tx = tx.clone();
                    commit(&md, s, Box::new(move |r| tx.send((body, r)).unwrap()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(tx);
    let got: Vec<(String, Result<String, String>)> = rx.iter().collect();
    assert_eq!(got.len(), 200, "every message got exactly one outcome");
    for (body, r) in &got {
        let name = r.as_ref().unwrap();
        let data = fs::read(d.join("new").join(name)).unwrap();
        assert_eq!(data, format!("Received: x\r\n{body}").as_bytes());
    }
    assert_eq!(names(&d.join("new")).len(), 200);
    assert!(names(&d.join("tmp")).is_empty());
    assert!(!lock(&md.queue).leading);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn directories_are_checked_once_and_again_after_a_failure() {
    let d = tmpdir("ready");
    let md = Maildir::get(&d);
    let s = staged(&md, "h", b"x\r\n");
    assert!(commit_now(&md, vec![s])[0].is_ok());
    assert!(md.ready.load(Ordering::Acquire));
    // Once: while the Maildir is known good, a delivery does not look at the directories
    // (cur/, which delivery never uses, stays gone).
    fs::remove_dir(d.join("cur")).unwrap();
    let s = staged(&md, "h", b"w\r\n");
    assert!(commit_now(&md, vec![s])[0].is_ok());
    assert!(!d.join("cur").exists(), "checked again with no failure");
    // new/ replaced by a file: the link fails, the Maildir is suspect and rechecked.
    fs::remove_dir_all(d.join("new")).unwrap();
    fs::write(d.join("new"), b"in the way").unwrap();
    let s = staged(&md, "h", b"y\r\n");
    assert!(commit_now(&md, vec![s])[0].is_err());
    assert!(!md.ready.load(Ordering::Acquire));
    assert!(names(&d.join("tmp")).is_empty());
    // Again: with the file out of the way, the next delivery recreates what is missing.
    fs::remove_file(d.join("new")).unwrap();
    let s = staged(&md, "h", b"z\r\n");
    assert!(commit_now(&md, vec![s])[0].is_ok());
    assert!(md.ready.load(Ordering::Acquire));
    assert!(d.join("new").is_dir() && d.join("cur").is_dir());
    assert_eq!(names(&d.join("new")).len(), 1);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn body_buf_bounds_and_abort_releases() {
    let mut b = BodyBuf {
        keep: true,
        ..BodyBuf::default()
    };
    assert_eq!(b.room(), SPILL, "bounded outside a body too");
    b.start();
    b.data(&vec![b'x'; SPILL - 100]);
    assert_eq!(b.room(), MAX_COMMAND_LINE, "never below one command line");
    b.data(&vec![b'x'; b.room()]);
    assert!(b.wants_spill());
    assert!(b.held.capacity() <= SPILL + MAX_COMMAND_LINE);
    b.spilled();
    assert_eq!(b.held.capacity(), 0);
    b.data(b"more");
    b.abort();
    assert_eq!(b.held.capacity(), 0);
    assert!(!b.wants_spill() && b.aborted);
    let discard = BodyBuf::default();
    assert_eq!(discard.room(), usize::MAX);
}
