//! The L4 side of drop444: the same module loaded a second time as an Envoy
//! *network* filter (`envoy.filters.network.wasm`, `root_id: drop444-l4`)
//! placed before the HTTP connection manager, in the same VM (`vm_id` and
//! `vm_config` identical to the HTTP filter's). It does two things an HTTP
//! filter cannot:
//!
//! - **`scope: connection`**: when the HTTP filter drops a request by a rule
//!   with that scope, it marks the connection here ([`close_connection`]);
//!   the next bytes Envoy writes to that client (the RST_STREAM of the reset
//!   stream, or anything later) are not written, and the whole connection is
//!   closed instead, with every stream on it.
//! - **`malformed: close`**: HTTP/1 request heads that Envoy would answer
//!   itself with an error (400 / 426 / 431) are closed without a byte before
//!   Envoy sees them (`src/l4core.rs` decides).
//!
//! The two plugins share state through a per-thread map keyed by Envoy's
//! `connection_id`: both run in the same wasm VM instance on the worker that
//! owns the connection (Envoy gives each worker its own instance of a VM,
//! keyed by `vm_id`, code and VM configuration), so no host shared data is
//! needed. If the HTTP filter finds no L4 context for its connection (the
//! network filter is missing or runs in another VM), it says so in the log
//! and the counter `drop444.connection_close_unavailable`, and only the
//! stream is reset.

use crate::engine::FnvMap as HashMap;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::hostcall::{self, BufferType};
use super::Action;
use log::{debug, error, info, warn};

use super::abi::{Counter, LogBudget};
use crate::l4core::{Inspector, L4Config, Step};

/// The `root_id` that makes a root context the L4 plugin.
pub const L4_ROOT_ID: &str = "drop444-l4";

thread_local! {
    /// Connections with a live L4 context on this worker: connection id →
    /// "close at the next write". Entries are removed when the L4 context
    /// goes away, so the map holds at most the worker's open connections.
    static CONNECTIONS: RefCell<HashMap<u64, bool>> = RefCell::new(HashMap::default());
    /// Counter for drops that wanted the connection closed but found no L4
    /// context; defined on first use.
    static UNAVAILABLE: Cell<Option<Counter>> = const { Cell::new(None) };
    /// The missing-L4 warning is written once per worker, not per request.
    static WARNED: Cell<bool> = const { Cell::new(false) };
    /// The L4 plugins' connections, by context id: from
    /// `proxy_on_new_connection` to the connection's close (or the
    /// context's deletion).
    static CONTEXTS: RefCell<HashMap<u32, Connection>> = RefCell::new(HashMap::default());
}

/// Called by the HTTP filter for a drop by a `scope: connection` rule,
/// *before* it resets the stream: the L4 context of this connection will
/// close it at the next write. Returns false (and counts, and warns once per
/// worker) if there is none.
pub fn close_connection(rule: &str) -> bool {
    let marked = connection_id().is_some_and(|id| {
        CONNECTIONS.with(|c| match c.borrow_mut().get_mut(&id) {
            Some(close) => {
                *close = true;
                true
            }
            None => false,
        })
    });
    if !marked {
        let counter = UNAVAILABLE.with(|u| {
            u.get().unwrap_or_else(|| {
                let counter = Counter::define("drop444.connection_close_unavailable");
                u.set(Some(counter));
                counter
            })
        });
        counter.bump();
        if !WARNED.with(|w| w.replace(true)) {
            warn!(
                "rule {rule} has scope connection, but this connection has no {L4_ROOT_ID} \
                 network filter in the same VM: only the stream was reset (said once per worker; \
                 counter drop444.connection_close_unavailable counts every case)"
            );
        }
    }
    marked
}

