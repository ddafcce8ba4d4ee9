//! SMTP command line parsing (C: the `esmtp` module's command table and path parser).
//!
//! A command line (CRLF already removed) is split into a [`Verb`] and its argument bytes;
//! MAIL/RCPT arguments are parsed into a path and ESMTP parameters. Everything borrows from
//! the line: no allocation happens here.
//!
//! Contract: the input is one line without its line ending; no length limit is enforced here
//! (the session caps command lines at 512 octets before calling in).
//!
//! Diagnostics: parse failures are returned as values the session maps to 501/555 replies;
//! nothing panics.

/// A recognised command verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    /// Known to RFC 5321 or a common extension, not implemented here (EXPN, TURN, AUTH, …).
    NotImplemented,
    Unknown,
}

/// Splits `line` into its verb and the argument bytes (leading/trailing blanks removed).
pub(crate) fn split_verb(line: &[u8]) -> (Verb, &[u8]) {
    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let args = trim(&line[end..]);
    let verb = &line[..end];
    if verb.len() != 4 {
        let ni = verb.eq_ignore_ascii_case(b"STARTTLS");
        return (
            if ni {
                Verb::NotImplemented
            } else {
                Verb::Unknown
            },
            args,
        );
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(verb);
    v.make_ascii_uppercase();
    let verb = match &v {
        b"EHLO" => Verb::Ehlo,
        b"HELO" => Verb::Helo,
        b"MAIL" => Verb::Mail,
        b"RCPT" => Verb::Rcpt,
        b"DATA" => Verb::Data,
        b"BDAT" => Verb::Bdat,
        b"RSET" => Verb::Rset,
        b"NOOP" => Verb::Noop,
        b"QUIT" => Verb::Quit,
        b"VRFY" => Verb::Vrfy,
        b"HELP" => Verb::Help,
        b"EXPN" | b"TURN" | b"ETRN" | b"ATRN" | b"AUTH" | b"SEND" | b"SOML" | b"SAML" => {
            Verb::NotImplemented
        }
        _ => Verb::Unknown,
    };
    (verb, args)
}

/// `s` without leading and trailing spaces and tabs.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !blank(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !blank(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// Why a MAIL/RCPT argument was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArgError {
    /// `FROM:`/`TO:` missing or the path is malformed: 501.
    Path,
    /// A parameter is malformed (`SIZE=abc`): 501.
    Syntax,
    /// A parameter of an extension that is not advertised, or unknown: 555.
    Unsupported,
}

/// Splits `FROM:<path> params` (or `TO:`): returns the address inside the angle brackets
/// (source route removed) and the parameter text. `keyword` is `b"FROM:"` or `b"TO:"`.
pub(crate) fn split_path<'a>(
    args: &'a [u8],
    keyword: &[u8],
) -> Result<(&'a [u8], &'a [u8]), ArgError> {
    if args.len() < keyword.len() || !args[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return Err(ArgError::Path);
    }
    let rest = trim(&args[keyword.len()..]);
    if rest.first() != Some(&b'<') {
        return Err(ArgError::Path);
    }
    let close = closing_bracket(rest).ok_or(ArgError::Path)?;
    let params = &rest[close + 1..];
    if !params.is_empty() && params[0] != b' ' {
        return Err(ArgError::Path);
    }
    let mut addr = &rest[1..close];
    if addr.first() == Some(&b'@') {
        // RFC 5321 4.1.1.3: a source route is accepted and ignored.
        let colon = addr.iter().position(|&b| b == b':').ok_or(ArgError::Path)?;
        addr = &addr[colon + 1..];
        if addr.is_empty() {
            return Err(ArgError::Path);
        }
    }
    Ok((addr, trim(params)))
}

