//! C: the `ec_config` error reporting (one message per problem, all collected)
//!
//! Configuration errors and warnings, each naming the file, line, section and option.
//!
//! Contract: a [`ConfigError`] displays as `path:line: [section] option: reason`, omitting what
//! is empty: no line (0) gives `path: …`, no path gives no prefix at all, no section drops
//! `[section] `, no option drops `option: `. The section is the header as written, without
//! brackets (the global scope has none). Warnings use the same type.
//!
//! Diagnostics: these are values; nothing here logs or panics.

use std::fmt;

/// One problem in a configuration (or in a schema registration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given to the loader (`<console>` for `config set`, `schema` at registration).
    pub path: String,
    /// The 1-based line, or 0 when no line applies.
    pub line: usize,
    /// The section header without brackets; empty for the global scope.
    pub section: String,
    /// The option name as written; empty when the problem is the section itself.
    pub option: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (true, _) => {}
            (false, 0) => write!(f, "{}: ", self.path)?,
            (false, n) => write!(f, "{}:{}: ", self.path, n)?,
        }
        if !self.section.is_empty() {
            write!(f, "[{}] ", self.section)?;
        }
        if !self.option.is_empty() {
            write!(f, "{}: ", self.option)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one load, reload, `set` or `unset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// One error per line, no trailing newline.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, line: usize, section: &str, option: &str) -> String {
        let reason = "why".to_string();
        let (path, section, option) = (path.into(), section.into(), option.into());
        ConfigError {
            path,
            line,
            section,
            option,
            reason,
        }
        .to_string()
    }

    #[test]
    fn format_omits_empty_parts() {
        assert_eq!(
            e("a.conf", 3, "ESMTP_Listener", "Idle_Time"),
            "a.conf:3: [ESMTP_Listener] Idle_Time: why"
        );
        assert_eq!(e("a.conf", 3, "", "Log_Level"), "a.conf:3: Log_Level: why");
        assert_eq!(e("a.conf", 0, "", ""), "a.conf: why");
        assert_eq!(e("", 0, "X", ""), "[X] why");
    }
}
