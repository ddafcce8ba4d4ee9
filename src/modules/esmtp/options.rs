//! The options of `ESMTP_Listener` and the per-session snapshot built from them.
//!
//! C: the `esmtp` module's `ec_config_option_def`s registered with
//! `netlistener_register_option()`, and its `get_option()` helper.
//!
//! # Summary
//! [`Slots::register`] registers every option with its type, default, validator and scopes
//! (`<Type>_Listener`, `Listen`, `Peer`, and `Pathway`/`Pathway_Group` so the whole fallback
//! chain applies). [`SessionConf::fetch`] resolves them once per session from the generation
//! the session started with; sessions whose values are equal share one [`SessionConf`]
//! through a small per-thread cache, so a session carries `Arc`s, not its own copy of every
//! string, and its Maildir is looked up in the process-wide registry once per value, not
//! once per session.
//!
//! # Contract
//! Register on the scheduler thread before the configuration is loaded; fetch only with an
//! [`AcceptConstruct`] of this listener type.
//!
//! # Diagnostics
//! Validators return the reason a value is refused; the configuration layer reports it as
//! `path:line: [section] option: reason`. Nothing here panics or logs.

use std::cell::RefCell;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::config::{OptionDef, OptionType, Scopes, Slot, Value};
use crate::netlistener::{netlistener_register_option, AcceptConstruct, NetError, NetlistenerDef};

use super::delivery::{Delivery, Maildir};
use super::params::{BareLf, Extensions, Params};

/// Where the session options may be set: every listener scope plus pathways.
const SESSION: Scopes =
    Scopes(Scopes::LISTENER_ALL.0 | Scopes::PATHWAY.0 | Scopes::PATHWAY_GROUP.0);
const COUNT: OptionType = OptionType::Int {
    min: 0,
    max: 1 << 30,
};

/// The slots of the `ESMTP_Listener` options.
#[derive(Debug, Clone, Copy)]
pub struct Slots {
    /// `SMTP_Extensions` (list).
    pub smtp_extensions: Slot,
    /// `Banner_Hostname` (string).
    pub banner_hostname: Slot,
    /// `Static_Banner` (string).
    pub static_banner: Slot,
    /// `Received_Hostname` (string).
    pub received_hostname: Slot,
    /// `Max_Message_Size` (size).
    pub max_message_size: Slot,
    /// `Max_Recipients_Per_Message` (int).
    pub max_recipients_per_message: Slot,
    /// `Max_Recipients_Per_Connection` (int).
    pub max_recipients_per_connection: Slot,
    /// `Max_Receptions_Per_Connection` (int).
    pub max_receptions_per_connection: Slot,
    /// `Max_Errors_Per_Connection` (int).
    pub max_errors_per_connection: Slot,
    /// `Require_EHLO` (bool).
    pub require_ehlo: Slot,
    /// `Max_Line_Length` (int).
    pub max_line_length: Slot,
    /// `Bare_LF` (reject | allow).
    pub bare_lf: Slot,
    /// `Reconfig_Message` (string).
    pub reconfig_message: Slot,
    /// `Delivery` (discard | maildir).
    pub delivery: Slot,
    /// `Maildir` (path).
    pub maildir: Slot,
}

fn v_extensions(v: &Value) -> Result<(), String> {
    Extensions::from_names(v.as_list()).map(|_| ())
}

fn v_hostname(v: &Value) -> Result<(), String> {
    let s = v.as_str();
    if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("not a host name: {s:?}"));
    }
    Ok(())
}

fn v_banner(v: &Value) -> Result<(), String> {
    match v.as_str() {
        "" => Ok(()),
        b => super::params::banner_ok(b),
    }
}

fn v_delivery(v: &Value) -> Result<(), String> {
    match v.as_str().to_ascii_lowercase().as_str() {
        "discard" | "maildir" => Ok(()),
        other => Err(format!("\"{other}\": expected discard or maildir")),
    }
}

fn v_bare_lf(v: &Value) -> Result<(), String> {
    match v.as_str().to_ascii_lowercase().as_str() {
        "reject" | "allow" => Ok(()),
        other => Err(format!("\"{other}\": expected reject or allow")),
    }
}

fn opt(
    name: &'static str,
    ty: OptionType,
    default: &'static str,
    validator: Option<crate::config::Validator>,
    doc: &'static str,
) -> OptionDef {
    let mut d = OptionDef::new(name, ty, default, SESSION, doc);
    d.validator = validator;
    d
}

