//! The sans-I/O ESMTP server session (C: the `esmtp` module's protocol state machine).
//!
//! A [`Session`] turns the bytes a client sent into SMTP replies and message body bytes. It
//! never reads or writes a socket: the glue reads into a buffer shared by every session of
//! its thread, calls [`Session::feed`], writes the replies appended to `out`, and keeps only
//! the unconsumed tail of the buffer (a partial command line of at most 511 octets, or at most
//! 2 octets of an undecided line end in message text). An idle session therefore holds no
//! buffer at all; `size_of::<Session>()` is under 128 bytes and the envelope lives on the heap
//! only while a transaction is open.
//!
//! Implemented: RFC 5321 (EHLO, HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, VRFY, HELP) with
//! PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES
//! (RFC 2034/3463), SMTPUTF8 (RFC 6531) and CHUNKING/BDAT (RFC 3030), each advertised only
//! when enabled in [`Params::extensions`]. Pipelined commands are always processed in order
//! whether or not PIPELINING is advertised.
//!
//! # Contract
//!
//! - Call [`Session::greeting`] once, then [`Session::feed`] with all bytes not consumed by
//!   the previous call followed by the new ones. Feeding the same conversation split at any
//!   byte boundaries yields the same replies and body bytes.
//! - After [`Next::Deliver`] the body passed to the [`BodySink`] is complete: deliver it,
//!   then call [`Session::delivery_done`] and feed again (the remaining input is still in the
//!   caller's buffer: pipelined commands after the message). Feeding before that returns
//!   `Next::Deliver` again and consumes nothing.
//! - After [`Next::Close`] flush `out` and close; further feeds consume nothing.
//! - After [`Next::Flush`] (`out` holds [`OUT_HIGH_WATER`] octets or more of replies) write
//!   `out` out, then feed `input[consumed..]` again: a client that pipelines faster than it
//!   reads its replies cannot make the replies of one read grow without bound (64 KiB of bare
//!   LFs would otherwise be 3.4 MB of `500` replies). Each call consumes at least one command
//!   before it stops this way, so a caller that does not drain `out` still progresses.
//! - The end of message text is `CRLF.CRLF` only; `LF.LF`, `CR.CR` and `LF.CRLF` are data
//!   (or refused, see [`BareLf`]), so the session cannot be used for SMTP smuggling.
//!
//! # Refusals (code, enhanced code, text)
//!
//! | situation | reply |
//! |---|---|
//! | unknown verb | `500 5.5.2 Error: command not recognized` |
//! | command line over 512 octets (discarded, not buffered) | `500 5.5.0 Error: command line too long` |
//! | bare LF / bare CR in a command line (`Bare_LF = Reject`) | `500 5.5.2 Error: bare <CR> or <LF> in command line` |
//! | EXPN, TURN, ETRN, ATRN, AUTH, SEND, SOML, SAML, STARTTLS; BDAT without CHUNKING or after HELO | `502 5.5.1 Error: command not implemented` |
//! | bad MAIL / RCPT path (missing `<>`…) | `501 5.1.7` / `501 5.1.3 Syntax: MAIL FROM:<address>` / `RCPT TO:<address>` |
//! | malformed parameter (`SIZE=x`) | `501 5.5.4 Error: malformed parameter` |
//! | parameter of an extension not advertised, or unknown | `555 5.5.4 Error: unsupported parameter` |
//! | non-ASCII address without `SMTPUTF8` | `553 5.6.7 Error: non-ASCII address requires SMTPUTF8` |
//! | MAIL before HELO/EHLO with `require_ehlo` | `503 5.5.1 Error: send HELO/EHLO first` |
//! | nested MAIL / RCPT or DATA without MAIL / DATA after BDAT | `503 5.5.1 …` |
//! | DATA or BDAT with no accepted recipient | `554 5.5.1 Error: no valid recipients` |
//! | `SIZE=` over the limit, or body over it | `552 5.3.4 Error: message size exceeds fixed limit` |
//! | bare LF / bare CR in message text (`Bare_LF = Reject`) | `554 5.5.2 Error: bare <CR> or <LF> in message data` |
//! | message text line over `max_line_length` | `500 5.5.0 Error: message line too long` (RFC 5321 4.5.3.1.10) |
//! | recipients over the per-message / per-connection limit | `452 4.5.3 Error: too many recipients[ for this connection]` |
//! | MAIL after `max_receptions_per_connection` messages | `421 4.7.0 <host> Error: too many messages in this connection`, close |
//! | MAIL or RSET after [`Session::stale_config`] | `421 4.3.2 <host> <reconfig_message>`, close |
//! | the `max_errors_per_connection`th refusal (4xx/5xx) without a message accepted since | `421 4.7.0 <host> Error: too many errors`, close |
//! | [`Session::timeout`] | `421 4.4.2 <host> Error: timeout exceeded`, close |
//! | BDAT with an unparsable size (framing lost) | `501 5.5.4 Syntax: BDAT count [LAST]`, close |
//! | delivery failed | `451 4.3.0 <reason>` |
//!
//! Body refusals (size, bare LF, long line) abort the sink at once, keep reading and
//! discarding up to the end of the message, and are answered there; the first reason found
//! is the one reported. Enhanced codes are written when ENHANCEDSTATUSCODES is in
//! [`Params::extensions`] (even before EHLO, as Postfix does), never on the banner, the
//! EHLO/HELO reply and the 354 reply (RFC 2034).
//!
//! # Diagnostics
//!
//! Nothing panics on any input bytes. [`Session::delivery_done`] panics if no delivery is
//! pending (a caller bug). Nothing logs: every refusal is an SMTP reply.

