//! Golden tests: each directory under tests/data/config/ holds `*.conf` input and an
//! `expected` transcript. Lines starting with `> ` are commands (`load`, then `config`
//! console commands); the lines after each are its exact output, then `info: …` for each
//! message the configuration code logged at level info while running it (overrides, reloads).
//! Run with `BLESS=1` to rewrite the transcripts from the actual output (then review the diff).
//!
//! `unreadable/20-gone.conf` is a dangling symlink: unlike a mode-000 file, it cannot be read
//! even by root, so the case holds wherever the tests run.

#[path = "util/config_schema.rs"]
mod config_schema;

use std::cell::RefCell;
use std::fs;
use std::path::Path;

use netlistener::config::console::config_command;
use netlistener::config::ConfigStore;

thread_local! {
    static LOGGED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Keeps the info-level messages of the configuration code, per thread.
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() == log::Level::Info && m.target().starts_with("netlistener::config")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LOGGED.with(|l| l.borrow_mut().push(format!("info: {}\n", r.args())));
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

fn drain_log(out: &mut String) {
    LOGGED.with(|l| l.borrow_mut().drain(..).for_each(|m| out.push_str(&m)));
}

fn transcript(case: &Path, commands: &[String]) -> String {
    let (schema, _) = config_schema::schema();
    let mut out = String::from("> load\n");
    let loaded = ConfigStore::load(schema, case);
    drain_log(&mut out);
    let store = match loaded {
        Ok(store) => {
            out.push_str(&format!("ok: generation {}\n", store.current().number()));
            for w in store.warnings() {
                out.push_str(&format!("warning: {w}\n"));
            }
            store
        }
        Err(errors) => {
            out.push_str(&format!("error:\n{errors}\n"));
            return out;
        }
    };
    for cmd in commands {
        out.push_str(&format!("> {cmd}\n"));
        match config_command(&store, cmd) {
            Ok(text) => out.push_str(&format!("{}\n", text.trim_end())),
            Err(text) => out.push_str(&format!("error: {}\n", text.trim_end())),
        }
        drain_log(&mut out);
    }
    out
}

fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            return format!("line {}:\n  expected: {:?}\n  actual:   {:?}", i + 1, x, y);
        }
    }
    "only trailing whitespace differs".to_string()
}

#[test]
fn golden_cases() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Info);
    let root = Path::new("tests/data/config");
    let mut cases: Vec<_> = fs::read_dir(root)
        .expect("tests/data/config")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "golden cases missing: {cases:?}");
    let mut failures = Vec::new();
    for case in cases {
        let expected_path = case.join("expected");
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        let commands: Vec<String> = expected
            .lines()
            .filter_map(|l| l.strip_prefix("> "))
            .filter(|c| *c != "load")
            .map(str::to_string)
            .collect();
        let actual = transcript(&case, &commands);
        if actual == expected {
            continue;
        }
        if std::env::var_os("BLESS").is_some() {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        failures.push(format!(
            "{}: {}\n--- actual transcript ---\n{actual}",
            expected_path.display(),
            first_difference(&expected, &actual)
        ));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
