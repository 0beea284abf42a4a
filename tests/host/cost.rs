//! What one request costs the host, pinned: every host call the module makes
//! and every VM re-entry the host makes to allocate a returned value
//! (`proxy_on_memory_allocate`), for a passed and a dropped request. A change
//! that adds a host call or an allocation on the request path fails here;
//! lower the numbers when a change removes one. Counters cost no host call
//! per request: they are handed over on the tick, checked here too.

use crate::harness::{Call, HostOptions, Plugin, Request, Stream};

/// Two header rules, like the benchmark's: the decision reads `:authority`
/// (the built-in host rules), `user-agent` and `x-probe`.
const RULES: &str = r#"{"log": {"level": "off"}, "rules": [
    {"name": "scanner", "header": "user-agent", "contains": "sqlmap"},
    {"name": "probe", "header": "x-probe", "exact": "evil"}
]}"#;

fn imports(stream: &Stream) -> Vec<&str> {
    stream.calls.iter().map(|r| r.call.import()).collect()
}

fn request(user_agent: &str) -> Request {
    Request::get("example.com")
        .header("User-Agent", user_agent)
        .header("X-Probe", "fine")
        .header("Accept", "*/*")
}

#[test]
fn a_passed_request_costs_one_host_call_and_one_allocation() {
    let mut plugin = Plugin::start(RULES, HostOptions::envoy_like());
    // The first request of a context pays no set-up the later ones do not.
    for _ in 0..3 {
        let stream = plugin.request(&request("curl/8.5"));
        assert_eq!(stream.action, Some(crate::harness::Action::Continue));
        assert_eq!(imports(&stream), ["proxy_get_header_map_pairs"]);
        assert_eq!(stream.allocations, 1, "the header map buffer");
        assert!(stream.teardown_calls.is_empty());
        assert_eq!(
            stream.vm_entries, 4,
            "proxy_on_context_create, proxy_on_request_headers, proxy_on_delete \
             and the header map's allocation: no other callback is exported"
        );
    }
}

/// The callbacks drop444 exports: only those a request, a connection or a
/// root needs. A host calls every callback a module exports, for every
/// request (proxy_on_response_headers, proxy_on_log, proxy_on_done, ...):
/// each is a VM entry, 1.3–2k Envoy instructions even as a no-op
/// (docs/abi.md, "Why not the SDK").
#[test]
fn only_the_callbacks_drop444_needs_are_exported() {
    let exports = crate::harness::module_exports();
    let callbacks: Vec<&str> = exports
        .iter()
        .map(String::as_str)
        .filter(|e| e.starts_with("proxy_on_"))
        .collect();
    assert_eq!(
        callbacks,
        [
            "proxy_on_configure",
            "proxy_on_context_create",
            "proxy_on_delete",
            "proxy_on_downstream_connection_close",
            "proxy_on_downstream_data",
            "proxy_on_http_call_response",
            "proxy_on_memory_allocate",
            "proxy_on_new_connection",
            "proxy_on_request_body",
            "proxy_on_request_headers",
            "proxy_on_request_trailers",
            "proxy_on_tick",
            "proxy_on_upstream_data",
            "proxy_on_vm_start",
        ]
    );
}

/// Counters are counted in wasm memory and handed over on the tick the
/// module asks for at configure time (1 s): exact after the tick, one
/// increment per counter that moved, `requests_seen` last (so a reader that
/// sees it at N sees every other counter of those N requests).
#[test]
fn counters_reach_the_host_on_the_tick_exactly() {
    let mut plugin = Plugin::start(RULES, HostOptions::envoy_like());
    assert_eq!(plugin.state().tick_period_millis, 1000);
    for _ in 0..3 {
        plugin.request(&request("curl/8.5"));
    }
    for _ in 0..2 {
        plugin.request(&request("sqlmap/1.7"));
    }
    let value = |plugin: &Plugin, name: &str| {
        plugin
            .state()
            .metrics
            .value(&format!("drop444.{name}"))
            .unwrap_or_else(|| panic!("{name} not defined"))
    };
    assert_eq!(
        value(&plugin, "requests_seen"),
        0,
        "nothing before the tick"
    );
    let calls = plugin.tick();
    let increments: Vec<(u32, i64)> = calls
        .iter()
        .filter_map(|r| match r.call {
            Call::IncrementMetric { id, offset } => Some((id, offset)),
            _ => None,
        })
        .collect();
    assert_eq!(increments.len(), calls.len(), "only increments: {calls:?}");
    assert_eq!(increments.len(), 4, "passed, dropped, rule.scanner, seen");
    for (name, want) in [
        ("requests_seen", 5),
        ("requests_passed", 3),
        ("requests_dropped", 2),
        ("rule.scanner", 2),
        ("rule.probe", 0),
    ] {
        assert_eq!(value(&plugin, name), want, "{name}");
    }
    let seen = plugin.state().metrics.value("drop444.requests_seen");
    let last = increments
        .last()
        .map(|(id, _)| plugin.state().metrics.get(*id));
    assert_eq!(
        last.map(|v| v.ok().map(|v| v as i64)),
        Some(seen),
        "seen last"
    );
    assert!(plugin.tick().is_empty(), "nothing new, no host call");
}