use std::sync::Arc;

use super::command::{self, Allowed, ArgError, MailParams, Verb};
use super::reply::{self, Reply, *};
use super::scan::{find1, find2};

pub use super::params::{BareLf, Extensions, Params};

/// Longest command line, CRLF included (RFC 5321 4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;

/// Octets of replies in `out` at which [`Session::feed`] stops and returns [`Next::Flush`].
pub const OUT_HIGH_WATER: usize = 16 * 1024;

/// Receives the body of the message being received.
///
/// Calls come in the order `start`, `data`*, then either `abort` or nothing: the body is
/// complete when [`Session::feed`] returns [`Next::Deliver`].
///
/// C: the module's spool/delivery hooks.
pub trait BodySink {
    /// A message body starts (after the 354 reply, or with the first accepted BDAT chunk).
    fn start(&mut self);
    /// Body bytes, dot-unstuffed, line ends as received; called zero or more times.
    fn data(&mut self, chunk: &[u8]);
    /// The message is refused or abandoned: forget what [`BodySink::data`] got. No more data
    /// follows until the next [`BodySink::start`].
    fn abort(&mut self);
}

/// What the caller must do after [`Session::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read more input; keep `input[consumed..]` and pass it first next time.
    Read,
    /// A message is complete: deliver it, then call [`Session::delivery_done`].
    Deliver,
    /// Flush `out`, then close the connection.
    Close,
    /// `out` reached [`OUT_HIGH_WATER`]: write it, then feed `input[consumed..]` again.
    Flush,
}

/// The result of [`Session::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feed {
    /// Octets of the input consumed; never more than its length.
    pub consumed: usize,
    /// What to do next.
    pub next: Next,
}

/// Why a message body is refused (answered at the end of the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    TooBig,
    Bare,
    LongLine,
}

/// What to answer once a BDAT chunk has been read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    NeedMail,
    NoRecipients,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Command,
    /// Discarding a command line over 512 octets up to its LF.
    SkipLine,
    /// DATA text, up to `CRLF.CRLF`.
    Text,
    /// BDAT octets still expected in this chunk.
    Chunk {
        remaining: u64,
        size: u64,
        last: bool,
        verdict: Verdict,
    },
    AwaitDelivery,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyMode {
    None,
    Data,
    Chunks,
}

/// The envelope of the open transaction; boxed so an idle session does not carry it.
#[derive(Debug)]
struct Transaction {
    mail_from: String,
    rcpts: Vec<String>,
    params: MailParams,
    mode: BodyMode,
}

/// Result of one step of [`Session::feed`]: octets consumed, and whether to go on.
enum Step {
    /// Consumed, state advanced: go on (0 only when the phase changed).
    Go(usize),
    /// Consumed what could be; more input is needed.
    Wait(usize),
}

