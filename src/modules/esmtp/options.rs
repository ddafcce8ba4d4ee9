//! The options of `ESMTP_Listener` and the per-session snapshot built from them.
//!
//! C: the `esmtp` module's `ec_config_option_def`s registered with
//! `netlistener_register_option()`, and its `get_option()` helper.
//!
//! # Summary
//! [`Slots::register`] registers every option with its type, default, validator and scopes
//! (`<Type>_Listener`, `Listen`, `Peer`, and `Pathway`/`Pathway_Group` so the whole fallback
//! chain applies). [`SessionConf::fetch`] resolves them once per session from the generation
//! the session started with; equal [`Params`] are shared between sessions through a small
//! per-thread cache, so a session carries an `Arc`, not its own copy of every string.
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

use super::delivery::Delivery;
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
#[derive(Debug)]
pub struct SessionConf {
    /// The engine's settings (shared with equal sessions).
    pub params: Arc<Params>,
    /// Where accepted messages go.
    pub delivery: Delivery,
    /// `Received_Hostname`, resolved.
    pub received_host: Arc<str>,
}

thread_local! {
    static CACHE: RefCell<Vec<(Arc<Params>, Arc<str>)>> = const { RefCell::new(Vec::new()) };
}

/// Distinct `Params` kept for sharing; a configuration with more distinct values per thread
/// still works, the surplus sessions just own their copy.
const CACHE_MAX: usize = 32;

impl SessionConf {
    /// Resolves every option for `ac` (Listen + Peer + Pathway fallback, the session's
    /// generation).
    pub fn fetch(ac: &AcceptConstruct, s: &Slots) -> SessionConf {
        let host = match ac.fetch(s.banner_hostname).as_str() {
            "" => system_hostname().to_string(),
            h => h.to_string(),
        };
        let received = match ac.fetch(s.received_hostname).as_str() {
            "" => host.clone(),
            h => h.to_string(),
        };
        let banner = ac.fetch(s.static_banner).as_str();
        let int = |slot| ac.fetch(slot).as_int().clamp(0, u32::MAX as i64) as u32;
        let params = Params {
            hostname: host,
            static_banner: (!banner.is_empty()).then(|| banner.to_string()),
            extensions: Extensions::from_names(ac.fetch(s.smtp_extensions).as_list())
                .unwrap_or_default(),
            max_message_size: ac.fetch(s.max_message_size).as_size(),
            max_recipients_per_message: int(s.max_recipients_per_message),
            max_recipients_per_connection: int(s.max_recipients_per_connection),
            max_receptions_per_connection: int(s.max_receptions_per_connection),
            max_errors_per_connection: int(s.max_errors_per_connection),
            require_ehlo: ac.fetch(s.require_ehlo).as_bool(),
            max_line_length: ac.fetch(s.max_line_length).as_int().max(3) as usize,
            bare_lf: match ac.fetch(s.bare_lf).as_str().eq_ignore_ascii_case("allow") {
                true => BareLf::Allow,
                false => BareLf::Reject,
            },
            reconfig_message: ac.fetch(s.reconfig_message).as_str().to_string(),
        };
        let delivery = match ac
            .fetch(s.delivery)
            .as_str()
            .eq_ignore_ascii_case("maildir")
        {
            true => Delivery::Maildir(Arc::from(Path::new(ac.fetch(s.maildir).as_str()))),
            false => Delivery::Discard,
        };
        let (params, received_host) = shared(params, received);
        SessionConf {
            params,
            delivery,
            received_host,
        }
    }
}

fn shared(p: Params, received: String) -> (Arc<Params>, Arc<str>) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((a, r)) = c.iter().find(|(a, r)| **a == p && **r == *received) {
            return (a.clone(), r.clone());
        }
        let pair = (Arc::new(p), Arc::from(received));
        if c.len() >= CACHE_MAX {
            c.remove(0);
        }
        c.push(pair.clone());
        pair
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
}
