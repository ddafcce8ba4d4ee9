//! The options every listener type shares, registered as slots like any module option.
//!
//! C: the common netlistener options (`Listen_Backlog`, `Concurrency`, `Events_Per_Iter`…)
//! that Momentum registers for every `<Type>_Listener`.
//!
//! # Summary
//! [`CommonSlots::register`] adds each option to the schema with its type, default, and the
//! scopes where it is valid: socket options only at `<Type>_Listener` and `Listen` level
//! (never inside `Peer`), per-connection options down to `Peer`, and `Idle_Time` up to
//! pathways and the global scope so the whole fallback chain applies.
//!
//! # Contract
//! Registered once per schema, before the configuration is loaded.
//!
//! # Diagnostics
//! Registration errors (a name clash with an option registered earlier) are returned.

use crate::config::{ConfigError, OptionDef, OptionType, Schema, Scopes, Slot};

/// Slots of the common listener options.
#[derive(Debug, Clone, Copy)]
pub struct CommonSlots {
    /// `Enable` (bool, true): a disabled Listen has no socket.
    pub enable: Slot,
    /// `Listen_Backlog` (int, 500).
    pub listen_backlog: Slot,
    /// `Concurrency` (int, 0): 0 accepts in the scheduler thread; N runs N accept threads.
    pub concurrency: Slot,
    /// `Accept_Queue_Backlog` (int, 0 = unbounded): the hand-off queue from accept threads.
    pub accept_queue_backlog: Slot,
    /// `Events_Per_Iter` (int, 1; ≤ 0 is taken as 1): accepted sessions started per iteration.
    pub events_per_iter: Slot,
    /// `Pool_Name` (string, `IO`): the thread pool sessions float to for blocking work.
    pub pool_name: Slot,
    /// `File_Mode` (mode, 0660 unless the type has its own default,
    /// `netlistener_set_default_file_mode`): permissions of a Unix socket.
    pub file_mode: Slot,
    /// `TCP_Recv_Buffer_Size` (size; default: the type's own from `netlistener_register4`,
    /// else 0; 0, as a default or set, is the OS default).
    pub tcp_recv_buffer_size: Slot,
    /// `TCP_Send_Buffer_Size` (size; as `TCP_Recv_Buffer_Size`).
    pub tcp_send_buffer_size: Slot,
    /// `Disable_Nagle_Algorithm` (bool, false): `TCP_NODELAY` on accepted sockets.
    pub disable_nagle: Slot,
    /// `Idle_Time` (duration, 0 = none): a session silent that long is timed out.
    pub idle_time: Slot,
    /// `Listener_Sessions` (int, 0 = unlimited): sessions on one Listen (per CIDR block when
    /// set in a Peer).
    pub listener_sessions: Slot,
    /// `Service_Sessions` (int, 0 = unlimited): sessions of the whole listener type (per CIDR
    /// block when set in a Peer).
    pub service_sessions: Slot,
    /// `Deny` (bool, false): refuse peers matching this Peer scope.
    pub deny: Slot,
    /// `Fatal_Listen_Errors` (bool, true): a Listen that cannot open at start-up stops the
    /// daemon; false logs it and goes on without that socket.
    pub fatal_listen_errors: Slot,
}

const SOCKET: Scopes = Scopes(Scopes::LISTENER.0 | Scopes::LISTEN.0);
const SESSION: Scopes = Scopes(Scopes::LISTENER.0 | Scopes::LISTEN.0 | Scopes::PEER.0);
const EVERYWHERE: Scopes =
    Scopes(SESSION.0 | Scopes::PATHWAY.0 | Scopes::PATHWAY_GROUP.0 | Scopes::GLOBAL.0);
const COUNT: OptionType = OptionType::Int {
    min: 0,
    max: 1 << 30,
};

fn opt(
    name: &'static str,
    ty: OptionType,
    default: &'static str,
    scopes: Scopes,
    doc: &'static str,
) -> OptionDef {
    OptionDef::new(name, ty, default, scopes, doc)
}

impl CommonSlots {
    /// Registers the common options in `schema`.
    pub fn register(schema: &mut Schema) -> Result<CommonSlots, ConfigError> {
        let mut pool = opt(
            "Pool_Name",
            OptionType::Str,
            "IO",
            SESSION | Scopes::GLOBAL,
            "thread pool for blocking work of sessions",
        );
        pool.refers_to = Some(crate::config::RefKind::ThreadPool);
        let mut r = |d: OptionDef| schema.register_option(d);
        Ok(CommonSlots {
            enable: r(opt(
                "Enable",
                OptionType::Bool,
                "true",
                SOCKET,
                "open a socket for this Listen",
            ))?,
            listen_backlog: r(opt(
                "Listen_Backlog",
                OptionType::Int { min: 1, max: 65535 },
                "500",
                SOCKET,
                "listen(2) backlog",
            ))?,
            concurrency: r(opt(
                "Concurrency",
                OptionType::Int { min: 0, max: 64 },
                "0",
                SOCKET,
                "accept threads per socket (0: accept in the scheduler)",
            ))?,
            accept_queue_backlog: r(opt(
                "Accept_Queue_Backlog",
                COUNT,
                "0",
                SOCKET,
                "bound of the accept-thread hand-off queue (0: unbounded)",
            ))?,
            events_per_iter: r(opt(
                "Events_Per_Iter",
                OptionType::Int {
                    min: i64::MIN,
                    max: 1 << 20,
                },
                "1",
                SOCKET,
                "sessions started per loop iteration (<= 0: 1)",
            ))?,
            pool_name: r(pool)?,
            file_mode: r(opt(
                "File_Mode",
                OptionType::Mode,
                "0660",
                SOCKET,
                "permissions of a Unix socket",
            ))?,
            tcp_recv_buffer_size: r(opt(
                "TCP_Recv_Buffer_Size",
                OptionType::Size,
                "0",
                SOCKET,
                "SO_RCVBUF (default: the type's own, else 0; 0: the OS default)",
            ))?,
            tcp_send_buffer_size: r(opt(
                "TCP_Send_Buffer_Size",
                OptionType::Size,
                "0",
                SOCKET,
                "SO_SNDBUF (default: the type's own, else 0; 0: the OS default)",
            ))?,
            disable_nagle: r(opt(
                "Disable_Nagle_Algorithm",
                OptionType::Bool,
                "false",
                SOCKET,
                "set TCP_NODELAY on accepted sockets",
            ))?,
            idle_time: r(opt(
                "Idle_Time",
                OptionType::Duration,
                "0",
                EVERYWHERE,
                "idle timeout of a session (0: none)",
            ))?,
            listener_sessions: r(opt(
                "Listener_Sessions",
                COUNT,
                "0",
                SESSION | Scopes::GLOBAL,
                "concurrent sessions per Listen (per CIDR block in a Peer; 0: unlimited)",
            ))?,
            service_sessions: r(opt(
                "Service_Sessions",
                COUNT,
                "0",
                SESSION | Scopes::GLOBAL,
                "concurrent sessions per listener type (per CIDR block in a Peer; 0: unlimited)",
            ))?,
            deny: r(opt(
                "Deny",
                OptionType::Bool,
                "false",
                SESSION,
                "refuse connections from this Peer",
            ))?,
            fatal_listen_errors: r(opt(
                "Fatal_Listen_Errors",
                OptionType::Bool,
                "true",
                SOCKET | Scopes::GLOBAL,
                "a Listen failing at start-up stops the daemon",
            ))?,
        })
    }
}
