//! The shared decision table on the wasmtime host, with the exact host calls:
//! a drop records the rule, closes the request stream and pauses, and never
//! sends a local response; a pass reads headers and continues, nothing else.
//! Run on hosts with and without the one-call header map read.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::cases::{self, Case};
use crate::harness::{
    Action, Call, HeaderValue, HostOptions, Plugin, Request, Stream, STREAM_HTTP_REQUEST,
};

/// Calls for a failure message, with property values as text.
fn show(calls: &[&Call]) -> String {
    let shown: Vec<String> = calls
        .iter()
        .map(|call| match call {
            Call::SetProperty { path, value } => {
                format!(
                    "SetProperty({path:?} = {:?})",
                    String::from_utf8_lossy(value)
                )
            }
            other => format!("{other:?}"),
        })
        .collect();
    format!("[{}]", shown.join(", "))
}

/// Checks one request's outcome and host calls against its case.
pub fn check(case: &Case, stream: &Stream) -> Result<(), String> {
    if let Some(trap) = &stream.trap {
        return Err(format!("trapped: {trap}"));
    }
    if stream.count("proxy_send_local_response") != 0 {
        return Err("sent a local response".into());
    }
    if !stream.teardown_calls.is_empty() {
        return Err(format!(
            "host calls while finishing the context: {:?}",
            stream.teardown_calls
        ));
    }
    let calls = stream.proxy_calls();
    // Reads: the whole request header map in one call, at most once; on a
    // host that refuses it, request headers through the attribute first and
    // the header map after a miss, each name at most once (the adapter
    // remembers them, so the drop log reuses what the rules read); the peer
    // address and the protocol; the clock. Counters are incremented.
    // Nothing else happens except the verdict's own calls.
    let mut attribute_reads = Vec::new();
    let mut verdict = Vec::new();
    if stream.count("proxy_get_header_map_pairs") > 1 {
        return Err(format!("read the header map twice: {calls:?}"));
    }
    for call in &calls {
        match call {
            Call::GetHeaderMapPairs { map: 0 } => {}
            Call::GetProperty { path } => match path.as_slice() {
                [request, headers, name] if request == "request" && headers == "headers" => {
                    if attribute_reads.contains(name) {
                        return Err(format!("read {name} twice: {calls:?}"));
                    }
                    attribute_reads.push(name.clone());
                }
                [a, b]
                    if (a == "source" && b == "address") || (a == "request" && b == "protocol") => {
                }
                _ => return Err(format!("read property {path:?}")),
            },
            Call::GetHeaderMapValue { .. }
            | Call::GetCurrentTimeNanoseconds
            | Call::IncrementMetric { offset: 1, .. } => {}
            other => verdict.push(*other),
        }
    }
    match (case.dropped_by(), stream.action) {
        (None, Some(Action::Continue)) if verdict.is_empty() => Ok(()),
        (Some(rule), Some(Action::Pause)) => {
            let expected = [
                Call::SetProperty {
                    path: vec!["drop444".into()],
                    value: rule.as_bytes().to_vec(),
                },
                Call::SetProperty {
                    path: vec!["drop444_status".into()],
                    value: b"444".to_vec(),
                },
                Call::CloseStream {
                    stream: STREAM_HTTP_REQUEST,
                },
            ];
            if verdict.iter().copied().eq(expected.iter()) {
                Ok(())
            } else {
                Err(format!(
                    "want set_property(drop444={rule}), set_property(drop444_status=444), close_stream(request), got {}",
                    show(&verdict)
                ))
            }
        }
        (want, got) => Err(format!(
            "want {}, got {got:?} with calls {}",
            want.map_or("pass".to_string(), |r| format!("drop by {r}")),
            show(&verdict)
        )),
    }
}

/// The configuration's `stats.prefix` (default `drop444`).
fn stats_prefix(config: &str) -> String {
    serde_json::from_str::<serde_json::Value>(config)
        .ok()
        .and_then(|v| v.pointer("/stats/prefix")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "drop444".into())
}

