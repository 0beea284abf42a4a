//! Operating drop444: counters on admin `/stats`, the access log, the
//! structured drop log and its rate limit, dry-run, and hot reload via LDS.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::envoy::{self, render, repo_root, wasm_path, Envoy};
use crate::wire::{connect, read_response};
use crate::{assert_dropped, assert_served};

fn request(host: &str, path: &str, ua: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\n\r\n").into_bytes()
}

/// The structured drop lines (JSON objects) from Envoy's log.
fn drop_lines(envoy: &Envoy) -> Vec<serde_json::Value> {
    envoy
        .log()
        .lines()
        .filter(|l| l.contains("wasm log"))
        .filter_map(|l| l.find("{\"drop444\"").map(|at| &l[at..]))
        .map(|json| {
            serde_json::from_str(json).unwrap_or_else(|e| panic!("bad drop line {json}: {e}"))
        })
        .collect()
}

fn wait_drop_lines(envoy: &Envoy, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = drop_lines(envoy);
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const STATS_CONFIG: &str = r#"{
  "host": {"allow": ["example.com"]},
  "log": {"max_per_second": 1000, "user_agent_max": 16},
  "rules": [
    {"name": "health", "action": "allow", "field": "path", "exact": "/healthz"},
    {"name": "watch-curl", "action": "log", "header": "user-agent", "prefix": "curl/"},
    {"name": "sql-map", "header": "user-agent", "contains": "sqlmap"}
  ]
}"#;

