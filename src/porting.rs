//! The porting table: every C name of the Momentum APIs this crate implements, and where it
//! lives in Rust. Documentation only; there is no code here.
//!
//! # Ground rules of the port
//! - **Ownership closes fds.** An [`Event`](crate::event::Event) owns its fd: returning `0`
//!   from a callback, clearing the event or dropping a floated event closes it. There is no
//!   `close()` to forget, and no use-after-close.
//! - **Handles, not pointers.** Events are named by [`EventId`](crate::event::EventId) (slab
//!   index + generation); a stale id is refused instead of reaching a recycled event. Never
//!   compare function pointers to identify an event.
//! - **The closure is lent.** During its callback the closure is passed as the `closure`
//!   argument (`&mut dyn Any + Send`, downcast with `downcast_mut`); the event's own field
//!   holds a placeholder meanwhile.
//! - **References are released on `Drop`.** A configuration generation is an
//!   `Arc<Generation>`; `ec_config_release_*` is simply letting it go.
//!
//! # Event API
//! | C | Rust | difference |
//! |---|------|------------|
//! | `struct _Event` | [`event::Event`](crate::event::Event) | owns its fd; `id()` instead of the pointer |
//! | `e->callback` | [`Event::callback`](crate::event::Event::callback) | a plain `fn` pointer, swappable |
//! | `e->closure` | `closure` argument / [`Event::closure_mut`](crate::event::Event::closure_mut) | owned `Box<dyn Any + Send>` |
//! | `e->mask` | [`Event::mask`](crate::event::Event::mask) | |
//! | `e->timeout` | [`Event::timeout`](crate::event::Event::timeout), [`Event::set_timeout`](crate::event::Event::set_timeout) | an `Instant`; resetting it is O(1) |
//! | `E_READ`, `E_WRITE`, `E_EXCEPTION`, `E_TIMEOUT`, `E_ASYNC` | [`event::E_READ`](crate::event::E_READ) … | same values |
//! | `build_fd_event()` | [`Event::build_fd_event`](crate::event::Event::build_fd_event) | takes an `OwnedFd` |
//! | `build_event_from_now()` | [`Event::build_event_from_now`](crate::event::Event::build_event_from_now) | |
//! | `schedule_event()` | [`scheduler::schedule_event`](crate::scheduler::schedule_event) | returns `io::Result<EventId>` |
//! | `schedule_event_and_dispatch()` | [`scheduler::schedule_event_and_dispatch`](crate::scheduler::schedule_event_and_dispatch), [`SchedulerHandle::schedule_event_and_dispatch`](crate::scheduler::SchedulerHandle::schedule_event_and_dispatch) | any thread with a handle |
//! | `clear_timed_event()` | [`scheduler::clear_timed_event`](crate::scheduler::clear_timed_event) | by id; also from the event's own callback or a [`with_event`](crate::scheduler::with_event) closure (finished when it returns) |
//! | `clear_event_by_fd()` | [`scheduler::clear_event_by_fd`](crate::scheduler::clear_event_by_fd) | |
//! | `get_event_by_fd()` | [`scheduler::get_event_by_fd`](crate::scheduler::get_event_by_fd) | returns an id |
//! | `float_event()` | [`scheduler::float_event`](crate::scheduler::float_event) + [`FloatedEvent::resume`](crate::scheduler::FloatedEvent::resume) | the floated event is an owned `Send` value; never reaped while floating; a deadline passed meanwhile fires after the `E_ASYNC` callback, which may move it |
//! | `is_scheduler_thread()` | [`scheduler::is_scheduler_thread`](crate::scheduler::is_scheduler_thread) | |
//! | `ping_scheduler()` | [`scheduler::ping_scheduler`](crate::scheduler::ping_scheduler) | |
//! | `schedule_recurring_function()` | [`scheduler::schedule_recurring`](crate::scheduler::schedule_recurring) | |
//! | master event loop | [`Scheduler::run`](crate::scheduler::Scheduler::run) | `polling` in oneshot mode, re-armed after each callback (level-triggered semantics, ready fds in arrival order) |
//! | signal handling | [`scheduler::on_signal`](crate::scheduler::on_signal) | self-pipe plus a pending flag per signal; callback on the loop; repeats coalesce; a panicking callback is logged |
//! | `ec_async_job` | [`threadpool::Job`](crate::threadpool::Job), [`scheduler::threadpool_submit`](crate::scheduler::threadpool_submit) | completion is a [`Completion`](crate::threadpool::Completion) |
//! | `IO` / `CPU` thread pools | [`scheduler::get_pool`](crate::scheduler::get_pool) | created on first use; `None` after [`shutdown_pools`](crate::scheduler::shutdown_pools); a dropped [`ThreadPool`](crate::threadpool::ThreadPool) shuts down |
//! | `read()`/`write()` + `EAGAIN` | [`Event::read`](crate::event::Event::read), [`Event::write`](crate::event::Event::write), [`event::Io`](crate::event::Io) | says what to wait for next |
//!
//! # Configuration API
//! | C | Rust | difference |
//! |---|------|------------|
//! | `ec_config_option_def` | [`config::OptionDef`](crate::config::OptionDef) | typed default parsed (and validated) at registration; `restart_required`, `refers_to` |
//! | `ECCFGTYPE_*` | [`config::OptionType`](crate::config::OptionType) | adds duration, size, mode, CIDR and address types |
//! | `ec_config_value` | [`config::Value`](crate::config::Value) | `as_*` accessors panic on the wrong type |
//! | `ec_config_register_option()` | [`Schema::register_option`](crate::config::Schema::register_option), [`netlistener::register_config_option`](crate::netlistener::register_config_option) | returns a [`Slot`](crate::config::Slot); only before the configuration is loaded |
//! | module scope registration | [`netlistener::register_module_scope`](crate::netlistener::register_module_scope), [`Schema::register_scope_kind`](crate::config::Schema::register_scope_kind) | |
//! | `ec_config_load()` | [`ConfigStore::load`](crate::config::ConfigStore::load), [`netlistener::netlistener_load_config`](crate::netlistener::netlistener_load_config) | a file or a directory of `*.conf`; every error returned at once |
//! | `ec_config_header` (a transaction) | [`config::Generation`](crate::config::Generation) | immutable, numbered, shared as `Arc` |
//! | `ec_config_fetch_globalconf()` | [`netlistener::ec_config_fetch_globalconf`](crate::netlistener::ec_config_fetch_globalconf), [`ConfigStore::current`](crate::config::ConfigStore::current) | returns `Arc<Generation>` |
//! | `ec_config_release_*()` | `Drop` of the `Arc<Generation>` | nothing to forget |
//! | `ec_config_option_fetch_generic()` | [`Generation::fetch`](crate::config::Generation::fetch), [`Generation::fetch_in`](crate::config::Generation::fetch_in), [`AcceptConstruct::fetch`](crate::netlistener::AcceptConstruct::fetch) | also returns the supplying scope ([`Fetched`](crate::config::Fetched)); `chain` + `fetch_in` resolve Peers once per session |
//! | scope/instance pairs (`"Listen", addr, "Peer", peer`) | [`config::ScopePath`](crate::config::ScopePath), [`config::Chain`](crate::config::Chain) | |
//! | configuration reload | [`ConfigStore::reload`](crate::config::ConfigStore::reload), [`netlistener::netlistener_reload`](crate::netlistener::netlistener_reload), [`daemon::reload`](crate::daemon::reload) | a failed reload leaves the running generation in force |
//! | console `config` commands | [`config::console::config_command`](crate::config::console::config_command) | |
//!
//! # Netlistener API
//! | C | Rust | difference |
//! |---|------|------------|
//! | `netlistener_register3()` | [`netlistener::netlistener_register3`](crate::netlistener::netlistener_register3) | `Err` (not UB) off the scheduler thread, twice, or after loading |
//! | `netlistener_register4()` | [`netlistener::netlistener_register4`](crate::netlistener::netlistener_register4) | the type's default `SO_RCVBUF` / `SO_SNDBUF`, where `TCP_*_Buffer_Size` is unset; a configured 0 is the OS default |
//! | `netlistener_register_option()` | [`netlistener::netlistener_register_option`](crate::netlistener::netlistener_register_option) | takes an [`OptionDef`](crate::config::OptionDef) by value; the owner is set to the type |
//! | `netlistener_def` | [`netlistener::NetlistenerDef`](crate::netlistener::NetlistenerDef) | shared as `Arc` |
//! | `accept_construct` | [`netlistener::AcceptConstruct`](crate::netlistener::AcceptConstruct) | carries the session's generation and scope chain; releases caps on `Drop` |
//! | `accept_construct_closure.vptr` | [`AcceptConstruct::accept_construct_closure`](crate::netlistener::AcceptConstruct::accept_construct_closure) | `Option<Box<dyn Any + Send>>`; read with [`AcceptConstruct::closure_mut`](crate::netlistener::AcceptConstruct::closure_mut) |
//! | `ac->remote_addr`, `ac->local_addr` | [`AcceptConstruct::remote_addr`](crate::netlistener::AcceptConstruct::remote_addr), [`AcceptConstruct::local_addr`](crate::netlistener::AcceptConstruct::local_addr) | `None` on a Unix socket |
//! | `ac->inst` (`netlistener_inst`) | [`netlistener::ListenInfo`](crate::netlistener::ListenInfo) | |
//! | the common listener options | [`netlistener::CommonSlots`](crate::netlistener::CommonSlots), [`netlistener::common_slots`](crate::netlistener::common_slots) | |
//! | the `get_option()` idiom | [`AcceptConstruct::fetch`](crate::netlistener::AcceptConstruct::fetch) | no Peer lookup per fetch, nothing to release |
//! | idle timeout reset on activity | [`netlistener::touch`](crate::netlistener::touch) | O(1) |
//! | the acceptor function | [`NetlistenerDef::acceptor`](crate::netlistener::NetlistenerDef::acceptor) | a refused connection is never counted as a session (`accepted` + `refused` = connections) |
//! | the accept loop and accept threads | [`netlistener::netlistener_start`](crate::netlistener::netlistener_start), [`netlistener::netlistener_apply`](crate::netlistener::netlistener_apply) | threads are never joined on the scheduler: a stop signals and detaches them, and an admitted connection is still started; a thread accepts until `EAGAIN`, then waits for its turn to `poll` (one thread of a Listen polls at a time); closing a Listen `shutdown(2)`s its socket, which on Linux frees the port at once |
//! | per-instance statistics | [`netlistener::Stats`](crate::netlistener::Stats), [`netlistener::listeners_report`](crate::netlistener::listeners_report) | adds `queue_waits` (accept threads that found the hand-off queue full; `qwait` in `nlctl listeners`) |
//! | stale Unix socket check | [`sys::unix_connect_probe`](crate::sys::unix_connect_probe) | non-blocking; only `ECONNREFUSED`/`ENOENT` mean stale |
//!
//! # Daemon
//! | C | Rust | difference |
//! |---|------|------------|
//! | a module's `conf_setup` hook | [`daemon::ModuleDef`](crate::daemon::ModuleDef) | a static table instead of loadable modules |
//! | the `ecelerity` main program | [`daemon::daemon_main`](crate::daemon::daemon_main) | `-c`, `--check`, `--log-level`, `--version` |
//! | `SIGHUP` reload | [`daemon::reload`](crate::daemon::reload) | also the console's `config reload` |
//! | orderly shutdown | [`daemon::request_shutdown`](crate::daemon::request_shutdown) | stop listening, drain up to `Shutdown_Timeout` |
//!
//! # ESMTP module
//! | C | Rust | difference |
//! |---|------|------------|
//! | the `esmtp` module's `conf_setup` | [`modules::esmtp::conf_setup`](crate::modules::esmtp::conf_setup) | registers `ESMTP_Listener`, its options and its reject lines; `Err` off the scheduler thread, twice on one thread, or after loading |
//! | ESMTP `ec_config_option_def`s and `get_option()` | [`modules::esmtp::options`](crate::modules::esmtp::options) ([`Slots`](crate::modules::esmtp::options::Slots), [`SessionConf`](crate::modules::esmtp::options::SessionConf)) | every option valid in Listener, Listen, Peer, Pathway and Pathway_Group (not global), reloadable; resolved once per session; sessions with equal values share one snapshot (its Maildir included) through a per-thread cache, without a lock or an allocation |
//! | Maildir delivery via `ec_async_job` | [`modules::esmtp::delivery`](crate::modules::esmtp::delivery) ([`MaildirWrite`](crate::modules::esmtp::delivery::MaildirWrite), [`BodyBuf`](crate::modules::esmtp::delivery::BodyBuf), [`Maildir`](crate::modules::esmtp::delivery::Maildir), [`commit`](crate::modules::esmtp::delivery::commit)) through [`scheduler::float_event`](crate::scheduler::float_event) + [`ThreadPool::submit_with`](crate::threadpool::ThreadPool::submit_with) | the session floats to its `Pool_Name` pool every 12 KiB of body and at the end of data; the finished file is queued for its Maildir's group commit (one `syncfs` per batch on Linux 5.8+, on its earliest file, else `fsync` per file; `link` into `new/`, never replacing) and the committing thread resumes the session with its `250`; any failure, or a pool that refuses the job, `451 4.3.0` with nothing left in `tmp/` or `new/` |
