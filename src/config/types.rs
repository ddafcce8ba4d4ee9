//! C: `ECCFGTYPE_*` and the `ec_config_value` parsers
//!
//! Option types, typed values and the parsers behind them.
//!
//! Every option has an [`OptionType`]; [`OptionType::parse`] turns the text written in a file
//! (or given to `config set`) into a [`Value`], and `Display` for [`Value`] writes it back in
//! a form the same parser accepts, so `config show` round-trips. The address types used by
//! scopes live here too: [`Cidr`] (Peer instances), [`ListenAddr`] (Listen instances) and
//! [`PeerAddr`] (the remote end of a session, used for Peer lookups).
//!
//! Contract:
//! - Scalar values may be wrapped in one pair of double quotes (`"text"`); the quotes are
//!   removed. Lists keep their quotes per item: `"a, b", c` is two items.
//! - Booleans: true/false, yes/no, on/off, 1/0 (any case). Durations: an integer of seconds, or
//!   an integer with `ms`, `s`, `m` or `h`. Sizes: an integer of bytes, or with `k`, `m`, `g`
//!   (powers of 1024, any case). Modes: octal digits (`0660` or `660`), at most `7777`.
//! - A [`Cidr`] whose address has bits set beyond the prefix is rejected (`10.1.0.0/8` is more
//!   likely a typo than an intent); a bare address is a host route. An IPv4-mapped IPv6 CIDR
//!   with a prefix of at least 96 is stored as the IPv4 CIDR it denotes.
//! - Text that cannot survive a file (a newline, or ` #` / ` ;`, which start a comment even
//!   inside quotes) cannot be written back by `Display`; [`representable`] says so, for values
//!   and for scope instances alike. Everything else round-trips: `Display` quotes what would
//!   otherwise change on the way back (blanks at either end, surrounding quotes, a trailing
//!   backslash, which would continue the line).
//!
//! Diagnostics: parsers return `Err(reason)` with a sentence naming what was expected. The
//! `Value::as_*` accessors panic, naming the accessor, when called on the wrong type: that is a
//! contract violation by the caller (the slot's type is known at registration).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The type of an option, which picks its parser.
///
/// C: `ECCFGTYPE_STRING`, `ECCFGTYPE_INTEGER`, `ECCFGTYPE_BOOLEAN`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    /// Free text.
    Str,
    /// A signed integer within `min..=max`.
    Int {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// true/false, yes/no, on/off, 1/0.
    Bool,
    /// Seconds, or a number with `ms`, `s`, `m`, `h`.
    Duration,
    /// Bytes, or a number with `k`, `m`, `g` (powers of 1024).
    Size,
    /// Comma-separated items; a double-quoted item may hold commas.
    List,
    /// An octal file mode such as `0660`.
    Mode,
    /// An IPv4 or IPv6 CIDR block.
    Cidr,
    /// A listen address (`ip:port`, `[v6]:port`, `*:port`, or a Unix socket path).
    Address,
}

impl OptionType {
    /// Parses `text` as a value of this type.
    pub fn parse(&self, text: &str) -> Result<Value, String> {
        let t = text.trim();
        match *self {
            OptionType::List => return parse_list(t).map(Value::List),
            OptionType::Str => return Ok(Value::Str(unquote(t).to_string())),
            _ => {}
        }
        let t = unquote(t).trim();
        match *self {
            OptionType::Int { min, max } => parse_int(t, min, max).map(Value::Int),
            OptionType::Bool => parse_bool(t).map(Value::Bool),
            OptionType::Duration => parse_duration(t).map(Value::Duration),
            OptionType::Size => parse_size(t).map(Value::Size),
            OptionType::Mode => parse_mode(t).map(Value::Mode),
            OptionType::Cidr => t.parse().map(Value::Cidr),
            OptionType::Address => t.parse().map(Value::Address),
            OptionType::Str | OptionType::List => unreachable!("handled above"),
        }
    }

