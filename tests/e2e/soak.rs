//! Soak: many requests, allowed and dropped, over many keep-alive
//! connections to one real Envoy with drop444; Envoy's memory must stay flat
//! and no request may get a wrong answer.
//!
//! `make test-e2e` runs a short version (`SOAK_REQUESTS`, default 50,000);
//! `make soak` runs 1,000,000 (bounded by `SOAK_SECONDS`, default 600 s).
//!
//! Memory is sampled every `SAMPLE_EVERY`: admin `/memory` (`allocated`,
//! `heap_size`: Envoy's tcmalloc heap) and the process's resident set
//! (`VmRSS`), which is where the V8 wasm VM's linear memory lives (V8 maps
//! it outside tcmalloc; a wasm module's memory only ever grows, so a leak in
//! the filter shows up there). After a warm-up (the first 10 % of samples),
//! the mean of the last third must not exceed the mean of the first third
//! by more than `TOLERANCE_BYTES` or `TOLERANCE_RATIO`, whichever is larger.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::envoy::{http_get, skip_if_external, Envoy};
use crate::BODY;

const CONFIG: &str = r#"{
  "host": {"allow": ["example.com", "*.example.com"]},
  "log": {"max_per_second": 10},
  "rules": [
    {"name": "scanners", "preset": "scanners"},
    {"name": "exploit-paths", "preset": "exploit-paths"},
    {"name": "admin", "field": "path", "prefix": "/admin"},
    {"name": "sqli", "query": "id", "regex": "union\\s+select", "case_insensitive": true}
  ]
}"#;

const THREADS: usize = 8;
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
const TOLERANCE_BYTES: f64 = 8.0 * 1024.0 * 1024.0;
const TOLERANCE_RATIO: f64 = 0.05;

