//! C: `ec_config_load()` and the option parsers it drives
//!
//! Reading configuration files: INI parsing, per-line indexing and option validation.
//!
//! A path is a file, or a directory whose `*.conf` files are read in lexical order of their
//! names (dotfiles, directories and names that are not UTF-8 skipped); a directory with no
//! such file is an error, at load and at reload alike. Each file is indexed line by line here, because
//! `rust-ini` keeps no line numbers, and the values are parsed by `rust-ini` (quotes and
//! escapes off, so values arrive as written, minus inline comments).
//!
//! The two views cannot disagree by construction: the indexer first joins continuation lines
//! and classifies every logical line, then hands `rust-ini` a text it generated itself, one
//! line per physical line: `[n]` for the n-th header, `k=<text after the = or :>` for a key
//! line, and an empty line for everything else (comments, blanks, continued lines, bad lines).
//! `rust-ini` therefore never sees a header, a key name, a comment line or a backslash at the
//! end of a line, which are where its grammar and ours could differ. Should the two still
//! disagree on the number of sections or keys, the indexer's own reading of each value is used
//! and an internal error is added: nothing else is lost.
//!
//! Contract:
//! - Options before any section are global. A line whose first non-blank character is `#` or
//!   `;` is a comment. Elsewhere, `#` or `;` preceded by a space or tab starts a comment (even
//!   inside quotes), except as the first character of a value (`Key = #1` is the value `#1`).
//! - A line ending in `\` continues on the next one: the backslash is dropped and the next
//!   physical line appended as it is (leading blanks included); comments are recognised on the
//!   joined line, errors name its first physical line. A comment line never continues.
//! - A UTF-8 byte order mark at the start of a file is ignored; CRLF line ends are accepted.
//!   A carriage return inside a line is an error.
//! - The same scope may appear in several sections and files. A later file overrides an earlier
//!   one for the same option (logged at info); the same option twice for the same scope within
//!   one file is an error (even when the first value was itself bad).
//! - Loading never stops at the first error: every file is read (an unreadable or non-UTF-8
//!   file is an error of its own, the others are still parsed) and every error collected. A
//!   bad header's options are skipped (not reported one by one).
//!
//! Diagnostics: every problem is appended to the caller's `Vec<ConfigError>`, each with
//! `path:line` (line 0 only for a file or directory that cannot be read at all, a directory
//! without configuration files, and the internal error above, which the fuzz test below
//! shows does not happen); overrides are logged with
//! `log::info!`, as `path:line: [section] option: overrides the value from path:line`.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ini::{Ini, ParseOption};

use super::error::ConfigError;
use super::generation::{Draft, Entry, Origin};
use super::schema::{Schema, Slot};
use super::scope::{parse_header, ScopePath};
use super::types::Value;

/// One configuration file: the name used in messages, and its text.
pub(crate) struct SourceFile {
    pub name: String,
    pub text: String,
}

fn file_err(path: &str, line: usize, section: &str, reason: String) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        line,
        section: section.to_string(),
        option: String::new(),
        reason,
    }
}

/// Reads a file, or a directory's `*.conf` files in lexical order. A file that cannot be read
/// (or is not UTF-8) gives an error, and the other files are still returned and loaded; an
/// unreadable file is returned empty, so that errors still sort in file order. A directory
/// without any entry [`conf_files`] picks is an error (`dir: no configuration files …`).
pub(crate) fn read_path(path: &Path) -> (Vec<SourceFile>, Vec<ConfigError>) {
    let shown = path.display().to_string();
    let mut errors = Vec::new();
    let is_dir = match fs::metadata(path) {
        Ok(m) => m.is_dir(),
        Err(e) => {
            errors.push(file_err(&shown, 0, "", format!("cannot read: {e}")));
            return (Vec::new(), errors);
        }
    };
    if !is_dir {
        let file = read_file(path, false, &mut errors);
        return (vec![file], errors);
    }
    match conf_files(path) {
        // An empty directory would start, or reload into, a configuration without Listens.
        Ok(paths) if paths.is_empty() => {
            let why = "no configuration files (a directory needs *.conf files)".to_string();
            errors.push(file_err(&shown, 0, "", why));
            (Vec::new(), errors)
        }
        Ok(paths) => {
            let files = paths.iter().map(|p| read_file(p, true, &mut errors));
            (files.collect(), errors)
        }
        Err(e) => {
            errors.push(file_err(
                &shown,
                0,
                "",
                format!("cannot list directory: {e}"),
            ));
            (Vec::new(), errors)
        }
    }
}