    /// A short human name of the type, used in listings and messages.
    pub fn name(&self) -> &'static str {
        match self {
            OptionType::Str => "string",
            OptionType::Int { .. } => "integer",
            OptionType::Bool => "boolean",
            OptionType::Duration => "duration",
            OptionType::Size => "size",
            OptionType::List => "list",
            OptionType::Mode => "mode",
            OptionType::Cidr => "CIDR",
            OptionType::Address => "address",
        }
    }
}

/// A typed option value.
///
/// C: `ec_config_value`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A duration (millisecond resolution).
    Duration(Duration),
    /// A size in bytes.
    Size(u64),
    /// A list of items.
    List(Vec<String>),
    /// A file mode.
    Mode(u32),
    /// A CIDR block.
    Cidr(Cidr),
    /// A listen address.
    Address(ListenAddr),
}

fn mismatch(func: &str, v: &Value, want: &str) -> ! {
    panic!("Value::{func}: the value {v:?} is not {want}")
}

impl Value {
    /// The string; panics if the value is not a string.
    pub fn as_str(&self) -> &str {
        match self {
            Value::Str(s) => s,
            v => mismatch("as_str", v, "a string"),
        }
    }
    /// The integer; panics if the value is not an integer.
    pub fn as_int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            v => mismatch("as_int", v, "an integer"),
        }
    }
    /// The boolean; panics if the value is not a boolean.
    pub fn as_bool(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            v => mismatch("as_bool", v, "a boolean"),
        }
    }
    /// The duration; panics if the value is not a duration.
    pub fn as_duration(&self) -> Duration {
        match self {
            Value::Duration(d) => *d,
            v => mismatch("as_duration", v, "a duration"),
        }
    }
    /// The size in bytes; panics if the value is not a size.
    pub fn as_size(&self) -> u64 {
        match self {
            Value::Size(s) => *s,
            v => mismatch("as_size", v, "a size"),
        }
    }
    /// The items; panics if the value is not a list.
    pub fn as_list(&self) -> &[String] {
        match self {
            Value::List(l) => l,
            v => mismatch("as_list", v, "a list"),
        }
    }
    /// The mode bits; panics if the value is not a mode.
    pub fn as_mode(&self) -> u32 {
        match self {
            Value::Mode(m) => *m,
            v => mismatch("as_mode", v, "a mode"),
        }
    }
    /// The CIDR; panics if the value is not a CIDR.
    pub fn as_cidr(&self) -> &Cidr {
        match self {
            Value::Cidr(c) => c,
            v => mismatch("as_cidr", v, "a CIDR"),
        }
    }
    /// The address; panics if the value is not an address.
    pub fn as_address(&self) -> &ListenAddr {
        match self {
            Value::Address(a) => a,
            v => mismatch("as_address", v, "an address"),
        }
    }
}

/// Writes the value in configuration syntax; the output parses back to an equal value.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write_scalar(f, s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Duration(d) => write_duration(f, *d),
            Value::Size(s) => write_size(f, *s),
            Value::List(items) => write_list(f, items),
            Value::Mode(m) => write!(f, "{m:04o}"),
            Value::Cidr(c) => write!(f, "{c}"),
            Value::Address(a) => write_scalar(f, &a.to_string()),
        }
    }
}

/// True when `text` can be written to an INI file and read back unchanged, as a value or as a
/// scope instance in a header: no line breaks, and no ` #` / ` ;` (which start an inline
/// comment even inside quotes). `config set` refuses anything else, because `config show`
/// could not write it back.
pub fn representable(text: &str) -> bool {
    !(text.contains('\n')
        || text.contains('\r')
        || text.contains(" #")
        || text.contains(" ;")
        || text.contains("\t#")
        || text.contains("\t;"))
}

/// A scalar or list item that must be quoted to read back unchanged: blanks at either end
/// (trimmed), surrounding quotes (removed), or a trailing backslash (the line would continue).
fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.trim() != s
        || (s.len() >= 2 && s.starts_with('"') && s.ends_with('"'))
        || s.ends_with('\\')
}

