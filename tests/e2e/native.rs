//! The native form: `libdrop444.so` (the same engine as a dynamic module) in
//! a real Envoy started from the shipped `envoy/envoy-native.yaml`, held to
//! the same behaviour as the wasm filter: the shared decision table, 0 bytes +
//! FIN on HTTP/1.1, RST_STREAM on HTTP/2, `scope: connection`, filter state in
//! the access log, counters, dry-run, a bad configuration refused.
//!
//! `make test-native` builds the module and sets `DROP444_NATIVE` (the .so)
//! and `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` (its directory, inherited by the
//! Envoys started here). Without `DROP444_NATIVE` these tests say SKIPPED.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::cases::{self, Expect};
use crate::envoy::{self, render, Envoy};
use crate::wire::{connect, exchange, get, read_response, read_until_close, End};
use crate::{assert_dropped, assert_served, BODY, CLOSE_WITHIN, PATIENCE, RULES};

const SEARCH_PATH_VAR: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";

/// The built module, or `None` (test skipped) when `DROP444_NATIVE` is unset.
fn module() -> Option<PathBuf> {
    if envoy::skip_if_external("starts its own Envoy with the native module") {
        return None;
    }
    let Some(path) = std::env::var_os("DROP444_NATIVE").map(PathBuf::from) else {
        println!("SKIPPED: DROP444_NATIVE is not set (`make test-native` sets it)");
        return None;
    };
    assert!(
        path.is_file(),
        "{} is missing: run `make native`",
        path.display()
    );
    let dir = std::env::var_os(SEARCH_PATH_VAR).map(PathBuf::from);
    assert_eq!(
        dir.as_deref(),
        path.parent(),
        "{SEARCH_PATH_VAR} must be the directory of DROP444_NATIVE"
    );
    Some(path)
}

/// `envoy/envoy-native.yaml` with ports, filter configuration and access log
/// substituted.
fn try_start(plugin_config: &str) -> Result<Envoy, String> {
    let json = serde_json::to_string(plugin_config).expect("quote config");
    Envoy::try_start_with(|dir| {
        render(
            "envoy/envoy-native.yaml",
            &[
                ("port_value: 9901", "port_value: 0".into()),
                ("port_value: 10000", "port_value: 0".into()),
                ("value: \"\"", format!("value: {json}")),
                (
                    "path: /dev/stdout",
                    format!("path: {}", dir.join("access.log").display()),
                ),
            ],
        )
    })
}

fn start(plugin_config: &str) -> Envoy {
    try_start(plugin_config).unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"))
}

/// What the access log shows for a request the module dropped (the reset
/// leaves `%RESPONSE_CODE_DETAILS%` empty).
fn dropped_line(rule: &str) -> String {
    format!("\" 0 - drop444=444 rule={rule} ")
}

const SERVED_LINE: &str = "\" 200 direct_response drop444=- rule=- ";

/// Native counters live under Envoy's dynamic-module stats namespace.
fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.counter(&format!("dynamicmodulescustom.drop444.{name}"))
}

#[test]
fn native_module_loads_with_the_matching_abi_version() {
    if module().is_none() {
        return;
    }
    let envoy = start("");
    let log = envoy.log();
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched."),
        "{log}"
    );
    assert!(
        log.contains("drop444 (drop444): configuration loaded: 3 rules"),
        "{log}"
    );
}