/// One SMTP server session.
///
/// C: the per-connection `esmtp` closure hung on the session's `Event`.
///
/// ```
/// use std::sync::Arc;
/// use netlistener::modules::esmtp::protocol::{BodySink, Next, Params, Session};
///
/// struct Collect(Vec<u8>);
/// impl BodySink for Collect {
///     fn start(&mut self) { self.0.clear() }
///     fn data(&mut self, chunk: &[u8]) { self.0.extend_from_slice(chunk) }
///     fn abort(&mut self) { self.0.clear() }
/// }
///
/// let mut session = Session::new(Arc::new(Params::default()), 1);
/// let (mut out, mut body) = (Vec::new(), Collect(Vec::new()));
/// session.greeting(&mut out);
/// // The client pipelines a whole transaction; the last line is still incomplete.
/// let input = b"EHLO client\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n\
///               DATA\r\n..hi\r\n.\r\nQUI";
/// let feed = session.feed(input, &mut out, &mut body);
/// assert_eq!(feed.next, Next::Deliver);
/// assert_eq!(body.0, b".hi\r\n");
/// assert_eq!(session.envelope().2, ["b@example.net"]);
/// session.delivery_done(Ok("Q1".into()), &mut out);
/// // Resume with the unconsumed tail plus the next read.
/// let rest = [&input[feed.consumed..], b"T\r\n"].concat();
/// let feed = session.feed(&rest, &mut out, &mut body);
/// assert_eq!((feed.consumed, feed.next), (rest.len(), Next::Close));
/// assert!(out.ends_with(b"250 2.0.0 Ok: queued as Q1\r\n221 2.0.0 Bye\r\n"));
/// ```
#[derive(Debug)]
pub struct Session {
    params: Arc<Params>,
    id: u64,
    helo: Option<Box<str>>,
    tx: Option<Box<Transaction>>,
    phase: Phase,
    msg_size: u64,
    line_len: usize,
    rcpts_conn: u32,
    receptions: u32,
    /// Refusals since the session started or last had a message accepted.
    errors: u32,
    refusal: Option<Refusal>,
    esmtp: bool,
    /// In DATA text: at the beginning of a line (after CRLF).
    bol: bool,
    /// The sink got `start` and neither `abort` nor the end of the message yet.
    sink_open: bool,
    stale: bool,
}

impl Session {
    /// A session for one connection; `session_id` is the glue's connection id (kept for the
    /// `Received:` header and logs).
    pub fn new(params: Arc<Params>, session_id: u64) -> Session {
        Session {
            params,
            id: session_id,
            helo: None,
            tx: None,
            phase: Phase::Command,
            msg_size: 0,
            line_len: 0,
            rcpts_conn: 0,
            receptions: 0,
            errors: 0,
            refusal: None,
            esmtp: false,
            bol: true,
            sink_open: false,
            stale: false,
        }
    }

    /// Appends the `220` banner: [`Params::static_banner`] if set (prefixed with `220 ` if it
    /// does not start with `220`), else `220 <hostname> ESMTP netlistener`.
    pub fn greeting(&self, out: &mut Vec<u8>) {
        match &self.params.static_banner {
            Some(b) if b.starts_with("220") => reply::line_raw(out, b.as_bytes()),
            Some(b) => reply::line(out, "220", false, None, &[b.as_bytes()]),
            None => {
                let host = self.params.hostname.as_bytes();
                reply::line(out, "220", false, None, &[host, b" ESMTP netlistener"]);
            }
        }
    }

