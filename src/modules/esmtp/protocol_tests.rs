//! Unit tests of the SMTP session (kept beside `protocol.rs`, compiled as its `tests` module).

use super::*;

/// Records what the engine passes to the sink and checks the call order.
#[derive(Default)]
struct Sink {
    open: bool,
    body: Vec<u8>,
    starts: u32,
    aborts: u32,
}

impl BodySink for Sink {
    fn start(&mut self) {
        assert!(!self.open, "start while a body is open");
        self.open = true;
        self.starts += 1;
        self.body.clear();
    }
    fn data(&mut self, chunk: &[u8]) {
        assert!(self.open, "data outside a body");
        assert!(!chunk.is_empty(), "empty data call");
        self.body.extend_from_slice(chunk);
    }
    fn abort(&mut self) {
        assert!(self.open, "abort outside a body");
        self.open = false;
        self.aborts += 1;
        self.body.clear();
    }
}

/// What a conversation produced.
#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    out: String,
    bodies: Vec<Vec<u8>>,
    aborts: u32,
    closed: bool,
    /// Octets left in the caller's buffer at the end.
    left: usize,
}

fn params(f: impl FnOnce(&mut Params)) -> Arc<Params> {
    let mut p = Params {
        hostname: "mx.test".into(),
        extensions: Extensions::ALL,
        max_message_size: 1000,
        ..Params::default()
    };
    f(&mut p);
    Arc::new(p)
}

/// Plays the glue: a buffer keeping the unconsumed tail, deliveries answered `Q1`, `Q2`…
fn run<'a>(p: &Arc<Params>, pieces: impl IntoIterator<Item = &'a [u8]>) -> Transcript {
    let mut s = Session::new(p.clone(), 7);
    let (mut out, mut sink, mut buf) = (Vec::new(), Sink::default(), Vec::new());
    let mut bodies = Vec::new();
    let mut closed = false;
    'pieces: for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let f = s.feed(&buf, &mut out, &mut sink);
            assert!(f.consumed <= buf.len());
            buf.drain(..f.consumed);
            match f.next {
                Next::Read => break,
                // The transcript keeps every reply: going on without draining still
                // progresses, one command per call.
                Next::Flush => assert!(f.consumed > 0 && out.len() >= OUT_HIGH_WATER),
                Next::Deliver => {
                    assert!(sink.open);
                    sink.open = false;
                    bodies.push(std::mem::take(&mut sink.body));
                    let id = format!("Q{}", bodies.len());
                    s.delivery_done(Ok(id), &mut out);
                }
                Next::Close => {
                    closed = true;
                    break 'pieces;
                }
            }
        }
    }
    Transcript {
        out: String::from_utf8_lossy(&out).into_owned(),
        bodies,
        aborts: sink.aborts,
        closed,
        left: buf.len(),
    }
}

fn whole(p: &Arc<Params>, input: &[u8]) -> Transcript {
    run(p, [input])
}

/// The reply lines of a conversation, without the CRLFs.
fn lines(t: &Transcript) -> Vec<&str> {
    t.out.split("\r\n").filter(|l| !l.is_empty()).collect()
}

const BATCH: &[u8] = b"EHLO client.test\r\n\
MAIL FROM:<a@x.test>\r\n\
RCPT TO:<b@y.test>\r\n\
RCPT TO:<c@y.test>\r\n\
RCPT TO:<d@y.test>\r\n\
DATA\r\n\
Subject: one\r\n\
\r\n\
..leading dot\r\n\
body\r\n\
.\r\n\
MAIL FROM:<>\r\n\
RCPT TO:<e@y.test>\r\n\
DATA\r\n\
second\r\n\
.\r\n\
QUIT\r\n";

#[test]
fn pipelined_batch_replies_in_order() {
    let t = whole(&params(|_| {}), BATCH);
    let l = lines(&t);
    assert_eq!(l[0], "250-mx.test");
    assert_eq!(
        &l[1..9],
        [
            "250-PIPELINING",
            "250-SIZE 1000",
            "250-8BITMIME",
            "250-ENHANCEDSTATUSCODES",
            "250-SMTPUTF8",
            "250-CHUNKING",
            "250 HELP",
            "250 2.1.0 Ok",
        ]
    );
    assert_eq!(
        &l[9..],
        [
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as Q1",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as Q2",
            "221 2.0.0 Bye",
        ]
    );
    assert_eq!(t.bodies[0], b"Subject: one\r\n\r\n.leading dot\r\nbody\r\n");
    assert_eq!(t.bodies[1], b"second\r\n");
    assert!(t.closed);
    assert_eq!(t.left, 0);
}