#[test]
fn native_decision_table_on_envoy() {
    if module().is_none() {
        return;
    }
    let table = cases::load();
    let mut count = 0;
    let mut failures = Vec::new();
    for group in &table.groups {
        let envoy = start(&group.config());
        for case in &group.cases {
            let request = case.http1();
            let mut stream = connect(envoy.addr);
            let failed = match case.expect {
                Expect::Drop => {
                    let out = exchange(&mut stream, &request, PATIENCE);
                    (!out.bytes.is_empty() || out.end != End::Fin || out.elapsed >= CLOSE_WITHIN)
                        .then(|| format!("want 0 bytes + FIN, got {out:?}"))
                }
                Expect::Pass => {
                    stream.write_all(&request).expect("write");
                    let response = read_response(&mut stream);
                    (response.status != 200 || response.body != BODY)
                        .then(|| format!("want the route's 200, got {}", response.head))
                }
            };
            if let Some(why) = failed {
                failures.push(format!("{}/{}: {why}", group.name, case.name));
            }
        }
        count += group.cases.len();
        let log = envoy.access_log(group.cases.len());
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), group.cases.len(), "{}:\n{log}", group.name);
        for (line, case) in lines.iter().zip(&group.cases) {
            let want = case
                .dropped_by()
                .map_or(SERVED_LINE.to_string(), dropped_line);
            if !line.contains(&want) {
                failures.push(format!(
                    "{}/{}: access log wants {want:?}: {line}",
                    group.name, case.name
                ));
            }
        }
    }
    assert!(count > 50, "only {count} cases");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed with the native module:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn native_http1_drop_is_zero_bytes_and_a_fin_and_names_the_rule() {
    if module().is_none() {
        return;
    }
    let envoy = start(RULES);
    let ok = ["Accept: */*", "User-Agent: Mozilla/5.0"];
    assert_served(&envoy, &get(Some("www.example.com"), &ok));
    // The bad value in a second field line of the same header is seen too.
    assert_dropped(
        &envoy,
        &get(
            Some("example.com"),
            &[ok[0], ok[1], "X-Probe: fine", "X-Probe: evil"],
        ),
    );
    assert_dropped(&envoy, &get(Some("evil.com"), &ok));
    // Keep-alive: the first response, then nothing and a FIN.
    let mut stream = connect(envoy.addr);
    stream
        .write_all(&get(Some("example.com"), &ok))
        .expect("write");
    assert_eq!(read_response(&mut stream).status, 200);
    let out = exchange(
        &mut stream,
        &get(Some("example.com"), &[ok[0], ok[1], "X-Debug-Token: 1"]),
        PATIENCE,
    );
    assert!(out.bytes.is_empty() && out.end == End::Fin, "{out:?}");

    let log = envoy.access_log(5);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 5, "{log}");
    for (line, want) in lines.iter().zip([
        SERVED_LINE.to_string(),
        dropped_line("probe-exact"),
        dropped_line("host-not-allowed"),
        SERVED_LINE.to_string(),
        dropped_line("debug-present"),
    ]) {
        assert!(line.contains(&want), "want {want:?}: {line}");
    }
    for line in [lines[1], lines[2], lines[4]] {
        assert!(line.ends_with("bytes_sent=0"), "{line}");
    }
}

#[test]
fn native_http2_drop_resets_only_that_stream() {
    if module().is_none() {
        return;
    }
    let envoy = start("");
    let mut stream = h2_open(&envoy);
    let mut both = h2_get(1, "127.0.0.1", &[]);
    both.extend(h2_get(3, "localhost", &[]));
    let out = exchange(&mut stream, &both, Duration::from_millis(500));
    assert_eq!(out.end, End::StillOpen, "{out:?}");
    let frames = h2_frames(&out.bytes);
    // Stream 1: RST_STREAM (INTERNAL_ERROR), nothing else; stream 3: served.
    assert!(
        frames.contains(&(RST_STREAM, 0, 1, Some(INTERNAL_ERROR))),
        "{frames:?}"
    );
    assert!(
        !frames.iter().any(|f| f.2 == 1 && f.0 != RST_STREAM),
        "{frames:?}"
    );
    assert!(
        frames.iter().any(|f| f.0 == HEADERS && f.2 == 3),
        "{frames:?}"
    );
    assert!(!frames.iter().any(|f| f.0 == GOAWAY), "{frames:?}");
}

