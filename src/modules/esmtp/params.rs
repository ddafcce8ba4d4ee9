//! Per-session settings of the SMTP engine (C: the `esmtp` module's option values, e.g.
//! `SMTP_Extensions`, `Static_Banner`, `Max_Message_Size`).
//!
//! [`Params`] is plain data that the glue fills from the configuration generation a session
//! started with; the engine reads it through an `Arc`, so one value serves every session of a
//! listener/peer scope. [`Extensions`] is the advertised-extension bitset parsed from the
//! `SMTP_Extensions` list.
//!
//! Contract: any field value is accepted by the engine without panicking; [`Params::validate`]
//! reports the values that would make the server misbehave (a banner that is not a `220` line,
//! a line limit below 3 octets) so the configuration layer can refuse them at load time.
//!
//! Diagnostics: [`Extensions::from_names`] and [`Params::validate`] return `Err` with a message
//! naming the offending value; nothing panics or logs.

use std::fmt;
use std::ops::BitOr;

/// The set of ESMTP extensions a session advertises in its EHLO reply.
///
/// C: the `SMTP_Extensions` option of `ESMTP_Listener`.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Extensions(u8);

/// Names as written in the EHLO reply and in `SMTP_Extensions`, in advertising order.
const NAMES: [(&str, Extensions); 6] = [
    ("PIPELINING", Extensions::PIPELINING),
    ("SIZE", Extensions::SIZE),
    ("8BITMIME", Extensions::EIGHTBITMIME),
    ("ENHANCEDSTATUSCODES", Extensions::ENHANCEDSTATUSCODES),
    ("SMTPUTF8", Extensions::SMTPUTF8),
    ("CHUNKING", Extensions::CHUNKING),
];

impl Extensions {
    /// No extension.
    pub const NONE: Extensions = Extensions(0);
    /// RFC 2920 command pipelining.
    pub const PIPELINING: Extensions = Extensions(1);
    /// RFC 1870 message size declaration (`SIZE=` on MAIL).
    pub const SIZE: Extensions = Extensions(2);
    /// RFC 6152 8-bit MIME transport (`BODY=8BITMIME` on MAIL).
    pub const EIGHTBITMIME: Extensions = Extensions(4);
    /// RFC 2034 enhanced status codes (RFC 3463 `x.y.z` in replies).
    pub const ENHANCEDSTATUSCODES: Extensions = Extensions(8);
    /// RFC 6531 internationalised email (`SMTPUTF8` on MAIL).
    pub const SMTPUTF8: Extensions = Extensions(16);
    /// RFC 3030 `BDAT` chunking.
    pub const CHUNKING: Extensions = Extensions(32);
    /// Every extension the engine implements.
    pub const ALL: Extensions = Extensions(63);

    /// True when every extension of `other` is in `self`.
    pub fn contains(self, other: Extensions) -> bool {
        self.0 & other.0 == other.0
    }

    /// The extension called `name` (case-insensitive, surrounding blanks ignored;
    /// `EIGHTBITMIME` is accepted as an alias of `8BITMIME`), or `None` if unknown.
    pub fn from_name(name: &str) -> Option<Extensions> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("EIGHTBITMIME") {
            return Some(Extensions::EIGHTBITMIME);
        }
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, e)| e)
    }

    /// Parses a list of names such as the items of `SMTP_Extensions = PIPELINING, SIZE`.
    /// Empty items (a trailing comma) are skipped.
    ///
    /// Errors: the first unknown name, quoted, with the list of known names.
    pub fn from_names<I, S>(names: I) -> Result<Extensions, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = Extensions::NONE;
        for name in names {
            let name = name.as_ref();
            if name.trim().is_empty() {
                continue;
            }
            match Extensions::from_name(name) {
                Some(e) => set = set | e,
                None => {
                    let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "unknown SMTP extension \"{}\" (known: {})",
                        name.trim(),
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(set)
    }

    /// The names of the extensions in the set, in EHLO advertising order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        NAMES
            .iter()
            .filter(move |(_, e)| self.contains(*e))
            .map(|(n, _)| *n)
    }
}