#[test]
fn pipelined_batch_is_independent_of_read_boundaries() {
    for bare_lf in [BareLf::Reject, BareLf::Allow] {
        let p = params(|p| p.bare_lf = bare_lf);
        let reference = whole(&p, BATCH);
        for k in 0..=BATCH.len() {
            let t = run(&p, [&BATCH[..k], &BATCH[k..]]);
            assert_eq!(t, reference, "split at {k}");
        }
        let t = run(&p, BATCH.chunks(1));
        assert_eq!(t, reference, "byte by byte");
        for n in [2, 3, 5, 7, 13] {
            assert_eq!(run(&p, BATCH.chunks(n)), reference, "chunks of {n}");
        }
    }
}

#[test]
fn deliver_stops_consuming_until_delivery_done() {
    let p = params(|_| {});
    let mut s = Session::new(p, 1);
    let (mut out, mut sink) = (Vec::new(), Sink::default());
    let input = b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<r@d>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n";
    let f = s.feed(input, &mut out, &mut sink);
    assert_eq!(f.next, Next::Deliver);
    assert_eq!(&input[f.consumed..], b"NOOP\r\n");
    assert_eq!(s.envelope(), ("c", "", &["r@d".to_string()][..]));
    let again = s.feed(&input[f.consumed..], &mut out, &mut sink);
    assert_eq!((again.consumed, again.next), (0, Next::Deliver));
    s.delivery_done(Err("disk full".into()), &mut out);
    assert_eq!(s.envelope().1, "");
    let f = s.feed(&input[f.consumed..], &mut out, &mut sink);
    assert_eq!((f.consumed, f.next), (6, Next::Read));
    assert!(String::from_utf8(out).unwrap().ends_with(
        "354 End data with <CR><LF>.<CR><LF>\r\n451 4.3.0 disk full\r\n250 2.0.0 Ok\r\n"
    ));
}

#[test]
#[should_panic(expected = "Session::delivery_done")]
fn delivery_done_without_delivery_panics() {
    let mut s = Session::new(params(|_| {}), 1);
    s.delivery_done(Ok("x".into()), &mut Vec::new());
}

#[test]
fn banner_default_and_static() {
    let mut out = Vec::new();
    Session::new(params(|_| {}), 1).greeting(&mut out);
    assert_eq!(out, b"220 mx.test ESMTP netlistener\r\n");
    out.clear();
    let p = params(|p| p.static_banner = Some("220 hello there".into()));
    Session::new(p, 1).greeting(&mut out);
    assert_eq!(out, b"220 hello there\r\n");
    out.clear();
    let p = params(|p| p.static_banner = Some("hi\r\n250 x".into()));
    Session::new(p, 1).greeting(&mut out);
    assert_eq!(out, b"220 hi  250 x\r\n");
}

#[test]
fn simple_commands() {
    let t = whole(
        &params(|_| {}),
        b"helo c\r\nNoOp\r\nvrfy bob\r\nVRFY\r\nHELP\r\nEXPN list\r\nSTARTTLS\r\nFOO\r\n\
          RSET\r\nRSET x\r\nDATA\r\nRCPT TO:<a@b>\r\nQUIT x\r\nquit\r\nNOOP\r\n",
    );
    assert_eq!(
        lines(&t),
        [
            "250 mx.test",
            "250 2.0.0 Ok",
            "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
            "501 5.5.4 Syntax: VRFY address",
            "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
            "502 5.5.1 Error: command not implemented",
            "502 5.5.1 Error: command not implemented",
            "500 5.5.2 Error: command not recognized",
            "250 2.0.0 Ok",
            "501 5.5.4 Syntax: this command takes no argument",
            "503 5.5.1 Error: need MAIL command",
            "503 5.5.1 Error: need MAIL command",
            "501 5.5.4 Syntax: this command takes no argument",
            "221 2.0.0 Bye",
        ]
    );
    assert!(t.closed);
    assert_eq!(t.left, 6, "the NOOP after QUIT is not consumed");
}

#[test]
fn enhanced_codes_only_when_advertised() {
    let p = params(|p| p.extensions = Extensions::PIPELINING);
    let t = whole(&p, b"EHLO c\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\nBDAT 1\r\n");
    assert_eq!(
        lines(&t),
        [
            "250-mx.test",
            "250-PIPELINING",
            "250 HELP",
            "250 Ok",
            "503 Error: nested MAIL command",
            "502 Error: command not implemented",
        ]
    );
}