#[test]
fn native_connection_scope_closes_the_whole_connection() {
    if module().is_none() {
        return;
    }
    let envoy = start(crate::l4::HTTP_CONFIG);
    // HTTP/2: stream 1 served; stream 3 matches the connection-scope rule,
    // stream 5 (same write) would be served. Neither the RST_STREAM of 3, nor
    // the response of 5, nor a GOAWAY reaches the client: zero bytes, then
    // the FIN (measured on 1.40: the non-graceful close sends no GOAWAY).
    let mut stream = h2_open(&envoy);
    stream.write_all(&h2_get(1, "localhost", &[])).unwrap();
    let served = read_until_close(&mut stream, Duration::from_millis(500));
    assert!(
        h2_frames(&served.bytes)
            .iter()
            .any(|f| f.0 == HEADERS && f.2 == 1),
        "{served:?}"
    );
    let mut both = h2_get(3, "localhost", &[("x-kill", "1")]);
    both.extend(h2_get(5, "localhost", &[]));
    let out = exchange(&mut stream, &both, PATIENCE);
    assert!(
        out.bytes.is_empty(),
        "got frames {:?}",
        h2_frames(&out.bytes)
    );
    assert_eq!(out.end, End::Fin, "{out:?}");
    assert!(out.elapsed < CLOSE_WITHIN, "closed after {:?}", out.elapsed);

    // HTTP/1.1 keep-alive: first response, then 0 bytes and the close.
    let mut stream = connect(envoy.addr);
    stream.write_all(&get(Some("localhost"), &[])).unwrap();
    assert_eq!(read_response(&mut stream).status, 200);
    let out = exchange(
        &mut stream,
        &get(Some("localhost"), &["X-Kill: 1"]),
        PATIENCE,
    );
    assert!(out.bytes.is_empty(), "{out:?}");
    assert_eq!(out.end, End::Fin, "{out:?}");

    // Other connections are untouched.
    assert_served(&envoy, &get(Some("localhost"), &[]));
    assert_eq!(counter(&envoy, "rule.kill"), 2);
}

const STATS_CONFIG: &str = r#"{
  "host": {"allow": ["example.com"]},
  "log": {"max_per_second": 1000},
  "rules": [
    {"name": "health", "action": "allow", "field": "path", "exact": "/healthz"},
    {"name": "watch-curl", "action": "log", "header": "user-agent", "prefix": "curl/"},
    {"name": "sql-map", "header": "user-agent", "contains": "sqlmap"}
  ]
}"#;

fn request(host: &str, path: &str, ua: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\n\r\n").into_bytes()
}

#[test]
fn native_counters_and_drop_log_after_a_known_sequence() {
    if module().is_none() {
        return;
    }
    let envoy = start(STATS_CONFIG);
    assert_served(&envoy, &request("example.com", "/", "Mozilla/5.0"));
    assert_served(&envoy, &request("example.com", "/", "curl/8.5.0"));
    assert_served(&envoy, &request("10.0.0.1", "/healthz", "kube-probe"));
    assert_dropped(&envoy, &request("example.com", "/a", "sqlmap/1.7"));
    assert_dropped(&envoy, &request("example.com", "/b", "sqlmap/1.7"));
    assert_dropped(&envoy, &request("other.com", "/", "Mozilla/5.0"));
    assert_dropped(&envoy, &request("1.2.3.4", "/", "Mozilla/5.0"));
    for (name, want) in [
        ("requests_seen", 7),
        ("requests_dropped", 4),
        ("requests_passed", 3),
        ("requests_allowed", 1),
        ("log_rule_hits", 1),
        ("dry_run_drops", 0),
        ("drop_logs_suppressed", 0),
        ("rule.health", 1),
        ("rule.watch_curl", 1),
        ("rule.sql_map", 2),
        ("rule.host_not_allowed", 1),
        ("rule.host_ip_literal", 1),
        ("rule.host_missing", 0),
    ] {
        assert_eq!(counter(&envoy, name), want, "counter {name}");
    }
    // The structured drop lines, in Envoy's log: one per drop and `log` hit.
    let want = [
        r#"{"drop444":"log","rule":"watch-curl","method":"GET","host":"example.com","path":"/","client":"127.0.0.1","user_agent":"curl/8.5.0"}"#,
        r#"{"drop444":"drop","rule":"sql-map","method":"GET","host":"example.com","path":"/a","client":"127.0.0.1","user_agent":"sqlmap/1.7"}"#,
        r#"{"drop444":"drop","rule":"host-ip-literal","method":"GET","host":"1.2.3.4","path":"/","client":"127.0.0.1","user_agent":"Mozilla/5.0"}"#,
    ];
    assert!(
        envoy.wait_log(want[2], PATIENCE),
        "no drop line:\n{}",
        envoy.log()
    );
    let log = envoy.log();
    for line in want {
        assert!(log.contains(line), "{line} not in:\n{log}");
    }
}

