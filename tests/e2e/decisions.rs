//! The shared decision table (`tests/cases/decisions.json`) on real Envoy:
//! the same cases the wasmtime host harness runs (`tests/host/decisions.rs`),
//! so the two engines are compared on one table. One Envoy per group; each
//! case on a fresh HTTP/1.1 connection: a pass must get the route's 200, a
//! drop zero bytes and a FIN; the access log must name the rule.

use std::time::Instant;

use crate::cases::{self, Expect};
use crate::envoy::Envoy;
use crate::wire::{connect, exchange, read_response, End};
use crate::{BODY, CLOSE_WITHIN, PATIENCE};

fn run(envoy: &Envoy, request: &[u8], expect: Expect) -> Result<(), String> {
    let mut stream = connect(envoy.addr);
    match expect {
        Expect::Drop => {
            let out = exchange(&mut stream, request, PATIENCE);
            if !out.bytes.is_empty() {
                return Err(format!(
                    "want a drop, got {:?}",
                    String::from_utf8_lossy(&out.bytes)
                ));
            }
            if out.end != End::Fin || out.elapsed >= CLOSE_WITHIN {
                return Err(format!("want a FIN within {CLOSE_WITHIN:?}, got {out:?}"));
            }
        }
        Expect::Pass => {
            std::io::Write::write_all(&mut stream, request).expect("write");
            let response = read_response(&mut stream);
            if response.status != 200 || response.body != BODY {
                return Err(format!("want the route's 200, got {}", response.head));
            }
        }
    }
    Ok(())
}

#[test]
fn decision_table_on_envoy() {
    if crate::envoy::skip_if_external(
        "runs four configurations of its own; the Compose stack runs two",
    ) {
        return;
    }
    let table = cases::load();
    let start = Instant::now();
    let mut count = 0;
    let mut failures = Vec::new();
    for group in &table.groups {
        let started = Instant::now();
        let envoy = Envoy::start(&group.config());
        let ready = started.elapsed();
        for case in &group.cases {
            if let Err(why) = run(&envoy, &case.http1(), case.expect) {
                failures.push(format!("{}/{}: {why}", group.name, case.name));
            }
        }
        count += group.cases.len();
        eprintln!(
            "envoy: group {}: start-up {ready:?}, {} cases {:?}",
            group.name,
            group.cases.len(),
            started.elapsed() - ready
        );
        let log = envoy.access_log(group.cases.len());
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(
            lines.len(),
            group.cases.len(),
            "{}: one access-log line per case:\n{log}",
            group.name
        );
        for (line, case) in lines.iter().zip(&group.cases) {
            let want = match case.dropped_by() {
                Some(rule) => format!("\" 0 wasm_close_stream drop444=444 rule={rule} "),
                None => "\" 200 direct_response drop444=- rule=- ".to_string(),
            };
            if !line.contains(&want) {
                failures.push(format!(
                    "{}/{}: access log wants {want:?}: {line}",
                    group.name, case.name
                ));
            }
        }
    }
    eprintln!(
        "envoy: {count} cases in {:?} (including {} Envoy start-ups)",
        start.elapsed(),
        table.groups.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed on Envoy:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