#[test]
fn ehlo_and_helo_syntax() {
    let t = whole(
        &params(|_| {}),
        b"EHLO\r\nHELO \r\nEHLO a\x01b\r\nHELO h1 extra\r\n",
    );
    assert_eq!(
        lines(&t),
        [
            "501 5.5.4 Syntax: EHLO hostname",
            "501 5.5.4 Syntax: HELO hostname",
            "501 5.5.4 Syntax: EHLO hostname",
            "250 mx.test",
        ]
    );
    let p = params(|p| p.max_message_size = 0);
    let t = whole(&p, b"EHLO c\r\n");
    assert!(t.out.contains("250-SIZE\r\n"), "{}", t.out);
}

#[test]
fn mail_and_rcpt_paths_and_parameters() {
    let t = whole(
        &params(|_| {}),
        b"EHLO c\r\nMAIL FROM:a@b\r\nMAIL FROM:<a@b> FOO=1\r\nMAIL FROM:<a@b> SIZE=x\r\n\
          MAIL FROM:<a@b> SIZE=1001\r\nMAIL FROM:<\xc3\xa9@b>\r\nMAIL TO:<a@b>\r\n\
          MAIL FROM:<a@b> SIZE=1000 BODY=8BITMIME\r\nRCPT TO:<>\r\nRCPT TO:c@d\r\n\
          RCPT TO:<c@d> NOTIFY=NEVER\r\nRCPT TO:<\xc3\xa9@d>\r\nRCPT TO:<postmaster>\r\n",
    );
    assert_eq!(
        &lines(&t)[8..],
        [
            "501 5.1.7 Syntax: MAIL FROM:<address>",
            "555 5.5.4 Error: unsupported parameter",
            "501 5.5.4 Error: malformed parameter",
            "552 5.3.4 Error: message size exceeds fixed limit",
            "553 5.6.7 Error: non-ASCII address requires SMTPUTF8",
            "501 5.1.7 Syntax: MAIL FROM:<address>",
            "250 2.1.0 Ok",
            "501 5.1.3 Syntax: RCPT TO:<address>",
            "501 5.1.3 Syntax: RCPT TO:<address>",
            "555 5.5.4 Error: unsupported parameter",
            "553 5.6.7 Error: non-ASCII address requires SMTPUTF8",
            "250 2.1.5 Ok",
        ]
    );
}

#[test]
fn smtputf8_addresses_and_no_space_after_colon() {
    let mut s = Session::new(params(|_| {}), 1);
    let (mut out, mut sink) = (Vec::new(), Sink::default());
    let input = "EHLO c\r\nMAIL FROM: <é@b> SMTPUTF8\r\nRCPT TO:<ü@d>\r\n";
    s.feed(input.as_bytes(), &mut out, &mut sink);
    assert!(s.is_smtputf8() && s.is_esmtp());
    assert_eq!(s.envelope(), ("c", "é@b", &["ü@d".to_string()][..]));
}

#[test]
fn extension_parameters_need_ehlo_and_advertising() {
    let t = whole(&params(|_| {}), b"HELO c\r\nMAIL FROM:<a@b> SIZE=10\r\n");
    assert_eq!(lines(&t)[1], "555 5.5.4 Error: unsupported parameter");
    for (ext, param) in [
        (Extensions::SIZE, "SIZE=10"),
        (Extensions::EIGHTBITMIME, "BODY=8BITMIME"),
        (Extensions::SMTPUTF8, "SMTPUTF8"),
    ] {
        let on = params(|p| p.extensions = Extensions::ENHANCEDSTATUSCODES | ext);
        let off = params(|p| p.extensions = Extensions::ENHANCEDSTATUSCODES);
        let input = format!("EHLO c\r\nMAIL FROM:<a@b> {param}\r\n");
        assert_eq!(
            lines(&whole(&on, input.as_bytes())).last(),
            Some(&"250 2.1.0 Ok")
        );
        let t = whole(&off, input.as_bytes());
        assert_eq!(
            lines(&t).last(),
            Some(&"555 5.5.4 Error: unsupported parameter")
        );
    }
}