#[test]
fn native_dry_run_passes_and_reports() {
    if module().is_none() {
        return;
    }
    let envoy = start(r#"{"mode": "dry-run"}"#);
    assert_served(&envoy, &get(Some("127.0.0.1"), &[]));
    assert_served(&envoy, &get(Some("localhost"), &[]));
    assert_eq!(counter(&envoy, "dry_run_drops"), 1);
    assert_eq!(counter(&envoy, "requests_dropped"), 0);
    assert_eq!(counter(&envoy, "rule.host_ip_literal"), 1);
    let log = envoy.access_log(2);
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines[0].contains("\" 200 direct_response drop444=dry-run rule=host-ip-literal "),
        "{log}"
    );
    assert!(lines[1].contains(SERVED_LINE), "{log}");
}

#[test]
fn native_invalid_config_is_refused_and_names_the_field() {
    if module().is_none() {
        return;
    }
    let bad = r#"{"rules": [{"name": "ok", "header": "user-agent", "contains": "x"}, {"header": "user-agent", "contians": "y"}]}"#;
    let log = match try_start(bad) {
        Ok(envoy) => panic!("Envoy started with an invalid config:\n{}", envoy.log()),
        Err(log) => log,
    };
    assert!(
        log.contains(
            "invalid configuration, filter not loaded: rules[1].contians: unknown field `contians`"
        ),
        "{log}"
    );
    // Refused cleanly (a configuration error), not a crash.
    assert!(log.contains("Failed to initialize dynamic module"), "{log}");
    assert!(!log.contains("Caught Segmentation fault"), "{log}");
    assert!(!log.contains("panic"), "{log}");
}

#[test]
fn native_rate_limit_drops_over_the_limit_per_key() {
    if module().is_none() {
        return;
    }
    let envoy = start(
        r#"{"rules": [{"name": "per-client", "rate_limit": {"key": ["header:x-client"], "rate": 2, "per": "minute"}}]}"#,
    );
    for _ in 0..2 {
        assert_served(&envoy, &get(Some("localhost"), &["X-Client: a"]));
    }
    assert_dropped(&envoy, &get(Some("localhost"), &["X-Client: a"]));
    // Another key has its own bucket.
    assert_served(&envoy, &get(Some("localhost"), &["X-Client: b"]));
    assert_eq!(counter(&envoy, "rate_limited"), 1);
    assert_eq!(counter(&envoy, "rule.per_client"), 1);
}

// ------------------------------------------------------ raw HTTP/2 helpers

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const INTERNAL_ERROR: u32 = 2;

/// Opens an h2c connection and reads Envoy's SETTINGS.
fn h2_open(envoy: &Envoy) -> std::net::TcpStream {
    let mut stream = connect(envoy.addr);
    stream.write_all(PREFACE).unwrap();
    stream.write_all(EMPTY_SETTINGS).unwrap();
    let first = read_until_close(&mut stream, Duration::from_millis(300));
    assert_eq!(first.end, End::StillOpen, "{first:?}");
    assert!(
        h2_frames(&first.bytes).iter().any(|f| f.0 == 0x4),
        "{first:?}"
    );
    stream
}

/// A HEADERS frame (END_STREAM | END_HEADERS) for `GET /`, HPACK literals
/// without indexing or Huffman.
fn h2_get(stream: u32, authority: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, authority.len() as u8];
    block.extend_from_slice(authority.as_bytes());
    for (name, value) in extra {
        block.extend([0x00, name.len() as u8]);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let len = block.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x1, 0x5];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(&block);
    frame
}

/// Frames as (type, flags, stream, error code of RST_STREAM / GOAWAY).
fn h2_frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Option<u32>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let len =
            (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        let payload = &bytes[9..(9 + len).min(bytes.len())];
        let code = match bytes[3] {
            RST_STREAM if payload.len() >= 4 => Some(u32::from_be_bytes(
                payload[..4].try_into().expect("4 bytes"),
            )),
            GOAWAY if payload.len() >= 8 => Some(u32::from_be_bytes(
                payload[4..8].try_into().expect("4 bytes"),
            )),
            _ => None,
        };
        frames.push((bytes[3], bytes[4], stream, code));
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    frames
}