    /// Processes `input`: consumes complete command lines (and, in DATA/BDAT, as much of the
    /// body as can be decided), appends the replies to `out` in order and passes body bytes
    /// to `sink`. See the module documentation for the contract.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, sink: &mut dyn BodySink) -> Feed {
        let mut pos = 0;
        loop {
            if pos > 0 && self.phase == Phase::Command && out.len() >= OUT_HIGH_WATER {
                return feed(pos, Next::Flush);
            }
            let rest = &input[pos..];
            let before = out.len();
            let step = match self.phase {
                Phase::Command => self.step_command(rest, out, sink),
                Phase::SkipLine => self.step_skip(rest, out),
                Phase::Text => self.step_text(rest, out, sink),
                Phase::Chunk { .. } => self.step_chunk(rest, out, sink),
                Phase::AwaitDelivery => return feed(pos, Next::Deliver),
                Phase::Closed => return feed(pos, Next::Close),
            };
            self.count_error(out, before);
            match step {
                Step::Go(n) => pos += n,
                Step::Wait(n) => return feed(pos + n, Next::Read),
            }
        }
    }

    /// Counts a refusal written since `out[before]` (a step writes at most one reply), and
    /// closes the session at the `max_errors_per_connection`th (Postfix's
    /// `smtpd_hard_error_limit`): a client that only makes errors is not worth serving.
    fn count_error(&mut self, out: &mut Vec<u8>, before: usize) {
        let refused = matches!(out.get(before), Some(b'4' | b'5'));
        if !refused || self.phase == Phase::Closed {
            return;
        }
        self.errors = self.errors.saturating_add(1);
        let max = self.params.max_errors_per_connection;
        if max > 0 && self.errors >= max {
            self.close_421(out, "4.7.0", b"Error: too many errors");
        }
    }

    /// Reports the outcome of the delivery requested by [`Next::Deliver`]: `Ok(queue_id)`
    /// answers `250 2.0.0 Ok: queued as <id>`, `Err(reason)` answers `451 4.3.0 <reason>`.
    /// The envelope is reset; feed again to process pipelined commands.
    ///
    /// If the session was closed meanwhile (by [`Session::timeout`]), nothing is written.
    /// Panics if no delivery is pending otherwise (a caller bug).
    pub fn delivery_done(&mut self, result: Result<String, String>, out: &mut Vec<u8>) {
        if self.phase == Phase::Closed {
            return;
        }
        assert!(
            self.phase == Phase::AwaitDelivery,
            "Session::delivery_done: no delivery pending (phase {:?})",
            self.phase
        );
        let enh = self.enhanced();
        match result {
            Ok(id) => {
                self.receptions = self.receptions.saturating_add(1);
                self.errors = 0;
                let e = enh.then_some("2.0.0");
                reply::line(out, "250", false, e, &[b"Ok: queued as ", id.as_bytes()]);
            }
            Err(why) => reply::line(out, "451", false, enh.then_some("4.3.0"), &[why.as_bytes()]),
        }
        self.tx = None;
        self.refusal = None;
        self.msg_size = 0;
        self.phase = Phase::Command;
    }

    /// Marks the session's configuration generation as stale (a reload happened): the next
    /// MAIL or RSET is answered `421 4.3.2 <host> <text>` and the session closes, so the
    /// client reconnects under the new configuration. `<text>` is `reconfig_message`, the
    /// `Reconfig_Message` of the configuration now in force (the session's own
    /// [`Params::reconfig_message`] if `None`). A transaction in progress is not disturbed.
    pub fn stale_config(&mut self, reconfig_message: Option<&str>) {
        self.stale = true;
        if let Some(text) = reconfig_message.filter(|t| *t != self.params.reconfig_message) {
            // Rare (once per session and reload): a private copy, not a field in every session.
            let mut p = Params::clone(&self.params);
            p.reconfig_message = text.to_string();
            self.params = Arc::new(p);
        }
    }

    /// The idle timer fired: appends `421 4.4.2 <host> Error: timeout exceeded`, aborts a
    /// message in progress and closes. Does nothing on a closed session. Meant for sessions
    /// waiting for input; a session with a delivery pending is floating and not reaped, but if
    /// it is, the later [`Session::delivery_done`] writes nothing.
    pub fn timeout(&mut self, out: &mut Vec<u8>, sink: &mut dyn BodySink) {
        if self.phase == Phase::Closed {
            return;
        }
        self.reset_transaction(sink);
        self.close_421(out, "4.4.2", b"Error: timeout exceeded");
    }

    /// The HELO/EHLO name (first word), the MAIL FROM address (`""` for the null sender) and
    /// the accepted recipients; empty values outside a transaction.
    pub fn envelope(&self) -> (&str, &str, &[String]) {
        let helo = self.helo.as_deref().unwrap_or("");
        match &self.tx {
            Some(tx) => (helo, &tx.mail_from, &tx.rcpts),
            None => (helo, "", &[]),
        }
    }

    /// The connection id given to [`Session::new`].
    pub fn session_id(&self) -> u64 {
        self.id
    }

    /// True when the client greeted with EHLO (for `with ESMTP` in `Received:`).
    pub fn is_esmtp(&self) -> bool {
        self.esmtp
    }

    /// True when the open transaction was started with `MAIL … SMTPUTF8`.
    pub fn is_smtputf8(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.params.smtputf8)
    }

    /// Octets of body passed to the sink for the current message.
    pub fn message_size(&self) -> u64 {
        self.msg_size
    }

    fn enhanced(&self) -> bool {
        self.params
            .extensions
            .contains(Extensions::ENHANCEDSTATUSCODES)
    }

    fn say(&self, out: &mut Vec<u8>, r: Reply) {
        let enh = self.enhanced().then_some(r.enh);
        reply::line(out, r.code, false, enh, &[r.text.as_bytes()]);
    }

    /// `421 <enh> <host> <text>` and close.
    fn close_421(&mut self, out: &mut Vec<u8>, enh: &str, text: &[u8]) {
        let e = self.enhanced().then_some(enh);
        let host = self.params.hostname.as_bytes();
        reply::line(out, "421", false, e, &[host, b" ", text]);
        self.phase = Phase::Closed;
    }

    /// `421 4.3.2 <host> <Reconfig_Message>` and close (see [`Session::stale_config`]).
    fn close_stale(&mut self, out: &mut Vec<u8>) {
        let params = Arc::clone(&self.params);
        self.close_421(out, "4.3.2", params.reconfig_message.as_bytes());
    }

    /// Drops the envelope and aborts a body in progress.
    fn reset_transaction(&mut self, sink: &mut dyn BodySink) {
        if self.sink_open {
            self.sink_open = false;
            sink.abort();
        }
        self.tx = None;
        self.refusal = None;
        self.msg_size = 0;
    }

    /// Records the first reason to refuse the body and stops passing data to the sink.
    fn refuse(&mut self, why: Refusal, sink: &mut dyn BodySink) {
        self.refusal.get_or_insert(why);
        if self.sink_open {
            self.sink_open = false;
            sink.abort();
        }
    }

    /// Passes body bytes on, unless the body is refused or would exceed the size limit.
    fn emit(&mut self, chunk: &[u8], sink: &mut dyn BodySink) {
        if chunk.is_empty() || !self.sink_open {
            return;
        }
        let size = self.msg_size.saturating_add(chunk.len() as u64);
        let max = self.params.max_message_size;
        if max > 0 && size > max {
            self.refuse(Refusal::TooBig, sink);
            return;
        }
        self.msg_size = size;
        sink.data(chunk);
    }

    fn refusal_reply(why: Refusal) -> Reply {
        match why {
            Refusal::TooBig => TOO_BIG,
            Refusal::Bare => BARE_DATA,
            Refusal::LongLine => LONG_LINE,
        }
    }
}