/// The `*.conf` entries of a directory in lexical order, without dotfiles and directories.
/// Dangling symlinks and special files are kept, so that reading them reports the problem.
fn conf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && n.ends_with(".conf"))
        .filter(|n| !dir.join(n).is_dir())
        .collect();
    names.sort();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Reads one file. In a directory only regular files are read: a FIFO or a device named
/// `x.conf` could block the loader or never end.
fn read_file(path: &Path, regular_only: bool, errors: &mut Vec<ConfigError>) -> SourceFile {
    let name = path.display().to_string();
    let bytes = match fs::metadata(path) {
        Ok(m) if regular_only && !m.is_file() => Err("not a regular file".to_string()),
        Ok(_) => fs::read(path).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let text = match bytes {
        Ok(bytes) => decode(&name, bytes, errors),
        Err(why) => {
            errors.push(file_err(&name, 0, "", format!("cannot read: {why}")));
            String::new()
        }
    };
    SourceFile { name, text }
}

/// The text of a file. Bytes that are not UTF-8 are an error naming the line and column of the
/// first one; they are replaced by U+FFFD so that the rest of the file is still checked.
fn decode(name: &str, bytes: Vec<u8>, errors: &mut Vec<ConfigError>) -> String {
    let e = match String::from_utf8(bytes) {
        Ok(text) => return text,
        Err(e) => e,
    };
    let bytes = e.as_bytes();
    let at = e.utf8_error().valid_up_to();
    let valid = &bytes[..at];
    let start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&valid[start..]).chars().count() + 1;
    let why = format!(
        "not UTF-8 (byte 0x{:02x} at column {column}); configuration files must be UTF-8",
        bytes[at]
    );
    errors.push(file_err(name, line, "", why));
    String::from_utf8_lossy(bytes).into_owned()
}

/// A key line as indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexedKey {
    /// The first physical line.
    line: usize,
    /// The option name as written.
    key: String,
    /// The value: `rust-ini`'s reading once [`parse_file`] is done (the indexer's before).
    value: String,
}

/// A section of one file as indexed: its header (None for the global part) and its keys.
#[derive(Debug)]
struct IndexedSection {
    /// The header's line and text (without brackets); the text is None for a malformed header.
    header: Option<(usize, Option<String>)>,
    keys: Vec<IndexedKey>,
}

impl IndexedSection {
    /// The section as error messages name it: empty for global or a malformed header.
    fn written(&self) -> &str {
        match &self.header {
            Some((_, Some(text))) => text,
            _ => "",
        }
    }
}

/// Cuts a comment off a header line: `#` or `;` after a space or tab.
fn strip_comment(s: &str) -> &str {
    let b = s.as_bytes();
    for i in 1..b.len() {
        if (b[i] == b'#' || b[i] == b';') && (b[i - 1] == b' ' || b[i - 1] == b'\t') {
            return &s[..i];
        }
    }
    s
}

/// The value after `=` exactly as `rust-ini` (quotes, escapes and multi-line values off,
/// inline comments on) reads it: leading and trailing blanks trimmed, and cut before a `#` or
/// `;` that follows a space or tab. A backslash takes the next character literally (and stays
/// in the value), so `\ #` does not start a comment: that is `rust-ini`'s rule.
fn value_text(rest: &str) -> &str {
    let v = rest.trim_start();
    let mut chars = v.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            ' ' | '\t' => {
                if let Some(&(i, '#' | ';')) = chars.peek() {
                    return v[..i].trim();
                }
            }
            _ => {}
        }
    }
    v.trim()
}

