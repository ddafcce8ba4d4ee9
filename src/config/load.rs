//! C: `ec_config_load()` and the option parsers it drives
//!
//! Reading configuration files: INI parsing, per-line indexing and option validation.
//!
//! A path is a file, or a directory whose `*.conf` files are read in lexical order of their
//! names (dotfiles skipped). Each file is parsed with `rust-ini` (quotes and escapes off, so
//! values arrive as written, minus inline comments) and indexed line by line here, because
//! `rust-ini` keeps no line numbers: the two views are zipped, and every error names
//! `path:line`.
//!
//! Contract:
//! - Options before any section are global. A comment starts with `#` or `;` at the start of a
//!   line, or after a space or tab anywhere (even inside quotes).
//! - The same scope may appear in several sections and files. A later file overrides an earlier
//!   one for the same option (logged at info); the same option twice for the same scope within
//!   one file is an error.
//! - Loading never stops at the first error: every file is read and every error collected. A bad
//!   header's options are skipped (not reported one by one).
//!
//! Diagnostics: `Err(Vec<ConfigError>)` with every problem; overrides are logged with
//! `log::info!`.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use ini::{Ini, ParseOption};

use super::error::ConfigError;
use super::generation::{Draft, Entry, Origin};
use super::schema::{Schema, Slot};
use super::scope::{parse_header, ScopePath};

/// One configuration file: the name used in messages, and its text.
pub(crate) struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Reads a file, or a directory's `*.conf` files in lexical order.
pub(crate) fn read_path(path: &Path) -> Result<Vec<SourceFile>, Vec<ConfigError>> {
    let io_err = |p: &Path, what: &str, e: std::io::Error| ConfigError {
        path: p.display().to_string(),
        line: 0,
        section: String::new(),
        option: String::new(),
        reason: format!("cannot {what}: {e}"),
    };
    let meta = fs::metadata(path).map_err(|e| vec![io_err(path, "read", e)])?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let dir = fs::read_dir(path).map_err(|e| vec![io_err(path, "list directory", e)])?;
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && n.ends_with(".conf"))
            .collect();
        names.sort();
        files.extend(names.into_iter().map(|n| path.join(n)));
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match fs::read_to_string(&f) {
            Ok(text) => out.push(SourceFile {
                name: f.display().to_string(),
                text,
            }),
            Err(e) => errors.push(io_err(&f, "read", e)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A section of one file as indexed: its header (None for the global part) and its keys.
#[derive(Debug)]
struct IndexedSection {
    header: Option<(usize, Option<String>)>,
    keys: Vec<(usize, String)>,
}

fn strip_comment(s: &str) -> &str {
    let b = s.as_bytes();
    for i in 1..b.len() {
        if (b[i] == b'#' || b[i] == b';') && (b[i - 1] == b' ' || b[i - 1] == b'\t') {
            return &s[..i];
        }
    }
    s
}

/// What one logical line is.
enum LineKind {
    Blank,
    Header(String),
    Key(String),
    /// A bad line: the reason, and what `rust-ini` is shown instead.
    Bad(&'static str, &'static str),
}

fn classify(t: &str) -> LineKind {
    if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
        return LineKind::Blank;
    }
    if t.starts_with('[') {
        return match strip_comment(t).trim_end().strip_suffix(']') {
            Some(inner) => LineKind::Header(inner[1..].trim().to_string()),
            None => LineKind::Bad("section header must end with ]", "[]"),
        };
    }
    match t.find(['=', ':']) {
        Some(0) => LineKind::Bad("missing option name before =", ""),
        Some(k) => LineKind::Key(t[..k].trim().to_string()),
        None => LineKind::Bad("expected option = value", ""),
    }
}

/// Indexes the logical lines of a file and returns a copy of the text in which bad lines are
/// neutralised (a bad header becomes `[]`, a bad key line blank), so that `rust-ini` parses the
/// rest and the two views stay aligned. A line ending in `\` continues on the next one.
fn index_lines(
    file: &str,
    text: &str,
    errors: &mut Vec<ConfigError>,
) -> (Vec<IndexedSection>, String) {
    let mut sections = vec![IndexedSection {
        header: None,
        keys: Vec::new(),
    }];
    let mut clean = String::with_capacity(text.len());
    let physical: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    while i < physical.len() {
        let start = i;
        let mut logical = physical[i].trim_end_matches('\r').to_string();
        while logical.ends_with('\\') && i + 1 < physical.len() {
            logical.pop();
            i += 1;
            logical.push_str(physical[i].trim_end_matches('\r'));
        }
        i += 1;
        let line = start + 1;
        let mut replacement = None;
        match classify(logical.trim()) {
            LineKind::Blank => {}
            LineKind::Header(h) => sections.push(IndexedSection {
                header: Some((line, Some(h))),
                keys: Vec::new(),
            }),
            LineKind::Key(k) => sections
                .last_mut()
                .expect("never empty")
                .keys
                .push((line, k)),
            LineKind::Bad(reason, instead) => {
                errors.push(ConfigError {
                    path: file.to_string(),
                    line,
                    section: String::new(),
                    option: String::new(),
                    reason: reason.to_string(),
                });
                if instead == "[]" {
                    sections.push(IndexedSection {
                        header: Some((line, None)),
                        keys: Vec::new(),
                    });
                }
                replacement = Some(instead);
            }
        }
        for (n, raw) in physical[start..i].iter().enumerate() {
            match replacement {
                Some(r) if n == 0 => clean.push_str(r),
                Some(_) => {}
                None => clean.push_str(raw),
            }
            if start + n + 1 < physical.len() {
                clean.push('\n');
            }
        }
    }
    (sections, clean)
}

/// Parses one file into `(line, header, [(line, key, value)])` per section.
#[allow(clippy::type_complexity)]
fn parse_file(
    file: &SourceFile,
    errors: &mut Vec<ConfigError>,
) -> Vec<(
    Option<(usize, Option<String>)>,
    Vec<(usize, String, String)>,
)> {
    let (index, clean) = index_lines(&file.name, &file.text, errors);
    let opt = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: false,
        enabled_preserve_key_leading_whitespace: false,
    };
    let fail = |line: usize, reason: String| ConfigError {
        path: file.name.clone(),
        line,
        section: String::new(),
        option: String::new(),
        reason,
    };
    let ini = match Ini::load_from_str_opt(&clean, opt) {
        Ok(ini) => ini,
        Err(e) => {
            errors.push(fail(e.line, e.msg.to_string()));
            return Vec::new();
        }
    };
    let parsed: Vec<_> = ini.iter().collect();
    let aligned = parsed.len() == index.len()
        && parsed.iter().zip(&index).all(|((_, props), sec)| {
            // Properties::len() counts distinct keys; a repeated key is an entry of its own.
            props.iter().count() == sec.keys.len()
                && props
                    .iter()
                    .zip(&sec.keys)
                    .all(|((k, _), (_, key))| k == key)
        });
    if !aligned {
        errors.push(fail(
            0,
            "internal error: line index disagrees with the INI parser".into(),
        ));
        return Vec::new();
    }
    index
        .into_iter()
        .zip(parsed)
        .map(|(sec, (_, props))| {
            let kv = sec
                .keys
                .into_iter()
                .zip(props.iter())
                .map(|((line, key), (_, v))| (line, key, v.to_string()))
                .collect();
            (sec.header, kv)
        })
        .collect()
}