impl Slots {
    /// Registers every option of `def` (the `ESMTP` listener type).
    pub fn register(def: &NetlistenerDef) -> Result<Slots, NetError> {
        let r = |d: OptionDef| netlistener_register_option(def, d);
        let ext = "PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES";
        Ok(Slots {
            smtp_extensions: r(opt(
                "SMTP_Extensions",
                OptionType::List,
                ext,
                Some(v_extensions),
                "extensions advertised in reply to EHLO",
            ))?,
            banner_hostname: r(opt(
                "Banner_Hostname",
                OptionType::Str,
                "",
                Some(v_hostname),
                "name in the banner, EHLO and 421 replies (empty: this host's name)",
            ))?,
            static_banner: r(opt(
                "Static_Banner",
                OptionType::Str,
                "",
                Some(v_banner),
                "complete 220 banner line replacing the default one",
            ))?,
            received_hostname: r(opt(
                "Received_Hostname",
                OptionType::Str,
                "",
                Some(v_hostname),
                "name in the Received: header and Maildir file names (empty: Banner_Hostname)",
            ))?,
            max_message_size: r(opt(
                "Max_Message_Size",
                OptionType::Size,
                "10240000",
                None,
                "largest accepted message, advertised with SIZE (0: unlimited)",
            ))?,
            max_recipients_per_message: r(opt(
                "Max_Recipients_Per_Message",
                COUNT,
                "100",
                None,
                "recipients per message; more get 452 4.5.3 (0: unlimited)",
            ))?,
            max_recipients_per_connection: r(opt(
                "Max_Recipients_Per_Connection",
                COUNT,
                "0",
                None,
                "recipients per connection; more get 452 4.5.3 (0: unlimited)",
            ))?,
            max_receptions_per_connection: r(opt(
                "Max_Receptions_Per_Connection",
                COUNT,
                "0",
                None,
                "messages per connection; the next MAIL gets 421 (0: unlimited)",
            ))?,
            max_errors_per_connection: r(opt(
                "Max_Errors_Per_Connection",
                COUNT,
                "20",
                None,
                "refusals without a message accepted; then 421 4.7.0 and close (0: unlimited)",
            ))?,
            require_ehlo: r(opt(
                "Require_EHLO",
                OptionType::Bool,
                "false",
                None,
                "refuse MAIL before HELO/EHLO with 503 5.5.1",
            ))?,
            max_line_length: r(opt(
                "Max_Line_Length",
                OptionType::Int {
                    min: 3,
                    max: 1 << 20,
                },
                "1000",
                None,
                "longest message text line, CRLF included",
            ))?,
            bare_lf: r(opt(
                "Bare_LF",
                OptionType::Str,
                "reject",
                Some(v_bare_lf),
                "bare LF or CR in commands and data: reject or allow",
            ))?,
            reconfig_message: r(opt(
                "Reconfig_Message",
                OptionType::Str,
                "Service reconfigured, please reconnect",
                None,
                "text of the 421 sent when the configuration changed under a session",
            ))?,
            delivery: r(opt(
                "Delivery",
                OptionType::Str,
                "discard",
                Some(v_delivery),
                "what happens to accepted messages: discard or maildir",
            ))?,
            maildir: r(opt(
                "Maildir",
                OptionType::Str,
                "",
                None,
                "the Maildir messages are written to with Delivery = maildir",
            ))?,
        })
    }
}

/// What one session takes from the configuration at its start.
#[derive(Debug, Clone)]
pub struct SessionConf {
    /// The engine's settings (shared with equal sessions).
    pub params: Arc<Params>,
    /// Where accepted messages go (the Maildir resolved once per value, not per session).
    pub delivery: Delivery,
    /// `Received_Hostname`, resolved.
    pub received_host: Arc<str>,
}

/// The option values a [`SessionConf`] is built from: `Raw<&str, &[String]>` borrowed from
/// the generation (no allocation), `Raw<String, Vec<String>>` owned by the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Raw<S, L> {
    banner_hostname: S,
    received_hostname: S,
    static_banner: S,
    extensions: L,
    max_message_size: u64,
    max_recipients_per_message: i64,
    max_recipients_per_connection: i64,
    max_receptions_per_connection: i64,
    max_errors_per_connection: i64,
    require_ehlo: bool,
    max_line_length: i64,
    bare_lf: S,
    reconfig_message: S,
    delivery: S,
    maildir: S,
}

type RawRef<'a> = Raw<&'a str, &'a [String]>;
type RawOwned = Raw<String, Vec<String>>;