#[test]
fn a_dropped_request_adds_the_verdict_calls_and_no_allocation() {
    let mut plugin = Plugin::start(RULES, HostOptions::envoy_like());
    let stream = plugin.request(&request("sqlmap/1.7"));
    assert_eq!(stream.action, Some(crate::harness::Action::Pause));
    assert_eq!(
        imports(&stream),
        [
            "proxy_get_header_map_pairs",
            "proxy_set_property", // drop444 = scanner
            "proxy_set_property", // drop444_status = 444
            "proxy_close_stream",
        ]
    );
    assert_eq!(stream.allocations, 1, "the header map buffer");
    assert_eq!(stream.vm_entries, 4, "create, headers, delete, allocation");
}

/// With the drop log on (the default), a drop also reads the clock (the log
/// budget) and the peer address (the `client` field), and writes the line;
/// the headers of the line come from the map already read. (This host has no
/// `source.address`: on Envoy that read is a second allocation.)
#[test]
fn a_logged_drop_reads_the_clock_and_the_peer_once() {
    let rules = RULES.replace(r#""level": "off""#, r#""level": "info""#);
    let mut plugin = Plugin::start(&rules, HostOptions::envoy_like());
    let stream = plugin.request(&request("sqlmap/1.7"));
    assert_eq!(
        imports(&stream),
        [
            "proxy_get_header_map_pairs",
            "proxy_get_current_time_nanoseconds",
            "proxy_get_property", // source.address
            "proxy_log",
            "proxy_set_property",
            "proxy_set_property",
            "proxy_close_stream",
        ]
    );
    assert_eq!(stream.allocations, 1, "the header map");
}

/// A tarpitted request: held (Pause, no close), `444-tarpit` in filter
/// state, the tick sped up from the request's context; when the host deletes
/// the request (the client left) it is no longer held, so the next tick only
/// slows the timer down again, and a tick with nothing held makes no host
/// call but the counter flush.
#[test]
fn a_tarpitted_request_is_held_then_released_when_deleted() {
    let config = r#"{"log": {"level": "off"}, "rules": [
        {"name": "slow", "header": "x-probe", "exact": "evil", "tarpit": "10s"}]}"#;
    let mut plugin = Plugin::start(config, HostOptions::envoy_like());
    let stream = plugin.request(&Request::get("example.com").header("X-Probe", "evil"));
    assert_eq!(stream.action, Some(crate::harness::Action::Pause));
    let calls: Vec<&Call> = stream.calls.iter().map(|r| &r.call).collect();
    assert!(
        !calls.iter().any(|c| matches!(c, Call::CloseStream { .. })),
        "held, not closed: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, Call::SetProperty { value, .. } if value == b"444-tarpit")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&&Call::SetTickPeriodMilliseconds { millis: 50 }),
        "{calls:?}"
    );
    // The harness deleted the context after the headers (the client left).
    let tick: Vec<Call> = plugin.tick().into_iter().map(|r| r.call).collect();
    assert!(
        !tick
            .iter()
            .any(|c| matches!(c, Call::CloseStream { .. } | Call::Unimplemented { .. })),
        "released on delete, nothing to close: {tick:?}"
    );
    assert!(
        tick.contains(&Call::SetTickPeriodMilliseconds { millis: 1000 }),
        "{tick:?}"
    );
    assert_eq!(plugin.state().tick_period_millis, 1000);
    // Back at 1 s: the counters (tarpitted 1), then nothing at all.
    let flush = plugin.tick();
    assert!(
        flush
            .iter()
            .all(|r| matches!(r.call, Call::IncrementMetric { .. })),
        "{flush:?}"
    );
    assert_eq!(
        plugin.state().metrics.value("drop444.tarpitted"),
        Some(1),
        "tarpitted"
    );
    assert!(plugin.tick().is_empty(), "an idle tick makes no host call");
}

