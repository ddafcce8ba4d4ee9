//! Console operations: eval/get/set/unset/show/reload, and the round trip of `show`.

#[path = "util/config_schema.rs"]
mod config_schema;

use std::path::Path;

use netlistener::config::console::config_command;
use netlistener::config::*;

fn round_trips(store: &ConfigStore) {
    let text = store.show();
    let (schema, _) = config_schema::schema();
    let again = ConfigStore::from_str(schema, "shown.conf", &text)
        .unwrap_or_else(|e| panic!("show output does not load:\n{e}\n--- text ---\n{text}"));
    assert!(
        store.current().same_config(&again.current()),
        "show output loads to a different generation:\n{text}\n--- reshown ---\n{}",
        again.show()
    );
    assert_eq!(again.show(), text, "show is not a fixed point");
}

#[test]
fn show_round_trips_every_golden_configuration() {
    for case in ["fallback", "multi_file", "show", "pool_fallback"] {
        let (schema, _) = config_schema::schema();
        let store = ConfigStore::load(schema, &Path::new("tests/data/config").join(case)).unwrap();
        round_trips(&store);
    }
}

#[test]
fn show_round_trips_after_set_and_unset() {
    let (schema, _) = config_schema::schema();
    let store = ConfigStore::load(schema, Path::new("tests/data/config/show")).unwrap();
    store
        .set(
            "ESMTP_Listener Peer 2001:db8::/32",
            "SMTP_Extensions",
            "\"a, b\", c",
        )
        .unwrap();
    store.set("", "Banner", "  spaced  ").unwrap();
    store
        .set("Pathway \"two words\"", "Banner", "\"quoted\"")
        .unwrap();
    // A trailing backslash would continue the line: `show` quotes it.
    store
        .set("ESMTP_Listener", "Banner", "ends with \\")
        .unwrap();
    store
        .set("ESMTP_Listener", "SMTP_Extensions", "A\\, B")
        .unwrap();
    store.set("Pathway p", "Banner", "#not a comment").unwrap();
    store.set("Pathway \"a]b\"", "Banner", "x").unwrap();
    // What `show` could not write back is refused, instances included.
    for (scope, value) in [
        ("Pathway \"a #b\"", "5"),
        ("Pathway_Group \"g ;x\" Pathway p", "5"),
        ("ESMTP_Listener Listen \"/tmp/a #b.sock\"", "5"),
        ("ESMTP_Listener", "a ;b"),
    ] {
        let err = store
            .set(scope, "Idle_Time", value)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot hold line breaks"), "{scope}: {err}");
    }
    // A running pool keeps its threads: the console refuses to change their number, even for
    // IO, which runs without a section; a pool that does not run yet may be given one.
    let err = store.set("ThreadPool IO", "Concurrency", "16").unwrap_err();
    assert_eq!(
        err.to_string(),
        "<console>: [ThreadPool \"IO\"] Concurrency: takes effect only after a restart; change it in the file"
    );
    store.set("ThreadPool fast", "Concurrency", "16").unwrap();
    store.unset("Maildir", "Directory").unwrap();
    assert_eq!(store.current().number(), 10);
    let shown = store.show();
    assert!(shown.contains("Banner = \"ends with \\\"\n"), "{shown}");
    assert!(shown.contains("SMTP_Extensions = \"A\\\", B\n"), "{shown}");
    round_trips(&store);
}

#[test]
fn same_config_notices_a_difference() {
    let (schema, _) = config_schema::schema();
    let a =
        ConfigStore::from_str(schema.clone(), "a", "[ESMTP_Listener]\nIdle_Time = 5\n").unwrap();
    let b =
        ConfigStore::from_str(schema.clone(), "b", "[ESMTP_Listener]\nIdle_Time = 6\n").unwrap();
    let c = ConfigStore::from_str(
        schema,
        "c",
        "[ESMTP_Listener]\nIdle_Time = 5\n[Echo_Listener]\n",
    )
    .unwrap();
    assert!(!a.current().same_config(&b.current()));
    assert!(!a.current().same_config(&c.current()));
    assert!(a.current().same_config(&a.current()));
}