/// Offset of the `>` closing the path that starts at `s[0] == '<'`; quoted strings may hold
/// any printable octet. Control octets, unquoted blanks and a second `<` are refused.
fn closing_bracket(s: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut i = 1;
    while i < s.len() {
        let b = s[i];
        if b < 0x20 || b == 0x7f {
            return None;
        }
        match (quoted, b) {
            (true, b'\\') => i += 1,
            (true, b'"') => quoted = false,
            (false, b'"') => quoted = true,
            (false, b'>') => return Some(i),
            (false, b'<' | b' ' | b'\t') => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The MAIL parameters the engine understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MailParams {
    /// `SIZE=n` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=8BITMIME` (RFC 6152).
    pub eight_bit: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
}

/// Which parameters may be used: the extensions advertised to this client.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Allowed {
    pub size: bool,
    pub eight_bit: bool,
    pub smtputf8: bool,
}

/// Parses the blank-separated `KEY[=VALUE]` parameters of MAIL.
pub(crate) fn mail_params(params: &[u8], allowed: Allowed) -> Result<MailParams, ArgError> {
    let mut p = MailParams::default();
    for item in params.split(|&b| b == b' ').filter(|s| !s.is_empty()) {
        let eq = item.iter().position(|&b| b == b'=');
        let (key, value) = match eq {
            Some(i) => (&item[..i], Some(&item[i + 1..])),
            None => (item, None),
        };
        if key.eq_ignore_ascii_case(b"SIZE") && allowed.size {
            p.size = Some(parse_u64(value.ok_or(ArgError::Syntax)?).ok_or(ArgError::Syntax)?);
        } else if key.eq_ignore_ascii_case(b"BODY") && allowed.eight_bit {
            match value {
                Some(v) if v.eq_ignore_ascii_case(b"8BITMIME") => p.eight_bit = true,
                Some(v) if v.eq_ignore_ascii_case(b"7BIT") => p.eight_bit = false,
                Some(_) => return Err(ArgError::Unsupported),
                None => return Err(ArgError::Syntax),
            }
        } else if key.eq_ignore_ascii_case(b"SMTPUTF8") && allowed.smtputf8 {
            if value.is_some() {
                return Err(ArgError::Syntax);
            }
            p.smtputf8 = true;
        } else {
            return Err(ArgError::Unsupported);
        }
    }
    Ok(p)
}

/// A decimal number of at most 20 digits that fits in `u64`.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// `BDAT <size> [LAST]`.
pub(crate) fn parse_bdat(args: &[u8]) -> Option<(u64, bool)> {
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let size = parse_u64(words.next()?)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Allowed = Allowed {
        size: true,
        eight_bit: true,
        smtputf8: true,
    };

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            split_verb(b"ehlo  mx.example "),
            (Verb::Ehlo, &b"mx.example"[..])
        );
        assert_eq!(split_verb(b"MaIl FROM:<>"), (Verb::Mail, &b"FROM:<>"[..]));
        assert_eq!(split_verb(b"QUIT"), (Verb::Quit, &b""[..]));
        assert_eq!(split_verb(b"expn list").0, Verb::NotImplemented);
        assert_eq!(split_verb(b"StartTLS").0, Verb::NotImplemented);
        assert_eq!(split_verb(b"QUITX").0, Verb::Unknown);
        assert_eq!(split_verb(b"").0, Verb::Unknown);
    }

    #[test]
    fn paths() {
        assert_eq!(split_path(b"FROM:<>", b"FROM:"), Ok((&b""[..], &b""[..])));
        assert_eq!(
            split_path(b"from: <a@b.example> SIZE=10", b"FROM:"),
            Ok((&b"a@b.example"[..], &b"SIZE=10"[..]))
        );
        assert_eq!(
            split_path(b"TO:<@r1,@r2:u@d>", b"TO:"),
            Ok((&b"u@d"[..], &b""[..]))
        );
        assert_eq!(
            split_path(b"TO:<\"a >b\"@d>", b"TO:"),
            Ok((&b"\"a >b\"@d"[..], &b""[..]))
        );
        for bad in [
            &b"FROM:a@b"[..],
            b"FROM:<a@b",
            b"FROM:<a b@c>",
            b"FROM:<a@b>x",
            b"TO:<a@b>",
            b"FROM:<a\x01@b>",
            b"FROM:<@r>",
            b"FROM",
        ] {
            assert_eq!(split_path(bad, b"FROM:"), Err(ArgError::Path), "{bad:?}");
        }
    }

    #[test]
    fn mail_parameters() {
        let p = mail_params(b"SIZE=1000 body=8BITMIME SMTPUTF8", ALL).unwrap();
        assert_eq!(p.size, Some(1000));
        assert!(p.eight_bit && p.smtputf8);
        assert_eq!(mail_params(b"SIZE=x", ALL), Err(ArgError::Syntax));
        assert_eq!(mail_params(b"SIZE", ALL), Err(ArgError::Syntax));
        assert_eq!(
            mail_params(b"BODY=BINARYMIME", ALL),
            Err(ArgError::Unsupported)
        );
        assert_eq!(mail_params(b"FOO=1", ALL), Err(ArgError::Unsupported));
        let none = Allowed {
            size: false,
            eight_bit: false,
            smtputf8: false,
        };
        assert_eq!(mail_params(b"SIZE=1", none), Err(ArgError::Unsupported));
        assert_eq!(
            mail_params(b"BODY=8BITMIME", none),
            Err(ArgError::Unsupported)
        );
        assert_eq!(mail_params(b"SMTPUTF8", none), Err(ArgError::Unsupported));
    }

    #[test]
    fn bdat_arguments() {
        assert_eq!(parse_bdat(b"10"), Some((10, false)));
        assert_eq!(parse_bdat(b"0  last"), Some((0, true)));
        assert_eq!(parse_bdat(b"10 LAST x"), None);
        assert_eq!(parse_bdat(b"10 FIRST"), None);
        assert_eq!(parse_bdat(b"-1"), None);
        assert_eq!(parse_bdat(b""), None);
    }

    #[test]
    fn numbers_refuse_overflow() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b""), None);
    }
}
