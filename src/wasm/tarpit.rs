//! Tarpit: a request dropped by a rule with `"tarpit": "<delay>"` is held
//! (its headers paused, not a byte written) and closed like any drop once the
//! delay has passed.
//!
//! proxy-wasm has no per-stream timer, only the root context's tick. So each
//! HTTP plugin keeps, per worker, the held requests ordered by deadline
//! (`(deadline, context id)`), and while anything is held its tick runs every
//! [`FAST_TICK`]: each tick closes the requests that are due, by making each
//! one the effective context (`proxy_set_effective_context`) and resetting
//! its stream (`proxy_close_stream`), both raw calls whose status is checked
//! (a request that went away meanwhile is simply skipped). When nothing is
//! held the tick goes back to the counters' period.
//!
//! Held requests are bounded per plugin and worker (`max_tarpitted`): past
//! the bound a tarpit rule drops at once (counted in `tarpit_overflow`). A
//! client that gives up first releases its entry when its context is deleted
//! (the `Drop` of the request context, i.e. `proxy_on_delete`), so nothing is
//! held for a stream Envoy has destroyed.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use crate::engine::FnvMap as HashMap;
use std::time::Duration;

use log::debug;

use super::abi;

/// The tick period while a request is held: a delay is kept to within it.
pub const FAST_TICK: Duration = Duration::from_millis(50);
/// Fast ticks per counter flush: counters still reach the host about once
/// per second while requests are held.
pub const FAST_TICKS_PER_FLUSH: u32 = 20;

/// A request body a held request may send before it is closed at once: well
/// under Envoy's default buffer limit (1 MiB), past which Envoy would answer
/// 413 itself for a paused request.
pub const MAX_HELD_BODY: usize = 64 * 1024;

thread_local! {
    /// Requests held by every plugin of this VM instance: a callback of a
    /// request that is not held (every request, on a worker with nothing
    /// held) asks no tarpit.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// Whether any plugin of this VM instance holds a request.
pub fn any_held() -> bool {
    HELD.with(Cell::get) > 0
}

fn count_held(added: usize, removed: usize) {
    HELD.with(|held| held.set(held.get().saturating_add(added).saturating_sub(removed)));
}

/// What the tick does with a due request.
#[derive(Debug, Clone)]
struct Held {
    /// Set for `scope: connection` rules: the rule's name (for the L4 close).
    connection_rule: Option<String>,
}

/// The held requests of one plugin on one worker.
#[derive(Debug)]
pub struct Tarpit {
    max: usize,
    by_deadline: RefCell<BTreeMap<(u64, u32), Held>>,
    deadline_of: RefCell<HashMap<u32, u64>>,
    fast: Cell<bool>,
}

/// What [`Tarpit::hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Held,
    /// The bound is reached: drop now.
    Full,
}

impl Tarpit {
    pub fn new(max: u32) -> Self {
        Tarpit {
            max: max as usize,
            by_deadline: RefCell::new(BTreeMap::new()),
            deadline_of: RefCell::new(HashMap::default()),
            fast: Cell::new(false),
        }
    }

    /// Requests held now.
    pub fn len(&self) -> usize {
        self.deadline_of.borrow().len()
    }

    /// Whether request `context_id` is held here.
    pub fn holds(&self, context_id: u32) -> bool {
        self.deadline_of.borrow().contains_key(&context_id)
    }

    /// Holds request `context_id` for `delay` (from the host clock now).
    pub fn hold(&self, context_id: u32, delay: Duration, connection_rule: Option<&str>) -> Hold {
        if self.len() >= self.max {
            return Hold::Full;
        }
        let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let deadline = abi::now_ns().saturating_add(delay_ns);
        self.by_deadline.borrow_mut().insert(
            (deadline, context_id),
            Held {
                connection_rule: connection_rule.map(str::to_string),
            },
        );
        if self
            .deadline_of
            .borrow_mut()
            .insert(context_id, deadline)
            .is_none()
        {
            count_held(1, 0);
        }
        if !self.fast.replace(true) {
            // Called from the request's context; Envoy applies it to the
            // plugin's root context.
            let status = abi::set_tick_period(FAST_TICK);
            if status != abi::OK {
                debug!("tarpit: fast tick refused (status {status}); delays round up to the tick");
            }
        }
        Hold::Held
    }

    /// Forgets request `context_id` (it went away, or is being closed now);
    /// true if it was held.
    pub fn release(&self, context_id: u32) -> bool {
        let Some(deadline) = self.deadline_of.borrow_mut().remove(&context_id) else {
            return false;
        };
        count_held(0, 1);
        self.by_deadline
            .borrow_mut()
            .remove(&(deadline, context_id));
        true
    }

    /// On the root's tick: closes every held request that is due, then slows
    /// the tick down to `idle` if nothing is held any more. No borrow is held
    /// while a stream is closed: Envoy deletes its context (and so calls
    /// [`Tarpit::release`]) from inside the close. Returns whether the tick
    /// ran at [`FAST_TICK`]; a tick at `idle` with nothing held makes no host
    /// call.
    pub fn on_tick(&self, idle: Duration) -> bool {
        if !self.fast.get() {
            return false;
        }
        let now = abi::now_ns();
        let due: Vec<(u32, Held)> = {
            let mut by_deadline = self.by_deadline.borrow_mut();
            let later = by_deadline.split_off(&(now.saturating_add(1), 0));
            let due = std::mem::replace(&mut *by_deadline, later);
            due.into_iter().map(|((_, id), held)| (id, held)).collect()
        };
        {
            let mut deadline_of = self.deadline_of.borrow_mut();
            for (id, _) in &due {
                if deadline_of.remove(id).is_some() {
                    count_held(0, 1);
                }
            }
        }
        for (id, held) in due {
            let status = abi::set_effective_context(id);
            if status != abi::OK {
                // The request is gone (its context was deleted).
                debug!("tarpit: context {id} gone (status {status})");
                continue;
            }
            if let Some(rule) = held.connection_rule.as_deref() {
                super::l4::close_connection(rule);
            }
            let status = abi::reset_request();
            if status != abi::OK {
                debug!("tarpit: closing context {id} failed (status {status})");
            }
        }
        if self.len() == 0 && self.fast.replace(false) {
            let status = abi::set_tick_period(idle);
            if status != abi::OK {
                debug!("tarpit: tick period not restored (status {status})");
            }
        }
        true
    }
}

impl Drop for Tarpit {
    /// A plugin deleted while it holds requests no longer counts them.
    fn drop(&mut self) {
        count_held(0, self.len());
    }
}