impl<S, L> Raw<S, L> {
    /// The same values with the text fields through `s` and the list through `l`: owned
    /// for the cache ([`RawRef::keep`]), borrowed back to compare ([`RawOwned::view`]).
    fn map<'r, T, M>(&'r self, s: impl Fn(&'r S) -> T, l: impl Fn(&'r L) -> M) -> Raw<T, M> {
        Raw {
            banner_hostname: s(&self.banner_hostname),
            received_hostname: s(&self.received_hostname),
            static_banner: s(&self.static_banner),
            extensions: l(&self.extensions),
            max_message_size: self.max_message_size,
            max_recipients_per_message: self.max_recipients_per_message,
            max_recipients_per_connection: self.max_recipients_per_connection,
            max_receptions_per_connection: self.max_receptions_per_connection,
            max_errors_per_connection: self.max_errors_per_connection,
            require_ehlo: self.require_ehlo,
            max_line_length: self.max_line_length,
            bare_lf: s(&self.bare_lf),
            reconfig_message: s(&self.reconfig_message),
            delivery: s(&self.delivery),
            maildir: s(&self.maildir),
        }
    }
}

impl<'a> RawRef<'a> {
    fn fetch(ac: &'a AcceptConstruct, s: &Slots) -> RawRef<'a> {
        let str = |slot| ac.fetch(slot).as_str();
        let int = |slot| ac.fetch(slot).as_int();
        Raw {
            banner_hostname: str(s.banner_hostname),
            received_hostname: str(s.received_hostname),
            static_banner: str(s.static_banner),
            extensions: ac.fetch(s.smtp_extensions).as_list(),
            max_message_size: ac.fetch(s.max_message_size).as_size(),
            max_recipients_per_message: int(s.max_recipients_per_message),
            max_recipients_per_connection: int(s.max_recipients_per_connection),
            max_receptions_per_connection: int(s.max_receptions_per_connection),
            max_errors_per_connection: int(s.max_errors_per_connection),
            require_ehlo: ac.fetch(s.require_ehlo).as_bool(),
            max_line_length: int(s.max_line_length),
            bare_lf: str(s.bare_lf),
            reconfig_message: str(s.reconfig_message),
            delivery: str(s.delivery),
            maildir: str(s.maildir),
        }
    }

    fn keep(&self) -> RawOwned {
        self.map(|v| v.to_string(), |l| l.to_vec())
    }

    /// Builds the session's settings from the values (allocating; the cache calls it once
    /// per distinct set of values).
    fn build(&self) -> SessionConf {
        let host = match self.banner_hostname {
            "" => system_hostname(),
            h => h,
        };
        let received = match self.received_hostname {
            "" => host,
            h => h,
        };
        let int = |v: i64| v.clamp(0, u32::MAX as i64) as u32;
        let banner = self.static_banner;
        let params = Params {
            hostname: host.to_string(),
            static_banner: (!banner.is_empty()).then(|| banner.to_string()),
            extensions: Extensions::from_names(self.extensions).unwrap_or_default(),
            max_message_size: self.max_message_size,
            max_recipients_per_message: int(self.max_recipients_per_message),
            max_recipients_per_connection: int(self.max_recipients_per_connection),
            max_receptions_per_connection: int(self.max_receptions_per_connection),
            max_errors_per_connection: int(self.max_errors_per_connection),
            require_ehlo: self.require_ehlo,
            max_line_length: self.max_line_length.max(3) as usize,
            bare_lf: match self.bare_lf.eq_ignore_ascii_case("allow") {
                true => BareLf::Allow,
                false => BareLf::Reject,
            },
            reconfig_message: self.reconfig_message.to_string(),
        };
        let delivery = match self.delivery.eq_ignore_ascii_case("maildir") {
            // The process-wide Maildir registry is locked here, on a cache miss only.
            true => Delivery::Maildir(Maildir::get(Path::new(self.maildir))),
            false => Delivery::Discard,
        };
        SessionConf {
            params: Arc::new(params),
            delivery,
            received_host: Arc::from(received),
        }
    }
}

impl RawOwned {
    fn view(&self) -> RawRef<'_> {
        self.map(|v| v.as_str(), |l| l.as_slice())
    }
}

thread_local! {
    /// The settings built for each distinct set of values seen on this thread, newest last.
    static CACHE: RefCell<Vec<(RawOwned, SessionConf)>> = const { RefCell::new(Vec::new()) };
}

/// Distinct sets of values kept per thread; a configuration with more still works, the
/// oldest entries are just built again when they come back.
const CACHE_MAX: usize = 32;