/// What one logical line is.
enum LineKind<'t> {
    Blank,
    Header(&'t str),
    /// The option name and the text after the `=` or `:`.
    Key(&'t str, &'t str),
    /// A bad line: the reason, and whether it is a header (whose options are then skipped).
    Bad(&'static str, bool),
}

/// Classifies a logical line whose leading blanks are trimmed.
fn classify(t: &str) -> LineKind<'_> {
    if t.is_empty() || t.starts_with(['#', ';']) {
        return LineKind::Blank;
    }
    if t.contains('\r') {
        return LineKind::Bad("a carriage return inside a line", t.starts_with('['));
    }
    if t.starts_with('[') {
        return match strip_comment(t).trim_end().strip_suffix(']') {
            Some(inner) => LineKind::Header(inner[1..].trim()),
            None => LineKind::Bad("section header must end with ]", true),
        };
    }
    match t.find(['=', ':']) {
        Some(0) => LineKind::Bad("missing option name before =", false),
        Some(k) => LineKind::Key(t[..k].trim(), &t[k + 1..]),
        None => LineKind::Bad("expected option = value", false),
    }
}

/// The logical line starting at physical line `i`, and how many physical lines it spans. A
/// line ending in `\` is joined with the next (backslash dropped); a comment line is never
/// continued, so that a commented-out line cannot swallow the next one.
fn join(physical: &[&str], i: usize) -> (String, usize) {
    let mut text = physical[i].to_string();
    if text.trim_start().starts_with(['#', ';']) {
        return (text, 1);
    }
    let mut span = 1;
    while text.ends_with('\\') {
        text.pop();
        match physical.get(i + span) {
            Some(next) => {
                text.push_str(next);
                span += 1;
            }
            None => break,
        }
    }
    (text, span)
}

/// Indexes one logical line into `sections`; returns what `rust-ini` is given for it.
fn index_line(
    file: &str,
    line: usize,
    text: &str,
    sections: &mut Vec<IndexedSection>,
    errors: &mut Vec<ConfigError>,
) -> String {
    let header = |sections: &mut Vec<IndexedSection>, text: Option<&str>| {
        sections.push(IndexedSection {
            header: Some((line, text.map(str::to_string))),
            keys: Vec::new(),
        });
        format!("[{}]", sections.len() - 1)
    };
    // Trailing blanks stay: after them a `\` that survived the join cannot end rust-ini's line.
    match classify(text.trim_start()) {
        LineKind::Blank => String::new(),
        LineKind::Header(h) => header(sections, Some(h)),
        LineKind::Key(key, rest) => {
            let current = sections.last_mut().expect("never empty");
            current.keys.push(IndexedKey {
                line,
                key: key.to_string(),
                value: value_text(rest).to_string(),
            });
            format!("k={rest}")
        }
        LineKind::Bad(reason, is_header) => {
            let section = if is_header {
                ""
            } else {
                sections.last().expect("never empty").written()
            };
            errors.push(file_err(file, line, section, reason.to_string()));
            if is_header {
                header(sections, None)
            } else {
                String::new()
            }
        }
    }
}

/// Indexes the logical lines of a file, and returns the text `rust-ini` is to parse: one line
/// per physical line, `[n]` for the n-th section header, `k=…` for a key line, empty otherwise
/// (and for the lines a continuation joined).
fn index_lines(
    file: &str,
    text: &str,
    errors: &mut Vec<ConfigError>,
) -> (Vec<IndexedSection>, String) {
    let physical: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut sections = vec![IndexedSection {
        header: None,
        keys: Vec::new(),
    }];
    let mut feed = String::with_capacity(text.len());
    let mut i = 0;
    while i < physical.len() {
        let (logical, span) = join(&physical, i);
        // The generated line goes on the last physical line of the span: a logical line can
        // end in `\` only when the join reached the end of the file (an escaped backslash
        // whose continuation was dropped), and rust-ini must then see no line end after it.
        feed.extend(std::iter::repeat_n('\n', span - 1));
        feed.push_str(&index_line(file, i + 1, &logical, &mut sections, errors));
        i += span;
        if i < physical.len() || !feed.ends_with('\\') {
            // rust-ini also needs a line end after a header, even at the end of the file.
            feed.push('\n');
        }
    }
    (sections, feed)
}