#[test]
fn require_ehlo() {
    let p = params(|p| p.require_ehlo = true);
    let t = whole(&p, b"MAIL FROM:<>\r\nHELO c\r\nMAIL FROM:<>\r\n");
    assert_eq!(
        lines(&t),
        [
            "503 5.5.1 Error: send HELO/EHLO first",
            "250 mx.test",
            "250 2.1.0 Ok"
        ]
    );
    let t = whole(&params(|_| {}), b"MAIL FROM:<>\r\n");
    assert_eq!(lines(&t), ["250 2.1.0 Ok"]);
}

#[test]
fn data_sequence_errors() {
    let t = whole(
        &params(|_| {}),
        b"EHLO c\r\nDATA\r\nMAIL FROM:<>\r\nDATA\r\nDATA x\r\nRSET\r\nRCPT TO:<a@b>\r\n",
    );
    assert_eq!(
        &lines(&t)[8..],
        [
            "503 5.5.1 Error: need MAIL command",
            "250 2.1.0 Ok",
            "554 5.5.1 Error: no valid recipients",
            "501 5.5.4 Syntax: this command takes no argument",
            "250 2.0.0 Ok",
            "503 5.5.1 Error: need MAIL command",
        ]
    );
}

const TX: &[u8] = b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<r@d>\r\nDATA\r\n";

fn data_run(p: &Arc<Params>, body: &[u8]) -> Transcript {
    let mut input = TX.to_vec();
    input.extend_from_slice(body);
    input.extend_from_slice(b"NOOP\r\n");
    whole(p, &input)
}

/// The reply after the 354, and the body delivered if any.
fn data_result(p: &Arc<Params>, body: &[u8]) -> (String, Option<Vec<u8>>) {
    let t = data_run(p, body);
    let l = lines(&t);
    assert_eq!(l[3], "354 End data with <CR><LF>.<CR><LF>");
    (l[4].to_string(), t.bodies.first().cloned())
}

#[test]
fn dot_unstuffing_and_empty_message() {
    let p = params(|_| {});
    let (reply, body) = data_result(&p, b".\r\n");
    assert_eq!(reply, "250 2.0.0 Ok: queued as Q1");
    assert_eq!(body.unwrap(), b"");
    let (_, body) = data_result(&p, b"..\r\n...x\r\n.y\r\na.b\r\n.\r\n");
    assert_eq!(body.unwrap(), b".\r\n..x\r\ny\r\na.b\r\n");
}

#[test]
fn only_crlf_dot_crlf_ends_the_message() {
    let p = params(|p| p.bare_lf = BareLf::Allow);
    for fake in [
        &b"a\n.\nb"[..],
        b"a\r.\rb",
        b"a\n.\r\nb",
        b"a\r\n.\rb",
        b"a\r\n.\nb",
        b"a\r\n. \nb",
    ] {
        let mut body = fake.to_vec();
        body.extend_from_slice(b"\r\n.\r\n");
        let (reply, got) = data_result(&p, &body);
        assert_eq!(reply, "250 2.0.0 Ok: queued as Q1", "{fake:?}");
        let mut want = fake.to_vec();
        // A dot starting a line after CRLF is unstuffed; elsewhere it is data.
        if fake.starts_with(b"a\r\n.") {
            want.remove(3);
        }
        want.extend_from_slice(b"\r\n");
        assert_eq!(got.unwrap(), want, "{fake:?}");
    }
}

#[test]
fn bare_lf_and_cr_in_data_are_refused_by_default() {
    let p = params(|_| {});
    for bad in [&b"a\nb\r\n"[..], b"a\rb\r\n", b"a\n.\nQUIT\r\n", b"x\r"] {
        let mut body = bad.to_vec();
        body.extend_from_slice(b"\r\n.\r\n");
        let t = data_run(&p, &body);
        let l = lines(&t);
        assert_eq!(
            l[4], "554 5.5.2 Error: bare <CR> or <LF> in message data",
            "{bad:?}"
        );
        assert_eq!(l[5], "250 2.0.0 Ok", "{bad:?}: the session goes on");
        assert!(t.bodies.is_empty());
        assert_eq!(t.aborts, 1);
    }
}

#[test]
fn bare_lf_in_commands() {
    let t = whole(&params(|_| {}), b"NOOP\nNOOP\r\nNO\rOP\r\n");
    assert_eq!(
        lines(&t),
        [
            "500 5.5.2 Error: bare <CR> or <LF> in command line",
            "250 2.0.0 Ok",
            "500 5.5.2 Error: bare <CR> or <LF> in command line",
        ]
    );
    let p = params(|p| p.bare_lf = BareLf::Allow);
    let t = whole(&p, b"NOOP\nNOOP\r\n");
    assert_eq!(lines(&t), ["250 2.0.0 Ok", "250 2.0.0 Ok"]);
}