/// Runs the whole table on a host with these options; returns the failures.
fn run_table(options: &HostOptions) -> (usize, Vec<String>) {
    let table = cases::load();
    let mut count = 0;
    let mut failures = Vec::new();
    for group in &table.groups {
        let mut plugin = Plugin::start(&group.config(), options.clone());
        for case in &group.cases {
            count += 1;
            let stream = plugin.request(&Request::from_http1(&case.http1()));
            if let Err(why) = check(case, &stream) {
                failures.push(format!("{}/{}: {why}", group.name, case.name));
            }
        }
        // Counters reach the host on the tick: every request was seen.
        plugin.tick();
        let seen = plugin
            .state()
            .metrics
            .value(&format!("{}.requests_seen", stats_prefix(&group.config())));
        if seen != Some(group.cases.len() as i64) {
            failures.push(format!(
                "{}: requests_seen {seen:?} after the tick, {} requests",
                group.name,
                group.cases.len()
            ));
        }
    }
    (count, failures)
}

fn assert_table(host: &str, options: HostOptions) {
    let start = Instant::now();
    let (count, failures) = run_table(&options);
    eprintln!(
        "{host}: {count} cases in {:?} (module compiled once per test process)",
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{host}: {} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn decision_table_on_a_spec_host() {
    assert_table("spec host", HostOptions::default());
}

/// Envoy's single-header read gives only the first line of a repeated
/// header; the filter reads the whole map in one call, so the table holds.
#[test]
fn decision_table_on_an_envoy_like_host() {
    assert_table("envoy-like host", HostOptions::envoy_like());
}

/// A host without `proxy_get_header_map_pairs` but with Envoy's attributes
/// and first-line quirk: headers are read one by one, attribute first.
#[test]
fn decision_table_on_a_host_without_header_pairs() {
    assert_table(
        "host without header pairs",
        HostOptions {
            header_map_pairs: false,
            ..HostOptions::envoy_like()
        },
    );
}

/// A host without the header pairs call and without Envoy's
/// `request.headers.<name>` attribute, with a header map that joins repeated
/// lines: the per-header map read alone decides.
#[test]
fn decision_table_on_a_host_without_attributes() {
    assert_table(
        "host without attributes",
        HostOptions {
            header_map_pairs: false,
            request_header_attributes: false,
            header_value: HeaderValue::Joined,
            ..HostOptions::default()
        },
    );
}

/// Imports the module called and exports the host used while running the
/// whole table on each kind of host (including the header-map fallback).
pub fn observed_surface() -> (BTreeSet<String>, BTreeSet<String>) {
    let table = cases::load();
    let mut imports = BTreeSet::new();
    let mut exports = BTreeSet::new();
    let hosts = [
        HostOptions::default(),
        HostOptions::envoy_like(),
        HostOptions {
            header_map_pairs: false,
            ..HostOptions::envoy_like()
        },
        HostOptions {
            header_map_pairs: false,
            request_header_attributes: false,
            ..HostOptions::default()
        },
    ];
    for options in hosts {
        for group in &table.groups {
            let mut plugin = Plugin::start(&group.config(), options.clone());
            for case in &group.cases {
                plugin.request(&Request::from_http1(&case.http1()));
            }
            plugin.tick();
            let state = plugin.state();
            imports.extend(state.calls.iter().map(|r| r.call.import().to_string()));
            exports.extend(state.exports_used.iter().cloned());
        }
    }
    // Beyond the table: a rate-limited rule (shared data) and a host that
    // cannot close (the fallback response).
    let rate_limited = r#"{"rules": [{"name": "rl", "rate_limit": {"key": ["host"], "rate": 1, "per": "hour", "burst": 1}}]}"#;
    let cannot_close = HostOptions {
        close_stream: crate::harness::Reply::Return(crate::harness::Status::Unimplemented),
        ..HostOptions::default()
    };
    for (config, options) in [(rate_limited, HostOptions::default()), ("", cannot_close)] {
        let mut plugin = Plugin::start(config, options);
        for host in ["example.com", "example.com", "127.0.0.1"] {
            plugin.request(&Request::get(host));
        }
        plugin.tick();
        let state = plugin.state();
        imports.extend(state.calls.iter().map(|r| r.call.import().to_string()));
        exports.extend(state.exports_used.iter().cloned());
    }
    (imports, exports)
}
