//! Black-box tests of `ESMTP_Listener`: a real scheduler thread running the module, clients
//! over loopback (a hand-written one for protocol edges, Python's smtplib as an independent
//! one), Maildir delivery checked on disk. Every wait has a deadline.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use netlistener::modules::esmtp;
use netlistener::netlistener::*;
use netlistener::scheduler::Scheduler;
use util::{tempdir, wait_until, Conf, Server, DEADLINE};

/// `ESMTP_Listener` on its own scheduler thread with `conf`.
fn start_esmtp(conf: &str) -> Server {
    Server::start_with(register_esmtp, Conf::Text(conf.into()))
}

/// Like [`start_esmtp`], returning the configuration errors when `conf` is refused.
fn try_start_esmtp(conf: &str) -> Result<Server, String> {
    Server::try_start_with(register_esmtp, Conf::Text(conf.into()))
}

fn register_esmtp() {
    esmtp::conf_setup().unwrap();
}

/// The first listening ESMTP Listen's bound address.
fn esmtp_addr(srv: &Server) -> SocketAddr {
    srv.addrs("ESMTP_Listener")[0]
}

/// A hand-written SMTP client with deadlines.
struct C {
    r: BufReader<TcpStream>,
}

impl C {
    fn connect(addr: SocketAddr) -> C {
        C::wrap(TcpStream::connect_timeout(&addr, DEADLINE).expect("connect"))
    }

    fn connect_from(local: &str, addr: SocketAddr) -> C {
        let ip = local.parse().unwrap();
        C::wrap(netlistener::sys::tcp_connect_from(ip, &addr).expect("connect from"))
    }

    fn wrap(s: TcpStream) -> C {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        s.set_nodelay(true).unwrap();
        C {
            r: BufReader::new(s),
        }
    }