/// `rust-ini`'s values for the indexed keys, section by section; `None` if it fails or its
/// sections and keys do not line up with the index.
fn ini_values(feed: &str, index: &[IndexedSection]) -> Option<Vec<Vec<String>>> {
    let opt = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: false,
        enabled_preserve_key_leading_whitespace: false,
    };
    let ini = Ini::load_from_str_opt(feed, opt).ok()?;
    // Properties::len() counts distinct keys; every key line is an entry of its own.
    let values: Vec<Vec<String>> = ini
        .iter()
        .map(|(_, props)| props.iter().map(|(_, v)| v.to_string()).collect())
        .collect();
    let aligned = values.len() == index.len()
        && values
            .iter()
            .zip(index)
            .all(|(v, sec)| v.len() == sec.keys.len());
    aligned.then_some(values)
}

/// Indexes one file and reads its values with `rust-ini`.
fn parse_file(file: &SourceFile, errors: &mut Vec<ConfigError>) -> Vec<IndexedSection> {
    let text = file.text.strip_prefix('\u{feff}').unwrap_or(&file.text);
    let (mut index, feed) = index_lines(&file.name, text, errors);
    match ini_values(&feed, &index) {
        Some(values) => {
            for (sec, values) in index.iter_mut().zip(values) {
                for (key, value) in sec.keys.iter_mut().zip(values) {
                    key.value = value;
                }
            }
        }
        // Cannot happen with the text index_lines generates; keep every other error anyway.
        None => errors.push(file_err(
            &file.name,
            0,
            "",
            "internal error: the INI parser disagrees with the line index; \
             values were read by the index alone"
                .to_string(),
        )),
    }
    index
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

/// Per-file state while loading: the file's name and which (scope, slot) it has set where.
struct FileLoad<'a> {
    file: &'a SourceFile,
    name: Arc<str>,
    seen: HashMap<(usize, Slot), usize>,
}

/// The scope a section header names, entered in the draft (with its index), or why the
/// section is skipped (`None`: the malformed header was reported by the indexer already).
fn section_scope(
    schema: &Schema,
    draft: &mut Draft,
    file: &SourceFile,
    header: &Option<(usize, Option<String>)>,
) -> Result<(ScopePath, usize), Option<ConfigError>> {
    let (line, text) = match header {
        None => {
            let global = draft.scope(&ScopePath::Global).expect("the global scope");
            return Ok((ScopePath::Global, global));
        }
        Some((_, None)) => return Err(None),
        Some((line, Some(text))) => (*line, text),
    };
    let err = |reason| Some(file_err(&file.name, line, text, reason));
    let path = parse_header(schema, text).map_err(err)?;
    let scope = draft.scope(&path).map_err(err)?;
    Ok((path, scope))
}