fn write_scalar(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if needs_quotes(s) {
        write!(f, "\"{s}\"")
    } else {
        f.write_str(s)
    }
}

fn write_duration(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    if d.subsec_millis() == 0 {
        write!(f, "{}", d.as_secs())
    } else {
        write!(f, "{}ms", d.as_millis())
    }
}

fn write_size(f: &mut fmt::Formatter<'_>, s: u64) -> fmt::Result {
    for (unit, mult) in [("g", 1u64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if s != 0 && s.is_multiple_of(mult) {
            return write!(f, "{}{unit}", s / mult);
        }
    }
    write!(f, "{s}")
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[String]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        if item.contains(',') || needs_quotes(item) {
            write!(f, "\"{item}\"")?;
        } else {
            f.write_str(item)?;
        }
    }
    Ok(())
}

/// Removes one pair of surrounding double quotes, if present.
pub(crate) fn unquote(s: &str) -> &str {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

fn parse_int(t: &str, min: i64, max: i64) -> Result<i64, String> {
    let n: i64 = t
        .parse()
        .map_err(|_| format!("\"{t}\" is not an integer"))?;
    if n < min || n > max {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    Ok(n)
}

fn parse_bool(t: &str) -> Result<bool, String> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!(
            "\"{t}\" is not a boolean (true/false, yes/no, on/off, 1/0)"
        )),
    }
}

/// Splits "300ms" into (300, "ms"); the unit is lower-cased and trimmed.
fn number_and_unit(t: &str) -> Option<(u64, String)> {
    let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n = t[..end].parse().ok()?;
    Some((n, t[end..].trim().to_ascii_lowercase()))
}

fn parse_duration(t: &str) -> Result<Duration, String> {
    let err = || format!("\"{t}\" is not a duration (seconds, or a number with ms, s, m or h)");
    let (n, unit) = number_and_unit(t).ok_or_else(err)?;
    let ms = match unit.as_str() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(err()),
    };
    ms.map(Duration::from_millis).ok_or_else(err)
}

fn parse_size(t: &str) -> Result<u64, String> {
    let err = || format!("\"{t}\" is not a size (bytes, or a number with k, m or g)");
    let (n, unit) = number_and_unit(t).ok_or_else(err)?;
    let shift = match unit.as_str() {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return Err(err()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(err)
}

fn parse_mode(t: &str) -> Result<u32, String> {
    let err = || format!("\"{t}\" is not an octal file mode such as 0660");
    if t.is_empty() || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(err());
    }
    match u32::from_str_radix(t, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(err()),
    }
}

fn parse_list(t: &str) -> Result<Vec<String>, String> {
    let mut raw = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, c) in t.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                raw.push(&t[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err("unbalanced double quote in list".to_string());
    }
    raw.push(&t[start..]);
    let mut items = Vec::new();
    for r in raw {
        let item = unquote(r.trim());
        if item.contains('"') {
            return Err(format!("stray double quote in list item {}", r.trim()));
        }
        if !item.is_empty() {
            items.push(item.to_string());
        }
    }
    Ok(items)
}

/// An IPv4 or IPv6 CIDR block; the instance of a `Peer` scope.
///
/// `Display` is the normalised form (`10.0.0.0/8`, `2001:db8::/32`) that Peer scopes are
/// keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// IPv4-mapped IPv6 addresses become IPv4; everything else is unchanged.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub(crate) fn mask_v4(a: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(prefix)))
    }
}