/// Loads files, in order, into a draft, appending every error to `errors`. The draft holds
/// whatever was valid, so that reference checks can still run and report their errors too.
pub(crate) fn load_files(
    schema: &Schema,
    files: &[SourceFile],
    errors: &mut Vec<ConfigError>,
) -> Draft {
    let mut draft = Draft::new();
    for file in files {
        load_file(schema, file, &mut draft, errors);
    }
    draft
}

/// For `Pathway_Group "g" Pathway "p"`: the existing group scope of `p` in another group.
fn other_group(draft: &Draft, path: &ScopePath) -> Option<String> {
    let ScopePath::GroupPathway { group, pathway } = path else {
        return None;
    };
    draft.scopes.iter().find_map(|(p, _)| match p {
        ScopePath::GroupPathway {
            group: g,
            pathway: q,
        } if q.eq_ignore_ascii_case(pathway) && !g.eq_ignore_ascii_case(group) => {
            Some(p.to_string())
        }
        _ => None,
    })
}

/// Per-file state while loading: the file's name and which (scope, slot) it has set where.
struct FileLoad<'a> {
    file: &'a SourceFile,
    name: Arc<str>,
    seen: HashMap<(usize, Slot), usize>,
}

fn load_file(schema: &Schema, file: &SourceFile, draft: &mut Draft, errors: &mut Vec<ConfigError>) {
    let mut state = FileLoad {
        file,
        name: Arc::from(file.name.as_str()),
        seen: HashMap::new(),
    };
    for (header, keys) in parse_file(file, errors) {
        let header_line = header.as_ref().map_or(0, |h| h.0);
        let (written, path) = match header {
            None => (String::new(), ScopePath::Global),
            Some((_, None)) => continue,
            Some((line, Some(text))) => match parse_header(schema, &text) {
                Ok(p) => (text, p),
                Err(reason) => {
                    errors.push(ConfigError {
                        path: file.name.clone(),
                        line,
                        section: text,
                        option: String::new(),
                        reason,
                    });
                    continue;
                }
            },
        };
        if let Some(other) = other_group(draft, &path) {
            errors.push(ConfigError {
                path: file.name.clone(),
                line: header_line,
                section: written,
                option: String::new(),
                reason: format!("the pathway is already in {other}; a pathway has one group"),
            });
            continue;
        }
        let scope = draft.scope(&path);
        for (line, key, value) in keys {
            if let Err(reason) =
                state.load_key(schema, draft, (scope, &path, &written), line, &key, &value)
            {
                errors.push(ConfigError {
                    path: file.name.clone(),
                    line,
                    section: written.clone(),
                    option: key,
                    reason,
                });
            }
        }
    }
}