/// Request `i` of a thread: three in four are served, one in four dropped
/// (by the host policy, a scanner UA, a probe path or the query rule).
fn request(i: u64) -> (Vec<u8>, bool) {
    let n = i % 16;
    let (host, path, ua, drop) = match n {
        3 => ("10.0.0.1", "/", "Mozilla/5.0", true),
        7 => ("example.com", "/", "sqlmap/1.7", true),
        11 => ("www.example.com", "/x/../.env", "Mozilla/5.0", true),
        15 => ("example.com", "/q?id=1+UNION+SELECT+2", "Mozilla/5.0", true),
        _ => (
            "www.example.com",
            "/index.html?id=7",
            "Mozilla/5.0 (X11; Linux x86_64)",
            false,
        ),
    };
    let raw =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\nAccept: */*\r\n\r\n");
    (raw.into_bytes(), drop)
}

#[derive(Default)]
struct Totals {
    served: AtomicU64,
    dropped: AtomicU64,
    connections: AtomicU64,
    errors: AtomicU64,
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
}

/// Reads one response (head + Content-Length body); true if it is our 200.
fn read_served(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[..end];
            let ok = head.starts_with(b"HTTP/1.1 200 ");
            let body_at = end + 4;
            if buf.len() >= body_at + BODY.len() {
                return ok && &buf[body_at..body_at + BODY.len()] == BODY;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A drop: nothing, then the close.
fn read_dropped(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 256];
    match stream.read(&mut chunk) {
        Ok(0) => true,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
        _ => false,
    }
}

fn client(addr: SocketAddr, thread: u64, quota: u64, stop: &AtomicBool, totals: &Totals) {
    let mut stream = connect(addr);
    totals.connections.fetch_add(1, Ordering::Relaxed);
    let mut buf = Vec::with_capacity(4096);
    for i in 0..quota {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let (raw, drop) = request(i + thread);
        if stream.write_all(&raw).is_err() {
            totals.errors.fetch_add(1, Ordering::Relaxed);
            stream = connect(addr);
            totals.connections.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let good = if drop {
            read_dropped(&mut stream)
        } else {
            read_served(&mut stream, &mut buf)
        };
        let counter = if !good {
            &totals.errors
        } else if drop {
            &totals.dropped
        } else {
            &totals.served
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if drop || !good {
            stream = connect(addr);
            totals.connections.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Envoy's pid, found by the scratch directory on its command line.
pub(crate) fn envoy_pid(envoy: &Envoy) -> u32 {
    let marker = envoy.scratch().display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&marker))
                .unwrap_or(false)
        })
        .expect("Envoy's pid")
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub at: f64,
    pub requests: u64,
    pub allocated: f64,
    pub heap: f64,
    pub rss: f64,
}

pub(crate) fn sample(envoy: &Envoy, pid: u32, started: Instant, requests: u64) -> Sample {
    let (_, body) = http_get(envoy.admin, "/memory").expect("admin /memory");
    let memory: serde_json::Value = serde_json::from_slice(&body).expect("memory json");
    let number = |k: &str| {
        memory[k]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    Sample {
        at: started.elapsed().as_secs_f64(),
        requests,
        allocated: number("allocated"),
        heap: number("heap_size"),
        rss: rss_kb * 1024.0,
    }
}

pub(crate) fn mean(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    samples.iter().map(f).sum::<f64>() / samples.len() as f64
}

#[test]
fn soak_keeps_memory_flat_and_answers_every_request_right() {
    if skip_if_external("samples the memory of an Envoy it owns") {
        return;
    }
    let total: u64 = std::env::var("SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let limit = Duration::from_secs(
        std::env::var("SOAK_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    );
    let envoy = Envoy::start(CONFIG);
    let pid = envoy_pid(&envoy);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Totals::default());
    let quota = total.div_ceil(THREADS as u64);
    let workers: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let (stop, totals, addr) = (Arc::clone(&stop), Arc::clone(&totals), envoy.addr);
            std::thread::spawn(move || client(addr, t, quota, &stop, &totals))
        })
        .collect();
    let done = |t: &Totals| {
        t.served.load(Ordering::Relaxed)
            + t.dropped.load(Ordering::Relaxed)
            + t.errors.load(Ordering::Relaxed)
    };
    let mut samples = vec![sample(&envoy, pid, started, 0)];
    while workers.iter().any(|w| !w.is_finished()) {
        if started.elapsed() > limit {
            stop.store(true, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(100));
        if samples
            .last()
            .is_some_and(|s| s.at + SAMPLE_EVERY.as_secs_f64() <= started.elapsed().as_secs_f64())
        {
            samples.push(sample(&envoy, pid, started, done(&totals)));
        }
    }
    for w in workers {
        w.join().expect("client thread");
    }
    let elapsed = started.elapsed();
    samples.push(sample(&envoy, pid, started, done(&totals)));
    let (served, dropped, errors) = (
        totals.served.load(Ordering::Relaxed),
        totals.dropped.load(Ordering::Relaxed),
        totals.errors.load(Ordering::Relaxed),
    );
    let mib = |b: f64| b / 1024.0 / 1024.0;
    println!(
        "soak: {} requests ({served} served, {dropped} dropped, {errors} errors) over {} connections in {:.1?} ({:.0} req/s)",
        served + dropped + errors,
        totals.connections.load(Ordering::Relaxed),
        elapsed,
        (served + dropped + errors) as f64 / elapsed.as_secs_f64()
    );
    let step = (samples.len() / 40).max(1);
    for s in samples.iter().step_by(step).chain(samples.last()) {
        println!(
            "  t={:>6.1}s requests={:>8} allocated={:>7.2} MiB heap_size={:>7.2} MiB rss={:>7.2} MiB",
            s.at, s.requests, mib(s.allocated), mib(s.heap), mib(s.rss)
        );
    }
    assert_eq!(errors, 0, "requests with a wrong answer");
    assert_eq!(
        served + dropped,
        total.div_ceil(THREADS as u64) * THREADS as u64,
        "stopped by the {limit:?} bound before all requests were sent"
    );
    envoy.wait_counters_flushed(served + dropped);
    assert_eq!(
        envoy.counter("wasmcustom.drop444.requests_dropped"),
        dropped,
        "filter drops"
    );
    assert_eq!(
        envoy.counter("wasmcustom.drop444.requests_passed"),
        served,
        "filter passes"
    );
    assert_eq!(http_get(envoy.admin, "/ready").expect("ready").0, 200);

    // Flat after warm-up: first third vs last third of the remaining samples.
    assert!(
        samples.len() >= 6,
        "too few samples ({}) to judge flatness",
        samples.len()
    );
    let steady = &samples[samples.len() / 10..];
    let third = steady.len() / 3;
    let (first, last) = (
        &steady[..third.max(1)],
        &steady[steady.len() - third.max(1)..],
    );
    for (what, f) in [
        (
            "allocated",
            (|s: &Sample| s.allocated) as fn(&Sample) -> f64,
        ),
        ("heap_size", |s: &Sample| s.heap),
        ("rss", |s: &Sample| s.rss),
    ] {
        let (a, b) = (mean(first, f), mean(last, f));
        let allowed = TOLERANCE_BYTES.max(a * TOLERANCE_RATIO);
        println!("  {what}: first third {:.2} MiB, last third {:.2} MiB, growth {:+.2} MiB (allowed {:.2} MiB)", mib(a), mib(b), mib(b - a), mib(allowed));
        assert!(
            b - a <= allowed,
            "{what} grew {:.2} MiB (allowed {:.2} MiB)",
            mib(b - a),
            mib(allowed)
        );
    }
}