impl SessionConf {
    /// Resolves every option for `ac` (Listen + Peer + Pathway fallback, the session's
    /// generation). A session whose values equal an earlier session's on this thread shares
    /// its settings: it costs the lookups and a few reference counts, no allocation and no
    /// lock.
    pub fn fetch(ac: &AcceptConstruct, s: &Slots) -> SessionConf {
        cached(RawRef::fetch(ac, s))
    }
}

/// The settings for `raw`: the cached ones if an earlier session had the same values.
fn cached(raw: RawRef<'_>) -> SessionConf {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        // Newest first: after a reload, sessions take the newest values.
        if let Some((_, conf)) = c.iter().rev().find(|(k, _)| k.view() == raw) {
            return conf.clone();
        }
        let conf = raw.build();
        if c.len() >= CACHE_MAX {
            c.remove(0);
        }
        c.push((raw.keep(), conf.clone()));
        conf
    })
}

/// This host's name, read once (`/proc/sys/kernel/hostname`, `/etc/hostname`, else
/// `localhost`; std has no `gethostname`).
pub fn system_hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .find(|s| !s.is_empty() && !s.contains(char::is_whitespace))
            .unwrap_or_else(|| "localhost".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators() {
        let list = |s: &str| OptionType::List.parse(s).unwrap();
        let st = |s: &str| Value::Str(s.to_string());
        assert!(v_extensions(&list("PIPELINING, chunking")).is_ok());
        assert!(v_extensions(&list("PIPELINING, STARTTLS"))
            .unwrap_err()
            .contains("STARTTLS"));
        assert!(v_banner(&st("")).is_ok());
        assert!(v_banner(&st("220 mx.example ready")).is_ok());
        assert!(v_banner(&st("250 hi")).is_err());
        assert!(v_banner(&st("220-x")).is_err());
        assert!(v_banner(&st("220")).is_err());
        assert!(v_banner(&st("220  ")).is_err());
        assert!(v_delivery(&st("Maildir")).is_ok());
        assert!(v_delivery(&st("mbox")).is_err());
        assert!(v_bare_lf(&st("allow")).is_ok());
        assert!(v_bare_lf(&st("strip")).is_err());
        assert!(v_hostname(&st("a b")).is_err());
        assert!(!system_hostname().is_empty());
    }

    fn raw<'a>(ext: &'a [String], delivery: &'a str, maildir: &'a str) -> RawRef<'a> {
        Raw {
            banner_hostname: "mx.test",
            received_hostname: "",
            static_banner: "",
            extensions: ext,
            max_message_size: 1000,
            max_recipients_per_message: 100,
            max_recipients_per_connection: 0,
            max_receptions_per_connection: 0,
            max_errors_per_connection: 20,
            require_ehlo: false,
            max_line_length: 1000,
            bare_lf: "reject",
            reconfig_message: "bye",
            delivery,
            maildir,
        }
    }

    #[test]
    fn equal_values_share_one_conf_and_its_maildir_is_looked_up_once() {
        let ext = vec!["PIPELINING".to_string()];
        let dir = "/nonexistent/nl-options-cache";
        let a = cached(raw(&ext, "maildir", dir));
        let b = cached(raw(&ext, "maildir", dir).keep().view());
        // The second session's settings come from the cache: nothing was built again.
        let (Delivery::Maildir(ma), Delivery::Maildir(mb)) = (&a.delivery, &b.delivery) else {
            panic!("maildir delivery: {a:?}");
        };
        assert!(Arc::ptr_eq(ma, mb) && Arc::ptr_eq(&a.params, &b.params));
        assert!(Arc::ptr_eq(&a.received_host, &b.received_host));
        assert_eq!(&*a.received_host, "mx.test");
        // One Maildir per path, the registry's, even for values that differ otherwise.
        assert_eq!(a.delivery, Delivery::Maildir(Maildir::get(Path::new(dir))));
        let c = cached(raw(&ext, "Maildir", dir));
        assert!(!Arc::ptr_eq(&c.params, &a.params));
        assert_eq!(c.delivery, a.delivery);
        let other = cached(raw(&ext, "maildir", "/nonexistent/nl-options-other"));
        assert_ne!(other.delivery, a.delivery);
        assert_eq!(
            cached(raw(&ext, "discard", dir)).delivery,
            Delivery::Discard
        );
        assert!(!Arc::ptr_eq(
            &cached(raw(&[], "maildir", dir)).params,
            &a.params
        ));
    }
}
