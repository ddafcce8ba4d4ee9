//! A schema shaped like the daemon's, shared by the configuration tests.

#![allow(dead_code)]

use std::sync::Arc;

use netlistener::config::*;

/// The slots of the test schema.
pub struct Slots {
    pub log_level: Slot,
    pub idle_time: Slot,
    pub smtp_extensions: Slot,
    pub deny: Slot,
    pub listener_sessions: Slot,
    pub concurrency: Slot,
    pub listen_backlog: Slot,
    pub pool_name: Slot,
    pub file_mode: Slot,
    pub max_message_size: Slot,
    pub banner: Slot,
    pub relay_from: Slot,
    pub echo_prefix: Slot,
    pub directory: Slot,
    pub control_socket: Slot,
    pub pathway: Slot,
}

fn log_level(v: &Value) -> Result<(), String> {
    match v.as_str() {
        "error" | "warn" | "info" | "debug" | "trace" => Ok(()),
        other => Err(format!(
            "\"{other}\" is not one of error, warn, info, debug, trace"
        )),
    }
}

fn reg(s: &mut Schema, def: OptionDef) -> Slot {
    s.register_option(def).expect("test schema option")
}

/// Builds the schema the golden files and tests are written against.
pub fn schema() -> (Arc<Schema>, Slots) {
    let mut s = Schema::new();
    s.register_scope_kind("ESMTP_Listener", ScopeKind::Listener)
        .unwrap();
    s.register_scope_kind("Echo_Listener", ScopeKind::Listener)
        .unwrap();
    s.register_scope_kind("Maildir", ScopeKind::Module).unwrap();
    let lst = Scopes::LISTENER_ALL;
    let pw = Scopes::PATHWAY | Scopes::PATHWAY_GROUP;
    let mut ll = OptionDef::new(
        "Log_Level",
        OptionType::Str,
        "info",
        Scopes::GLOBAL,
        "Log level",
    );
    ll.validator = Some(log_level);
    let log_level = reg(&mut s, ll);
    let idle_time = reg(
        &mut s,
        OptionDef::new(
            "Idle_Time",
            OptionType::Duration,
            "300",
            Scopes::GLOBAL | lst | pw,
            "Idle timeout",
        ),
    );
    let mut ext = OptionDef::new(
        "SMTP_Extensions",
        OptionType::List,
        "PIPELINING, 8BITMIME",
        lst | pw,
        "EHLO list",
    );
    ext.owner = Some("ESMTP_Listener");
    let smtp_extensions = reg(&mut s, ext);
    let deny = reg(
        &mut s,
        OptionDef::new("Deny", OptionType::Bool, "false", Scopes::PEER, "Peer ACL"),
    );
    let listener_sessions = reg(
        &mut s,
        OptionDef::new(
            "Listener_Sessions",
            OptionType::Int {
                min: 0,
                max: 1_000_000,
            },
            "0",
            lst,
            "Cap",
        ),
    );
    let concurrency = reg(
        &mut s,
        OptionDef::new(
            "Concurrency",
            OptionType::Int { min: 0, max: 64 },
            "0",
            Scopes::LISTENER | Scopes::LISTEN,
            "Accept threads",
        ),
    );
    let mut backlog = OptionDef::new(
        "Listen_Backlog",
        OptionType::Int { min: 1, max: 65535 },
        "500",
        Scopes::LISTENER | Scopes::LISTEN,
        "listen(2) backlog",
    );
    backlog.restart_required = true;
    let listen_backlog = reg(&mut s, backlog);
    let mut pool = OptionDef::new(
        "Pool_Name",
        OptionType::Str,
        "IO",
        Scopes::LISTENER | Scopes::LISTEN,
        "Pool",
    );
    pool.refers_to = Some(RefKind::ThreadPool);
    let pool_name = reg(&mut s, pool);
    let file_mode = reg(
        &mut s,
        OptionDef::new(
            "File_Mode",
            OptionType::Mode,
            "0660",
            Scopes::LISTENER | Scopes::LISTEN,
            "Mode",
        ),
    );
    let mut size = OptionDef::new(
        "Max_Message_Size",
        OptionType::Size,
        "10m",
        lst | pw | Scopes::GLOBAL,
        "Size",
    );
    size.owner = Some("ESMTP_Listener");
    let max_message_size = reg(&mut s, size);
    let banner = reg(
        &mut s,
        OptionDef::new(
            "Banner",
            OptionType::Str,
            "netlistener ESMTP",
            Scopes::GLOBAL | lst | pw,
            "Banner",
        ),
    );
    let relay_from = reg(
        &mut s,
        OptionDef::new("Relay_From", OptionType::Cidr, "127.0.0.0/8", lst, "Relay"),
    );
    let mut echo = OptionDef::new("Echo_Prefix", OptionType::Str, "", lst, "Prefix");
    echo.owner = Some("Echo_Listener");
    let echo_prefix = reg(&mut s, echo);
    let mut dir = OptionDef::new(
        "Directory",
        OptionType::Str,
        "/var/spool/maildir",
        Scopes::MODULE,
        "Dir",
    );
    dir.owner = Some("Maildir");
    let directory = reg(&mut s, dir);
    let control_socket = reg(
        &mut s,
        OptionDef::new(
            "Control_Socket",
            OptionType::Address,
            "control.sock",
            Scopes::GLOBAL,
            "Console",
        ),
    );
    let pathway = s.pathway_slot();
    let slots = Slots {
        log_level,
        idle_time,
        smtp_extensions,
        deny,
        listener_sessions,
        concurrency,
        listen_backlog,
        pool_name,
        file_mode,
        max_message_size,
        banner,
        relay_from,
        echo_prefix,
        directory,
        control_socket,
        pathway,
    };
    (Arc::new(s), slots)
}
