//! The shared decision table, `tests/cases/decisions.json`, run natively
//! through the engine: every group's configuration, every case's request as
//! the hosts hand it to the filter (Host as `:authority`, the request target
//! as `:path`, `:method`, `:scheme: http`, the header lines in order, values
//! trimmed), the same expectation as the wasmtime host (`tests/host/`) and
//! Envoy (`tests/e2e/`): a pass, or a drop by the named rule. So every
//! engine runs the one table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "cases/mod.rs"]
mod cases;

use drop444::engine::{Decision, Engine, HeaderList, NoLimits};

/// The case's HTTP/1.1 request, read the way the hosts' header maps hold it.
fn request(case: &cases::Case) -> HeaderList {
    let bytes = case.http1();
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (method, path) = (parts.next().unwrap(), parts.next().unwrap());
    let mut authority = None;
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("header line without colon");
        let value = value.trim_matches([' ', '\t']).to_string();
        if name.eq_ignore_ascii_case("host") {
            authority = Some(value);
        } else {
            headers.push((name.to_string(), value));
        }
    }
    let mut list = HeaderList::new();
    if let Some(authority) = authority {
        list = list.with(":authority", authority);
    }
    list = list
        .with(":path", path)
        .with(":method", method)
        .with(":scheme", "http");
    for (name, value) in headers {
        list = list.with(&name, value);
    }
    list.peer("127.0.0.1:40000").protocol("HTTP/1.1")
}

#[test]
fn decision_table_natively() {
    let table = cases::load();
    let mut count = 0;
    let mut failures = Vec::new();
    for group in &table.groups {
        let engine = Engine::from_json(group.config().as_bytes())
            .unwrap_or_else(|e| panic!("{}: configuration refused: {e}", group.name));
        for case in &group.cases {
            count += 1;
            let verdict = engine.decide(&mut request(case), &mut NoLimits);
            let got = match verdict.decision {
                Decision::Drop { rule } => Some(rule),
                Decision::Pass | Decision::Allow { .. } | Decision::DryRun { .. } => None,
            };
            if got != case.dropped_by() {
                failures.push(format!(
                    "{}/{}: want {:?}, got {:?}",
                    group.name,
                    case.name,
                    case.dropped_by(),
                    verdict.decision
                ));
            }
        }
    }
    assert!(count > 0);
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