fn feed(consumed: usize, next: Next) -> Feed {
    Feed { consumed, next }
}

// Line framing: command lines, overlong lines, DATA text, BDAT chunks.
impl Session {
    fn step_command(&mut self, rest: &[u8], out: &mut Vec<u8>, sink: &mut dyn BodySink) -> Step {
        let window = &rest[..rest.len().min(MAX_COMMAND_LINE)];
        match find1(window, b'\n') {
            Some(p) => {
                self.command_line(&rest[..p], out, sink);
                Step::Go(p + 1)
            }
            // No LF within 512 octets: discard without buffering, answer at the LF.
            None if rest.len() >= MAX_COMMAND_LINE => {
                self.phase = Phase::SkipLine;
                Step::Go(MAX_COMMAND_LINE)
            }
            None => Step::Wait(0),
        }
    }

    fn step_skip(&mut self, rest: &[u8], out: &mut Vec<u8>) -> Step {
        match find1(rest, b'\n') {
            Some(p) => {
                self.say(out, TOO_LONG);
                self.phase = Phase::Command;
                Step::Go(p + 1)
            }
            None => Step::Wait(rest.len()),
        }
    }

    /// One command line, LF removed.
    fn command_line(&mut self, raw: &[u8], out: &mut Vec<u8>, sink: &mut dyn BodySink) {
        let (line, bare_lf) = match raw.split_last() {
            Some((b'\r', line)) => (line, false),
            _ => (raw, true),
        };
        let bare = bare_lf || find1(line, b'\r').is_some();
        if bare && self.params.bare_lf == BareLf::Reject {
            self.say(out, BARE_CMD);
            return;
        }
        self.dispatch(line, out, sink);
    }

