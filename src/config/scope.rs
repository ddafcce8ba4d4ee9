//! C: the scope/instance pairs passed to `ec_config_option_fetch_generic()`
//!
//! Scope paths: what a section header names, parsed, normalised and written back.
//!
//! A section header is a path of `Scope "instance"` pairs: `[ESMTP_Listener]`,
//! `[ESMTP_Listener Listen "addr"]`, `[ESMTP_Listener Peer "cidr"]`,
//! `[ESMTP_Listener Listen "addr" Peer "cidr"]`, `[Pathway "p"]`, `[Pathway_Group "g"]`,
//! `[Pathway_Group "g" Pathway "p"]`, `[ThreadPool "name"]` and `[<ModuleScope>]`.
//!
//! Contract:
//! - Kind names are case-insensitive and displayed as registered. Listen and Peer instances are
//!   normalised (`"[::0001]:25"` and `"[::1]:25"` are one scope). Pathway, Pathway_Group and
//!   ThreadPool instance names are compared case-insensitively and displayed as first written.
//! - Quotes around instances are optional; an instance holding spaces needs them. There are no
//!   escapes: an instance cannot contain `"`.
//! - A pathway inside a group (`Pathway_Group "g" Pathway "p"`) is a scope distinct from the
//!   top-level `Pathway "p"`.
//!
//! Diagnostics: parsing returns `Err(reason)` for an unknown kind, a Listen or Peer outside a
//! listener, a wrong order, a missing or extra instance, an unbalanced quote, a Listen that is not
//! an address or a Peer that is not a CIDR.

use std::fmt;

use super::schema::{Schema, ScopeClass, ScopeKind};
use super::types::{Cidr, ListenAddr};

/// A scope, as named by a section header (normalised).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScopePath {
    /// Outside any section.
    Global,
    /// A listener kind, optionally narrowed to a Listen instance and/or a Peer block.
    Listener {
        /// The kind, as registered (`ESMTP_Listener`).
        kind: String,
        /// The Listen instance.
        listen: Option<ListenAddr>,
        /// The Peer block.
        peer: Option<Cidr>,
    },
    /// A top-level pathway.
    Pathway(String),
    /// A pathway group.
    PathwayGroup(String),
    /// A pathway inside a group.
    GroupPathway {
        /// The group.
        group: String,
        /// The pathway.
        pathway: String,
    },
    /// A thread pool.
    ThreadPool(String),
    /// A module scope, as registered.
    Module(String),
}

impl ScopePath {
    /// The class of the section, for option lookup.
    pub fn class(&self) -> ScopeClass<'_> {
        match self {
            ScopePath::Global => ScopeClass::Global,
            ScopePath::Listener {
                kind,
                peer: Some(_),
                ..
            } => ScopeClass::Peer(kind),
            ScopePath::Listener {
                kind,
                listen: Some(_),
                ..
            } => ScopeClass::Listen(kind),
            ScopePath::Listener { kind, .. } => ScopeClass::Listener(kind),
            ScopePath::Pathway(_) | ScopePath::GroupPathway { .. } => ScopeClass::Pathway,
            ScopePath::PathwayGroup(_) => ScopeClass::PathwayGroup,
            ScopePath::ThreadPool(_) => ScopeClass::ThreadPool,
            ScopePath::Module(m) => ScopeClass::Module(m),
        }
    }

    /// The identity of the scope: names lower-cased, so two spellings are one scope.
    pub fn key(&self) -> ScopePath {
        let lc = |s: &String| s.to_ascii_lowercase();
        match self {
            ScopePath::Listener { kind, listen, peer } => ScopePath::Listener {
                kind: lc(kind),
                listen: listen.clone(),
                peer: *peer,
            },
            ScopePath::Pathway(p) => ScopePath::Pathway(lc(p)),
            ScopePath::PathwayGroup(g) => ScopePath::PathwayGroup(lc(g)),
            ScopePath::GroupPathway { group, pathway } => ScopePath::GroupPathway {
                group: lc(group),
                pathway: lc(pathway),
            },
            ScopePath::ThreadPool(t) => ScopePath::ThreadPool(lc(t)),
            ScopePath::Module(m) => ScopePath::Module(lc(m)),
            ScopePath::Global => ScopePath::Global,
        }
    }
}