#[test]
fn message_size_limit_during_data() {
    let p = params(|p| p.max_message_size = 10);
    let (reply, body) = data_result(&p, b"0123456\r\n.\r\n");
    assert_eq!(reply, "250 2.0.0 Ok: queued as Q1");
    assert_eq!(body.unwrap().len(), 9);
    let t = data_run(&p, b"0123456789\r\nmore\r\n.\r\n");
    let l = lines(&t);
    assert_eq!(l[4], "552 5.3.4 Error: message size exceeds fixed limit");
    assert_eq!(l[5], "250 2.0.0 Ok");
    assert_eq!((t.bodies.len(), t.aborts), (0, 1));
    let unlimited = params(|p| p.max_message_size = 0);
    let big = [b"x".repeat(900), b"\r\n".to_vec()].concat().repeat(50);
    let (reply, body) = data_result(&unlimited, &[&big[..], b".\r\n"].concat());
    assert_eq!(reply, "250 2.0.0 Ok: queued as Q1");
    assert_eq!(body.unwrap(), big);
}

#[test]
fn text_line_length_limit() {
    let p = params(|p| p.max_line_length = 10);
    let (reply, _) = data_result(&p, b"12345678\r\n.\r\n");
    assert_eq!(reply, "250 2.0.0 Ok: queued as Q1");
    // The stuffed dot counts: the line as sent is 11 octets.
    let (reply, _) = data_result(&p, b"..2345678\r\n.\r\n");
    assert_eq!(reply, "500 5.5.0 Error: message line too long");
    let (reply, _) = data_result(&p, b"123456789\r\n.\r\n");
    assert_eq!(reply, "500 5.5.0 Error: message line too long");
    // The first reason found is the one reported.
    let (reply, _) = data_result(&p, b"a\nbcdefghijklmnop\r\n.\r\n");
    assert_eq!(reply, "554 5.5.2 Error: bare <CR> or <LF> in message data");
    let (reply, _) = data_result(&p, b"abcdefghijklmnop\nq\r\n.\r\n");
    assert_eq!(reply, "500 5.5.0 Error: message line too long");
}

#[test]
fn long_text_line_is_not_buffered() {
    let p = params(|p| p.max_message_size = 0);
    let mut s = Session::new(p, 1);
    let (mut out, mut sink) = (Vec::new(), Sink::default());
    s.feed(TX, &mut out, &mut sink);
    let chunk = vec![b'x'; 4096];
    for _ in 0..10 {
        let f = s.feed(&chunk, &mut out, &mut sink);
        assert_eq!(
            f,
            Feed {
                consumed: 4096,
                next: Next::Read
            }
        );
    }
    assert_eq!((sink.open, sink.aborts), (false, 1));
    let f = s.feed(b"\r\n.\r\n", &mut out, &mut sink);
    assert_eq!(f.next, Next::Read);
    assert!(out.ends_with(b"500 5.5.0 Error: message line too long\r\n"));
}

#[test]
fn overlong_command_line_is_discarded_and_answered_once() {
    let p = params(|_| {});
    let ok = [b"NOOP ".to_vec(), vec![b'x'; 505], b"\r\n".to_vec()].concat();
    assert_eq!(ok.len(), 512);
    assert_eq!(lines(&whole(&p, &ok)), ["250 2.0.0 Ok"]);
    let long = [b"NOOP ".to_vec(), vec![b'x'; 506], b"\r\nNOOP\r\n".to_vec()].concat();
    let t = whole(&p, &long);
    assert_eq!(
        lines(&t),
        ["500 5.5.0 Error: command line too long", "250 2.0.0 Ok"]
    );
    assert_eq!(run(&p, long.chunks(100)), t);
    // Without an LF the engine never keeps more than 511 octets of it.
    let mut s = Session::new(p, 1);
    let (mut out, mut sink) = (Vec::new(), Sink::default());
    let f = s.feed(&[b'A'; 511], &mut out, &mut sink);
    assert_eq!(
        f,
        Feed {
            consumed: 0,
            next: Next::Read
        }
    );
    let f = s.feed(&[b'A'; 512], &mut out, &mut sink);
    assert_eq!(
        f,
        Feed {
            consumed: 512,
            next: Next::Read
        }
    );
    let f = s.feed(&[b'A'; 10_000], &mut out, &mut sink);
    assert_eq!(
        f,
        Feed {
            consumed: 10_000,
            next: Next::Read
        }
    );
    let f = s.feed(&[b'A'; 511], &mut out, &mut sink);
    assert_eq!(f.consumed, 511);
    assert!(out.is_empty());
}

