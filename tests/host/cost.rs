//! What one request costs the host, pinned: every host call the module makes
//! and every VM re-entry the host makes to allocate a returned value
//! (`proxy_on_memory_allocate`), for a passed and a dropped request. A change
//! that adds a host call or an allocation on the request path fails here;
//! lower the numbers when a change removes one.

use crate::harness::{HostOptions, Plugin, Request, Stream};

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
fn a_passed_request_costs_one_header_read_one_allocation_and_two_counters() {
    let mut plugin = Plugin::start(RULES, HostOptions::envoy_like());
    // The first request of a context pays no set-up the later ones do not.
    for _ in 0..3 {
        let stream = plugin.request(&request("curl/8.5"));
        assert_eq!(stream.action, Some(crate::harness::Action::Continue));
        assert_eq!(
            imports(&stream),
            [
                "proxy_get_header_map_pairs",
                "proxy_increment_metric", // requests_seen
                "proxy_increment_metric", // requests_passed
            ]
        );
        assert_eq!(stream.allocations, 1, "the header map buffer");
        assert!(stream.teardown_calls.is_empty());
    }
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
            "proxy_increment_metric", // requests_seen
            "proxy_increment_metric", // requests_dropped
            "proxy_increment_metric", // rule.scanner
            "proxy_set_property",     // drop444 = scanner
            "proxy_set_property",     // drop444_status = 444
            "proxy_close_stream",
        ]
    );
    assert_eq!(stream.allocations, 1, "the header map buffer");
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
            "proxy_increment_metric",
            "proxy_increment_metric",
            "proxy_increment_metric",
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