impl FileLoad<'_> {
    /// Checks one `key = value` line and stores it in the draft.
    fn load_key(
        &mut self,
        schema: &Schema,
        draft: &mut Draft,
        (scope, path, written): (usize, &ScopePath, &str),
        line: usize,
        key: &str,
        value: &str,
    ) -> Result<(), String> {
        let (slot, value) = check_option(schema, path, key, value)?;
        if let Some(first) = self.seen.insert((scope, slot), line) {
            return Err(format!("set twice in this file (first at line {first})"));
        }
        let origin = Origin {
            file: Arc::clone(&self.name),
            line,
        };
        if let Some(old) = draft.set(
            scope,
            Entry {
                slot,
                value,
                origin,
            },
        ) {
            log::info!(
                "{}:{}: [{}] {}: overrides the value from {}:{}",
                self.file.name,
                line,
                written,
                key,
                old.origin.file,
                old.origin.line
            );
        }
        Ok(())
    }
}

/// Looks an option up for a scope and parses and validates its value.
pub(crate) fn check_option(
    schema: &Schema,
    path: &ScopePath,
    key: &str,
    text: &str,
) -> Result<(Slot, super::types::Value), String> {
    let Some(slot) = schema.slot(key, path.class()) else {
        return Err(if schema.is_known(key) {
            format!("not valid here (valid in: {})", schema.where_valid(key))
        } else {
            "unknown option".to_string()
        });
    };
    let def = schema.def(slot);
    let value = def.ty.parse(text)?;
    if let Some(validate) = def.validator {
        validate(&value)?;
    }
    Ok((slot, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_tracks_lines_and_neutralises_bad_ones() {
        let text = "a = 1\n# c\n[X]\n  b : 2 ; note\nbroken\n[Y\nc = 3\n[X]\nd = \\\n  4\ne = 5";
        let mut errors = Vec::new();
        let (idx, clean) = index_lines("f", text, &mut errors);
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "f:5: expected option = value",
                "f:6: section header must end with ]"
            ]
        );
        assert_eq!(idx.len(), 4);
        assert_eq!(idx[0].keys, [(1, "a".to_string())]);
        assert_eq!(idx[1].header, Some((3, Some("X".to_string()))));
        assert_eq!(idx[1].keys, [(4, "b".to_string())]);
        assert_eq!(idx[2].header, Some((6, None)));
        assert_eq!(idx[3].keys, [(9, "d".to_string()), (11, "e".to_string())]);
        assert_eq!(clean.lines().count(), text.lines().count());
    }

    #[test]
    fn repeated_sections_keep_file_order_in_rust_ini() {
        let file = SourceFile {
            name: "f".into(),
            text: "[A]\nx = 1\n[B]\ny = 2\n[A]\nz = 3 # c\n".into(),
        };
        let mut errors = Vec::new();
        let secs = parse_file(&file, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let flat: Vec<String> = secs
            .iter()
            .flat_map(|(h, kv)| {
                let h = h
                    .as_ref()
                    .map(|(l, t)| format!("{l}:{}", t.clone().unwrap_or_default()));
                kv.iter().map(move |(l, k, v)| format!("{h:?} {l}:{k}={v}"))
            })
            .collect();
        assert_eq!(
            flat,
            [
                "Some(\"1:A\") 2:x=1",
                "Some(\"3:B\") 4:y=2",
                "Some(\"5:A\") 6:z=3"
            ]
        );
    }
}