#[test]
fn set_and_unset_make_new_generations_and_leave_old_ones_alone() {
    let (schema, s) = config_schema::schema();
    let text = "Idle_Time = 900\n[ESMTP_Listener Peer \"10.0.0.0/8\"]\nIdle_Time = 300\n";
    let store = ConfigStore::from_str(schema, "t.conf", text).unwrap();
    let old = store.current();
    let cmd = |c: &str| config_command(&store, c);
    assert_eq!(
        cmd("eval ESMTP_Listener Listen 127.0.0.1:2525 Peer 10.1.2.3 Idle_Time"),
        Ok("Idle_Time = 300 (from ESMTP_Listener Peer \"10.0.0.0/8\")".to_string())
    );
    assert_eq!(
        cmd("set ESMTP_Listener Peer \"10.0.0.0/8\" Idle_Time 5m"),
        Ok("ok: generation 2".into())
    );
    assert_eq!(
        cmd("get ESMTP_Listener Peer 10.0.0.0/8 idle_time"),
        Ok("Idle_Time = 300".into())
    );
    assert_eq!(
        cmd("unset ESMTP_Listener Peer 10.0.0.0/8 Idle_Time"),
        Ok("ok: generation 3".into())
    );
    assert_eq!(
        cmd("eval ESMTP_Listener Peer 10.1.2.3 Idle_Time"),
        Ok("Idle_Time = 900 (from global)".into())
    );
    assert_eq!(
        cmd("get ESMTP_Listener Peer 10.0.0.0/8 Idle_Time"),
        Ok("Idle_Time is not set in ESMTP_Listener Peer \"10.0.0.0/8\"".into())
    );
    // The Peer scope survives the unset.
    assert!(store
        .show()
        .contains("[ESMTP_Listener Peer \"10.0.0.0/8\"]"));
    let peer = PeerAddr::Ip("10.1.2.3".parse().unwrap());
    let f = old.fetch(s.idle_time, "ESMTP_Listener", None, Some(&peer));
    assert_eq!(
        f.value.as_duration().as_secs(),
        300,
        "generation 1 changed under a session"
    );
}

#[test]
fn console_errors() {
    let (schema, _) = config_schema::schema();
    let store = ConfigStore::from_str(schema, "t.conf", "").unwrap();
    let cmd = |c: &str| config_command(&store, c);
    assert!(cmd("frobnicate").unwrap_err().starts_with("usage:"));
    assert!(cmd("").unwrap_err().starts_with("usage:"));
    assert_eq!(
        cmd("set Banner \"a #b\""),
        Err("<console>: Banner: a value cannot hold line breaks, \" #\" or \" ;\"".into())
    );
    assert_eq!(
        cmd("eval ESMTP_Listener Peer 10.0.0.0/8 Idle_Time"),
        Err("\"10.0.0.0/8\" is not an IP address (or \"unix\")".into())
    );
    assert_eq!(
        cmd("get Peer 10.0.0.0/8 Deny"),
        Err("Peer must follow a <Type>_Listener scope".into())
    );
    assert_eq!(
        cmd("unset ThreadPool x Concurrency"),
        Err("<console>: [ThreadPool \"x\"] Concurrency: is not set in this scope".into())
    );
    // A scope name where the option should be: every built-in kind, global and registered
    // kinds (any case) are recognised; `Pathway` is an option too, so it is not.
    for word in [
        "global",
        "LISTEN",
        "Peer",
        "Pathway_Group",
        "threadpool",
        "Echo_Listener",
        "Maildir",
    ] {
        let e = cmd(&format!("get Echo_Listener {word}")).unwrap_err();
        assert!(
            e.ends_with(&format!(
                "({word} names a scope, not an option: is a word missing?)"
            )),
            "{word}: {e}"
        );
    }
    // The scope as typed, not re-quoted token by token.
    assert_eq!(
        cmd("set Pathway a b Idle_Time 5"),
        Err("<console>: [Pathway a b] Idle_Time: unexpected b after Pathway \"a\"".into())
    );
    assert_eq!(
        store.current().number(),
        1,
        "failed commands must not make generations"
    );
}

#[test]
fn console_set_reports_warnings_and_group_conflicts() {
    let (schema, _) = config_schema::schema();
    let text = "[Pathway_Group \"g1\" Pathway \"p\"]\n[ESMTP_Listener]\n";
    let store = ConfigStore::from_str(schema, "t.conf", text).unwrap();
    let cmd = |c: &str| config_command(&store, c);
    assert_eq!(
        cmd("set ESMTP_Listener Pool_Name nosuch"),
        Ok("ok: generation 2\nwarning: <console>: [ESMTP_Listener] Pool_Name: names no ThreadPool \"nosuch\"; using IO".into())
    );
    assert_eq!(
        cmd("set ESMTP_Listener Idle_Time 5"),
        Ok("ok: generation 3".into()),
        "a warning is reported once, by the update that caused it"
    );
    assert_eq!(
        cmd("set Pathway_Group g2 Pathway P Idle_Time 5"),
        Err("<console>: [Pathway_Group \"g2\" Pathway \"P\"] Idle_Time: the pathway is already in Pathway_Group \"g1\" Pathway \"p\"; a pathway has one group".into())
    );
}

