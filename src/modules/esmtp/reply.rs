//! SMTP reply lines and the session's reply table (no C counterpart; the C module formats
//! with `snprintf`).
//!
//! Replies are written straight into the caller's output buffer: the code, the RFC 3463
//! enhanced status code when the session advertises ENHANCEDSTATUSCODES, the text pieces,
//! CRLF. No `format!` and no allocation other than the growth of `out`.
//!
//! Contract: text pieces may come from configuration or from the glue (a queue id, a
//! delivery error); any CR or LF in them is written as a space so a piece can never start a
//! new reply line.
//!
//! Diagnostics: none; nothing panics.

/// A fixed reply: code, enhanced code (`""` for none) and text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub code: &'static str,
    pub enh: &'static str,
    pub text: &'static str,
}

/// Shorthand for a [`Reply`] constant.
pub(crate) const fn r(code: &'static str, enh: &'static str, text: &'static str) -> Reply {
    Reply { code, enh, text }
}

/// Appends `text`, writing CR and LF as spaces.
pub(crate) fn push_text(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(text.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
}

/// The decimal form of `n`, written at the end of `buf`.
pub(crate) fn decimal(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends `code[-| ]enh text...CRLF`; `more` selects the `250-` continuation form.
pub(crate) fn line(out: &mut Vec<u8>, code: &str, more: bool, enh: Option<&str>, parts: &[&[u8]]) {
    out.extend_from_slice(code.as_bytes());
    out.push(if more { b'-' } else { b' ' });
    if let Some(e) = enh.filter(|e| !e.is_empty()) {
        out.extend_from_slice(e.as_bytes());
        out.push(b' ');
    }
    for p in parts {
        push_text(out, p);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `text` (CR and LF written as spaces) and CRLF.
pub(crate) fn line_raw(out: &mut Vec<u8>, text: &[u8]) {
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

// The replies of the session; the module documentation of `protocol` tabulates them.
pub(crate) const OK: Reply = r("250", "2.0.0", "Ok");
pub(crate) const MAIL_OK: Reply = r("250", "2.1.0", "Ok");
pub(crate) const RCPT_OK: Reply = r("250", "2.1.5", "Ok");
pub(crate) const BYE: Reply = r("221", "2.0.0", "Bye");
pub(crate) const GO_AHEAD: Reply = r("354", "", "End data with <CR><LF>.<CR><LF>");
pub(crate) const VRFY: Reply = r(
    "252",
    "2.0.0",
    "Cannot VRFY user, but will accept message and attempt delivery",
);
pub(crate) const HELP: Reply = r(
    "214",
    "2.0.0",
    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
);
pub(crate) const UNKNOWN: Reply = r("500", "5.5.2", "Error: command not recognized");
pub(crate) const TOO_LONG: Reply = r("500", "5.5.0", "Error: command line too long");
pub(crate) const BARE_CMD: Reply = r("500", "5.5.2", "Error: bare <CR> or <LF> in command line");
pub(crate) const NOT_IMPL: Reply = r("502", "5.5.1", "Error: command not implemented");
pub(crate) const SYNTAX_EHLO: Reply = r("501", "5.5.4", "Syntax: EHLO hostname");
pub(crate) const SYNTAX_HELO: Reply = r("501", "5.5.4", "Syntax: HELO hostname");
pub(crate) const SYNTAX_MAIL: Reply = r("501", "5.1.7", "Syntax: MAIL FROM:<address>");
pub(crate) const SYNTAX_RCPT: Reply = r("501", "5.1.3", "Syntax: RCPT TO:<address>");
pub(crate) const SYNTAX_PARAM: Reply = r("501", "5.5.4", "Error: malformed parameter");
pub(crate) const SYNTAX_NOARG: Reply = r("501", "5.5.4", "Syntax: this command takes no argument");
pub(crate) const SYNTAX_VRFY: Reply = r("501", "5.5.4", "Syntax: VRFY address");
pub(crate) const SYNTAX_BDAT: Reply = r("501", "5.5.4", "Syntax: BDAT count [LAST]");
pub(crate) const UNSUPPORTED: Reply = r("555", "5.5.4", "Error: unsupported parameter");
pub(crate) const NEED_UTF8: Reply = r("553", "5.6.7", "Error: non-ASCII address requires SMTPUTF8");
pub(crate) const NEED_HELO: Reply = r("503", "5.5.1", "Error: send HELO/EHLO first");
pub(crate) const NESTED: Reply = r("503", "5.5.1", "Error: nested MAIL command");
pub(crate) const NEED_MAIL: Reply = r("503", "5.5.1", "Error: need MAIL command");
pub(crate) const MIXED: Reply = r("503", "5.5.1", "Error: DATA and BDAT cannot be mixed");
pub(crate) const RCPT_LATE: Reply = r("503", "5.5.1", "Error: RCPT after message data");
pub(crate) const NO_RCPT: Reply = r("554", "5.5.1", "Error: no valid recipients");
pub(crate) const TOO_BIG: Reply = r("552", "5.3.4", "Error: message size exceeds fixed limit");
pub(crate) const BARE_DATA: Reply = r("554", "5.5.2", "Error: bare <CR> or <LF> in message data");
pub(crate) const LONG_LINE: Reply = r("500", "5.5.0", "Error: message line too long");
pub(crate) const RCPT_MAX: Reply = r("452", "4.5.3", "Error: too many recipients");
pub(crate) const RCPT_CONN_MAX: Reply = r(
    "452",
    "4.5.3",
    "Error: too many recipients for this connection",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_with_and_without_enhanced_code() {
        let mut out = Vec::new();
        line(&mut out, "250", false, Some("2.1.0"), &[b"Ok"]);
        line(&mut out, "250", true, None, &[b"mx"]);
        line(&mut out, "250", false, Some(""), &[b"a", b"b"]);
        assert_eq!(out, b"250 2.1.0 Ok\r\n250-mx\r\n250 ab\r\n");
    }

    #[test]
    fn text_cannot_inject_lines() {
        let mut out = Vec::new();
        line(&mut out, "451", false, None, &[b"disk\r\n250 ok"]);
        assert_eq!(out, b"451 disk  250 ok\r\n");
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            out.extend_from_slice(decimal(&mut [0; 20], n));
            out.push(b' ');
        }
        assert_eq!(out, b"0 7 10 1234567890 18446744073709551615 ");
    }
}
