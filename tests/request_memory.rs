//! Per-request memory is bounded: deciding the largest request Envoy hands
//! to the filter (60 KiB of headers, its default `max_request_headers_kb`)
//! allocates at most a small multiple of the request, whatever the rules,
//! including rule sets whose patterns overlap at every byte. Measured with a
//! counting global allocator (this test binary only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use drop444::engine::{Engine, HeaderList, NoLimits};
use serde_json::json;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Tests in this binary measure one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes allocated (above what was live before) while deciding.
fn peak_of_decide(engine: &Engine, request: &HeaderList) -> usize {
    let mut request = request.clone();
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let verdict = engine.decide(&mut request, &mut NoLimits);
    std::hint::black_box(&verdict);
    PEAK.load(Ordering::Relaxed) - base
}

const REQUEST_HEADERS_MAX: usize = 60 * 1024;
/// The bound asserted: the request itself is read (copied) once per header,
/// plus normalised path and query copies; 8× the request covers all of them.
const BOUND: usize = 8 * REQUEST_HEADERS_MAX;

fn big_request(byte: &str) -> HeaderList {
    let value = byte.repeat(REQUEST_HEADERS_MAX / 2 - 64);
    HeaderList::new()
        .with(":authority", "example.com")
        .with(
            ":path",
            format!("/{}?id={}", byte.repeat(8 * 1024), byte.repeat(8 * 1024)),
        )
        .with("x-p", &value)
        .with("user-agent", &value[..REQUEST_HEADERS_MAX / 4])
}

#[test]
fn overlapping_patterns_on_a_60k_header_stay_bounded() {
    let _serial = SERIAL.lock().unwrap();
    // 64 patterns a, aa, aaa, …: each byte of an `aaaa…` value ends a match
    // of every one of them (about 2 million matches for 30 KiB).
    let mut rules: Vec<serde_json::Value> = (1..=64)
        .map(|i| json!({"header": "x-p", "suffix": "a".repeat(i), "action": "log"}))
        .collect();
    rules.extend(
        (1..=64).map(|i| json!({"header": "x-p", "contains": "a".repeat(i), "action": "log"})),
    );
    rules.push(json!({"field": "path", "contains": "aaaa", "action": "log"}));
    rules.push(json!({"query": "id", "regex": "a+$", "action": "log"}));
    let engine = Engine::from_json(json!({"rules": rules}).to_string().as_bytes()).unwrap();
    let request = big_request("a");
    let peak = peak_of_decide(&engine, &request);
    let verdict = engine.decide(&mut request.clone(), &mut NoLimits);
    assert_eq!(verdict.logged.len(), 130, "every rule matched");
    assert!(
        peak < BOUND,
        "deciding allocated {peak} bytes (bound {BOUND})"
    );
}

#[test]
fn presets_on_a_60k_request_stay_bounded() {
    let _serial = SERIAL.lock().unwrap();
    let config = json!({"rules": [
        {"name": "s", "preset": "scanners", "action": "log"},
        {"name": "e", "preset": "exploit-paths", "action": "log"},
        {"name": "b", "preset": "bad-bots", "action": "log"},
    ]});
    let engine = Engine::from_json(config.to_string().as_bytes()).unwrap();
    for byte in ["a", "/", "%2e", ",", " ", "\u{0}"] {
        let peak = peak_of_decide(&engine, &big_request(byte));
        assert!(
            peak < BOUND,
            "{byte:?}: deciding allocated {peak} bytes (bound {BOUND})"
        );
    }
}

/// Every reading of path, path and query and query at once (issue 14): a
/// request built so that no two readings are equal still stays bounded.
#[test]
fn every_reading_on_a_60k_request_stays_bounded() {
    let _serial = SERIAL.lock().unwrap();
    let config = json!({"rules": [
        {"name": "p", "field": "path", "contains": "zz", "action": "log"},
        {"name": "pq", "field": "path_and_query", "contains": "zz", "action": "log"},
        {"name": "q", "query": "id", "contains": "zz", "action": "log"},
        {"name": "e", "preset": "exploit-paths", "action": "log"},
        {"name": "a", "action": "allow", "field": "path_and_query", "prefix": "/zz"},
    ]});
    let engine = Engine::from_json(config.to_string().as_bytes()).unwrap();
    let unit = "a%252f;b\\c%5c/..%2f+%41";
    let path = unit.repeat(REQUEST_HEADERS_MAX / 2 / unit.len());
    let query = format!(
        "id={}",
        unit.repeat(REQUEST_HEADERS_MAX / 2 / unit.len() - 2)
    );
    let request = HeaderList::new()
        .with(":authority", "example.com")
        .with(":path", format!("/{path}?{query}"));
    let peak = peak_of_decide(&engine, &request);
    eprintln!(
        "every reading: peak {peak} bytes for a {} byte request",
        path.len() + query.len()
    );
    assert!(
        peak < BOUND,
        "deciding allocated {peak} bytes (bound {BOUND})"
    );
}
