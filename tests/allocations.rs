//! Zero heap allocations per allowed request in the engine: a counting
//! global allocator (this test binary's own) watches `Engine::decide` for a
//! typical allowed request — the README example configuration (host
//! allowlist, presets on, an allow rule, a log rule), a plain path, a few
//! headers — at 10 and at 10,000 rules. The request source lends its values
//! the way the adapters do (appending to the engine's buffer), and the first
//! decision on the thread, which sizes the reused buffers, is not counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use drop444::engine::{Decision, Engine, NoLimits, RequestSource};
use serde_json::{json, Value};

/// Counts allocations made on the thread that turned counting on (the test
/// harness runs other threads that must not disturb the count).
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

/// A request held as header lines; values are appended to the engine's
/// buffer, as the adapters do.
struct Lines(Vec<(&'static str, &'static [u8])>);

impl RequestSource for Lines {
    fn header(&mut self, name: &str, out: &mut Vec<u8>) -> bool {
        let lines = self.0.iter().filter(|(n, _)| *n == name);
        drop444::engine::join_lines(lines.map(|(_, v)| *v), out)
    }
    fn peer_address(&mut self, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(b"198.51.100.7:40000");
        true
    }
    fn protocol(&mut self, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(b"HTTP/1.1");
        true
    }
}

fn browser() -> Lines {
    Lines(vec![
        (":authority", b"www.example.com"),
        (":path", b"/products/4711?ref=home"),
        (":method", b"GET"),
        (":scheme", b"https"),
        (
            "user-agent",
            b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", b"text/html,application/xhtml+xml"),
        ("accept-language", b"en-GB,en;q=0.7"),
    ])
}

/// The README example, plus `extra` rules of the kinds the benchmark uses
/// (user-agent tokens, path prefixes, a network list) up to `total` rules.
fn config(total: usize) -> Value {
    let mut rules = vec![
        json!({"name": "healthz", "action": "allow", "field": "path", "exact": "/healthz"}),
        json!({"name": "scanners", "preset": "scanners"}),
        json!({"name": "exploit-paths", "preset": "exploit-paths"}),
        json!({"name": "admin", "field": "path", "prefix": "/admin"}),
        json!({"name": "try-bots", "action": "log", "preset": "bad-bots"}),
    ];
    let mut i = 0;
    while rules.len() + 4 < total {
        rules.push(match i % 3 {
            0 => json!({"header": "user-agent", "contains": format!("bot{i}/x"), "case_insensitive": true}),
            1 => json!({"field": "path", "prefix": format!("/probe{i}/")}),
            _ => json!({"field": "client_ip", "in": [format!("10.{}.{}.0/24", i / 256 % 256, i % 256)]}),
        });
        i += 1;
    }
    json!({"host": {"allow": ["example.com", "*.example.com"]}, "rules": rules})
}

fn check(total: usize) {
    let engine = Engine::from_json(config(total).to_string().as_bytes()).unwrap();
    assert!(
        engine.rules().count() >= total - 1,
        "{}",
        engine.rules().count()
    );
    // The first decision on this thread sizes the reused buffers.
    let first = engine.decide(&mut browser(), &mut NoLimits).decision;
    assert_eq!(first, Decision::Pass, "the request must be allowed");
    let mut request = browser();
    let count = allocations(|| {
        for _ in 0..100 {
            let verdict = engine.decide(&mut request, &mut NoLimits);
            assert_eq!(verdict.decision, Decision::Pass);
        }
    });
    assert_eq!(
        count, 0,
        "{count} allocations in 100 allowed requests at {total} rules"
    );
}

#[test]
fn allowed_request_allocates_nothing_at_10_rules() {
    check(10);
}

#[test]
fn allowed_request_allocates_nothing_at_10000_rules() {
    check(10_000);
}

/// The counter counts: a decision with a fresh thread's buffers (and a
/// request whose path needs normalising) does allocate.
#[test]
fn the_counter_sees_allocations() {
    let engine = Engine::from_json(config(10).to_string().as_bytes()).unwrap();
    let count = allocations(|| {
        let verdict = engine.decide(
            &mut Lines(vec![
                (":authority", b"www.example.com"),
                (":path", b"/a/../b%2e"),
            ]),
            &mut NoLimits,
        );
        assert_eq!(verdict.decision, Decision::Pass);
    });
    assert!(count > 0, "no allocation counted");
}
