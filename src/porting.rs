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
//! | `clear_timed_event()` | [`scheduler::clear_timed_event`](crate::scheduler::clear_timed_event) | by id |
//! | `clear_event_by_fd()` | [`scheduler::clear_event_by_fd`](crate::scheduler::clear_event_by_fd) | |
//! | `get_event_by_fd()` | [`scheduler::get_event_by_fd`](crate::scheduler::get_event_by_fd) | returns an id |
//! | `float_event()` | [`scheduler::float_event`](crate::scheduler::float_event) + [`FloatedEvent::resume`](crate::scheduler::FloatedEvent::resume) | the floated event is an owned `Send` value |
//! | `is_scheduler_thread()` | [`scheduler::is_scheduler_thread`](crate::scheduler::is_scheduler_thread) | |
//! | `ping_scheduler()` | [`scheduler::ping_scheduler`](crate::scheduler::ping_scheduler) | |
//! | `schedule_recurring_function()` | [`scheduler::schedule_recurring`](crate::scheduler::schedule_recurring) | |
//! | master event loop | [`Scheduler::run`](crate::scheduler::Scheduler::run) | level-mode `polling` |
//! | signal handling | [`scheduler::on_signal`](crate::scheduler::on_signal) | self-pipe; callback on the loop |
//! | `ec_async_job` | [`threadpool::Job`](crate::threadpool::Job), [`scheduler::threadpool_submit`](crate::scheduler::threadpool_submit) | completion is a [`Completion`](crate::threadpool::Completion) |
//! | `IO` / `CPU` thread pools | [`scheduler::get_pool`](crate::scheduler::get_pool) | created on first use |
//! | `read()`/`write()` + `EAGAIN` | [`Event::read`](crate::event::Event::read), [`Event::write`](crate::event::Event::write), [`event::Io`](crate::event::Io) | says what to wait for next |