    /// DATA text: unstuffs dots, checks line ends and lengths, finds `CRLF.CRLF`. Leaves an
    /// undecided tail (`.`, `.CR` at a line start, a CR at the end) for the next feed.
    fn step_text(&mut self, rest: &[u8], out: &mut Vec<u8>, sink: &mut dyn BodySink) -> Step {
        let mut i = 0;
        let mut run = 0;
        loop {
            if self.bol {
                match rest.get(i) {
                    None => break,
                    Some(b'.') => match (rest.get(i + 1), rest.get(i + 2)) {
                        (None, _) | (Some(b'\r'), None) => break,
                        (Some(b'\r'), Some(b'\n')) => {
                            self.emit(&rest[run..i], sink);
                            self.end_of_data(out, sink);
                            return Step::Go(i + 3);
                        }
                        _ => {
                            // RFC 5321 4.5.2: the leading dot of a longer line is removed.
                            self.emit(&rest[run..i], sink);
                            self.grow_line(1, sink);
                            i += 1;
                            run = i;
                        }
                    },
                    Some(_) => {}
                }
                self.bol = false;
            }
            let Some(k) = find2(&rest[i..], b'\r', b'\n') else {
                self.grow_line(rest.len() - i, sink);
                i = rest.len();
                break;
            };
            let p = i + k;
            if rest[p] == b'\n' {
                self.grow_line(k + 1, sink);
                self.bare_in_text(sink);
                self.line_len = 0;
                i = p + 1;
                continue;
            }
            match rest.get(p + 1) {
                None => {
                    self.grow_line(k, sink);
                    i = p;
                    break;
                }
                Some(b'\n') => {
                    self.grow_line(k + 2, sink);
                    self.line_len = 0;
                    self.bol = true;
                    i = p + 2;
                }
                Some(_) => {
                    self.grow_line(k + 1, sink);
                    self.bare_in_text(sink);
                    i = p + 1;
                }
            }
        }
        self.emit(&rest[run..i], sink);
        Step::Wait(i)
    }

    fn grow_line(&mut self, n: usize, sink: &mut dyn BodySink) {
        self.line_len = self.line_len.saturating_add(n);
        if self.line_len > self.params.max_line_length {
            self.refuse(Refusal::LongLine, sink);
        }
    }

    fn bare_in_text(&mut self, sink: &mut dyn BodySink) {
        if self.params.bare_lf == BareLf::Reject {
            self.refuse(Refusal::Bare, sink);
        }
    }

    fn end_of_data(&mut self, out: &mut Vec<u8>, sink: &mut dyn BodySink) {
        match self.refusal {
            Some(why) => {
                self.say(out, Self::refusal_reply(why));
                self.reset_transaction(sink);
                self.phase = Phase::Command;
            }
            None => {
                self.sink_open = false;
                self.phase = Phase::AwaitDelivery;
            }
        }
    }

    fn step_chunk(&mut self, rest: &[u8], out: &mut Vec<u8>, sink: &mut dyn BodySink) -> Step {
        let Phase::Chunk {
            remaining,
            size,
            last,
            verdict,
        } = self.phase
        else {
            return Step::Wait(0);
        };
        let take = remaining.min(rest.len() as u64) as usize;
        if verdict == Verdict::Accept {
            self.emit(&rest[..take], sink);
        }
        let remaining = remaining - take as u64;
        if remaining > 0 {
            self.phase = Phase::Chunk {
                remaining,
                size,
                last,
                verdict,
            };
            return Step::Wait(take);
        }
        self.phase = Phase::Command;
        self.end_of_chunk(size, last, verdict, out, sink);
        Step::Go(take)
    }

    fn end_of_chunk(
        &mut self,
        size: u64,
        last: bool,
        verdict: Verdict,
        out: &mut Vec<u8>,
        sink: &mut dyn BodySink,
    ) {
        match (verdict, self.refusal) {
            (Verdict::NeedMail, _) => self.say(out, NEED_MAIL),
            (Verdict::NoRecipients, _) => self.say(out, NO_RCPT),
            (Verdict::Accept, Some(why)) => {
                self.say(out, Self::refusal_reply(why));
                self.reset_transaction(sink);
            }
            (Verdict::Accept, None) if last => {
                self.sink_open = false;
                self.phase = Phase::AwaitDelivery;
            }
            (Verdict::Accept, None) => {
                let e = self.enhanced().then_some("2.0.0");
                let mut buf = [0; 20];
                let n = reply::decimal(&mut buf, size);
                reply::line(out, "250", false, e, &[b"Ok: ", n, b" octets received"]);
            }
        }
    }
}