#[test]
fn counters_access_log_and_drop_log_after_a_known_sequence() {
    if envoy::skip_if_external("reads exact counters of an Envoy it owns") {
        return;
    }
    let envoy = Envoy::start(STATS_CONFIG);
    let sqlmap = "sqlmap/1.7.2#stable (https://sqlmap.org)";
    assert_served(&envoy, &request("example.com", "/", "Mozilla/5.0"));
    assert_served(&envoy, &request("example.com", "/", "curl/8.5.0"));
    assert_served(
        &envoy,
        &request("10.0.0.1:8080", "/healthz", "kube-probe/1.31"),
    );
    assert_dropped(&envoy, &request("example.com", "/a", sqlmap));
    assert_dropped(&envoy, &request("example.com", "/b", sqlmap));
    assert_dropped(&envoy, &request("other.com", "/", "Mozilla/5.0"));
    assert_dropped(&envoy, &request("1.2.3.4", "/", "Mozilla/5.0"));

    envoy.wait_counters_flushed(7);
    let stats = envoy.stats();
    let get = |name: &str| stats.get(&format!("wasmcustom.drop444.{name}")).copied();
    for (name, want) in [
        ("requests_seen", 7),
        ("requests_dropped", 4),
        ("requests_passed", 3),
        ("requests_allowed", 1),
        ("log_rule_hits", 1),
        ("dry_run_drops", 0),
        ("drop_logs_suppressed", 0),
        ("reset_failures", 0),
        ("rule.health", 1),
        ("rule.watch_curl", 1),
        ("rule.sql_map", 2),
        ("rule.host_not_allowed", 1),
        ("rule.host_ip_literal", 1),
        ("rule.host_missing", 0),
    ] {
        assert_eq!(get(name), Some(want), "counter {name}");
    }
    let (status, prometheus) =
        envoy::http_get(envoy.admin, "/stats/prometheus").expect("prometheus");
    assert_eq!(status, 200);
    let prometheus = String::from_utf8_lossy(&prometheus);
    for line in [
        "drop444_requests_seen{} 7",
        "drop444_rule_sql_map{} 2",
        "drop444_rule_host_ip_literal{} 1",
    ] {
        assert!(
            prometheus.lines().any(|l| l == line),
            "{line} not in /stats/prometheus"
        );
    }

    let log = envoy.access_log(7);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 7, "{log}");
    for (line, want) in lines.iter().zip([
        "\" 200 direct_response drop444=- rule=- ",
        "\" 200 direct_response drop444=- rule=- ",
        "\" 200 direct_response drop444=- rule=- ",
        "\" 0 wasm_close_stream drop444=444 rule=sql-map ",
        "\" 0 wasm_close_stream drop444=444 rule=sql-map ",
        "\" 0 wasm_close_stream drop444=444 rule=host-not-allowed ",
        "\" 0 wasm_close_stream drop444=444 rule=host-ip-literal ",
    ]) {
        assert!(line.contains(want), "want {want:?} in {line}");
    }

    let drops = wait_drop_lines(&envoy, 5);
    let summary: Vec<(String, String)> = drops
        .iter()
        .map(|d| {
            (
                d["drop444"].as_str().unwrap_or("").into(),
                d["rule"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let want = [
        ("log", "watch-curl"),
        ("drop", "sql-map"),
        ("drop", "sql-map"),
        ("drop", "host-not-allowed"),
        ("drop", "host-ip-literal"),
    ];
    assert_eq!(summary.len(), want.len(), "{drops:?}");
    for ((e, r), (we, wr)) in summary.iter().zip(want) {
        assert_eq!((e.as_str(), r.as_str()), (we, wr));
    }
    let first_drop = &drops[1];
    assert_eq!(first_drop["method"], "GET");
    assert_eq!(first_drop["host"], "example.com");
    assert_eq!(first_drop["path"], "/a");
    assert_eq!(first_drop["client"], "127.0.0.1");
    assert_eq!(
        first_drop["user_agent"], "sqlmap/1.7.2#sta…",
        "truncated to 16 bytes"
    );
}

#[test]
fn dry_run_passes_requests_and_counts_them_as_drops() {
    if envoy::skip_if_external("reads exact counters of an Envoy it owns") {
        return;
    }
    let envoy = Envoy::start(
        r#"{"mode": "dry-run", "rules": [{"name": "sql-map", "header": "user-agent", "contains": "sqlmap"}]}"#,
    );
    assert_served(&envoy, &request("example.com", "/", "sqlmap/1.7"));
    assert_served(&envoy, &request("10.0.0.1", "/", "Mozilla/5.0"));
    assert_served(&envoy, &request("example.com", "/", "Mozilla/5.0"));
    envoy.wait_counters_flushed(3);
    let stats = envoy.stats();
    let get = |name: &str| stats.get(&format!("wasmcustom.drop444.{name}")).copied();
    for (name, want) in [
        ("requests_seen", 3),
        ("requests_dropped", 0),
        ("requests_passed", 3),
        ("dry_run_drops", 2),
        ("rule.sql_map", 1),
        ("rule.host_ip_literal", 1),
    ] {
        assert_eq!(get(name), Some(want), "counter {name}");
    }
    let log = envoy.access_log(3);
    assert!(
        log.contains("\" 200 direct_response drop444=dry-run rule=sql-map "),
        "{log}"
    );
    assert!(
        log.contains("\" 200 direct_response drop444=dry-run rule=host-ip-literal "),
        "{log}"
    );
    let drops = wait_drop_lines(&envoy, 2);
    assert_eq!(drops.len(), 2, "{drops:?}");
    assert!(drops.iter().all(|d| d["drop444"] == "dry-run"), "{drops:?}");
}

#[test]
fn drop_log_is_rate_limited_and_counts_what_it_suppresses() {
    if envoy::skip_if_external("reads exact counters of an Envoy it owns") {
        return;
    }
    let envoy = Envoy::start(
        r#"{"log": {"max_per_second": 2}, "rules": [{"name": "x", "header": "x-bad", "present": true}]}"#,
    );
    let start = Instant::now();
    let n = 30u64;
    for _ in 0..n {
        assert_dropped(
            &envoy,
            b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Bad: 1\r\n\r\n",
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    envoy.wait_counters_flushed(n);
    let suppressed = envoy.counter("wasmcustom.drop444.drop_logs_suppressed");
    let written =
        u64::try_from(wait_drop_lines(&envoy, usize::try_from(n - suppressed).unwrap()).len())
            .unwrap();
    assert_eq!(
        written + suppressed,
        n,
        "every drop is either logged or counted as suppressed"
    );
    // Burst of 2, then 2 per second.
    let allowed = 2 + (2.0 * elapsed).ceil() as u64;
    assert!(
        written >= 2 && written <= allowed,
        "{written} lines in {elapsed:.2}s (at most {allowed})"
    );
    assert_eq!(envoy.counter("wasmcustom.drop444.requests_dropped"), n);
}

/// Writes the LDS resource with this plugin configuration, atomically.
fn write_listener(dir: &Path, plugin_config: &str) {
    let listener = render(
        "envoy/hot-reload/listener.yaml",
        &[
            ("port_value: 10000", "port_value: 0".into()),
            (
                "filename: target/wasm32-wasip1/release/drop444.wasm",
                format!("filename: {}", wasm_path().display()),
            ),
            (
                r#"value: '{"rules": [{"name": "scanners", "preset": "scanners"}]}'"#,
                format!("value: {}", serde_json::to_string(plugin_config).unwrap()),
            ),
            (
                "path: /dev/stdout",
                format!("path: {}", dir.join("access.log").display()),
            ),
        ],
    );
    let tmp = dir.join("listener.yaml.tmp");
    std::fs::write(&tmp, listener).expect("write listener");
    std::fs::rename(&tmp, dir.join("lds").join("listener.yaml")).expect("move listener into place");
}

#[test]
fn hot_reload_through_lds_applies_new_rules_and_rejects_bad_ones() {
    if envoy::skip_if_external("rewrites the LDS file of an Envoy it owns") {
        return;
    }
    let rule = |ua: &str| {
        format!(
            r#"{{"rules": [{{"name": "no-{ua}", "header": "user-agent", "contains": "{ua}"}}]}}"#
        )
    };
    let envoy = Envoy::try_start_with(|dir| {
        std::fs::create_dir_all(dir.join("lds")).expect("lds dir");
        write_listener(dir, &rule("alpha"));
        render(
            "envoy/hot-reload/bootstrap.yaml",
            &[
                ("port_value: 9901", "port_value: 0".into()),
                (
                    "path: envoy/hot-reload/listener.yaml",
                    format!("path: {}", dir.join("lds/listener.yaml").display()),
                ),
                (
                    "path: envoy/hot-reload\n",
                    format!("path: {}\n", dir.join("lds").display()),
                ),
            ],
        )
    })
    .unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
    let _ = repo_root();
    assert_dropped(&envoy, &request("example.com", "/", "alpha"));
    assert_served(&envoy, &request("example.com", "/", "beta"));
    assert_eq!(envoy.counter("listener_manager.lds.update_success"), 1);

    // A request in flight (held 1.5 s by the fault filter) across the reload.
    let mut inflight = connect(envoy.addr);
    inflight
        .write_all(b"GET /slow HTTP/1.1\r\nHost: example.com\r\nUser-Agent: beta\r\nx-envoy-fault-delay-request: 1500\r\n\r\n")
        .unwrap();

    write_listener(envoy.scratch(), &rule("beta"));
    assert_eq!(
        envoy.wait_counter(
            "listener_manager.lds.update_success",
            2,
            Duration::from_secs(10)
        ),
        2,
        "{}",
        envoy.log()
    );
    let response = read_response(&mut inflight);
    assert_eq!(
        response.status, 200,
        "the in-flight request finishes on the old rules"
    );
    // New connections get the new rules (the listener may take a moment to swap).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect(envoy.addr);
        s.write_all(&request("example.com", "/", "beta")).unwrap();
        let mut first = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        if matches!(s.read(&mut first), Ok(0)) || Instant::now() > deadline {
            break;
        }
    }
    assert_dropped(&envoy, &request("example.com", "/", "beta"));
    assert_served(&envoy, &request("example.com", "/", "alpha"));

    // An invalid configuration is rejected; the rules in force stay.
    write_listener(
        envoy.scratch(),
        r#"{"rules": [{"name": "broken", "header": "user-agent", "regex": "("}]}"#,
    );
    assert_eq!(
        envoy.wait_counter(
            "listener_manager.lds.update_rejected",
            1,
            Duration::from_secs(10)
        ),
        1,
        "{}",
        envoy.log()
    );
    assert!(envoy
        .log()
        .contains("invalid configuration, plugin not loaded: rules[0].regex: invalid regex"));
    assert_dropped(&envoy, &request("example.com", "/", "beta"));
    assert_served(&envoy, &request("example.com", "/", "alpha"));
    assert_eq!(envoy.counter("listener_manager.lds.update_success"), 2);
}