    /// One reply, all its lines joined with `\n`.
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.r.read_line(&mut l).expect("reply before the deadline");
            assert!(n > 0, "connection closed; got so far: {lines:?}");
            let l = l.trim_end().to_string();
            let last = l.len() < 4 || l.as_bytes()[3] != b'-';
            lines.push(l);
            if last {
                return lines.join("\n");
            }
        }
    }

    fn send(&mut self, s: &[u8]) {
        self.r.get_mut().write_all(s).unwrap();
    }

    /// A new session on `srv`'s ESMTP listener, past the banner, `EHLO x` and
    /// [`C::envelope`]: what it sends next is the message body.
    fn in_body(srv: &Server) -> C {
        let mut c = C::connect(esmtp_addr(srv));
        c.reply();
        c.cmd("EHLO x");
        c.envelope();
        c
    }

    /// `MAIL FROM:<a@x>`, `RCPT TO:<b@y>`, `DATA`, replies not checked: the usual way into a
    /// message body.
    fn envelope(&mut self) {
        self.cmd("MAIL FROM:<a@x>");
        self.cmd("RCPT TO:<b@y>");
        self.cmd("DATA");
    }

    fn cmd(&mut self, s: &str) -> String {
        self.send(format!("{s}\r\n").as_bytes());
        self.reply()
    }

    fn closed(&mut self) -> bool {
        let mut b = [0u8; 256];
        loop {
            match self.r.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }

    /// Reads everything until the server closes.
    fn rest(&mut self) -> String {
        let mut v = Vec::new();
        let _ = self.r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

fn listen(extra: &str) -> String {
    format!("[ESMTP_Listener]\n{extra}\n[ESMTP_Listener Listen \"127.0.0.1:0\"]\n")
}

fn code(r: &str) -> &str {
    &r[..r.len().min(9)]
}

fn files(dir: &Path, sub: &str) -> Vec<PathBuf> {
    match std::fs::read_dir(dir.join(sub)) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    }
}

/// The message as stored, without the `Received:` header the server prepended.
fn body_after_received(path: &Path) -> Vec<u8> {
    let data = std::fs::read(path).unwrap();
    assert!(data.starts_with(b"Received: from "), "{path:?}");
    // The header ends at the first CRLF not followed by a folding TAB.
    let mut i = 0;
    while let Some(p) = data[i..].windows(2).position(|w| w == b"\r\n") {
        let end = i + p + 2;
        if data.get(end) != Some(&b'\t') {
            return data[end..].to_vec();
        }
        i = end;
    }
    panic!("unterminated Received header in {path:?}");
}

// ---------------------------------------------------------------------------------------------
// Protocol
// ---------------------------------------------------------------------------------------------

#[test]
fn banner_ehlo_and_one_transaction_in_discard_mode() {
    let srv = start_esmtp(&listen("Banner_Hostname = mx.test"));
    let before = esmtp::delivery::delivery_stats().discarded;
    let mut c = C::connect(esmtp_addr(&srv));
    assert_eq!(c.reply(), "220 mx.test ESMTP netlistener");
    let ehlo = c.cmd("EHLO client.test");
    assert_eq!(
        ehlo,
        "250-mx.test\n250-PIPELINING\n250-SIZE 10240000\n250-8BITMIME\n250-ENHANCEDSTATUSCODES\n250 HELP"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<b@y.test>"), "250 2.1.5 Ok");
    assert_eq!(code(&c.cmd("DATA")), "354 End d");
    let r = c.cmd("Subject: hi\r\n\r\nbody\r\n.");
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert_eq!(code(&c.cmd("NOOP")), "250 2.0.0");
    assert_eq!(c.cmd("VRFY someone").get(..3), Some("252"));
    assert_eq!(c.cmd("HELP").get(..3), Some("214"));
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    assert!(c.closed());
    assert!(esmtp::delivery::delivery_stats().discarded > before);
}

/// A whole pipelined conversation, and the replies it gets when sent in one write.
const CONVO: &[u8] = b"EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n\
RCPT TO:<c@y.test>\r\nDATA\r\nline one\r\n..dot\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<d@y.test>\r\n\
DATA\r\nsecond\r\n.\r\nNOOP\r\nRSET\r\nQUIT\r\n";

fn run_convo(addr: SocketAddr, split: usize) -> String {
    let mut c = C::connect(addr);
    assert!(c.reply().starts_with("220 "));
    c.send(&CONVO[..split]);
    c.r.get_mut().flush().unwrap();
    std::thread::sleep(Duration::from_millis(2));
    c.send(&CONVO[split..]);
    let out = c.rest();
    // Queue ids differ per run.
    out.lines()
        .map(|l| match l.find("queued as ") {
            Some(p) => &l[..p],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn pipelined_batch_split_at_every_byte_boundary() {
    let srv = start_esmtp(&listen("Banner_Hostname = mx.test"));
    let addr = esmtp_addr(&srv);
    let whole = run_convo(addr, CONVO.len());
    assert_eq!(whole.matches("250 2.0.0 Ok: \n").count(), 2, "{whole}");
    assert!(whole.ends_with("221 2.0.0 Bye"), "{whole}");
    assert_eq!(whole.lines().count(), 6 + 12, "{whole}");
    for split in 1..CONVO.len() {
        assert_eq!(run_convo(addr, split), whole, "split at {split}");
    }
    // The same with Maildir delivery: the session floats at each end of data while the
    // pipelined commands after it wait in its tail.
    let dir = tempdir("esmtp-split");
    let md = start_esmtp(&maildir_conf(&dir, "Banner_Hostname = mx.test"));
    for split in (1..CONVO.len()).step_by(7).chain([CONVO.len()]) {
        assert_eq!(
            run_convo(esmtp_addr(&md), split),
            whole,
            "maildir, split at {split}"
        );
    }
    let n = (1..CONVO.len()).step_by(7).count() + 1;
    assert_eq!(files(&dir, "new").len(), 2 * n);
}

#[test]
fn bare_lf_refused_in_commands_and_data_by_default() {
    let srv = start_esmtp(&listen(""));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.send(b"EHLO x\n");
    assert_eq!(code(&c.reply()), "500 5.5.2");
    c.cmd("EHLO x");
    c.envelope();
    // Smuggling attempt: "\n.\n" must not end the message, and the bare LF refuses it.
    c.send(b"a\n.\nMAIL FROM:<evil@x>\r\n.\r\n");
    assert_eq!(code(&c.reply()), "554 5.5.2");
    assert_eq!(
        code(&c.cmd("NOOP")),
        "250 2.0.0",
        "in sync after the refusal"
    );
}

#[test]
fn bare_lf_allowed_when_configured() {
    let dir = tempdir("esmtp-barelf");
    let srv = start_esmtp(&maildir_conf(&dir, "Bare_LF = allow"));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.send(b"EHLO x\n");
    assert!(c.reply().starts_with("250-"));
    c.envelope();
    // Even when allowed, "\n.\n" is data: only CRLF.CRLF ends the message.
    let r = c.cmd("a\n.\nb\r\n.");
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    let new = files(&dir, "new");
    assert_eq!(body_after_received(&new[0]), b"a\n.\nb\r\n");
}

#[test]
fn overlong_lines_are_refused_without_buffering() {
    let srv = start_esmtp(&listen("Max_Line_Length = 100"));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    let long = format!("NOOP {}\r\n", "x".repeat(100_000));
    c.send(long.as_bytes());
    assert_eq!(code(&c.reply()), "500 5.5.0");
    assert!(c.cmd("EHLO x").starts_with("250-"));
    c.envelope();
    let text = format!("{}\r\nshort\r\n.", "y".repeat(150));
    assert_eq!(code(&c.cmd(&text)), "500 5.5.0");
    assert_eq!(code(&c.cmd("RSET")), "250 2.0.0");
}

#[test]
fn size_and_recipient_limits() {
    let conf = listen(
        "Max_Message_Size = 1000\nMax_Recipients_Per_Message = 2\nMax_Recipients_Per_Connection = 3\nMax_Receptions_Per_Connection = 1",
    );
    let srv = start_esmtp(&conf);
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    assert!(c.cmd("EHLO x").contains("250-SIZE 1000\n"));
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x> SIZE=1001")), "552 5.3.4");
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x> SIZE=999")), "250 2.1.0");
    assert_eq!(code(&c.cmd("RCPT TO:<1@y>")), "250 2.1.5");
    assert_eq!(code(&c.cmd("RCPT TO:<2@y>")), "250 2.1.5");
    assert_eq!(code(&c.cmd("RCPT TO:<3@y>")), "452 4.5.3");
    assert_eq!(code(&c.cmd("DATA")), "354 End d");
    // Over the size: refused at the end, the rest read and discarded.
    let big = format!("{}\r\n.", "z\r\n".repeat(2000));
    assert_eq!(code(&c.cmd(&big)), "552 5.3.4");
    c.cmd("MAIL FROM:<a@x>");
    assert_eq!(code(&c.cmd("RCPT TO:<3@y>")), "250 2.1.5");
    assert_eq!(code(&c.cmd("RCPT TO:<4@y>")), "452 4.5.3", "per connection");
    c.cmd("DATA");
    assert_eq!(code(&c.cmd("small\r\n.")), "250 2.0.0");
    let r = c.cmd("MAIL FROM:<a@x>");
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(c.closed());
}

#[test]
fn sequencing_and_unknown_commands() {
    let srv = start_esmtp(&listen("Require_EHLO = true"));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x>")), "503 5.5.1");
    assert_eq!(code(&c.cmd("FOO")), "500 5.5.2");
    assert_eq!(code(&c.cmd("EXPN x")), "502 5.5.1");
    assert_eq!(code(&c.cmd("HELO")), "501 5.5.4");
    assert_eq!(
        c.cmd("HELO x"),
        "250 localhost".replace("localhost", &hostname())
    );
    assert_eq!(code(&c.cmd("RCPT TO:<b@y>")), "503 5.5.1");
    assert_eq!(code(&c.cmd("DATA")), "503 5.5.1");
    assert_eq!(code(&c.cmd("MAIL FROM:a@x")), "501 5.1.7");
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x>")), "250 2.1.0");
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x>")), "503 5.5.1");
    assert_eq!(code(&c.cmd("DATA")), "554 5.5.1");
    assert_eq!(code(&c.cmd("BDAT 3 LAST")), "502 5.5.1");
}

fn hostname() -> String {
    esmtp::options::system_hostname().to_string()
}

#[test]
fn parameters_of_extensions_not_advertised_are_refused() {
    let srv = start_esmtp(&listen("SMTP_Extensions = PIPELINING"));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    let ehlo = c.cmd("EHLO x");
    assert!(
        !ehlo.contains("SIZE") && ehlo.contains("PIPELINING"),
        "{ehlo}"
    );
    assert_eq!(&c.cmd("MAIL FROM:<a@x> SIZE=10")[..3], "555");
    assert_eq!(&c.cmd("MAIL FROM:<a@x> BODY=8BITMIME")[..3], "555");
    assert_eq!(c.cmd("MAIL FROM:<a@x>"), "250 Ok", "no enhanced codes");
}

#[test]
fn chunking_when_advertised() {
    let srv = start_esmtp(&listen(
        "SMTP_Extensions = PIPELINING, CHUNKING, ENHANCEDSTATUSCODES",
    ));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    assert!(c.cmd("EHLO x").contains("250-CHUNKING"));
    c.cmd("MAIL FROM:<a@x>");
    c.cmd("RCPT TO:<b@y>");
    c.send(b"BDAT 5\r\nhello");
    assert_eq!(c.reply(), "250 2.0.0 Ok: 5 octets received");
    c.send(b"BDAT 7 LAST\r\n world\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as"));
}

#[test]
fn unknown_extension_is_a_configuration_error() {
    let err = try_start_esmtp(&listen("SMTP_Extensions = PIPELINING, STARTTLS"))
        .err()
        .expect("refused");
    assert!(
        err.contains("SMTP_Extensions") && err.contains("STARTTLS"),
        "{err}"
    );
    for banner in ["hello", "220", "220  "] {
        let err = try_start_esmtp(&listen(&format!("Static_Banner = {banner}")))
            .err()
            .expect("refused");
        assert!(err.contains("Static_Banner"), "{banner:?}: {err}");
    }
}

#[test]
fn static_banner_and_ehlo_differ_between_listens_and_peers() {
    let conf = r#"
[ESMTP_Listener]
Banner_Hostname = mx.test
[ESMTP_Listener Listen "127.0.0.1:0"]
Static_Banner = 220 first listen ready
[ESMTP_Listener Listen "127.0.0.2:0"]
SMTP_Extensions = PIPELINING, CHUNKING
[ESMTP_Listener Peer "127.0.0.3/32"]
SMTP_Extensions = SMTPUTF8
"#;
    let srv = start_esmtp(conf);
    let a = srv.addrs("ESMTP_Listener");
    let mut c = C::connect(a[0]);
    assert_eq!(c.reply(), "220 first listen ready");
    assert!(c.cmd("EHLO x").contains("250-SIZE"));
    let mut c = C::connect(a[1]);
    assert_eq!(c.reply(), "220 mx.test ESMTP netlistener");
    assert_eq!(
        c.cmd("EHLO x"),
        "250-mx.test\n250-PIPELINING\n250-CHUNKING\n250 HELP"
    );
    // A Peer at listener level holds on every Listen.
    for addr in &a {
        let mut c = C::connect_from("127.0.0.3", *addr);
        c.reply();
        assert_eq!(c.cmd("EHLO x"), "250-mx.test\n250-SMTPUTF8\n250 HELP");
    }
}

#[test]
fn extensions_fall_back_to_the_pathway() {
    let conf = r#"
[Pathway "slow"]
SMTP_Extensions = ENHANCEDSTATUSCODES
Max_Message_Size = 5k
[ESMTP_Listener]
[ESMTP_Listener Listen "127.0.0.1:0"]
Pathway = slow
"#;
    let srv = start_esmtp(conf);
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    let ehlo = c.cmd("EHLO x");
    assert!(
        ehlo.ends_with("\n250-ENHANCEDSTATUSCODES\n250 HELP"),
        "{ehlo}"
    );
    c.envelope();
    let big = format!("{}.", "k\r\n".repeat(3000));
    assert_eq!(
        code(&c.cmd(&big)),
        "552 5.3.4",
        "Max_Message_Size from the pathway"
    );
}

#[test]
fn reload_answers_the_next_mail_with_421_and_closes() {
    let srv = start_esmtp(&listen("Reconfig_Message = please come back"));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.cmd("EHLO x");
    c.cmd("MAIL FROM:<a@x>");
    c.cmd("RCPT TO:<b@y>");
    let mut other = C::connect(esmtp_addr(&srv));
    other.reply();
    assert!(other.cmd("EHLO y").starts_with("250-"));
    srv.on_sched(|| {
        let store = netlistener_config().unwrap();
        store
            .set("ESMTP_Listener", "Banner_Hostname", "new.test")
            .and_then(|_| store.set("ESMTP_Listener", "Reconfig_Message", "moved, reconnect"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .unwrap();
    // The transaction in progress is not disturbed.
    c.cmd("DATA");
    assert_eq!(code(&c.cmd("x\r\n.")), "250 2.0.0");
    let r = c.cmd("MAIL FROM:<a@x>");
    // The session's own host name, the text of the configuration now in force.
    assert!(
        r.starts_with("421 4.3.2 ") && r.ends_with(" moved, reconnect"),
        "{r}"
    );
    assert!(c.closed());
    let mut c = C::connect(esmtp_addr(&srv));
    assert_eq!(c.reply(), "220 new.test ESMTP netlistener");
}

#[test]
fn layer_refusals_reach_the_client_as_smtp_replies() {
    let conf = r#"
[ESMTP_Listener]
[ESMTP_Listener Listen "127.0.0.1:0"]
[ESMTP_Listener Peer "127.0.0.5/32"]
Deny = true
[ESMTP_Listener Peer "127.0.0.6/32"]
Listener_Sessions = 1
"#;
    let srv = start_esmtp(conf);
    let addr = esmtp_addr(&srv);
    let mut d = C::connect_from("127.0.0.5", addr);
    assert_eq!(d.reply(), "554 5.7.1 Access denied");
    assert!(d.closed());
    let mut first = C::connect_from("127.0.0.6", addr);
    assert!(first.reply().starts_with("220 "));
    let mut second = C::connect_from("127.0.0.6", addr);
    assert_eq!(
        second.reply(),
        "421 4.4.5 Too many connections, try again later"
    );
    assert!(second.closed());
}

#[test]
fn idle_timeout_sends_421() {
    let srv = start_esmtp(&listen("Idle_Time = 200ms\nBanner_Hostname = mx.test"));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    assert_eq!(c.reply(), "421 4.4.2 mx.test Error: timeout exceeded");
    assert!(c.closed());
}

#[test]
fn a_flood_of_commands_from_a_client_that_does_not_read_stays_bounded() {
    let srv = start_esmtp(&listen(""));
    let addr = esmtp_addr(&srv);
    let mut c = C::connect(addr);
    c.reply();
    // Up to 120 MB of NOOPs without reading a reply: the server stops reading when its
    // replies back up (socket buffers full), so our writes stall instead of its memory
    // growing.
    let s = c.r.get_ref().try_clone().unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = "NOOP\r\n".repeat(10_000);
    let mut sent = 0usize;
    let mut w = &s;
    for _ in 0..2000 {
        match w.write(chunk.as_bytes()) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 2000 * chunk.len(), "the server kept reading: {sent}");
    drop((c, s));
    wait_until("session ends", || srv.on_sched(active_sessions) == 0);
}

#[test]
fn bad_commands_from_a_client_that_never_reads_keep_replies_bounded() {
    // Without the error limit, to see the reply bound itself: 64 KiB of bare LFs are 64 Ki
    // refusals (3.4 MB) in one read; the session stops feeding at 16 KiB of replies.
    // A small send buffer, so the kernel cannot absorb the replies the session would hold.
    esmtp::module::measure_session_buffers(); // off by default: sessions record no peak
    let srv = start_esmtp(&listen(
        "Max_Errors_Per_Connection = 0\nTCP_Send_Buffer_Size = 8192",
    ));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    let s = c.r.get_ref().try_clone().unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = vec![b'\n'; 64 * 1024];
    let mut sent = 0usize;
    let mut w = &s;
    for _ in 0..2000 {
        match w.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 2000 * chunk.len(), "the server kept reading: {sent}");
    let peak = srv.on_sched(esmtp::module::peak_session_buffers);
    assert!(peak > 0, "no peak recorded");
    assert!(peak <= 96 * 1024, "a session held {peak} octets");
    drop((c, s));
    wait_until("session ends", || srv.on_sched(active_sessions) == 0);
}

#[test]
fn too_many_errors_end_the_session() {
    let srv = start_esmtp(&listen("Banner_Hostname = mx.test"));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.send("FOO\r\n".repeat(30).as_bytes());
    for _ in 0..20 {
        assert_eq!(code(&c.reply()), "500 5.5.2");
    }
    assert_eq!(c.reply(), "421 4.7.0 mx.test Error: too many errors");
    assert!(c.closed());
    let srv = start_esmtp(&listen("Max_Errors_Per_Connection = 2"));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.cmd("FOO");
    assert_eq!(code(&c.cmd("BAR")), "500 5.5.2");
    assert!(
        c.reply().starts_with("421 4.7.0 "),
        "after the limit's refusal"
    );
    assert!(c.closed());
}

// ---------------------------------------------------------------------------------------------
// Maildir delivery
// ---------------------------------------------------------------------------------------------

fn maildir_conf(dir: &Path, extra: &str) -> String {
    listen(&format!(
        "Delivery = maildir\nMaildir = {}\nReceived_Hostname = rx.test\n{extra}",
        dir.display()
    ))
}

#[test]
fn maildir_stores_dot_unstuffed_body_with_received_header() {
    let dir = tempdir("esmtp-md");
    let srv = start_esmtp(&maildir_conf(&dir, ""));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.cmd("EHLO helo.test");
    c.envelope();
    let r = c.cmd("Subject: t\r\n\r\n..leading dot\r\n. not the end\r\n.");
    let id = r
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .expect(&r)
        .to_string();
    let new = files(&dir, "new");
    assert_eq!(new.len(), 1);
    assert!(new[0].ends_with(&id));
    // tmp/ names go just after the answers (see delivery.rs)
    wait_until("tmp/ empty", || files(&dir, "tmp").is_empty());
    let data = std::fs::read_to_string(&new[0]).unwrap();
    assert!(data.starts_with("Received: from helo.test ([127.0.0.1])\r\n\tby rx.test"));
    assert!(data.contains("for <b@y>; "), "{data}");
    assert!(
        data.contains(" (netlistener) with ESMTP id "),
        "session id: {data}"
    );
    let date = data.split("; ").nth(1).and_then(|d| d.split("\r\n").next());
    assert!(
        date.is_some_and(|d| d.ends_with(" +0000") && d.len() >= 30),
        "{data}"
    );
    assert_eq!(
        body_after_received(&new[0]),
        b"Subject: t\r\n\r\n.leading dot\r\n not the end\r\n"
    );
}

#[test]
fn maildir_large_message_is_streamed_and_pipelined_commands_survive() {
    let dir = tempdir("esmtp-big");
    let srv = start_esmtp(&maildir_conf(&dir, "Max_Message_Size = 2m"));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.cmd("EHLO x");
    let line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    let body = line.repeat(20_000); // 1.48 MB: many spills
    c.send(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    assert_eq!(code(&c.reply()), "250 2.1.0");
    assert_eq!(code(&c.reply()), "250 2.1.5");
    assert_eq!(code(&c.reply()), "354 End d");
    c.send(body.as_bytes());
    c.send(b".\r\nNOOP\r\nQUIT\r\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as"));
    assert_eq!(code(&c.reply()), "250 2.0.0");
    assert_eq!(c.reply(), "221 2.0.0 Bye");
    let new = files(&dir, "new");
    assert_eq!(new.len(), 1);
    assert!(body_after_received(&new[0]) == body.as_bytes());
    // Over the limit after several spills: 552, nothing left in tmp/ or new/.
    let mut c = C::in_body(&srv);
    c.send(line.repeat(40_000).as_bytes());
    assert_eq!(code(&c.cmd(".")), "552 5.3.4");
    assert_eq!(files(&dir, "new").len(), 1);
    // The spilled file is removed by a pool job, not on the scheduler thread.
    wait_until("tmp/ empty", || files(&dir, "tmp").is_empty());
}

/// Jobs completed by the pool `name` of the server.
fn pool_completed(srv: &Server, name: &'static str) -> Option<u64> {
    srv.on_sched(move || {
        netlistener::scheduler::pool_stats()
            .into_iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.completed)
    })
}

/// Maildir delivery on a pool of its own, "disk" (2 threads).
fn disk_pool_conf(dir: &Path) -> String {
    format!(
        "[ThreadPool \"disk\"]\nConcurrency = 2\n{}",
        maildir_conf(dir, "Pool_Name = disk")
    )
}

#[test]
fn maildir_writes_run_on_the_sessions_pool_name() {
    let dir = tempdir("esmtp-pool");
    let srv = start_esmtp(&disk_pool_conf(&dir));
    let mut c = C::in_body(&srv);
    assert!(c.cmd("x\r\n.").starts_with("250 2.0.0 Ok: queued as"));
    // The group commit answers from inside the job: it may be counted just after the reply.
    wait_until("the delivery job ran on pool \"disk\"", || {
        pool_completed(&srv, "disk") == Some(1)
    });
}

#[test]
fn maildir_bdat_chunks_larger_than_a_spill() {
    let dir = tempdir("esmtp-bdat");
    let srv = start_esmtp(&maildir_conf(
        &dir,
        "SMTP_Extensions = PIPELINING, CHUNKING, ENHANCEDSTATUSCODES",
    ));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.cmd("EHLO x");
    c.cmd("MAIL FROM:<a@x>");
    c.cmd("RCPT TO:<b@y>");
    let a: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let b = b"\r\n.\r\nstill data, BDAT has no dot rules\r\n".to_vec();
    c.send(format!("BDAT {}\r\n", a.len()).as_bytes());
    c.send(&a);
    assert_eq!(c.reply(), "250 2.0.0 Ok: 100000 octets received");
    c.send(format!("BDAT {} LAST\r\n", b.len()).as_bytes());
    c.send(&b);
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as"));
    let new = files(&dir, "new");
    assert_eq!(body_after_received(&new[0]), [a, b].concat());
}

#[test]
fn failing_maildir_answers_451_and_leaves_no_file() {
    let base = tempdir("esmtp-fail");
    let plain = base.join("plain-file");
    std::fs::write(&plain, b"not a directory").unwrap();
    // A path under a regular file: mkdir and open fail even for root.
    let dir = plain.join("Maildir");
    let srv = start_esmtp(&maildir_conf(&dir, ""));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.cmd("EHLO x");
    for size in [10usize, 200_000] {
        c.envelope();
        let r = c.cmd(&format!(
            "{}.",
            format!("{}\r\n", "q".repeat(70)).repeat(size / 72 + 1)
        ));
        assert!(r.starts_with("451 4.3.0 "), "{r}");
    }
    assert_eq!(code(&c.cmd("NOOP")), "250 2.0.0");
    assert!(!dir.exists());
    assert!(esmtp::delivery::delivery_stats().failed >= 2);
}

#[test]
fn maildir_failure_after_spilling_removes_the_tmp_file() {
    let dir = tempdir("esmtp-late");
    let srv = start_esmtp(&maildir_conf(&dir, ""));
    let mut c = C::in_body(&srv);
    let line = format!("{}\r\n", "w".repeat(70));
    c.send(line.repeat(2000).as_bytes()); // 144 kB: several spills, the file is in tmp/
    wait_until("a file in tmp/", || files(&dir, "tmp").len() == 1);
    // new/ becomes a regular file: the rename at the end of data fails.
    std::fs::remove_dir_all(dir.join("new")).unwrap();
    std::fs::write(dir.join("new"), b"in the way").unwrap();
    let r = c.cmd(".");
    assert!(r.starts_with("451 4.3.0 "), "{r}");
    assert!(
        files(&dir, "tmp").is_empty(),
        "no partial file left in tmp/"
    );
    assert_eq!(code(&c.cmd("RSET")), "250 2.0.0");
}

#[test]
fn fifty_sessions_times_twenty_messages_all_delivered() {
    let dir = tempdir("esmtp-50");
    let srv = start_esmtp(&maildir_conf(&dir, ""));
    let addr = esmtp_addr(&srv);
    let body = format!(
        "Subject: load\r\n\r\n{}",
        format!("{}\r\n", "x".repeat(98)).repeat(10)
    );
    let workers: Vec<_> = (0..50)
        .map(|w| {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut c = C::connect(addr);
                c.reply();
                c.cmd(&format!("EHLO w{w}"));
                for m in 0..20 {
                    // One pipelined group per message, as PIPELINING clients send it.
                    c.send(
                        format!("MAIL FROM:<w{w}@x>\r\nRCPT TO:<m{m}@y>\r\nDATA\r\n").as_bytes(),
                    );
                    for _ in 0..3 {
                        let r = c.reply();
                        assert!(r.starts_with('2') || r.starts_with('3'), "{r}");
                    }
                    c.send(format!("{body}.\r\n").as_bytes());
                    let r = c.reply();
                    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
                }
                assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker finished");
    }
    assert_eq!(files(&dir, "new").len(), 1000);
    // tmp/ names go just after the answers (see delivery.rs)
    wait_until("tmp/ empty", || files(&dir, "tmp").is_empty());
}

// ---------------------------------------------------------------------------------------------
// An independent client: Python's smtplib
// ---------------------------------------------------------------------------------------------

const SMTPLIB: &str = r#"
import smtplib, sys
host, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msgs = [
    b"From: a@x.test\r\nTo: b@y.test\r\nSubject: one\r\n\r\nplain body\r\n",
    b"From: a@x.test\r\nSubject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\n",
    b"From: a@x.test\r\nSubject: 8bit\r\n\r\n\xc3\xa9t\xc3\xa9 \xe2\x82\xac\r\n" + b"z" * 998 + b"\r\n",
    b"Subject: no final newline\r\n\r\nlast line",
]
s = smtplib.SMTP(host, port, timeout=10)
code, ehlo = s.ehlo("py.test")
assert code == 250, code
assert s.has_extn("pipelining") and s.has_extn("size") and s.has_extn("8bitmime"), ehlo
for i, m in enumerate(msgs):
    opts = ["BODY=8BITMIME"] if i == 2 else []
    refused = s.sendmail("a@x.test", ["b@y.test", "c@y.test"], m, mail_options=opts)
    assert refused == {}, refused
    open("%s/%d.eml" % (outdir, i), "wb").write(m)
code, _ = s.mail("a@x.test", ["SIZE=999999999"])
assert code == 552, code
code, _ = s.mail("a@x.test", ["SIZE=100"])
assert code == 250, code
s.rset()
s.quit()
print("ok", len(msgs))
"#;

#[test]
fn python_smtplib_messages_arrive_byte_for_byte() {
    let dir = tempdir("esmtp-py");
    let sent = tempdir("esmtp-py-sent");
    let srv = start_esmtp(&maildir_conf(&dir, ""));
    let addr = esmtp_addr(&srv);
    let script = sent.join("client.py");
    std::fs::write(&script, SMTPLIB).unwrap();
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(sent.as_path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let end = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            panic!("smtplib client timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut stored: Vec<Vec<u8>> = files(&dir, "new")
        .iter()
        .map(|p| body_after_received(p))
        .collect();
    let mut expected: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let m = std::fs::read(sent.join(format!("{i}.eml"))).unwrap();
            // smtplib dot-stuffs and terminates the last line; the stored body has the
            // line ends smtplib sent (CRLF) and no stuffing.
            if m.ends_with(b"\r\n") {
                m
            } else {
                [m.as_slice(), b"\r\n"].concat()
            }
        })
        .collect();
    stored.sort();
    expected.sort();
    assert_eq!(stored.len(), 4);
    for (s, e) in stored.iter().zip(&expected) {
        assert_eq!(
            String::from_utf8_lossy(s),
            String::from_utf8_lossy(e),
            "stored body differs"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The shipped configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn shipped_conf_d_30_esmtp_loads_and_its_peer_advertises_another_list() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.d/30-esmtp.conf");
    let got = std::thread::spawn(move || {
        let _s = Scheduler::new().unwrap();
        esmtp::conf_setup().unwrap();
        let store = netlistener_load_config(&path).unwrap_or_else(|e| panic!("{e}"));
        let gen = store.current();
        let kind = "ESMTP_Listener";
        let slot = option_slot(
            "SMTP_Extensions",
            netlistener::config::ScopeClass::Peer(kind),
        )
        .expect("registered");
        let listen: netlistener::config::ListenAddr = "127.0.0.1:2525".parse().unwrap();
        let ext = |ip: &str| {
            let peer = netlistener::config::PeerAddr::Ip(ip.parse().unwrap());
            gen.fetch(slot, kind, Some(&listen), Some(&peer))
                .value
                .as_list()
                .join(",")
        };
        let r = (ext("127.0.0.1"), ext("192.0.2.9"), gen.listens(kind).len());
        netlistener_reset();
        r
    })
    .join()
    .unwrap();
    assert_eq!(got.0, "PIPELINING,SIZE,8BITMIME,ENHANCEDSTATUSCODES");
    assert_eq!(got.1, "PIPELINING,CHUNKING,SMTPUTF8,ENHANCEDSTATUSCODES");
    assert_eq!(got.2, 1);
}

// ---------------------------------------------------------------------------------------------
// Maildir edge cases: vanishing clients, SMTPUTF8, group commit, pool refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn a_client_vanishing_mid_data_leaves_nothing() {
    let dir = tempdir("esmtp-vanish");
    let srv = start_esmtp(&maildir_conf(&dir, ""));
    let mut c = C::in_body(&srv);
    c.send(format!("{}\r\n", "v".repeat(70)).repeat(600).as_bytes()); // 43 kB: spilled
    wait_until("a file in tmp/", || files(&dir, "tmp").len() == 1);
    drop(c);
    wait_until("session ends", || srv.on_sched(active_sessions) == 0);
    wait_until("tmp/ empty", || files(&dir, "tmp").is_empty());
    assert!(files(&dir, "new").is_empty());
}

#[test]
fn maildir_body_buffer_stays_bounded_when_commands_and_body_come_in_one_write() {
    let dir = tempdir("esmtp-onewrite");
    esmtp::module::measure_session_buffers(); // off by default: sessions record no peak
    let srv = start_esmtp(&maildir_conf(&dir, ""));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.cmd("EHLO x");
    let body = format!("{}\r\n", "o".repeat(70)).repeat(900); // 64 kB
    c.send(format!("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n{body}.\r\n").as_bytes());
    assert_eq!(code(&c.reply()), "250 2.1.0");
    assert_eq!(code(&c.reply()), "250 2.1.5");
    assert_eq!(code(&c.reply()), "354 End d");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as"));
    let peak = srv.on_sched(esmtp::module::peak_session_buffers);
    assert!(peak > 0, "no peak recorded");
    assert!(peak <= 16 * 1024, "a session held {peak} octets");
    assert_eq!(body_after_received(&files(&dir, "new")[0]), body.as_bytes());
}

#[test]
fn received_header_without_helo_names_the_address_literal() {
    let dir = tempdir("esmtp-nohelo");
    let srv = start_esmtp(&maildir_conf(&dir, ""));
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    c.envelope();
    assert!(c.cmd("x\r\n.").starts_with("250 2.0.0 Ok: queued as"));
    let data = std::fs::read_to_string(&files(&dir, "new")[0]).unwrap();
    assert!(
        data.starts_with("Received: from [127.0.0.1] ([127.0.0.1])\r\n\tby rx.test"),
        "{data}"
    );
    assert!(data.contains(" with SMTP id "), "{data}");
}

#[test]
fn smtputf8_accepted_when_advertised_and_refused_when_not() {
    let dir = tempdir("esmtp-utf8");
    let conf = format!(
        "{}[ESMTP_Listener Peer \"127.0.0.2/32\"]\n\
         SMTP_Extensions = PIPELINING, SMTPUTF8, ENHANCEDSTATUSCODES\n",
        maildir_conf(&dir, "")
    );
    let srv = start_esmtp(&conf);
    let mut c = C::connect_from("127.0.0.2", esmtp_addr(&srv));
    c.reply();
    assert!(c.cmd("EHLO x").contains("\n250-SMTPUTF8\n"));
    assert_eq!(
        c.cmd("MAIL FROM:<jörg@exämple.test> SMTPUTF8"),
        "250 2.1.0 Ok"
    );
    assert_eq!(c.cmd("RCPT TO:<ünï@exämple.test>"), "250 2.1.5 Ok");
    c.cmd("DATA");
    assert!(c
        .cmd("Subject: é\r\n\r\nhi\r\n.")
        .starts_with("250 2.0.0 Ok: queued as"));
    let data = std::fs::read_to_string(&files(&dir, "new")[0]).unwrap();
    assert!(data.contains(" with UTF8SMTP id "), "{data}");
    assert!(data.contains("for <ünï@exämple.test>; "), "{data}");
    // The default list has no SMTPUTF8: the parameter is refused, and so are UTF-8 paths.
    let mut c = C::connect(esmtp_addr(&srv));
    c.reply();
    assert!(!c.cmd("EHLO x").contains("SMTPUTF8"));
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test> SMTPUTF8")), "555 5.5.4");
    assert_eq!(code(&c.cmd("MAIL FROM:<jörg@x.test>")), "553 5.6.7");
}

/// Sends `n` messages on one session; returns (queue id, body) of each.
fn send_messages(addr: SocketAddr, from: &str, w: usize, n: usize) -> Vec<(String, String)> {
    let mut c = C::connect_from(from, addr);
    c.reply();
    c.cmd(&format!("EHLO w{w}"));
    let mut got = Vec::new();
    for m in 0..n {
        // Some messages spill (over 12 KiB), most do not; every body is distinct.
        let lines = if m % 4 == 3 { 300 } else { 1 + (w + m) % 20 };
        let body = format!(
            "Subject: {w}/{m}\r\n\r\n{}",
            format!("{w}-{m} data\r\n").repeat(lines)
        );
        c.send(format!("MAIL FROM:<w{w}@x>\r\nRCPT TO:<m{m}@y>\r\nDATA\r\n").as_bytes());
        for _ in 0..3 {
            c.reply();
        }
        c.send(format!("{body}.\r\n").as_bytes());
        let r = c.reply();
        let id = match r.strip_prefix("250 2.0.0 Ok: queued as ") {
            Some(id) => id.to_string(),
            None => r, // a refusal: the caller checks
        };
        got.push((id, body));
    }
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    got
}

#[test]
fn group_commit_stores_every_acknowledged_message_byte_for_byte() {
    let dir = tempdir("esmtp-group");
    let srv = start_esmtp(&maildir_conf(&dir, ""));
    let addr = esmtp_addr(&srv);
    let workers: Vec<_> = (0..40)
        .map(|w| std::thread::spawn(move || send_messages(addr, "127.0.0.1", w, 10)))
        .collect();
    let mut ids = std::collections::HashSet::new();
    for w in workers {
        for (id, body) in w.join().expect("worker") {
            let path = dir.join("new").join(&id);
            assert!(path.exists(), "250 for {id:?} but no such file in new/");
            assert_eq!(String::from_utf8(body_after_received(&path)).unwrap(), body);
            assert!(ids.insert(id), "two messages got one queue id");
        }
    }
    assert_eq!(files(&dir, "new").len(), 400);
    // tmp/ names go just after the answers (see delivery.rs)
    wait_until("tmp/ empty", || files(&dir, "tmp").is_empty());
}

#[test]
fn a_failing_maildir_beside_a_good_one_fails_only_its_own_messages() {
    let good = tempdir("esmtp-good");
    let bad = tempdir("esmtp-bad");
    // tmp/ is a regular file: creating the message fails, even for root.
    std::fs::write(bad.join("tmp"), b"not a directory").unwrap();
    let conf = format!(
        "{}[ESMTP_Listener Peer \"127.0.0.2/32\"]\nMaildir = {}\n",
        maildir_conf(&good, ""),
        bad.display()
    );
    let srv = start_esmtp(&conf);
    let addr = esmtp_addr(&srv);
    let workers: Vec<_> = (0..20)
        .map(|w| {
            let from = if w % 2 == 0 { "127.0.0.1" } else { "127.0.0.2" };
            std::thread::spawn(move || (w, send_messages(addr, from, w, 5)))
        })
        .collect();
    for t in workers {
        let (w, got) = t.join().expect("worker");
        for (id, body) in got {
            if w % 2 == 0 {
                let path = good.join("new").join(&id);
                assert_eq!(body_after_received(&path), body.as_bytes());
            } else {
                assert!(id.starts_with("451 4.3.0 "), "{id}");
            }
        }
    }
    assert_eq!(files(&good, "new").len(), 50);
    wait_until("tmp/ empty", || files(&good, "tmp").is_empty());
    assert!(!bad.join("new").exists());
}

#[test]
fn aborted_message_is_removed_by_the_pool_and_a_refusing_pool_gets_451() {
    let dir = tempdir("esmtp-refuse");
    let srv = start_esmtp(&disk_pool_conf(&dir));
    let mut c = C::in_body(&srv);
    c.send(format!("{}\r\n", "r".repeat(70)).repeat(250).as_bytes()); // 18 kB: one spill
    wait_until("a file in tmp/", || files(&dir, "tmp").len() == 1);
    wait_until("the spill job is counted", || {
        pool_completed(&srv, "disk") == Some(1)
    });
    // A bare LF refuses the message at once: its file goes, through a job on "disk".
    c.send(b"bare\nline\r\n");
    wait_until("tmp/ empty", || files(&dir, "tmp").is_empty());
    assert_eq!(pool_completed(&srv, "disk"), Some(2));
    assert_eq!(code(&c.cmd(".")), "554 5.5.2");
    // A pool that refuses the job: the client gets 451, not a silent close.
    srv.on_sched(|| netlistener::scheduler::get_pool("disk").unwrap().shutdown());
    c.envelope();
    let r = c.cmd("x\r\n.");
    assert!(r.starts_with("451 4.3.0 "), "{r}");
    assert_eq!(code(&c.cmd("NOOP")), "250 2.0.0");
    assert!(files(&dir, "new").is_empty());
}
