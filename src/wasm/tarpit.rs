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
use std::cmp::Reverse;
use std::collections::BinaryHeap;

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
    /// `(deadline, context id)`, earliest first. A released request's entry
    /// stays until it comes up (or the heap is compacted): it counts only
    /// while `held` still has that id with that deadline.
    by_deadline: RefCell<BinaryHeap<Reverse<(u64, u32)>>>,
    /// The held requests by context id: deadline and what to do.
    held: RefCell<HashMap<u32, (u64, Held)>>,
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
            by_deadline: RefCell::new(BinaryHeap::new()),
            held: RefCell::new(HashMap::default()),
            fast: Cell::new(false),
        }
    }

    /// Requests held now.
    pub fn len(&self) -> usize {
        self.held.borrow().len()
    }

    /// Whether request `context_id` is held here.
    pub fn holds(&self, context_id: u32) -> bool {
        self.held.borrow().contains_key(&context_id)
    }

    /// Holds request `context_id` for `delay` (from the host clock now).
    pub fn hold(&self, context_id: u32, delay: Duration, connection_rule: Option<&str>) -> Hold {
        if self.len() >= self.max {
            return Hold::Full;
        }
        let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let deadline = abi::now_ns().saturating_add(delay_ns);
        let held = Held {
            connection_rule: connection_rule.map(str::to_string),
        };
        if self
            .held
            .borrow_mut()
            .insert(context_id, (deadline, held))
            .is_none()
        {
            count_held(1, 0);
        }
        let mut by_deadline = self.by_deadline.borrow_mut();
        by_deadline.push(Reverse((deadline, context_id)));
        // Released entries wait for their deadline in the heap; past twice
        // the bound, drop them now, so the heap stays within 2 × max + 1.
        if by_deadline.len() > self.max.saturating_mul(2) {
            let held = self.held.borrow();
            by_deadline.retain(|Reverse((d, id))| held.get(id).is_some_and(|(at, _)| at == d));
        }
        drop(by_deadline);
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
        if self.held.borrow_mut().remove(&context_id).is_none() {
            return false;
        }
        count_held(0, 1);
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
        let mut due: Vec<(u32, Held)> = Vec::new();
        {
            let mut by_deadline = self.by_deadline.borrow_mut();
            let mut held = self.held.borrow_mut();
            while let Some(&Reverse((deadline, id))) = by_deadline.peek() {
                if deadline > now {
                    break;
                }
                by_deadline.pop();
                // Still held with this deadline (not released, not re-held)?
                if held.get(&id).is_some_and(|(at, _)| *at == deadline) {
                    if let Some((_, h)) = held.remove(&id) {
                        count_held(0, 1);
                        due.push((id, h));
                    }
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
