//! SMTP reply lines (no C counterpart; the C module formats with `snprintf`).
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

/// Appends the decimal form of `n`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
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
            push_u64(&mut out, n);
            out.push(b' ');
        }
        assert_eq!(out, b"0 7 10 1234567890 18446744073709551615 ");
    }
}