pub(crate) fn mask_v6(a: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl Cidr {
    /// Builds a CIDR; rejects prefixes longer than the address and host bits beyond the prefix.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let masked = match addr {
            IpAddr::V4(a) if prefix <= 32 => IpAddr::V4(mask_v4(a.into(), prefix).into()),
            IpAddr::V6(a) if prefix <= 128 => IpAddr::V6(mask_v6(a.into(), prefix).into()),
            _ => return Err(format!("prefix /{prefix} is too long for {addr}")),
        };
        if masked != addr {
            return Err(format!(
                "host bits set beyond /{prefix} (did you mean {masked}/{prefix}?)"
            ));
        }
        Ok(Cidr { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True when `ip` is inside the block; an IPv4-mapped IPv6 address matches IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip.into(), self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip.into(), self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("\"{s}\" is not a CIDR (such as 10.0.0.0/8 or 2001:db8::/32)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match decimal(p) {
                Some(p) if p <= u32::from(max) => p as u8,
                _ => {
                    return Err(format!(
                        "\"{s}\" has a bad prefix length (0..={max}, no sign or leading zero)"
                    ))
                }
            },
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The remote end of a session, for Peer lookups.
///
/// Unix-socket peers count as loopback: they match `127.0.0.1` and `::1` rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A TCP peer.
    Ip(IpAddr),
    /// A peer on a Unix socket.
    Unix,
}

impl FromStr for PeerAddr {
    type Err = String;
    /// An IP address, or `unix`.
    fn from_str(s: &str) -> Result<PeerAddr, String> {
        let s = unquote(s.trim());
        if s.eq_ignore_ascii_case("unix") {
            return Ok(PeerAddr::Unix);
        }
        s.parse()
            .map(PeerAddr::Ip)
            .map_err(|_| format!("\"{s}\" is not an IP address (or \"unix\")"))
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(ip) => write!(f, "{ip}"),
            PeerAddr::Unix => f.write_str("unix"),
        }
    }
}

/// A listen address; the instance of a `Listen` scope.
///
/// Accepted forms: `127.0.0.1:25`; `*:25` and `:25` (all IPv4 addresses); `[::1]:25`;
/// `[*]:25` (all IPv6 addresses); port 0 (the kernel picks); an absolute Unix socket path
/// (`/run/x.sock`), or a relative one, kept relative for the daemon to resolve under its
/// runtime directory. A relative path must be unmistakable: it ends in `.sock` or contains a
/// `/` (`control.sock`, `run/ctl`), so that `127.0.0.1`, `2525`, `*` or `localhost` (a
/// forgotten port) are errors rather than sockets in the runtime directory. A port is decimal
/// digits without a sign or leading zeros. `Display` is the normalised form (IPv6 compressed,
/// in brackets), which is what Listen scopes are keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP address.
    Inet(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// A decimal number as written by a person: digits only, no sign, no leading zero (`08` is
/// more likely a typo, or octal, than 8).
fn decimal(t: &str) -> Option<u32> {
    let plain = !t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit());
    if !plain || (t.len() > 1 && t.starts_with('0')) {
        return None;
    }
    t.parse().ok()
}

fn parse_port(p: &str, s: &str) -> Result<u16, String> {
    decimal(p)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| {
            format!("\"{s}\" has a bad port \"{p}\" (0..=65535, no sign or leading zero)")
        })
}

/// The accepted listen address forms, for messages.
const LISTEN_FORMS: &str = "ip:port, *:port, :port, [v6]:port, [*]:port, /absolute/path, \
                            or a relative path that ends in .sock or contains /";