impl BitOr for Extensions {
    type Output = Extensions;
    fn bitor(self, rhs: Extensions) -> Extensions {
        Extensions(self.0 | rhs.0)
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// What to do with a line feed that is not preceded by a carriage return (or a carriage
/// return not followed by a line feed).
///
/// C: the `Bare_LF` option.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum BareLf {
    /// Refuse: a command line ending in a bare LF is answered `500 5.5.2`, a message containing
    /// one is refused at the end of data with `554 5.5.2`. This closes SMTP smuggling.
    #[default]
    Reject,
    /// Tolerate: a bare LF ends a command line, and is kept as data in a message. It never
    /// ends a message: only `CRLF.CRLF` does.
    Allow,
}

/// Everything a session needs from the configuration; cheap to share through an `Arc`.
///
/// C: the option values of an `ESMTP_Listener` scope resolved for one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Name announced in the banner, the EHLO reply and 421 replies (`Banner_Hostname`).
    pub hostname: String,
    /// A complete banner line replacing the default one (`Static_Banner`); it should be
    /// `220 ` and a text (see [`Params::validate`]).
    pub static_banner: Option<String>,
    /// Extensions advertised in reply to EHLO (`SMTP_Extensions`).
    pub extensions: Extensions,
    /// Largest accepted message in octets, 0 = unlimited; advertised with SIZE.
    pub max_message_size: u64,
    /// Recipients accepted per message, 0 = unlimited; over it RCPT gets `452 4.5.3`.
    pub max_recipients_per_message: u32,
    /// Recipients accepted per connection, 0 = unlimited; over it RCPT gets `452 4.5.3`.
    pub max_recipients_per_connection: u32,
    /// Messages accepted per connection, 0 = unlimited; the next MAIL after the limit gets
    /// `421 4.7.0` and the connection is closed.
    pub max_receptions_per_connection: u32,
    /// Refusals (4xx/5xx replies to the client's commands and messages) allowed per
    /// connection before it is closed with `421 4.7.0`, 0 = unlimited; the count restarts
    /// when a message is accepted (Postfix's `smtpd_hard_error_limit`).
    pub max_errors_per_connection: u32,
    /// MAIL before EHLO/HELO is refused with `503 5.5.1` (`Require_EHLO`).
    pub require_ehlo: bool,
    /// Longest message text line in octets including CRLF (RFC 5321 4.5.3.1.6: 1000).
    /// Command lines are always limited to 512 octets.
    pub max_line_length: usize,
    /// Treatment of bare LF / bare CR (`Bare_LF`).
    pub bare_lf: BareLf,
    /// Text of the `421 4.3.2` reply sent when the configuration changed under the session.
    pub reconfig_message: String,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            hostname: "localhost".to_string(),
            static_banner: None,
            extensions: Extensions::PIPELINING
                | Extensions::SIZE
                | Extensions::EIGHTBITMIME
                | Extensions::ENHANCEDSTATUSCODES,
            max_message_size: 10_240_000,
            max_recipients_per_message: 100,
            max_recipients_per_connection: 0,
            max_receptions_per_connection: 0,
            max_errors_per_connection: 20,
            require_ehlo: false,
            max_line_length: 1000,
            bare_lf: BareLf::Reject,
            reconfig_message: "Service reconfigured, please reconnect".to_string(),
        }
    }
}

impl Params {
    /// Checks the values the engine would otherwise have to work around: a static banner
    /// that is not a single `220` line, text with CR or LF in it, an empty hostname, a line
    /// limit below 3 octets.
    ///
    /// Errors: a message naming the option (`Static_Banner`, `Banner_Hostname`, …).
    pub fn validate(&self) -> Result<(), String> {
        let bad_text = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n');
        if self.hostname.is_empty() || bad_text(&self.hostname) || self.hostname.contains(' ') {
            return Err(format!(
                "Banner_Hostname: invalid host name {:?}",
                self.hostname
            ));
        }
        if let Some(b) = &self.static_banner {
            if let Err(why) = banner_ok(b) {
                return Err(format!("Static_Banner: {why}"));
            }
        }
        if bad_text(&self.reconfig_message) {
            return Err("reconfiguration message: must be one line".to_string());
        }
        if self.max_line_length < 3 {
            return Err(format!(
                "max line length {} is below 3 octets",
                self.max_line_length
            ));
        }
        Ok(())
    }
}

/// Checks a `Static_Banner` line: `220 `, then a text that is not blank (RFC 5321 4.2: the
/// greeting names the server), no control characters.
///
/// Errors: why the line is refused, with the line quoted.
pub fn banner_ok(b: &str) -> Result<(), String> {
    let text = b.strip_prefix("220 ").unwrap_or("");
    if text.trim().is_empty() || b.bytes().any(|c| c < b' ' || c == 0x7f) {
        return Err(format!(
            "must be one line of \"220 \" followed by a text: {b:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_names_parse_case_insensitively() {
        let e = Extensions::from_names(["pipelining", " Size ", "8bitmime", ""]).unwrap();
        assert!(e.contains(Extensions::PIPELINING | Extensions::SIZE));
        assert!(e.contains(Extensions::EIGHTBITMIME));
        assert!(!e.contains(Extensions::CHUNKING));
        assert_eq!(
            Extensions::from_name("EIGHTBITMIME"),
            Some(Extensions::EIGHTBITMIME)
        );
    }

    #[test]
    fn unknown_extension_is_named_in_the_error() {
        let err = Extensions::from_names(["SIZE", "STARTTLS"]).unwrap_err();
        assert!(err.contains("\"STARTTLS\""), "{err}");
    }

    #[test]
    fn names_come_out_in_advertising_order() {
        let e = Extensions::CHUNKING | Extensions::PIPELINING | Extensions::SMTPUTF8;
        let v: Vec<_> = e.names().collect();
        assert_eq!(v, ["PIPELINING", "SMTPUTF8", "CHUNKING"]);
        assert_eq!(Extensions::ALL.names().count(), 6);
    }

    #[test]
    fn validate_rejects_bad_banner_and_limits() {
        assert!(Params::default().validate().is_ok());
        let mut p = Params {
            static_banner: Some("250 hello".into()),
            ..Params::default()
        };
        assert!(p.validate().unwrap_err().starts_with("Static_Banner"));
        p.static_banner = Some("220 mx ready\r\n250 x".into());
        assert!(p.validate().is_err());
        p.static_banner = Some("220 mx.example ready".into());
        assert!(p.validate().is_ok());
        for bad in ["220", "220 ", "220   ", "220-mx ready", "220mx"] {
            p.static_banner = Some(bad.into());
            assert!(p.validate().is_err(), "{bad:?}");
        }
        p.static_banner = None;
        p.max_line_length = 2;
        assert!(p.validate().is_err());
    }
}
