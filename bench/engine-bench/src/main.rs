//! Decides K requests against a rule set, natively, for instruction counts
//! under `valgrind --tool=callgrind` (bench/run.py runs it at K=0 and K=1000
//! and reports the difference per request, so set-up is excluded).
//!
//! ```sh
//! cargo run --release --manifest-path bench/engine-bench/Cargo.toml -- CONFIG.json K HEADERS.json [NAME=FILE]...
//! ```
//!
//! `NAME=FILE` loads a local copy of the configuration's named list `NAME`
//! (bench/lists.py: a 100,000-entry list).
//!
//! CONFIG.json is a drop444 plugin configuration; HEADERS.json an object of
//! lower-case header names to values (`:authority`, `:path`, `user-agent`).
//! This file is the only bench code that uses the engine's API.

use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;

use drop444::engine::lists::{self, ListData, ListSet};
use drop444::engine::{join_lines, Decision, Engine, NoLimits, RequestSource};

/// A request's header lines, served to the engine the way the adapters do
/// (a scan over the lines, the value appended to the engine's buffer), and
/// the named lists' snapshots. A `<peer>` line overrides the peer address.
struct Headers(Vec<(String, Vec<u8>)>, ListSet);

impl RequestSource for Headers {
    fn header(&mut self, name: &str, out: &mut Vec<u8>) -> bool {
        let lines = self.0.iter().filter(|(n, _)| n == name);
        join_lines(lines.map(|(_, v)| v.as_slice()), out)
    }

    fn list(&self, id: u32) -> Option<std::sync::Arc<ListData>> {
        self.1.get(id).cloned()
    }

    fn peer_address(&mut self, out: &mut Vec<u8>) -> bool {
        match self.0.iter().find(|(n, _)| n == "<peer>") {
            Some((_, v)) => out.extend_from_slice(v),
            None => out.extend_from_slice(b"198.51.100.77:40000"),
        }
        true
    }

    fn protocol(&mut self, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(b"HTTP/1.1");
        true
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let [config, count, headers, list_args @ ..] = args else {
        return Err("usage: engine_bench CONFIG.json K HEADERS.json [NAME=FILE]...".into());
    };
    let config = std::fs::read(config).map_err(|e| format!("{config}: {e}"))?;
    let count: u64 = count.parse().map_err(|e| format!("K: {e}"))?;
    let headers: HashMap<String, String> = std::fs::read(headers)
        .map_err(|e| e.to_string())
        .and_then(|raw| serde_json::from_slice(&raw).map_err(|e| e.to_string()))?;
    let engine = Engine::from_json(&config).map_err(|e| e.to_string())?;
    let mut set = ListSet::new(engine.lists().len());
    for arg in list_args {
        let (name, file) = arg.split_once('=').ok_or("lists are NAME=FILE")?;
        let id = engine
            .lists()
            .iter()
            .position(|d| d.name == name)
            .ok_or(format!("no list {name}"))?;
        let decl = engine.lists().get(id).ok_or("list")?;
        let body = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        let data = lists::load(decl, &body)?;
        set.set(id as u32, std::sync::Arc::new(data));
    }
    let mut headers = Headers(
        headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_bytes()))
            .collect(),
        set,
    );
    let mut dropped: u64 = 0;
    for _ in 0..count {
        if decide_once(black_box(&engine), black_box(&mut headers)) {
            dropped = dropped.saturating_add(1);
        }
    }
    Ok(format!("decided {count} requests, dropped {dropped}"))
}

/// One decision, not inlined, so a profile can collect exactly it
/// (`valgrind --tool=callgrind --toggle-collect='*decide_once*'`).
#[inline(never)]
fn decide_once(engine: &Engine, headers: &mut Headers) -> bool {
    matches!(engine.decide(headers, &mut NoLimits).decision, Decision::Drop { .. })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("engine_bench: {err}");
            ExitCode::FAILURE
        }
    }
}