/// Why `s` (no colon, not absolute, not an unmistakable relative path) is not an address.
fn not_an_address(s: &str) -> String {
    if s.parse::<IpAddr>().is_ok() || s == "*" {
        format!("\"{s}\" has no port (write {s}:port)")
    } else if s.bytes().all(|b| b.is_ascii_digit()) {
        format!("\"{s}\" is a port without an address (write *:{s}, :{s} or 127.0.0.1:{s})")
    } else {
        format!("\"{s}\" is not a listen address (accepted: {LISTEN_FORMS})")
    }
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<ListenAddr, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty listen address".to_string());
        }
        if s.starts_with('/') {
            return Ok(ListenAddr::Unix(PathBuf::from(s)));
        }
        if !s.contains(':') {
            return if s.ends_with(".sock") || s.contains('/') {
                Ok(ListenAddr::Unix(PathBuf::from(s)))
            } else {
                Err(not_an_address(s))
            };
        }
        let bad = || format!("\"{s}\" is not a listen address (accepted: {LISTEN_FORMS})");
        if let Some(rest) = s.strip_prefix('[') {
            if rest.ends_with(']') {
                return Err(format!("\"{s}\" has no port (write {s}:port)"));
            }
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            let ip = if host == "*" {
                Ipv6Addr::UNSPECIFIED
            } else {
                host.parse().map_err(|_| bad())?
            };
            let port = parse_port(port, s)?;
            return Ok(ListenAddr::Inet(SocketAddr::V6(SocketAddrV6::new(
                ip, port, 0, 0,
            ))));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            return Err(format!(
                "\"{s}\": an IPv6 listen address needs brackets ([v6]:port)"
            ));
        }
        let ip = if host.is_empty() || host == "*" {
            Ipv4Addr::UNSPECIFIED
        } else {
            host.parse().map_err(|_| bad())?
        };
        let port = parse_port(port, s)?;
        Ok(ListenAddr::Inet(SocketAddr::V4(SocketAddrV4::new(
            ip, port,
        ))))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Inet(SocketAddr::V4(a)) => write!(f, "{}:{}", a.ip(), a.port()),
            ListenAddr::Inet(SocketAddr::V6(a)) => write!(f, "[{}]:{}", a.ip(), a.port()),
            ListenAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ty: OptionType, s: &str) -> Result<Value, String> {
        ty.parse(s)
    }

    #[test]
    fn booleans() {
        for t in ["true", "YES", "On", "1"] {
            assert_eq!(p(OptionType::Bool, t), Ok(Value::Bool(true)), "{t}");
        }
        for t in ["false", "no", "OFF", "0"] {
            assert_eq!(p(OptionType::Bool, t), Ok(Value::Bool(false)), "{t}");
        }
        assert!(p(OptionType::Bool, "maybe").is_err());
    }

    #[test]
    fn integers_respect_bounds() {
        let ty = OptionType::Int { min: 1, max: 10 };
        assert_eq!(p(ty, "10"), Ok(Value::Int(10)));
        assert!(p(ty, "11").unwrap_err().contains("out of range 1..=10"));
        assert!(p(ty, "0").is_err());
        assert!(p(ty, "ten").is_err());
    }

    #[test]
    fn durations_and_sizes() {
        let d = |s| p(OptionType::Duration, s).map(|v| v.as_duration());
        assert_eq!(d("300"), Ok(Duration::from_secs(300)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d("2H"), Ok(Duration::from_secs(7200)));
        assert!(d("5x").is_err() && d("").is_err() && d("-1").is_err());
        let z = |s| p(OptionType::Size, s).map(|v| v.as_size());
        assert_eq!(z("512"), Ok(512));
        assert_eq!(z("10k"), Ok(10240));
        assert_eq!(z("2M"), Ok(2 << 20));
        assert_eq!(z("1g"), Ok(1 << 30));
        assert!(z("99999999999999999g").is_err());
    }

    #[test]
    fn lists_with_quotes() {
        let l = |s| p(OptionType::List, s).map(|v| v.as_list().to_vec());
        assert_eq!(l("a, b,,c "), Ok(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(l("\"a, b\", c"), Ok(vec!["a, b".into(), "c".into()]));
        assert_eq!(l(""), Ok(vec![]));
        assert!(l("\"a, b").is_err());
        assert!(l("a\"b\"c").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(p(OptionType::Mode, "0660"), Ok(Value::Mode(0o660)));
        assert_eq!(p(OptionType::Mode, "600"), Ok(Value::Mode(0o600)));
        assert!(p(OptionType::Mode, "0980").is_err());
        assert!(p(OptionType::Mode, "17777").is_err());
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!("10.1.0.0/8"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("10.0.0.0/8"));
        assert_eq!(
            "2001:0db8::/32".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            "::ffff:10.0.0.0/104".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("1.2.3.4".parse::<Cidr>().unwrap().to_string(), "1.2.3.4/32");
        assert!("1.2.3.4/33".parse::<Cidr>().is_err());
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!("[::1]/128".parse::<Cidr>().is_err());
        for bad in [
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/",
            "::/0128",
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(e.contains("bad prefix length"), "{bad}: {e}");
        }
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix(), 0);
    }

    #[test]
    fn listen_addresses() {
        let n = |s: &str| s.parse::<ListenAddr>().map(|a| a.to_string());
        assert_eq!(n("127.0.0.1:2525"), Ok("127.0.0.1:2525".into()));
        assert_eq!(n("*:25"), Ok("0.0.0.0:25".into()));
        assert_eq!(n(":25"), Ok("0.0.0.0:25".into()));
        assert_eq!(n("[::0001]:25"), Ok("[::1]:25".into()));
        assert_eq!(n("[*]:0"), Ok("[::]:0".into()));
        assert_eq!(n("/run/x.sock"), Ok("/run/x.sock".into()));
        assert_eq!(n("control.sock"), Ok("control.sock".into()));
        assert_eq!(n("run/ctl"), Ok("run/ctl".into()));
        assert!(n("::1:25").unwrap_err().contains("brackets"));
        assert!(n("1.2.3.4:99999").is_err());
        assert!(n("host:25").is_err());
        assert!(n("[::1]25").is_err());
        // A forgotten port is not a relative Unix socket.
        let e = |s: &str| n(s).unwrap_err();
        assert_eq!(
            e("127.0.0.1"),
            "\"127.0.0.1\" has no port (write 127.0.0.1:port)"
        );
        assert_eq!(e("*"), "\"*\" has no port (write *:port)");
        assert_eq!(e("[::1]"), "\"[::1]\" has no port (write [::1]:port)");
        assert_eq!(
            e("2525"),
            "\"2525\" is a port without an address (write *:2525, :2525 or 127.0.0.1:2525)"
        );
        assert!(e("localhost").contains("ends in .sock or contains /"));
        for bad in ["127.0.0.1:+7", "127.0.0.1:025", "[::1]:-1", "*: 25", ":"] {
            assert!(e(bad).contains("bad port"), "{bad}: {}", e(bad));
        }
        assert_eq!(n(":0"), Ok("0.0.0.0:0".into()));
    }

    #[test]
    fn display_round_trips() {
        let cases = [
            (OptionType::Str, " padded "),
            (OptionType::Str, ""),
            (OptionType::Str, "\"quoted\""),
            (OptionType::List, "\"a, b\", c, \" d\""),
            (OptionType::Duration, "1500ms"),
            (OptionType::Duration, "5m"),
            (OptionType::Size, "3072"),
            (OptionType::Size, "1025"),
            (OptionType::Mode, "600"),
            (OptionType::Bool, "on"),
            (OptionType::Cidr, "::ffff:1.2.3.0/120"),
            (OptionType::Address, "[*]:25"),
            (OptionType::Str, "\"ends with a backslash\\\""),
            (OptionType::List, "a, \"b\\\""),
            (OptionType::Str, "#not a comment"),
        ];
        for (ty, text) in cases {
            let v = ty.parse(&format!("{}", ty.parse(text).unwrap())).unwrap();
            assert_eq!(v, ty.parse(text).unwrap(), "{text}");
        }
        assert_eq!(Value::Str(String::new()).to_string(), "\"\"");
        assert_eq!(Value::Size(3072).to_string(), "3k");
        assert_eq!(Value::Str("a\\".into()).to_string(), "\"a\\\"");
        let list = Value::List(vec!["a\\".into(), "b".into()]);
        assert_eq!(list.to_string(), "\"a\\\", b");
        assert!(!representable("a #b") && !representable("a\tb\n") && representable("#a"));
    }

    #[test]
    #[should_panic(expected = "Value::as_int")]
    fn accessor_mismatch_panics() {
        Value::Bool(true).as_int();
    }
}