fn connection_id() -> Option<u64> {
    let bytes = hostcall::get_property(vec!["connection_id"]).ok()??;
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// The L4 plugin's settings and counters (one per plugin and worker).
pub struct Plugin {
    config: L4Config,
    closed_by_rule: Counter,
    closed_malformed: Counter,
    log_budget: LogBudget,
    /// The missing-HTTP-plugin warning of `refuse_at_accept` was written.
    accept_warned: Cell<bool>,
}

impl Plugin {
    /// The plugin for this configuration; `None` (after an error log) for an
    /// invalid one, which makes the host refuse it.
    pub fn configure(config: &[u8]) -> Option<Self> {
        match L4Config::from_json(config) {
            Ok(config) => {
                info!("{L4_ROOT_ID} configuration loaded: {config:?}");
                Some(Plugin {
                    config,
                    closed_by_rule: Counter::define("drop444.l4.connections_closed_by_rule"),
                    closed_malformed: Counter::define("drop444.l4.malformed_requests_closed"),
                    log_budget: LogBudget::new(10),
                    accept_warned: Cell::new(false),
                })
            }
            Err(err) => {
                error!("invalid {L4_ROOT_ID} configuration, plugin not loaded: {err}");
                None
            }
        }
    }

    fn connection(plugin: &Rc<Plugin>) -> Connection {
        Connection {
            plugin: Rc::clone(plugin),
            id: None,
            inspector: Inspector::new(&plugin.config),
            closed: false,
        }
    }
}

/// One per downstream connection.
pub struct Connection {
    plugin: Rc<Plugin>,
    id: Option<u64>,
    inspector: Option<Inspector>,
    /// Closed by this filter: every later write is held back too.
    closed: bool,
}

impl Connection {
    fn close(&mut self, counter: Counter) -> Action {
        self.closed = true;
        counter.bump();
        if let Err(status) = hostcall::close_downstream() {
            error!("host cannot close the connection: {status:?}");
        }
        Action::Pause
    }

    fn forget(&mut self) {
        if let Some(id) = self.id.take() {
            CONNECTIONS.with(|c| c.borrow_mut().remove(&id));
        }
    }
}

/// A new downstream connection of `plugin`: refused at accept, or watched.
pub fn on_new_connection(plugin: &Rc<Plugin>, context_id: u32) -> Action {
    let mut connection = Plugin::connection(plugin);
    let action = connection.on_new_connection();
    CONTEXTS.with(|c| {
        if let Ok(mut contexts) = c.try_borrow_mut() {
            contexts.insert(context_id, connection);
        }
    });
    action
}

/// Runs `f` on connection `context_id`, taken out of the map meanwhile (so
/// no borrow is held across the host calls it makes); `None` for a context
/// this module does not know.
fn with_connection(context_id: u32, f: impl FnOnce(&mut Connection) -> Action) -> Option<Action> {
    let mut connection = CONTEXTS.with(|c| c.try_borrow_mut().ok()?.remove(&context_id))?;
    let action = f(&mut connection);
    CONTEXTS.with(|c| {
        if let Ok(mut contexts) = c.try_borrow_mut() {
            contexts.insert(context_id, connection);
        }
    });
    Some(action)
}

pub fn on_downstream_data(context_id: u32, size: usize, end_of_stream: bool) -> Action {
    with_connection(context_id, |c| c.on_downstream_data(size, end_of_stream))
        .unwrap_or(Action::Continue)
}

pub fn on_upstream_data(context_id: u32) -> Action {
    with_connection(context_id, Connection::on_upstream_data).unwrap_or(Action::Continue)
}

/// The connection closed or its context went away: its state goes.
pub fn forget(context_id: u32) {
    let connection = CONTEXTS.with(|c| {
        let mut contexts = c.try_borrow_mut().ok()?;
        if contexts.is_empty() {
            return None;
        }
        contexts.remove(&context_id)
    });
    // Dropped outside the borrow.
    drop(connection);
}

impl Connection {
    fn on_new_connection(&mut self) -> Action {
        if let Some(name) = self.plugin.config.refuse_at_accept.as_deref() {
            if super::accept::refuse(name, &self.plugin.accept_warned) {
                // Closing; nothing of this connection reaches the HCM.
                self.closed = true;
                self.inspector = None;
                return Action::Pause;
            }
        }
        self.id = connection_id();
        match self.id {
            Some(id) => CONNECTIONS.with(|c| {
                c.borrow_mut().insert(id, false);
            }),
            None => debug!("no connection_id: scope connection cannot apply here"),
        }
        Action::Continue
    }

    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.closed {
            return Action::Pause;
        }
        let Some(inspector) = self.inspector.as_mut() else {
            return Action::Continue;
        };
        if inspector.is_off() {
            self.inspector = None;
            return Action::Continue;
        }
        let data = hostcall::get_buffer(BufferType::DownstreamData, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match inspector.inspect(&data, end_of_stream) {
            Step::Pass => Action::Continue,
            Step::NeedMore => Action::Pause,
            Step::Close(reason) => {
                if self.plugin.log_budget.take().is_some() {
                    info!(
                        "{{\"drop444\":\"close\",\"rule\":\"malformed-request\",\"reason\":\"{}\"}}",
                        reason.as_str()
                    );
                }
                self.inspector = None;
                self.close(self.plugin.closed_malformed)
            }
        }
    }

    fn on_upstream_data(&mut self) -> Action {
        if self.closed {
            // Nothing more is written on a connection being closed.
            return Action::Pause;
        }
        let marked = self
            .id
            .is_some_and(|id| CONNECTIONS.with(|c| c.borrow().get(&id).copied() == Some(true)));
        if !marked {
            return Action::Continue;
        }
        self.forget();
        self.close(self.plugin.closed_by_rule)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.forget();
    }
}