impl ScopePath {
    /// The instances as a header writes them (Listen and Peer normalised), outermost first.
    pub(crate) fn instances(&self) -> Vec<String> {
        match self {
            ScopePath::Global | ScopePath::Module(_) => Vec::new(),
            ScopePath::Listener { listen, peer, .. } => {
                let l = listen.iter().map(|l| l.to_string());
                l.chain(peer.iter().map(|p| p.to_string())).collect()
            }
            ScopePath::Pathway(p) | ScopePath::PathwayGroup(p) | ScopePath::ThreadPool(p) => {
                vec![p.clone()]
            }
            ScopePath::GroupPathway { group, pathway } => vec![group.clone(), pathway.clone()],
        }
    }
}

/// The header text without brackets (`global` for the global scope).
impl fmt::Display for ScopePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopePath::Global => f.write_str("global"),
            ScopePath::Listener { kind, listen, peer } => {
                f.write_str(kind)?;
                if let Some(l) = listen {
                    write!(f, " Listen \"{l}\"")?;
                }
                if let Some(p) = peer {
                    write!(f, " Peer \"{p}\"")?;
                }
                Ok(())
            }
            ScopePath::Pathway(p) => write!(f, "Pathway \"{p}\""),
            ScopePath::PathwayGroup(g) => write!(f, "Pathway_Group \"{g}\""),
            ScopePath::GroupPathway { group, pathway } => {
                write!(f, "Pathway_Group \"{group}\" Pathway \"{pathway}\"")
            }
            ScopePath::ThreadPool(t) => write!(f, "ThreadPool \"{t}\""),
            ScopePath::Module(m) => f.write_str(m),
        }
    }
}

/// Splits header or console text into tokens; `"…"` is one token (quotes removed).
pub(crate) fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut tok = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some(ch) => tok.push(ch),
                    None => return Err("unbalanced double quote".to_string()),
                }
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                if ch == '"' {
                    return Err(format!("stray double quote after {tok}"));
                }
                tok.push(ch);
                chars.next();
            }
        }
        out.push(tok);
    }
    Ok(out)
}

/// A parsed scope path whose Peer instance is still text (a CIDR in headers, an IP in `eval`).
pub(crate) struct RawPath {
    pub path: ScopePath,
    pub peer: Option<String>,
}

fn is(tok: &str, word: &str) -> bool {
    tok.eq_ignore_ascii_case(word)
}

fn instance<'t>(toks: &'t [String], i: usize, kind: &str) -> Result<&'t str, String> {
    match toks.get(i) {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(format!(
            "{kind} needs an instance (such as {kind} \"name\")"
        )),
    }
}

/// Parses tokens into a scope path; the Peer instance is left as text.
pub(crate) fn parse_tokens(schema: &Schema, toks: &[String]) -> Result<RawPath, String> {
    let Some(head) = toks.first() else {
        return Ok(RawPath {
            path: ScopePath::Global,
            peer: None,
        });
    };
    let (path, used) = if is(head, "global") {
        (ScopePath::Global, 1)
    } else if is(head, "Pathway") {
        (
            ScopePath::Pathway(instance(toks, 1, "Pathway")?.to_string()),
            2,
        )
    } else if is(head, "ThreadPool") {
        (
            ScopePath::ThreadPool(instance(toks, 1, "ThreadPool")?.to_string()),
            2,
        )
    } else if is(head, "Pathway_Group") {
        let group = instance(toks, 1, "Pathway_Group")?.to_string();
        match toks.get(2) {
            Some(t) if is(t, "Pathway") => {
                let pathway = instance(toks, 3, "Pathway")?.to_string();
                (ScopePath::GroupPathway { group, pathway }, 4)
            }
            _ => (ScopePath::PathwayGroup(group), 2),
        }
    } else if is(head, "Listen") || is(head, "Peer") {
        return Err(format!("{head} must follow a <Type>_Listener scope"));
    } else {
        match schema.scope_kind(head) {
            Some((name, ScopeKind::Module)) => (ScopePath::Module(name.to_string()), 1),
            Some((name, ScopeKind::Listener)) => return parse_listener(name, toks),
            None => return Err(format!("unknown scope {head}")),
        }
    };
    if let Some(extra) = toks.get(used) {
        return Err(format!("unexpected {extra} after {path}"));
    }
    Ok(RawPath { path, peer: None })
}