#[test]
fn recipient_limits() {
    let p = params(|p| {
        p.max_recipients_per_message = 2;
        p.max_recipients_per_connection = 3;
    });
    let t = whole(
        &p,
        b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@d>\r\nRCPT TO:<b@d>\r\nRCPT TO:<c@d>\r\n\
          RSET\r\nMAIL FROM:<>\r\nRCPT TO:<d@d>\r\nRCPT TO:<e@d>\r\n",
    );
    assert_eq!(
        &lines(&t)[2..],
        [
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "452 4.5.3 Error: too many recipients",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "452 4.5.3 Error: too many recipients for this connection",
        ]
    );
}

#[test]
fn receptions_per_connection() {
    let p = params(|p| p.max_receptions_per_connection = 1);
    let mut input = TX.to_vec();
    input.extend_from_slice(b"x\r\n.\r\nMAIL FROM:<>\r\nNOOP\r\n");
    let t = whole(&p, &input);
    let l = lines(&t);
    assert_eq!(l[4], "250 2.0.0 Ok: queued as Q1");
    assert_eq!(
        l[5],
        "421 4.7.0 mx.test Error: too many messages in this connection"
    );
    assert_eq!(l.len(), 6);
    assert!(t.closed);
}

#[test]
fn stale_config_closes_at_next_mail_or_rset() {
    for cmd in ["MAIL FROM:<>", "RSET"] {
        let p = params(|p| p.reconfig_message = "Reconfigured, come back".into());
        let mut s = Session::new(p, 1);
        let (mut out, mut sink) = (Vec::new(), Sink::default());
        s.feed(b"HELO c\r\n", &mut out, &mut sink);
        s.stale_config(None);
        let f = s.feed(b"NOOP\r\n", &mut out, &mut sink);
        assert_eq!(f.next, Next::Read);
        let input = format!("{cmd}\r\nNOOP\r\n");
        let f = s.feed(input.as_bytes(), &mut out, &mut sink);
        assert_eq!(
            f,
            Feed {
                consumed: cmd.len() + 2,
                next: Next::Close
            }
        );
        assert!(out.ends_with(b"250 2.0.0 Ok\r\n421 4.3.2 mx.test Reconfigured, come back\r\n"));
    }
}

#[test]
fn stale_config_uses_the_reconfig_message_in_force() {
    let p = params(|p| p.reconfig_message = "old text".into());
    let mut s = Session::new(p, 1);
    let (mut out, mut sink) = (Vec::new(), Sink::default());
    s.stale_config(Some("new text"));
    let f = s.feed(b"RSET\r\n", &mut out, &mut sink);
    assert_eq!(f.next, Next::Close);
    assert_eq!(out, b"421 4.3.2 mx.test new text\r\n");
}