// Commands.
impl Session {
    fn dispatch(&mut self, line: &[u8], out: &mut Vec<u8>, sink: &mut dyn BodySink) {
        let (verb, args) = command::split_verb(line);
        match verb {
            Verb::Ehlo | Verb::Helo => self.helo(verb == Verb::Ehlo, args, out, sink),
            Verb::Mail => self.mail(args, out),
            Verb::Rcpt => self.rcpt(args, out),
            Verb::Data => self.data(args, out, sink),
            Verb::Bdat => self.bdat(args, out, sink),
            Verb::Rset => self.rset(args, out, sink),
            Verb::Noop => self.say(out, OK),
            Verb::Quit if args.is_empty() => {
                self.reset_transaction(sink);
                self.say(out, BYE);
                self.phase = Phase::Closed;
            }
            Verb::Quit => self.say(out, SYNTAX_NOARG),
            Verb::Vrfy if args.is_empty() => self.say(out, SYNTAX_VRFY),
            Verb::Vrfy => self.say(out, VRFY),
            Verb::Help => self.say(out, HELP),
            Verb::NotImplemented => self.say(out, NOT_IMPL),
            Verb::Unknown => self.say(out, UNKNOWN),
        }
    }

    fn helo(&mut self, ehlo: bool, args: &[u8], out: &mut Vec<u8>, sink: &mut dyn BodySink) {
        let name = args.split(|&b| b == b' ').next().unwrap_or(b"");
        let name = std::str::from_utf8(name).ok().filter(|n| !n.is_empty());
        let Some(name) = name.filter(|n| !n.bytes().any(|b| b < 0x20 || b == 0x7f)) else {
            self.say(out, if ehlo { SYNTAX_EHLO } else { SYNTAX_HELO });
            return;
        };
        self.reset_transaction(sink);
        self.helo = Some(name.into());
        self.esmtp = ehlo;
        let host = self.params.hostname.as_bytes();
        if !ehlo {
            reply::line(out, "250", false, None, &[host]);
            return;
        }
        reply::line(out, "250", true, None, &[host]);
        for name in self.params.extensions.names() {
            let max = self.params.max_message_size;
            if name == "SIZE" && max > 0 {
                let mut buf = [0; 20];
                let n = reply::decimal(&mut buf, max);
                reply::line(out, "250", true, None, &[b"SIZE ", n]);
            } else {
                reply::line(out, "250", true, None, &[name.as_bytes()]);
            }
        }
        reply::line(out, "250", false, None, &[b"HELP"]);
    }

    /// Extensions usable in MAIL parameters: advertised, and the client said EHLO.
    fn allowed(&self) -> Allowed {
        let ext = self.params.extensions;
        let on = |e| self.esmtp && ext.contains(e);
        Allowed {
            size: on(Extensions::SIZE),
            eight_bit: on(Extensions::EIGHTBITMIME),
            smtputf8: on(Extensions::SMTPUTF8),
        }
    }

    fn mail(&mut self, args: &[u8], out: &mut Vec<u8>) {
        let max_rx = self.params.max_receptions_per_connection;
        if self.stale {
            return self.close_stale(out);
        }
        if max_rx > 0 && self.receptions >= max_rx {
            let text = b"Error: too many messages in this connection";
            return self.close_421(out, "4.7.0", text);
        }
        if self.params.require_ehlo && self.helo.is_none() {
            return self.say(out, NEED_HELO);
        }
        if self.tx.is_some() {
            return self.say(out, NESTED);
        }
        match self.parse_mail(args) {
            Ok(tx) => {
                self.tx = Some(Box::new(tx));
                self.say(out, MAIL_OK);
            }
            Err(reply) => self.say(out, reply),
        }
    }

    fn parse_mail(&self, args: &[u8]) -> Result<Transaction, Reply> {
        let (addr, params) = command::split_path(args, b"FROM:").map_err(|_| SYNTAX_MAIL)?;
        let params = command::mail_params(params, self.allowed()).map_err(|e| match e {
            ArgError::Unsupported => UNSUPPORTED,
            ArgError::Syntax | ArgError::Path => SYNTAX_PARAM,
        })?;
        let max = self.params.max_message_size;
        if max > 0 && params.size.is_some_and(|s| s > max) {
            return Err(TOO_BIG);
        }
        let from = address(addr, params.smtputf8, SYNTAX_MAIL)?;
        Ok(Transaction {
            mail_from: from.to_string(),
            rcpts: Vec::new(),
            params,
            mode: BodyMode::None,
        })
    }