fn parse_listener(kind: &str, toks: &[String]) -> Result<RawPath, String> {
    let mut i = 1;
    let mut listen = None;
    let mut peer = None;
    if toks.get(i).is_some_and(|t| is(t, "Listen")) {
        let text = instance(toks, i + 1, "Listen")?;
        let addr = text
            .parse::<ListenAddr>()
            .map_err(|e| format!("Listen \"{text}\" is not an address: {e}"))?;
        listen = Some(addr);
        i += 2;
    }
    if toks.get(i).is_some_and(|t| is(t, "Peer")) {
        peer = Some(instance(toks, i + 1, "Peer")?.to_string());
        i += 2;
    }
    if let Some(extra) = toks.get(i) {
        let why = if is(extra, "Listen") {
            " (Listen comes before Peer)"
        } else {
            ""
        };
        return Err(format!("unexpected {extra} in {kind} scope{why}"));
    }
    let path = ScopePath::Listener {
        kind: kind.to_string(),
        listen,
        peer: None,
    };
    Ok(RawPath { path, peer })
}

/// Parses a section header (text between the brackets) into a normalised scope path.
pub fn parse_header(schema: &Schema, text: &str) -> Result<ScopePath, String> {
    if text.trim().is_empty() {
        return Err("empty section header".to_string());
    }
    let path = parse_scope_path(schema, text)?;
    if path == ScopePath::Global {
        return Err("the global scope has no header: put global options before any section".into());
    }
    Ok(path)
}

/// Parses a scope path as written in a header or a console command (quotes optional); empty
/// text or `global` is the global scope. The Peer instance must be a CIDR.
pub fn parse_scope_path(schema: &Schema, text: &str) -> Result<ScopePath, String> {
    let toks = tokenize(text)?;
    let RawPath { mut path, peer } = parse_tokens(schema, &toks)?;
    if let (ScopePath::Listener { peer: slot, .. }, Some(text)) = (&mut path, peer) {
        let cidr = text
            .parse::<Cidr>()
            .map_err(|e| format!("Peer \"{text}\" is not a CIDR: {e}"))?;
        *slot = Some(cidr);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        let mut s = Schema::new();
        s.register_scope_kind("ESMTP_Listener", ScopeKind::Listener)
            .unwrap();
        s.register_scope_kind("Maildir", ScopeKind::Module).unwrap();
        s
    }

    fn ok(text: &str) -> String {
        parse_header(&schema(), text).unwrap().to_string()
    }

    fn err(text: &str) -> String {
        parse_header(&schema(), text).unwrap_err()
    }

    #[test]
    fn headers_normalise() {
        assert_eq!(ok("esmtp_listener"), "ESMTP_Listener");
        assert_eq!(
            ok("ESMTP_Listener listen \"[::0001]:25\" PEER 10.0.0.0/8"),
            "ESMTP_Listener Listen \"[::1]:25\" Peer \"10.0.0.0/8\""
        );
        assert_eq!(
            ok("ESMTP_Listener Peer \"2001:DB8::/32\""),
            "ESMTP_Listener Peer \"2001:db8::/32\""
        );
        assert_eq!(
            ok("pathway_group g Pathway \"in bound\""),
            "Pathway_Group \"g\" Pathway \"in bound\""
        );
        assert_eq!(ok("ThreadPool io"), "ThreadPool \"io\"");
        assert_eq!(ok("MAILDIR"), "Maildir");
    }

    #[test]
    fn headers_rejected() {
        assert_eq!(err("SMTP_Listener"), "unknown scope SMTP_Listener");
        assert!(err("Peer \"10.0.0.0/8\"").contains("must follow a <Type>_Listener"));
        assert!(err("ESMTP_Listener Peer 10.0.0.0/8 Listen \"*:25\"")
            .contains("Listen comes before Peer"));
        assert!(err("ESMTP_Listener Listen").contains("needs an instance"));
        assert!(err("Pathway a b").contains("unexpected b"));
        assert!(err("Pathway \"a").contains("unbalanced"));
        assert!(err("ESMTP_Listener Peer \"10.0.0.1/8\"").contains("is not a CIDR"));
        assert!(err("ESMTP_Listener Listen \"host:25\"").contains("is not an address"));
        assert!(err("Maildir extra").contains("unexpected extra"));
    }

    #[test]
    fn keys_ignore_case_of_names() {
        let a = parse_header(&schema(), "Pathway \"Inbound\"").unwrap();
        let b = parse_header(&schema(), "PATHWAY inbound").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.key(), b.key());
    }
}