#[test]
fn replies_stop_at_the_high_water_mark() {
    // 64 KiB of bare LFs: one read, 65536 refusals (3.4 MB) if fed at once.
    let p = params(|p| p.max_errors_per_connection = 0);
    let mut s = Session::new(p, 1);
    let (mut out, mut sink) = (Vec::new(), Sink::default());
    let input = vec![b'\n'; 64 * 1024];
    let mut at = 0;
    let mut replies = 0;
    loop {
        let f = s.feed(&input[at..], &mut out, &mut sink);
        at += f.consumed;
        assert!(
            out.len() < OUT_HIGH_WATER + 100,
            "{} octets of replies",
            out.len()
        );
        replies += out.split(|&b| b == b'\n').count() - 1;
        out.clear();
        match f.next {
            Next::Flush => assert!(f.consumed > 0),
            Next::Read => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((at, replies), (input.len(), input.len()), "nothing lost");
}

#[test]
fn too_many_errors_close_the_session() {
    let p = params(|p| p.max_errors_per_connection = 3);
    let t = whole(&p, b"FOO\r\nNOOP\r\nBAR\r\nMAIL FROM:x\r\nNOOP\r\nQUIT\r\n");
    assert_eq!(
        lines(&t),
        [
            "500 5.5.2 Error: command not recognized",
            "250 2.0.0 Ok",
            "500 5.5.2 Error: command not recognized",
            "501 5.1.7 Syntax: MAIL FROM:<address>",
            "421 4.7.0 mx.test Error: too many errors",
        ]
    );
    assert!(t.closed);
    // A message accepted starts the count again (Postfix: errors "without delivering mail").
    let mut input = b"FOO\r\nFOO\r\n".to_vec();
    input.extend_from_slice(TX);
    input.extend_from_slice(b"x\r\n.\r\nFOO\r\nFOO\r\nNOOP\r\n");
    let t = whole(&p, &input);
    assert!(!t.closed, "{}", t.out);
    assert!(t.out.ends_with("250 2.0.0 Ok\r\n"), "{}", t.out);
    // 0 is unlimited; the default is 20.
    let unlimited = params(|p| p.max_errors_per_connection = 0);
    let t = whole(&unlimited, "FOO\r\n".repeat(1000).as_bytes());
    assert!(!t.closed && lines(&t).len() == 1000);
    let t = whole(&params(|_| {}), "FOO\r\n".repeat(1000).as_bytes());
    assert_eq!(lines(&t).len(), 20 + 1, "the default limit is 20");
}

#[test]
fn timeout_aborts_the_body_and_closes() {
    let mut s = Session::new(params(|_| {}), 1);
    let (mut out, mut sink) = (Vec::new(), Sink::default());
    s.feed(TX, &mut out, &mut sink);
    s.feed(b"partial", &mut out, &mut sink);
    out.clear();
    s.timeout(&mut out, &mut sink);
    assert_eq!(out, b"421 4.4.2 mx.test Error: timeout exceeded\r\n");
    assert_eq!(sink.aborts, 1);
    let f = s.feed(b"NOOP\r\n", &mut out, &mut sink);
    assert_eq!(
        f,
        Feed {
            consumed: 0,
            next: Next::Close
        }
    );
    s.timeout(&mut out, &mut sink);
    assert_eq!(out.len(), 43, "no second 421");
}

#[test]
fn timeout_while_delivering_then_delivery_done_writes_nothing() {
    let mut s = Session::new(params(|_| {}), 1);
    let (mut out, mut sink) = (Vec::new(), Sink::default());
    let f = s.feed(&[TX, b".\r\n"].concat(), &mut out, &mut sink);
    assert_eq!(f.next, Next::Deliver);
    s.timeout(&mut out, &mut sink);
    let len = out.len();
    s.delivery_done(Ok("Q".into()), &mut out);
    assert_eq!(out.len(), len);
}

const BDAT_TX: &[u8] = b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<r@d>\r\n";

#[test]
fn bdat_chunks_and_last() {
    let p = params(|_| {});
    let input = [
        BDAT_TX,
        b"BDAT 5\r\na\r\n.\nBDAT 0\r\nBDAT 3 LAST\r\n\r\n.NOOP\r\n",
    ]
    .concat();
    let t = whole(&p, &input);
    assert_eq!(
        &lines(&t)[10..],
        [
            "250 2.0.0 Ok: 5 octets received",
            "250 2.0.0 Ok: 0 octets received",
            "250 2.0.0 Ok: queued as Q1",
            "250 2.0.0 Ok",
        ]
    );
    assert_eq!(t.bodies, [b"a\r\n.\n\r\n.".to_vec()]);
    for k in 0..=input.len() {
        assert_eq!(run(&p, [&input[..k], &input[k..]]), t, "split at {k}");
    }
}

#[test]
fn bdat_errors_still_consume_the_chunk() {
    let p = params(|p| p.max_message_size = 4);
    let t = whole(&p, b"EHLO c\r\nBDAT 4\r\nQUITBDAT x\r\n");
    assert_eq!(
        &lines(&t)[8..],
        [
            "503 5.5.1 Error: need MAIL command",
            "501 5.5.4 Syntax: BDAT count [LAST]",
        ]
    );
    assert!(t.closed);
    let input = [
        BDAT_TX,
        b"BDAT 3\r\nabcBDAT 3 LAST\r\ndefNOOP\r\nMAIL FROM:<>\r\nBDAT 2 LAST\r\nxyRSET\r\n",
    ]
    .concat();
    let t = whole(&p, &input);
    assert_eq!(
        &lines(&t)[10..],
        [
            "250 2.0.0 Ok: 3 octets received",
            "552 5.3.4 Error: message size exceeds fixed limit",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "554 5.5.1 Error: no valid recipients",
            "250 2.0.0 Ok",
        ]
    );
    assert_eq!((t.bodies.len(), t.aborts), (0, 1));
}

#[test]
fn bdat_and_data_do_not_mix() {
    let p = params(|_| {});
    let input = [BDAT_TX, b"BDAT 1\r\nxDATA\r\nRCPT TO:<s@d>\r\nRSET\r\n"].concat();
    let t = whole(&p, &input);
    assert_eq!(
        &lines(&t)[11..],
        [
            "503 5.5.1 Error: DATA and BDAT cannot be mixed",
            "503 5.5.1 Error: RCPT after message data",
            "250 2.0.0 Ok",
        ]
    );
    assert_eq!(t.aborts, 1, "RSET abandons the chunked body");
    let no_chunking = params(|p| p.extensions = Extensions::ENHANCEDSTATUSCODES);
    let t = whole(&no_chunking, &[BDAT_TX, b"BDAT 1 LAST\r\n"].concat());
    assert_eq!(
        lines(&t).last(),
        Some(&"502 5.5.1 Error: command not implemented")
    );
}

#[test]
fn session_struct_is_small() {
    let size = std::mem::size_of::<Session>();
    assert!(size < 512, "Session is {size} bytes");
    assert!(size <= 128, "Session grew to {size} bytes");
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&[u8]] = &[
    b"EHLO c\r\n",
    b"HELO c\r\n",
    b"MAIL FROM:<a@b>\r\n",
    b"MAIL FROM:<> SIZE=5 BODY=8BITMIME SMTPUTF8\r\n",
    b"RCPT TO:<r@d>\r\n",
    b"DATA\r\n",
    b"BDAT 3\r\n",
    b"BDAT 2 LAST\r\n",
    b"BDAT 30\r\n",
    b"line\r\n",
    b"..\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r",
    b"\n",
    b".",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"VRFY x\r\n",
];

#[test]
fn fuzz_never_panics_and_never_buffers_much() {
    let mut rng = Rng(0x243f_6a88_85a3_08d3);
    for iter in 0..3000 {
        let p = params(|p| {
            p.extensions = Extensions::from_names(
                [
                    "PIPELINING",
                    "SIZE",
                    "8BITMIME",
                    "ENHANCEDSTATUSCODES",
                    "SMTPUTF8",
                    "CHUNKING",
                ]
                .iter()
                .filter(|_| rng.below(3) > 0),
            )
            .unwrap();
            p.bare_lf = if rng.below(2) == 0 {
                BareLf::Reject
            } else {
                BareLf::Allow
            };
            p.max_message_size = rng.below(3) as u64 * 20;
            p.max_line_length = 3 + rng.below(20);
            p.max_recipients_per_message = rng.below(3) as u32;
            p.max_receptions_per_connection = rng.below(3) as u32;
            p.max_errors_per_connection = rng.below(3) as u32 * 10;
        });
        let mut input = Vec::new();
        for _ in 0..rng.below(60) {
            if rng.below(4) == 0 {
                let n = rng.below(40);
                input.extend((0..n).map(|_| rng.next() as u8));
            } else {
                input.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
        }
        fuzz_one(&p, &input, &mut rng, iter);
    }
}

fn fuzz_one(p: &Arc<Params>, input: &[u8], rng: &mut Rng, iter: usize) {
    let mut s = Session::new(p.clone(), 1);
    let (mut out, mut sink, mut buf) = (Vec::new(), Sink::default(), Vec::new());
    let mut at = 0;
    while at < input.len() {
        let n = 1 + rng.below(64);
        buf.extend_from_slice(&input[at..input.len().min(at + n)]);
        at += n;
        loop {
            let f = s.feed(&buf, &mut out, &mut sink);
            assert!(f.consumed <= buf.len(), "iteration {iter}");
            buf.drain(..f.consumed);
            match f.next {
                Next::Read => {
                    assert!(buf.len() < MAX_COMMAND_LINE, "iteration {iter}: {buf:?}");
                    break;
                }
                Next::Flush => out.clear(),
                Next::Deliver => {
                    sink.open = false;
                    let r = if rng.below(2) == 0 {
                        Ok("Q".into())
                    } else {
                        Err("no".into())
                    };
                    s.delivery_done(r, &mut out);
                }
                Next::Close => return,
            }
        }
        if rng.below(50) == 0 {
            s.stale_config(None);
        }
    }
    s.timeout(&mut out, &mut sink);
    assert!(!sink.open, "iteration {iter}: timeout left the body open");
    assert!(out.ends_with(b"\r\n") || out.is_empty());
}