    fn rcpt(&mut self, args: &[u8], out: &mut Vec<u8>) {
        let Some(tx) = &self.tx else {
            return self.say(out, NEED_MAIL);
        };
        if tx.mode != BodyMode::None {
            return self.say(out, RCPT_LATE);
        }
        let to = match command::split_path(args, b"TO:") {
            Ok((b"", _)) => Err(SYNTAX_RCPT),
            Ok((_, params)) if !params.is_empty() => Err(UNSUPPORTED),
            Ok((addr, _)) => address(addr, tx.params.smtputf8, SYNTAX_RCPT),
            Err(_) => Err(SYNTAX_RCPT),
        };
        let to = match to {
            Ok(to) => to.to_string(),
            Err(reply) => return self.say(out, reply),
        };
        let (per_msg, per_conn) = (
            self.params.max_recipients_per_message,
            self.params.max_recipients_per_connection,
        );
        if per_msg > 0 && tx.rcpts.len() >= per_msg as usize {
            return self.say(out, RCPT_MAX);
        }
        if per_conn > 0 && self.rcpts_conn >= per_conn {
            return self.say(out, RCPT_CONN_MAX);
        }
        self.rcpts_conn += 1;
        if let Some(tx) = &mut self.tx {
            tx.rcpts.push(to);
        }
        self.say(out, RCPT_OK);
    }

    fn data(&mut self, args: &[u8], out: &mut Vec<u8>, sink: &mut dyn BodySink) {
        if !args.is_empty() {
            return self.say(out, SYNTAX_NOARG);
        }
        let reply = match &mut self.tx {
            None => NEED_MAIL,
            Some(tx) if tx.mode == BodyMode::Chunks => MIXED,
            Some(tx) if tx.rcpts.is_empty() => NO_RCPT,
            Some(tx) => {
                tx.mode = BodyMode::Data;
                GO_AHEAD
            }
        };
        self.say(out, reply);
        if reply == GO_AHEAD {
            self.start_body(sink);
            self.phase = Phase::Text;
            self.bol = true;
            self.line_len = 0;
        }
    }

    fn start_body(&mut self, sink: &mut dyn BodySink) {
        self.msg_size = 0;
        self.refusal = None;
        self.sink_open = true;
        sink.start();
    }

    fn bdat(&mut self, args: &[u8], out: &mut Vec<u8>, sink: &mut dyn BodySink) {
        if !(self.esmtp && self.params.extensions.contains(Extensions::CHUNKING)) {
            return self.say(out, NOT_IMPL);
        }
        let Some((size, last)) = command::parse_bdat(args) else {
            // The chunk cannot be framed: its octets would be read as commands.
            self.say(out, SYNTAX_BDAT);
            self.phase = Phase::Closed;
            return;
        };
        let verdict = match &mut self.tx {
            None => Verdict::NeedMail,
            Some(tx) if tx.rcpts.is_empty() => Verdict::NoRecipients,
            Some(tx) => {
                let first = tx.mode == BodyMode::None;
                tx.mode = BodyMode::Chunks;
                if first {
                    self.start_body(sink);
                }
                Verdict::Accept
            }
        };
        let max = self.params.max_message_size;
        if verdict == Verdict::Accept && max > 0 && self.msg_size.saturating_add(size) > max {
            self.refuse(Refusal::TooBig, sink);
        }
        self.phase = Phase::Chunk {
            remaining: size,
            size,
            last,
            verdict,
        };
    }

    fn rset(&mut self, args: &[u8], out: &mut Vec<u8>, sink: &mut dyn BodySink) {
        if !args.is_empty() {
            return self.say(out, SYNTAX_NOARG);
        }
        self.reset_transaction(sink);
        if self.stale {
            return self.close_stale(out);
        }
        self.say(out, OK);
    }
}

/// The address as UTF-8; non-ASCII only with SMTPUTF8.
fn address(addr: &[u8], smtputf8: bool, syntax: Reply) -> Result<&str, Reply> {
    let s = std::str::from_utf8(addr).map_err(|_| syntax)?;
    if !s.is_ascii() && !smtputf8 {
        return Err(NEED_UTF8);
    }
    Ok(s)
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
