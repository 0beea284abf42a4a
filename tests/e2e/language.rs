//! The rule language against real Envoy: a representative set of subjects,
//! actions and presets, and configuration errors as Envoy reports them.

use crate::envoy::{self, Envoy};
use crate::wire::get;
use crate::{assert_dropped, assert_served};

fn request(method: &str, target: &str, extra: &[&str]) -> Vec<u8> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: example.com\r\n");
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

const LANGUAGE: &str = r#"{
  "client_ip": {"xff_trusted_hops": 1},
  "host": {"allow": ["example.com", "*.example.com"]},
  "rules": [
    {"name": "healthz", "action": "allow", "all": [
      {"field": "path", "exact": "/healthz"}, {"header": "x-probe-token", "exact": "k8s"}]},
    {"name": "admin", "field": "path", "prefix": "/admin"},
    {"name": "no-trace", "field": "method", "in": ["TRACE", "TRACK", "DEBUG"]},
    {"name": "bad-net", "field": "client_ip", "in": ["203.0.113.0/24", "2001:db8::/32"]},
    {"name": "sqli", "query": "id", "regex": "union\\s+select", "case_insensitive": true},
    {"name": "scanners", "preset": "scanners"},
    {"name": "exploit-paths", "preset": "exploit-paths"},
    {"name": "bad-bots", "preset": "bad-bots"}
  ]
}"#;

#[test]
fn rule_language_drops_and_passes_on_the_wire() {
    if envoy::skip_if_external("uses its own configuration; the Compose stack runs the built-in rules and tests/e2e/rules.json") {
        return;
    }
    let envoy = Envoy::start(LANGUAGE);
    let ua = "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    for served in [
        request("GET", "/", &[ua]),
        request("GET", "/products?id=42", &[ua]),
        request("GET", "/docs/admin", &[ua]),
        request("GET", "/", &["User-Agent: Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"]),
        // XFF: one trusted hop, so only the right-most entry counts; the
        // spoofed bad address on the left changes nothing.
        request("GET", "/", &[ua, "X-Forwarded-For: 203.0.113.9, 198.51.100.20"]),
        // Allow overrides: a health check on a path a preset would drop.
        request("GET", "/healthz", &[ua, "X-Probe-Token: k8s"]),
    ] {
        assert_served(&envoy, &served);
    }
    for dropped in [
        request("GET", "/admin/users", &[ua]),
        request("GET", "//x/..//%61dmin", &[ua]),
        request("TRACE", "/", &[ua]),
        request(
            "GET",
            "/",
            &[ua, "X-Forwarded-For: 198.51.100.20, 203.0.113.9"],
        ),
        request("GET", "/", &[ua, "X-Forwarded-For: [2001:db8::7]:443"]),
        request("GET", "/item?id=1%20UNION%20SELECT%20password", &[ua]),
        request(
            "GET",
            "/",
            &["User-Agent: sqlmap/1.8#stable (https://sqlmap.org)"],
        ),
        request(
            "GET",
            "/",
            &["User-Agent: Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)"],
        ),
        request("GET", "/.env", &[ua]),
        request("GET", "/static/%2e%2e/.git/config", &[ua]),
        request("GET", "/wp-login.php", &[ua]),
        get(Some("evil.example.org"), &[ua]),
    ] {
        assert_dropped(&envoy, &dropped);
    }
    let log = envoy.access_log(18);
    for rule in [
        "admin",
        "no-trace",
        "bad-net",
        "sqli",
        "scanners",
        "bad-bots",
        "exploit-paths",
        "host-not-allowed",
    ] {
        assert!(
            log.contains(&format!("wasm_close_stream drop444=444 rule={rule} ")),
            "rule {rule} not in access log:\n{log}"
        );
    }
}

#[test]
fn client_ip_from_the_direct_peer() {
    if envoy::skip_if_external(
        "behind Docker's port publishing the peer is the bridge gateway, not loopback",
    ) {
        return;
    }
    // Loopback clients: the peer address (Envoy's `source.address`) decides.
    let envoy = Envoy::start(
        r#"{"rules": [{"name": "loopback-admin", "all": [
        {"field": "client_ip", "in": ["127.0.0.0/8", "::1"]}, {"field": "path", "prefix": "/private"}]}]}"#,
    );
    assert_dropped(
        &envoy,
        b"GET /private/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_served(&envoy, &get(Some("localhost"), &[]));
}

#[test]
fn each_kind_of_config_mistake_is_refused_and_named_in_envoys_log() {
    if envoy::skip_if_external("starts its own Envoy with invalid configurations") {
        return;
    }
    let cases = [
        (
            r#"{"rules": [{"header": "user-agent", "contians": "x"}]}"#,
            "rules[0].contians: unknown field `contians`",
        ),
        (
            r#"{"rules": [{"name": "re", "header": "user-agent", "regex": "(unclosed"}]}"#,
            "rules[0].regex: invalid regex",
        ),
        (
            r#"{"rules": [{"field": "client_ip", "in": ["10.0.0.0/8", "10.0.0.300/32"]}]}"#,
            "rules[0].in[1]: `10.0.0.300/32` is not an IP address or CIDR",
        ),
        (
            r#"{"rules": [{"name": "empty"}]}"#,
            "rules[0]: a condition needs exactly one of",
        ),
        (
            r#"{"rules": [{"preset": "scanner"}]}"#,
            "rules[0].preset: unknown preset `scanner`",
        ),
    ];
    for (config, expected) in cases {
        let log = match Envoy::try_start(config) {
            Ok(envoy) => panic!("Envoy accepted {config}:\n{}", envoy.log()),
            Err(log) => log,
        };
        assert!(
            log.contains(&format!(
                "invalid configuration, plugin not loaded: {expected}"
            )),
            "{config}\n{log}"
        );
        assert!(
            log.contains("Unable to create Wasm plugin drop444"),
            "{log}"
        );
    }
}