fn load_file(schema: &Schema, file: &SourceFile, draft: &mut Draft, errors: &mut Vec<ConfigError>) {
    let mut state = FileLoad {
        file,
        name: Arc::from(file.name.as_str()),
        seen: HashMap::new(),
    };
    for section in parse_file(file, errors) {
        let (path, scope) = match section_scope(schema, draft, file, &section.header) {
            Ok(found) => found,
            Err(None) => continue,
            Err(Some(e)) => {
                errors.push(e);
                continue;
            }
        };
        let written = section.written();
        for key in &section.keys {
            if let Err(reason) = state.load_key(schema, draft, (scope, &path, written), key) {
                errors.push(ConfigError {
                    path: file.name.clone(),
                    line: key.line,
                    section: written.to_string(),
                    option: key.key.clone(),
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
        k: &IndexedKey,
    ) -> Result<(), String> {
        let slot = lookup_option(schema, path, &k.key)?;
        // Recorded before the value is checked, so a bad first value still counts.
        match self.seen.entry((scope, slot)) {
            MapEntry::Occupied(first) => {
                return Err(format!(
                    "set twice in this file (first at line {})",
                    first.get()
                ))
            }
            MapEntry::Vacant(v) => {
                v.insert(k.line);
            }
        }
        let value = parse_value(schema, slot, &k.value)?;
        let origin = Origin {
            file: Arc::clone(&self.name),
            line: k.line,
        };
        let entry = Entry {
            slot,
            value,
            origin,
        };
        if let Some(old) = draft.set(scope, entry) {
            let note = ConfigError {
                path: self.file.name.clone(),
                line: k.line,
                section: written.to_string(),
                option: k.key.clone(),
                reason: format!(
                    "overrides the value from {}:{}",
                    old.origin.file, old.origin.line
                ),
            };
            log::info!("{note}");
        }
        Ok(())
    }
}

/// The slot of option `key` in a scope, or why there is none.
fn lookup_option(schema: &Schema, path: &ScopePath, key: &str) -> Result<Slot, String> {
    schema.slot(key, path.class()).ok_or_else(|| {
        if schema.is_known(key) {
            format!("not valid here (valid in: {})", schema.where_valid(key))
        } else {
            "unknown option".to_string()
        }
    })
}

/// Parses and validates a value for a slot.
fn parse_value(schema: &Schema, slot: Slot, text: &str) -> Result<Value, String> {
    let def = schema.def(slot);
    let value = def.ty.parse(text)?;
    if let Some(validate) = def.validator {
        validate(&value)?;
    }
    Ok(value)
}

/// Looks an option up for a scope and parses and validates its value.
pub(crate) fn check_option(
    schema: &Schema,
    path: &ScopePath,
    key: &str,
    text: &str,
) -> Result<(Slot, Value), String> {
    let slot = lookup_option(schema, path, key)?;
    Ok((slot, parse_value(schema, slot, text)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigStore, OptionDef, OptionType, ScopeClass, ScopeKind, Scopes};

    fn keys(sec: &IndexedSection) -> Vec<(usize, &str, &str)> {
        let k = sec.keys.iter();
        k.map(|k| (k.line, k.key.as_str(), k.value.as_str()))
            .collect()
    }

    fn parse(text: &str) -> (Vec<IndexedSection>, Vec<String>) {
        let file = SourceFile {
            name: "f".into(),
            text: text.into(),
        };
        let mut errors = Vec::new();
        let secs = parse_file(&file, &mut errors);
        (secs, errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn index_tracks_lines_and_neutralises_bad_ones() {
        let text = "a = 1\n# c\n[X]\n  b : 2 ; note\nbroken\n[Y\nc = 3\n[X]\nd = \\\n  4\ne = 5";
        let (idx, errors) = parse(text);
        assert_eq!(
            errors,
            [
                "f:5: [X] expected option = value",
                "f:6: section header must end with ]"
            ]
        );
        assert_eq!(idx.len(), 4);
        assert_eq!(keys(&idx[0]), [(1, "a", "1")]);
        assert_eq!(idx[1].header, Some((3, Some("X".to_string()))));
        assert_eq!(keys(&idx[1]), [(4, "b", "2")]);
        assert_eq!(idx[2].header, Some((6, None)));
        assert_eq!(keys(&idx[3]), [(9, "d", "4"), (11, "e", "5")]);
    }

    #[test]
    fn continuation_then_comment_keeps_every_other_error() {
        let text =
            "[S]\nL = P, SIZE, \\\n  8BITMIME   ; note\nIdle_Tme = 5\n# off \\\nx = 1\nlast = a\\";
        let (idx, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            keys(&idx[1]),
            [
                (2, "L", "P, SIZE,   8BITMIME"),
                (4, "Idle_Tme", "5"),
                (6, "x", "1"),
                (7, "last", "a")
            ]
        );
        // A lone backslash joins the next line; at the end of the file it is dropped.
        let (idx, errors) = parse("[S]\n\\\nx = 1\n\\\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(keys(&idx[1]), [(2, "x", "1")]);
    }

    #[test]
    fn bom_crlf_and_carriage_returns() {
        let (idx, errors) = parse("\u{feff}a = 1\r\n[S]\r\nb = 2\r\nc = x\ry\r\n");
        assert_eq!(errors, ["f:4: [S] a carriage return inside a line"]);
        assert_eq!(keys(&idx[0]), [(1, "a", "1")]);
        assert_eq!(keys(&idx[1]), [(3, "b", "2")]);
    }

    #[test]
    fn non_utf8_names_the_first_bad_byte() {
        let mut errors = Vec::new();
        let text = decode("f", b"a = 1\n\xc3\xa9t\xe9 = 2\n\xff".to_vec(), &mut errors);
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            ["f:2: not UTF-8 (byte 0xe9 at column 3); configuration files must be UTF-8"]
        );
        assert_eq!(text, "a = 1\n\u{e9}t\u{fffd} = 2\n\u{fffd}");
    }

    #[test]
    fn value_text_matches_comment_rules() {
        assert_eq!(value_text("  a b  "), "a b");
        assert_eq!(value_text(" a #b"), "a");
        assert_eq!(value_text(" a\t;b"), "a");
        assert_eq!(value_text(" #a"), "#a");
        assert_eq!(value_text(" a#b"), "a#b");
        assert_eq!(value_text(" a\\ #b"), "a\\ #b");
    }

    /// The daemon's old copy of this rule counted names that are not UTF-8 and missed
    /// dangling symlinks: here the rule is the one [`conf_files`] applies.
    #[test]
    fn a_directory_without_conf_files_is_an_error() {
        use std::os::unix::ffi::OsStrExt;
        let d = std::env::temp_dir().join(format!("nl-load-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("sub.conf")).unwrap();
        fs::write(d.join("notes.txt"), "x = 1\n").unwrap();
        fs::write(d.join(".hidden.conf"), "x = 1\n").unwrap();
        let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.conf");
        fs::write(d.join(latin1), "x = 1\n").unwrap();
        let errors = |d: &Path| -> Vec<String> {
            let (_, e) = read_path(d);
            e.iter().map(|e| e.to_string()).collect()
        };
        let shown = d.display();
        assert_eq!(
            errors(&d),
            [format!(
                "{shown}: no configuration files (a directory needs *.conf files)"
            )]
        );
        // A dangling symlink is a configuration file that cannot be read, not an absent one.
        std::os::unix::fs::symlink("nowhere", d.join("10-gone.conf")).unwrap();
        let e = errors(&d);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!("{shown}/10-gone.conf: cannot read: ")),
            "{e:?}"
        );
        fs::remove_file(d.join("10-gone.conf")).unwrap();
        fs::write(d.join("20.conf"), "").unwrap();
        assert_eq!(errors(&d), Vec::<String>::new(), "an empty file is a file");
        fs::remove_dir_all(&d).unwrap();
    }

    /// A pathway's group is checked as its scope enters the draft, across files, and the error
    /// names the line that tried the second group.
    #[test]
    fn a_pathway_has_one_group_across_files() {
        let schema = fuzz_schema();
        let file = |name: &str, text: &str| SourceFile {
            name: name.into(),
            text: text.into(),
        };
        let files = [
            file("a", "[Pathway_Group g Pathway p]\nIdle_Time = 1\n"),
            file("b", "[pathway_group G pathway P]\nIdle_Time = 2\n[Pathway_Group h Pathway p]\nIdle_Time = 3\n"),
        ];
        let mut errors = Vec::new();
        let draft = load_files(&schema, &files, &mut errors);
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            ["b:3: [Pathway_Group h Pathway p] the pathway is already in Pathway_Group \"g\" Pathway \"p\"; a pathway has one group"]
        );
        let g = crate::config::Generation::build(Arc::clone(&schema), draft, 1, Vec::new());
        let g = g.expect("the refused section never entered the draft");
        let idle = schema.slot("Idle_Time", ScopeClass::Pathway).unwrap();
        let group = ScopePath::GroupPathway {
            group: "g".into(),
            pathway: "p".into(),
        };
        assert_eq!(
            g.get(&group, idle).map(|v| v.as_duration().as_secs()),
            Some(2)
        );
    }

    fn fuzz_schema() -> Arc<Schema> {
        let mut s = Schema::new();
        s.register_scope_kind("Echo_Listener", ScopeKind::Listener)
            .unwrap();
        let all = Scopes::GLOBAL | Scopes::LISTENER_ALL | Scopes::PATHWAY;
        for def in [
            OptionDef::new("Idle_Time", OptionType::Duration, "1", all, ""),
            OptionDef::new("Banner", OptionType::Str, "", all, ""),
            OptionDef::new("Deny", OptionType::Bool, "no", Scopes::PEER, ""),
            OptionDef::new("List", OptionType::List, "", all, ""),
        ] {
            s.register_option(def).unwrap();
        }
        Arc::new(s)
    }

    const PIECES: &[&str] = &[
        "",
        "   ",
        "# comment",
        "  ; indented comment",
        "# comment \\",
        "[Echo_Listener]",
        "[Echo_Listener Peer \"10.0.0.0/8\"] # note",
        "[echo_listener listen \"[::1]:25\"]",
        "[Pathway \"p\"]",
        "[Bogus]",
        "[Echo_Listener",
        "[]",
        "[x] y",
        "[Pathway \"a #b\"]",
        "Idle_Time = 5",
        "idle_time: 7 ; note",
        "  Idle_Time = 9",
        "Idle_Time = forever",
        "Banner = a #b",
        "Banner = #x",
        "Banner = \\ #x",
        "Banner=\t;x",
        "Banner = \"a",
        "Banner = caf\u{e9}\\\\",
        "List = a, \\",
        "  b ; c",
        "  \"q, r\", s \\",
        "Deny = yes",
        "Pathway = p",
        "\\",
        "\\\\",
        "=",
        ":",
        "= 5",
        "garbage",
        "k\\=v",
        "a\\:b = c",
        "\"quoted\" = 1",
        "\u{feff}Idle_Time = 1",
        "x \r y",
        "Banner = a\\",
        "[Echo_Listener Listen \"127.0.0.1:+7\"]",
    ];

    /// Random mixes of headers, keys, comments, continuations, blanks and garbage: every error
    /// names the file and a line of it, none is internal, and `rust-ini` reads every value
    /// exactly as the indexer does.
    #[test]
    fn fuzzed_files_never_confuse_the_two_parsers() {
        let schema = fuzz_schema();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for round in 0..3000 {
            let lines = 1 + next(16);
            let mut text: String = if next(8) == 0 {
                "\u{feff}".into()
            } else {
                String::new()
            };
            for _ in 0..lines {
                text.push_str(PIECES[next(PIECES.len())]);
                text.push_str(["\n", "\r\n", "\n"][next(3)]);
            }
            if next(4) == 0 {
                text.pop();
            }
            let physical = text.split('\n').count();
            let mut errors = Vec::new();
            let text_nobom = text.strip_prefix('\u{feff}').unwrap_or(&text);
            let (index, feed) = index_lines("f", text_nobom, &mut errors);
            let values = ini_values(&feed, &index).unwrap_or_else(|| {
                panic!("round {round}: rust-ini disagrees on {text:?}\nfed {feed:?}")
            });
            for (sec, values) in index.iter().zip(values) {
                for (k, v) in sec.keys.iter().zip(values) {
                    assert_eq!(
                        k.value, v,
                        "round {round}: value of {k:?} in {text:?}, fed {feed:?}"
                    );
                }
            }
            let Err(errors) = ConfigStore::from_str(Arc::clone(&schema), "f", &text) else {
                continue;
            };
            for e in &errors.0 {
                assert!(
                    e.path == "f" && (1..=physical).contains(&e.line),
                    "round {round}: {e} in {text:?}"
                );
                assert!(
                    !e.reason.contains("internal"),
                    "round {round}: {e} in {text:?}"
                );
            }
        }
    }
}
