//! The `Received:` trace header (C: the `esmtp` module's received-header builder).
//!
//! [`received_header`] builds the RFC 5321 section 4.4 time stamp line a receiver prepends to
//! every accepted message; [`rfc5322_date`] formats a `SystemTime` as an RFC 5322 date in UTC
//! (`Wed, 25 Nov 2026 10:31:57 +0000`) with std only, through the days-to-civil algorithm
//! (H. Hinnant, "chrono-compatible low-level date algorithms").
//!
//! Contract: pure functions; the values are written as given except that CR, LF and other
//! control characters are replaced by `?`, so a hostile HELO name cannot fold or end the
//! header. The header is folded with CRLF + TAB and ends with CRLF.
//!
//! Diagnostics: none; nothing panics (times before 1970 are formatted too).

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The values written into one `Received:` header.
#[derive(Clone, Debug)]
pub struct ReceivedInfo<'a> {
    /// The name the client gave in HELO/EHLO (`""` if it gave none: the address literal is
    /// written instead).
    pub helo: &'a str,
    /// The client's address.
    pub peer_ip: IpAddr,
    /// This server's name (`Received_Hostname`).
    pub by_host: &'a str,
    /// The `with` keyword, usually from [`with_keyword`].
    pub protocol: &'a str,
    /// The queue or session id.
    pub id: &'a str,
    /// The recipient, written as `for <rcpt>` (pass it only for single-recipient messages).
    pub for_rcpt: Option<&'a str>,
    /// When the message was received.
    pub time: SystemTime,
}

/// The RFC 3848 / RFC 6531 `with` keyword: `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA`,
/// or their `UTF8SMTP…` forms when the transaction used SMTPUTF8.
pub fn with_keyword(ehlo: bool, tls: bool, auth: bool, smtputf8: bool) -> &'static str {
    match (smtputf8, ehlo, tls, auth) {
        (true, _, false, false) => "UTF8SMTP",
        (true, _, true, false) => "UTF8SMTPS",
        (true, _, false, true) => "UTF8SMTPA",
        (true, _, true, true) => "UTF8SMTPSA",
        (false, false, _, _) => "SMTP",
        (false, true, false, false) => "ESMTP",
        (false, true, true, false) => "ESMTPS",
        (false, true, false, true) => "ESMTPA",
        (false, true, true, true) => "ESMTPSA",
    }
}

/// Builds `Received: from <helo> ([<ip>])\r\n\tby <host> (netlistener) with <proto> id <id>
/// \r\n\t[for <rcpt>]; <date>\r\n`; IPv6 peers are written `[IPv6:…]` (RFC 5321 4.1.3).
/// Without a HELO name the `From-domain` is the address literal, `from [<ip>] ([<ip>])`
/// (RFC 5321 4.4: `Extended-Domain` is a domain or an address literal, never empty).
pub fn received_header(info: &ReceivedInfo<'_>) -> String {
    let ip = match info.peer_ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("IPv6:{a}"),
    };
    let mut h = String::with_capacity(160);
    h.push_str("Received: from ");
    match info.helo {
        "" => {
            h.push('[');
            h.push_str(&ip);
            h.push(']');
        }
        helo => push_clean(&mut h, helo),
    }
    h.push_str(" ([");
    h.push_str(&ip);
    h.push_str("])\r\n\tby ");
    push_clean(&mut h, info.by_host);
    h.push_str(" (netlistener) with ");
    push_clean(&mut h, info.protocol);
    h.push_str(" id ");
    push_clean(&mut h, info.id);
    if let Some(rcpt) = info.for_rcpt {
        h.push_str("\r\n\tfor <");
        push_clean(&mut h, rcpt);
        h.push('>');
    }
    h.push_str("; ");
    h.push_str(&rfc5322_date(info.time));
    h.push_str("\r\n");
    h
}

fn push_clean(h: &mut String, s: &str) {
    h.extend(s.chars().map(|c| if c.is_control() { '?' } else { c }));
}

/// `time` as an RFC 5322 date in UTC, e.g. `Thu, 1 Jan 1970 00:00:00 +0000`.
pub fn rfc5322_date(time: SystemTime) -> String {
    let secs: i64 = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -s - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WD[days.rem_euclid(7) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// (year, month 1..=12, day 1..=31) of the day `z` days after 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn known_dates() {
        assert_eq!(rfc5322_date(at(0)), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(at(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
        assert_eq!(
            rfc5322_date(at(1_234_567_890)),
            "Fri, 13 Feb 2009 23:31:30 +0000"
        );
        assert_eq!(
            rfc5322_date(at(4_102_444_799)),
            "Thu, 31 Dec 2099 23:59:59 +0000"
        );
        assert_eq!(
            rfc5322_date(at(1_795_602_717)),
            "Wed, 25 Nov 2026 10:31:57 +0000"
        );
        assert_eq!(
            rfc5322_date(UNIX_EPOCH - Duration::from_secs(1)),
            "Wed, 31 Dec 1969 23:59:59 +0000"
        );
    }

    /// Every day for 600 years: consecutive, valid dates and weekdays.
    #[test]
    fn civil_dates_are_consecutive() {
        let mut prev = civil_from_days(-100_000);
        for z in -99_999..120_000 {
            let cur = civil_from_days(z);
            let next_day = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(
                cur == next_day || cur == next_month || cur == next_year,
                "{prev:?} -> {cur:?}"
            );
            prev = cur;
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }

    #[test]
    fn header_layout() {
        let info = ReceivedInfo {
            helo: "client.example",
            peer_ip: "192.0.2.7".parse().unwrap(),
            by_host: "mx.example",
            protocol: with_keyword(true, false, false, false),
            id: "Q1",
            for_rcpt: Some("a@b.example"),
            time: at(0),
        };
        assert_eq!(
            received_header(&info),
            "Received: from client.example ([192.0.2.7])\r\n\tby mx.example (netlistener) \
             with ESMTP id Q1\r\n\tfor <a@b.example>; Thu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
        let info = ReceivedInfo {
            helo: "evil\r\nX: y",
            peer_ip: "2001:db8::1".parse().unwrap(),
            for_rcpt: None,
            protocol: with_keyword(false, false, false, false),
            ..info
        };
        let h = received_header(&info);
        assert!(
            h.starts_with("Received: from evil??X: y ([IPv6:2001:db8::1])\r\n"),
            "{h}"
        );
        assert!(h.contains("with SMTP id Q1; Thu,"), "{h}");
    }

    #[test]
    fn no_helo_writes_the_address_literal() {
        let info = ReceivedInfo {
            helo: "",
            peer_ip: "127.0.0.1".parse().unwrap(),
            by_host: "mx.example",
            protocol: "SMTP",
            id: "Q1",
            for_rcpt: None,
            time: at(0),
        };
        let h = received_header(&info);
        assert!(
            h.starts_with("Received: from [127.0.0.1] ([127.0.0.1])\r\n"),
            "{h}"
        );
        let v6 = ReceivedInfo {
            peer_ip: "::1".parse().unwrap(),
            ..info
        };
        let h = received_header(&v6);
        assert!(
            h.starts_with("Received: from [IPv6:::1] ([IPv6:::1])\r\n"),
            "{h}"
        );
    }

    #[test]
    fn with_keywords() {
        assert_eq!(with_keyword(true, true, true, false), "ESMTPSA");
        assert_eq!(with_keyword(true, true, false, false), "ESMTPS");
        assert_eq!(with_keyword(false, true, false, false), "SMTP");
        assert_eq!(with_keyword(true, false, false, true), "UTF8SMTP");
    }
}