/// The header map is indexed in one pass, into a buffer the worker lends
/// each request and gets back. Every line of a repeated header is seen,
/// however many lines come first (here up to 60), and only once: the same
/// request twice is decided the same (lines left over in the buffer from
/// the request before would join the value again, `fine,evil,fine,evil`).
#[test]
fn every_line_of_a_header_is_read_once() {
    let rules = r#"{"log": {"level": "off"}, "rules": [
        {"name": "probe", "header": "x-probe", "exact": "fine,evil"}]}"#;
    let mut plugin = Plugin::start(rules, HostOptions::envoy_like());
    for filler in [0, 60, 3] {
        let mut request = Request::get("example.com");
        for i in 0..filler {
            request = request.header(&format!("X-Filler-{i}"), "x");
        }
        let request = request.header("X-Probe", "fine").header("X-Probe", "evil");
        for round in 0..2 {
            let stream = plugin.request(&request);
            assert_eq!(
                dropped_by(&stream).as_deref(),
                Some("probe"),
                "{filler} lines before it, round {round}"
            );
        }
    }
}

/// The rule a dropped request's filter state names.
fn dropped_by(stream: &Stream) -> Option<String> {
    stream.calls.iter().find_map(|r| match &r.call {
        Call::SetProperty { path, value } if path == &["drop444"] => {
            Some(String::from_utf8_lossy(value).into_owned())
        }
        _ => None,
    })
}

/// The benchmark's 10-rule set (bench/rules.py `drop444_config(rule_set(10))`):
/// a host allowlist, user-agent tokens, path prefixes and a `client_ip` rule.
const BENCH_10: &str = r#"{"host":{"allow":["www.example.com"]},"rules":[
    {"name":"ua-0","header":"user-agent","contains":"sqlmap","case_insensitive":true},
    {"name":"ua-1","header":"user-agent","contains":"nikto","case_insensitive":true},
    {"name":"ua-2","header":"user-agent","contains":"nmap scripting engine","case_insensitive":true},
    {"name":"ua-3","header":"user-agent","contains":"masscan","case_insensitive":true},
    {"name":"ua-4","header":"user-agent","contains":"zgrab","case_insensitive":true},
    {"name":"path-0","field":"path","prefix":"/wp-login.php"},
    {"name":"path-1","field":"path","prefix":"/xmlrpc.php"},
    {"name":"path-2","field":"path","prefix":"/wp-admin/"},
    {"name":"bad-nets","field":"client_ip","in":["10.0.0.0/24"]}]}"#;

/// The benchmark's allowed request (bench/rules.py `requests`).
fn bench_request() -> Request {
    Request::get("www.example.com")
        .header(":path", "/products/4711?ref=home")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/124.0.0.0 Safari/537.36",
        )
}

/// 10 rules of the benchmark's kinds scaled to `n`: host allowlist, `n`
/// user-agent tokens (case-insensitive `contains`), 30 path prefixes and
/// a `client_ip` rule.
fn scaled_config(n: usize) -> String {
    let mut rules: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"name":"ua-{i}","header":"user-agent","contains":"scanner-{i:05}","case_insensitive":true}}"#
            )
        })
        .collect();
    rules.extend(
        (0..30).map(|i| format!(r#"{{"name":"path-{i}","field":"path","prefix":"/probe-{i}/"}}"#)),
    );
    rules.push(r#"{"name":"bad-nets","field":"client_ip","in":["10.0.0.0/24"]}"#.into());
    format!(
        r#"{{"host":{{"allow":["www.example.com"]}},"rules":[{}]}}"#,
        rules.join(",")
    )
}

/// Wasm operators (wasmtime fuel) the module executes for one passed
/// request of the benchmark, context creation to deletion, allocations
/// included: the module's own work, the same on every machine. Ceilings
/// about 20 % over what was measured on 2026-11-28 (13,555, 12,565 and
/// 12,576; the test prints the numbers, `HOST_FUEL_TRACE=1` each VM
/// entry's share): a change that
/// makes the request path markedly dearer, or its cost grow with the rule
/// count, fails here. Wasm operators are not V8's instructions (a `local.get`
/// costs V8 nothing, a `memory.fill` one operator), so Envoy's own count is
/// `bench/envoy_ir.py`'s job; this one runs in every `make test`.
#[test]
fn a_passed_benchmark_request_stays_within_its_wasm_operator_budget() {
    for (what, config, ceiling) in [
        ("bench 10 rules", BENCH_10.to_string(), 16_500_u64),
        ("1,000 user-agent tokens", scaled_config(1000), 15_000),
        ("10,000 user-agent tokens", scaled_config(10_000), 15_000),
    ] {
        let mut plugin = Plugin::start(&config, HostOptions::envoy_like());
        let mut ops = Vec::new();
        for _ in 0..3 {
            let stream = plugin.request(&bench_request());
            assert_eq!(
                stream.action,
                Some(crate::harness::Action::Continue),
                "{what}"
            );
            ops.push(stream.wasm_ops);
        }
        eprintln!("{what}: {ops:?} wasm operators per passed request");
        let last = ops.last().copied().unwrap_or(u64::MAX);
        assert!(last <= ceiling, "{what}: {last} wasm operators > {ceiling}");
    }
}