#[test]
fn console_reload_reports_generation() {
    let (schema, _) = config_schema::schema();
    let store =
        ConfigStore::from_str(schema, "t.conf", "[ESMTP_Listener]\nPool_Name = gone\n").unwrap();
    assert_eq!(
        config_command(&store, "reload"),
        Ok("ok: generation 2\nwarning: t.conf:2: [ESMTP_Listener] Pool_Name: names no ThreadPool \"gone\"; using IO".into())
    );
}

/// A listener kind's own default (C: `netlistener_register4()` buffer sizes,
/// `netlistener_set_default_file_mode()`) is what `eval` shows and what a fetch returns, under
/// the default scope; an explicit 0 is a value like any other.
#[test]
fn eval_shows_a_listener_kinds_own_default() {
    let mut schema = Schema::new();
    for kind in ["Buf_Listener", "Plain_Listener"] {
        schema
            .register_scope_kind(kind, ScopeKind::Listener)
            .unwrap();
    }
    let socket = Scopes::LISTENER | Scopes::LISTEN;
    let recv = schema
        .register_option(OptionDef::new(
            "TCP_Recv_Buffer_Size",
            OptionType::Size,
            "0",
            socket,
            "",
        ))
        .unwrap();
    let mode = schema
        .register_option(OptionDef::new(
            "File_Mode",
            OptionType::Mode,
            "0660",
            socket,
            "",
        ))
        .unwrap();
    schema
        .set_listener_default("buf_listener", recv, "16384")
        .unwrap();
    schema
        .set_listener_default("Buf_Listener", mode, "600")
        .unwrap();
    let e = schema
        .set_listener_default("Buf_Listener", mode, "0999")
        .unwrap_err();
    assert!(
        e.reason.starts_with("bad default for Buf_Listener: "),
        "{e}"
    );
    assert!(schema
        .set_listener_default("Nope_Listener", mode, "600")
        .is_err());
    assert_eq!(
        schema.listener_default("Buf_Listener", recv).as_size(),
        16384
    );
    assert_eq!(schema.listener_default("Plain_Listener", recv).as_size(), 0);
    let text = "[Buf_Listener Listen \"127.0.0.1:1\"]\n\
                [Buf_Listener Listen \"127.0.0.1:2\"]\nTCP_Recv_Buffer_Size = 0\n\
                [Plain_Listener Listen \"127.0.0.1:1\"]\n";
    let store = ConfigStore::from_str(std::sync::Arc::new(schema), "t.conf", text).unwrap();
    let eval = |c: &str| config_command(&store, &format!("eval {c}"));
    assert_eq!(
        eval("Buf_Listener Listen 127.0.0.1:1 TCP_Recv_Buffer_Size"),
        Ok("TCP_Recv_Buffer_Size = 16k (from default)".into())
    );
    assert_eq!(
        eval("Buf_Listener Listen 127.0.0.1:2 TCP_Recv_Buffer_Size"),
        Ok("TCP_Recv_Buffer_Size = 0 (from Buf_Listener Listen \"127.0.0.1:2\")".into()),
        "an explicit 0 (the OS default) wins over the type's"
    );
    assert_eq!(
        eval("Plain_Listener Listen 127.0.0.1:1 TCP_Recv_Buffer_Size"),
        Ok("TCP_Recv_Buffer_Size = 0 (from default)".into())
    );
    assert_eq!(
        eval("Buf_Listener File_Mode"),
        Ok("File_Mode = 0600 (from default)".into())
    );
    assert_eq!(
        eval("Plain_Listener File_Mode"),
        Ok("File_Mode = 0660 (from default)".into())
    );
    let g = store.current();
    let addr: ListenAddr = "127.0.0.1:1".parse().unwrap();
    let f = g.fetch(recv, "BUF_LISTENER", Some(&addr), None);
    assert_eq!((f.value.as_size(), f.scope), (16384, ScopeId::DEFAULT));
}
