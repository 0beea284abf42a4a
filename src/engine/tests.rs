//! Table-driven tests of the engine. They also run compiled to wasm32
//! (`make test-wasm32`), so native and wasm builds are held to one table.

use super::*;

fn engine(json: &str) -> Engine {
    match Engine::from_json(json.as_bytes()) {
        Ok(engine) => engine,
        Err(err) => panic!("config {json} rejected: {err}"),
    }
}

/// The rule that drops the request, if any.
fn decide<'e>(engine: &'e Engine, req: &mut HeaderList) -> Option<&'e str> {
    match engine.decide(req, &mut NoLimits).decision {
        Decision::Drop { rule } => Some(rule),
        _ => None,
    }
}

fn host(value: &str) -> HeaderList {
    HeaderList::new().with(":authority", value)
}

#[test]
fn host_forms() {
    use std::net::IpAddr;
    let ip = |s: &str| HostForm::IpLiteral(Some(s.parse::<IpAddr>().unwrap()));
    let name = |s: &str| HostForm::Name(s.to_string());
    let cases: &[(Option<&[u8]>, HostForm)] = &[
        (None, HostForm::Missing),
        (Some(b""), HostForm::Empty),
        (Some(b"   "), HostForm::Empty),
        (Some(b":80"), HostForm::Empty),
        (Some(b"example.com"), name("example.com")),
        (Some(b"Example.COM"), name("example.com")),
        (Some(b"example.com."), name("example.com")),
        (Some(b"example.com.:8080"), name("example.com")),
        (Some(b"example.com:"), name("example.com")),
        (Some(b" example.com "), name("example.com")),
        (Some(b"localhost"), name("localhost")),
        (Some(b"my_host-1.internal"), name("my_host-1.internal")),
        (Some(b"1.2.3.4"), ip("1.2.3.4")),
        (Some(b"1.2.3.4:443"), ip("1.2.3.4")),
        (Some(b"1.2.3.4."), ip("1.2.3.4")),
        (Some(b"127.1"), HostForm::IpLiteral(None)),
        (Some(b"2130706433"), HostForm::IpLiteral(None)),
        (Some(b"0x7f000001"), HostForm::IpLiteral(None)),
        (Some(b"0X7F.0.0.1"), HostForm::IpLiteral(None)),
        (Some(b"[::1]"), ip("::1")),
        (Some(b"[::1]:8080"), ip("::1")),
        (Some(b"[2001:DB8::1]"), ip("2001:db8::1")),
        (Some(b"::1"), ip("::1")),
        (Some(b"2001:db8::1"), ip("2001:db8::1")),
        (Some(b"[::1"), HostForm::Invalid),
        (Some(b"[::1]x"), HostForm::Invalid),
        (Some(b"[example.com]"), HostForm::Invalid),
        (Some(b"example.com:http"), HostForm::Invalid),
        (Some(b"example.com:123456"), HostForm::Invalid),
        (Some(b"a..b"), HostForm::Invalid),
        (Some(b".example.com"), HostForm::Invalid),
        (Some(b"example.com.."), HostForm::Invalid),
        (Some(b"."), HostForm::Invalid),
        (Some(b"exa mple.com"), HostForm::Invalid),
        (Some(b"user@example.com"), HostForm::Invalid),
        (Some(b"a.com,b.com"), HostForm::Invalid),
        (Some(b"%65xample.com"), HostForm::Invalid),
        (Some(b"ex\x00ample.com"), HostForm::Invalid),
        (Some(b"\xff\xfe"), HostForm::Invalid),
        (Some("bücher.de".as_bytes()), HostForm::Invalid),
        (Some(b"xn--bcher-kva.de"), name("xn--bcher-kva.de")),
        (Some(b"0xg.example"), name("0xg.example")),
        (Some(b"1.2.3.com"), name("1.2.3.com")),
    ];
    for (raw, want) in cases {
        assert_eq!(
            &classify_host(*raw),
            want,
            "host {:?}",
            raw.map(String::from_utf8_lossy)
        );
    }
    let long = format!("{}.com", "a.".repeat(130));
    assert_eq!(classify_host(Some(long.as_bytes())), HostForm::Invalid);
    let long_label = format!("{}.com", "a".repeat(64));
    assert_eq!(
        classify_host(Some(long_label.as_bytes())),
        HostForm::Invalid
    );
}

#[test]
fn default_config_drops_missing_empty_invalid_and_ip_hosts() {
    for config in ["", "  \n", "{}", r#"{"host": {}}"#, r#"{"rules": []}"#] {
        let e = engine(config);
        let cases: &[(HeaderList, Option<&str>)] = &[
            (HeaderList::new(), Some(builtin::HOST_MISSING)),
            (host(""), Some(builtin::HOST_MISSING)),
            (host("127.0.0.1"), Some(builtin::HOST_IP_LITERAL)),
            (host("127.0.0.1:10000"), Some(builtin::HOST_IP_LITERAL)),
            (host("[::1]:10000"), Some(builtin::HOST_IP_LITERAL)),
            (host("bad host"), Some(builtin::HOST_INVALID)),
            (host("localhost"), None),
            (host("example.com:10000"), None),
            (host("anything.example"), None),
        ];
        for (req, want) in cases {
            assert_eq!(
                decide(&e, &mut req.clone()),
                *want,
                "config {config:?} request {req:?}"
            );
        }
    }
}

#[test]
fn builtin_equals_empty_config() {
    let e = Engine::builtin();
    assert_eq!(e.header_names(), [":authority"]);
    assert_eq!(
        decide(&e, &mut host("10.0.0.1")),
        Some(builtin::HOST_IP_LITERAL)
    );
    assert_eq!(decide(&e, &mut host("a.example")), None);
}

#[test]
fn host_allowlist() {
    let e = engine(
        r#"{"host": {"allow": ["Example.com.", "*.example.org", "10.1.2.3", "[2001:db8::7]", "::1"]}}"#,
    );
    let cases: &[(&str, Option<&str>)] = &[
        ("example.com", None),
        ("EXAMPLE.COM:443", None),
        ("example.com.", None),
        ("www.example.com", Some(builtin::HOST_NOT_ALLOWED)),
        ("example.org", Some(builtin::HOST_NOT_ALLOWED)),
        ("www.example.org", None),
        ("a.b.example.org", None),
        ("WWW.Example.Org.:8443", None),
        ("evilexample.org", Some(builtin::HOST_NOT_ALLOWED)),
        ("example.org.evil.com", Some(builtin::HOST_NOT_ALLOWED)),
        ("localhost", Some(builtin::HOST_NOT_ALLOWED)),
        ("10.1.2.3", None),
        ("10.1.2.3:80", None),
        ("10.1.2.4", Some(builtin::HOST_IP_LITERAL)),
        ("[2001:db8:0::7]:80", None),
        ("[::1]", None),
        ("[::2]", Some(builtin::HOST_IP_LITERAL)),
        ("", Some(builtin::HOST_MISSING)),
        ("exa_mple com", Some(builtin::HOST_INVALID)),
    ];
    for (value, want) in cases {
        assert_eq!(decide(&e, &mut host(value)), *want, "host {value:?}");
    }
}

#[test]
fn host_policy_switches() {
    // IP literals allowed, allowlist set: IPs that are not listed are "not allowed".
    let e = engine(r#"{"host": {"allow": ["example.com"], "drop_ip_literal": false}}"#);
    assert_eq!(
        decide(&e, &mut host("1.2.3.4")),
        Some(builtin::HOST_NOT_ALLOWED)
    );
    // No allowlist and IP literals allowed: they pass.
    let e = engine(r#"{"host": {"drop_ip_literal": false}}"#);
    assert_eq!(decide(&e, &mut host("1.2.3.4")), None);
    assert_eq!(
        decide(&e, &mut HeaderList::new()),
        Some(builtin::HOST_MISSING)
    );
    let e = engine(r#"{"host": {"drop_missing": false}}"#);
    assert_eq!(decide(&e, &mut HeaderList::new()), None);
    assert_eq!(decide(&e, &mut host("")), None);
    let e = engine(r#"{"host": {"drop_invalid": false}}"#);
    assert_eq!(decide(&e, &mut host("a b")), None);
    // Everything off: the host header is not even read.
    let e = engine(
        r#"{"host": {"drop_missing": false, "drop_invalid": false, "drop_ip_literal": false}}"#,
    );
    assert!(e.header_names().is_empty());
    let mut req = host("1.2.3.4");
    assert_eq!(decide(&e, &mut req), None);
    assert!(req.fetched.is_empty());
}

const NO_HOST: &str =
    r#""host": {"drop_missing": false, "drop_invalid": false, "drop_ip_literal": false}"#;

fn rules(rules: &str) -> Engine {
    engine(&format!(r#"{{{NO_HOST}, "rules": [{rules}]}}"#))
}

fn ua(value: &str) -> HeaderList {
    HeaderList::new().with("User-Agent", value)
}

#[test]
fn header_operators() {
    // (rule, user-agent value or None for absent, drops?)
    let cases: &[(&str, Option<&str>, bool)] = &[
        (r#""exact": "curl/8.0""#, Some("curl/8.0"), true),
        (r#""exact": "curl/8.0""#, Some("curl/8.01"), false),
        (r#""exact": "curl/8.0""#, Some("CURL/8.0"), false),
        (r#""exact": "curl/8.0""#, None, false),
        (r#""prefix": "sqlmap""#, Some("sqlmap/1.7"), true),
        (r#""prefix": "sqlmap""#, Some("x sqlmap"), false),
        (r#""suffix": "(nikto)""#, Some("Mozilla (nikto)"), true),
        (r#""suffix": "(nikto)""#, Some("(nikto) Mozilla"), false),
        (r#""contains": "zgrab""#, Some("Mozilla zgrab/0.x"), true),
        (r#""contains": "zgrab""#, Some("Mozilla"), false),
        (r#""contains": "zgrab""#, None, false),
        (r#""present": true"#, Some(""), true),
        (r#""present": true"#, None, false),
        (r#""absent": true"#, None, true),
        (r#""absent": true"#, Some(""), false),
        // case_insensitive: ASCII folding of both sides
        (
            r#""contains": "SQLMap", "case_insensitive": true"#,
            Some("xx sqlmap yy"),
            true,
        ),
        (
            r#""contains": "sqlmap", "case_insensitive": true"#,
            Some("SQLMAP"),
            true,
        ),
        (r#""contains": "sqlmap""#, Some("SQLMAP"), false),
        (
            r#""exact": "Curl", "case_insensitive": true"#,
            Some("cURL"),
            true,
        ),
        (
            r#""prefix": "NUCLEI", "case_insensitive": true"#,
            Some("Nuclei - Open-source"),
            true,
        ),
        (
            r#""suffix": "bot", "case_insensitive": true"#,
            Some("EvilBOT"),
            true,
        ),
        // header name case does not matter
        (r#""exact": "x""#, Some("x"), true),
    ];
    for (rule, value, drops) in cases {
        let e = rules(&format!(
            r#"{{"name": "r", "header": "User-Agent", {rule}}}"#
        ));
        let mut req = match value {
            Some(v) => ua(v),
            None => HeaderList::new(),
        };
        let got = decide(&e, &mut req);
        assert_eq!(got.is_some(), *drops, "rule {rule} value {value:?}");
        if *drops {
            assert_eq!(got, Some("r"));
        }
    }
}

#[test]
fn repeated_headers_are_all_checked() {
    // Two field lines reach the engine joined as "a,b"; each element counts.
    let cases: &[(&str, &[&str], bool)] = &[
        (r#""exact": "sqlmap""#, &["Mozilla", "sqlmap"], true),
        (r#""exact": "sqlmap""#, &["sqlmap", "Mozilla"], true),
        (r#""exact": "sqlmap""#, &["Mozilla", " sqlmap "], true),
        (r#""prefix": "sqlmap""#, &["Mozilla", "sqlmap/1.0"], true),
        (r#""suffix": "evil""#, &["is evil", "Mozilla"], true),
        (r#""contains": "map/1""#, &["Mozilla", "sqlmap/1.0"], true),
        (
            r#""exact": "Mozilla, like Gecko""#,
            &["Mozilla, like Gecko"],
            true,
        ),
        (r#""exact": "sqlmap""#, &["Mozilla", "nikto"], false),
        (
            r#""exact": "sqlmap", "case_insensitive": true"#,
            &["Mozilla", "SqlMap"],
            true,
        ),
    ];
    for (rule, values, drops) in cases {
        let e = rules(&format!(r#"{{"header": "x-probe", {rule}}}"#));
        let mut req = values
            .iter()
            .fold(HeaderList::new(), |r, v| r.with("X-Probe", v));
        assert_eq!(
            decide(&e, &mut req).is_some(),
            *drops,
            "rule {rule} values {values:?}"
        );
    }
}

#[test]
fn non_utf8_and_nul_values_are_matched_as_bytes() {
    let e = rules(r#"{"header": "user-agent", "contains": "sqlmap"}"#);
    assert!(decide(&e, &mut ua("\u{0}sqlmap")).is_some());
    let mut req = HeaderList::new().with("user-agent", b"\xff\xfesqlmap\x80");
    assert!(decide(&e, &mut req).is_some());
    let mut req = HeaderList::new().with("user-agent", b"\xff\xfe\x80");
    assert!(decide(&e, &mut req).is_none());
}

#[test]
fn first_match_wins_and_host_goes_first() {
    let e = engine(
        r#"{"rules": [
            {"name": "first", "header": "user-agent", "contains": "bot"},
            {"name": "second", "header": "user-agent", "contains": "evilbot"},
            {"name": "no-accept", "header": "accept", "absent": true}
        ]}"#,
    );
    let mut req = host("example.com")
        .with("user-agent", "evilbot")
        .with("accept", "*/*");
    assert_eq!(decide(&e, &mut req), Some("first"));
    let mut req = host("example.com").with("user-agent", "curl");
    assert_eq!(decide(&e, &mut req), Some("no-accept"));
    let mut req = host("1.2.3.4").with("user-agent", "evilbot");
    assert_eq!(decide(&e, &mut req), Some(builtin::HOST_IP_LITERAL));
    let mut req = host("example.com")
        .with("user-agent", "curl")
        .with("accept", "*/*");
    assert_eq!(decide(&e, &mut req), None);
}

#[test]
fn headers_are_read_lazily_and_once() {
    let e = engine(
        r#"{"rules": [
            {"name": "a", "header": "user-agent", "contains": "x"},
            {"name": "b", "header": "User-Agent", "contains": "y"},
            {"name": "c", "header": "accept", "absent": true}
        ]}"#,
    );
    let mut names = e.header_names().to_vec();
    names.sort();
    assert_eq!(names, [":authority", "accept", "user-agent"]);
    let mut req = host("example.com")
        .with("user-agent", "z")
        .with("accept", "*/*");
    assert_eq!(decide(&e, &mut req), None);
    let mut fetched = req.fetched.clone();
    fetched.sort();
    assert_eq!(fetched, [":authority", "accept", "user-agent"]);
    // A host drop decides before any other header is read.
    let mut req = host("1.2.3.4").with("user-agent", "x");
    assert_eq!(decide(&e, &mut req), Some(builtin::HOST_IP_LITERAL));
    assert_eq!(req.fetched, [":authority"]);
}

#[test]
fn default_rule_names() {
    let e = rules(r#"{"header": "a", "present": true}, {"header": "b", "present": true}"#);
    assert_eq!(
        decide(&e, &mut HeaderList::new().with("b", "1")),
        Some("rule-1")
    );
}

#[test]
fn config_errors_name_the_path() {
    // (config, expected path, a phrase the message contains)
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"fallback": {"status": 99}}"#,
            "fallback.status",
            "from 200 to 599",
        ),
        (
            r#"{"fallback": {"code": 403}}"#,
            "fallback.code",
            "unknown field",
        ),
        (
            r#"{"rules": [{"scope": "conn", "header": "a", "present": true}]}"#,
            "rules[0].scope",
            "unknown variant `conn`",
        ),
        (
            r#"{"rules": [{"scope": "connection", "action": "allow", "header": "a", "present": true}]}"#,
            "rules[0].scope",
            "an allow rule closes nothing",
        ),
        (
            r#"{"rules": [{"not": {"scope": "connection", "header": "a", "present": true}}]}"#,
            "rules[0].not.scope",
            "only a rule",
        ),
        (
            r#"{"host": {"scope": "socket"}}"#,
            "host.scope",
            "unknown variant `socket`",
        ),
        (
            r#"{"stats": {"prefix": "Drop-444"}}"#,
            "stats.prefix",
            "a stats prefix is",
        ),
        (
            r#"{"stats": {"prefx": "x"}}"#,
            "stats.prefx",
            "unknown field",
        ),
        (
            r#"{"log": {"level": "loud"}}"#,
            "log.level",
            "unknown variant `loud`",
        ),
        (
            r#"{"log": {"max_per_second": 1000000}}"#,
            "log.max_per_second",
            "at most 100000",
        ),
        (
            r#"{"log": {"user_agent_max": 100000}}"#,
            "log.user_agent_max",
            "at most 8192",
        ),
        (
            r#"{"rules": [{"header": "ua", "query": "q", "exact": "a"}]}"#,
            "rules[0]",
            "needs exactly one of",
        ),
        (
            r#"{"rules": [{"header": "ua", "regex": "("}]}"#,
            "rules[0].regex",
            "invalid regex",
        ),
        (
            r#"{"rules": [{"header": "ua", "regex": "a{1000}{1000}"}]}"#,
            "rules[0].regex",
            "invalid regex",
        ),
        (
            r#"{"rules": [{"field": "client_ip", "in": ["10.0.0.0/33"]}]}"#,
            "rules[0].in[0]",
            "not an IP address or CIDR",
        ),
        (
            r#"{"rules": [{"field": "client_ip", "in": ["10.0.0.1/8"]}]}"#,
            "rules[0].in[0]",
            "did you mean 10.0.0.0/8",
        ),
        (
            r#"{"rules": [{"field": "client_ip", "in": ["banana"]}]}"#,
            "rules[0].in[0]",
            "not an IP address",
        ),
        (
            r#"{"rules": [{"field": "client_ip", "exact": "1.2.3.4"}]}"#,
            "rules[0].exact",
            "takes only `in`",
        ),
        (
            r#"{"rules": [{"field": "path", "absent": true}]}"#,
            "rules[0].absent",
            "always present",
        ),
        (
            r#"{"rules": [{"field": "paths", "prefix": "/"}]}"#,
            "rules[0].field",
            "unknown field `paths`",
        ),
        (r#"{"rules": [{}]}"#, "rules[0]", "needs exactly one of"),
        (
            r#"{"rules": [{"name": "only-name"}]}"#,
            "rules[0]",
            "needs exactly one of",
        ),
        (
            r#"{"rules": [{"all": []}]}"#,
            "rules[0].all",
            "at least one condition",
        ),
        (
            r#"{"rules": [{"any": [{"header": "a", "present": true}], "exact": "x"}]}"#,
            "rules[0]",
            "takes no operator",
        ),
        (
            r#"{"rules": [{"all": [{"name": "x", "header": "a", "present": true}]}]}"#,
            "rules[0].all[0].name",
            "only a rule",
        ),
        (
            r#"{"rules": [{"not": {"action": "allow", "header": "a", "present": true}}]}"#,
            "rules[0].not.action",
            "only a rule",
        ),
        (
            r#"{"rules": [{"action": "block", "header": "a", "present": true}]}"#,
            "rules[0].action",
            "unknown variant `block`",
        ),
        (
            r#"{"rules": [{"preset": "scaners"}]}"#,
            "rules[0].preset",
            "unknown preset `scaners`; known presets: scanners, exploit-paths, bad-bots",
        ),
        (
            r#"{"rules": [{"header": "ua", "in": []}]}"#,
            "rules[0].in",
            "empty list",
        ),
        (
            r#"{"rules": [{"query": "", "present": true}]}"#,
            "rules[0].query",
            "empty",
        ),
        (r#"{"mode": "shadow"}"#, "mode", "unknown variant `shadow`"),
        (
            r#"{"client_ip": {"xff_trusted_hops": -1}}"#,
            "client_ip.xff_trusted_hops",
            "invalid value",
        ),
        (
            r#"{"client_ip": {"trusted_hops": 1}}"#,
            "client_ip.trusted_hops",
            "unknown field",
        ),
        (
            r#"{"rules": [{"all": [{"header": "a", "present": true}, {"not": [1]}]}]}"#,
            "rules[0].all[1].not",
            "expected a JSON object",
        ),
        ("{", "", "invalid JSON"),
        ("[]", "", "expected a JSON object"),
        ("null", "", "expected a JSON object"),
        (
            r#"{"host": ["example.com"]}"#,
            "host",
            "expected a JSON object",
        ),
        (
            r#"{"rules": [["ua", "x"]]}"#,
            "rules[0]",
            "expected a JSON object",
        ),
        (r#"{"rules": {}}"#, "rules", "invalid type"),
        ("{} {}", "", "invalid JSON"),
        (r#"{"hosts": {}}"#, "hosts", "unknown field `hosts`"),
        (
            r#"{"host": {"alow": []}}"#,
            "host.alow",
            "unknown field `alow`",
        ),
        (
            r#"{"host": {"allow": "example.com"}}"#,
            "host.allow",
            "invalid type",
        ),
        (
            r#"{"host": {"allow": ["ok.com", "bad host"]}}"#,
            "host.allow[1]",
            "not a valid host name",
        ),
        (
            r#"{"host": {"allow": ["example.com:443"]}}"#,
            "host.allow[0]",
            "without a port",
        ),
        (
            r#"{"host": {"allow": ["*example.com"]}}"#,
            "host.allow[0]",
            "`*` is only allowed",
        ),
        (
            r#"{"host": {"allow": ["a.*.com"]}}"#,
            "host.allow[0]",
            "`*` is only allowed",
        ),
        (
            r#"{"host": {"allow": ["*."]}}"#,
            "host.allow[0]",
            "not a valid wildcard",
        ),
        (
            r#"{"host": {"allow": ["*"]}}"#,
            "host.allow[0]",
            "`*` is only allowed",
        ),
        (
            r#"{"host": {"allow": ["127.1"]}}"#,
            "host.allow[0]",
            "numeric IPv4",
        ),
        (
            r#"{"host": {"drop_missing": "yes"}}"#,
            "host.drop_missing",
            "invalid type",
        ),
        (
            r#"{"rules": [{"header": "ua"}]}"#,
            "rules[0]",
            "needs one operator",
        ),
        (
            r#"{"rules": [{"header": "ua", "exact": "a", "prefix": "b"}]}"#,
            "rules[0]",
            "exactly one operator",
        ),
        (
            r#"{"rules": [{"header": "ua", "contians": "a"}]}"#,
            "rules[0].contians",
            "unknown field `contians`",
        ),
        (
            r#"{"rules": [{"exact": "a"}]}"#,
            "rules[0]",
            "needs exactly one of",
        ),
        (
            r#"{"rules": [{"header": "u a", "exact": "a"}]}"#,
            "rules[0].header",
            "not a valid header name",
        ),
        (
            r#"{"rules": [{"header": "", "exact": "a"}]}"#,
            "rules[0].header",
            "not a valid header name",
        ),
        (
            r#"{"rules": [{"header": "ua", "contains": ""}]}"#,
            "rules[0].contains",
            "empty pattern",
        ),
        (
            r#"{"rules": [{"header": "ua", "present": false}]}"#,
            "rules[0].present",
            "must be true",
        ),
        (
            r#"{"rules": [{"header": "ua", "absent": true, "case_insensitive": true}]}"#,
            "rules[0].case_insensitive",
            "no meaning",
        ),
        (
            r#"{"rules": [{"header": "ua", "contains": 5}]}"#,
            "rules[0].contains",
            "invalid type",
        ),
        (
            r#"{"rules": [{"name": "bad name", "header": "ua", "present": true}]}"#,
            "rules[0].name",
            "rule names are",
        ),
        (
            r#"{"rules": [{"name": "", "header": "ua", "present": true}]}"#,
            "rules[0].name",
            "rule names are",
        ),
        (
            r#"{"rules": [{"name": "x", "header": "a", "present": true}, {"name": "x", "header": "b", "present": true}]}"#,
            "rules[1].name",
            "duplicate rule name `x`",
        ),
        (
            r#"{"rules": [{"name": "host-missing", "header": "a", "present": true}]}"#,
            "rules[0].name",
            "duplicate rule name",
        ),
        (
            r#"{"rules": [{"header": "a", "present": true}, {"name": "rule-0", "header": "b", "present": true}]}"#,
            "rules[1].name",
            "duplicate",
        ),
    ];
    for (config, path, phrase) in cases {
        let err = match Engine::from_json(config.as_bytes()) {
            Ok(_) => panic!("config {config} was accepted"),
            Err(err) => err,
        };
        assert_eq!(err.path(), *path, "config {config}: {err}");
        assert!(err.message().contains(phrase), "config {config}: {err}");
        let shown = err.to_string();
        assert!(
            shown.starts_with(if path.is_empty() {
                "configuration"
            } else {
                path
            }),
            "{shown}"
        );
    }
}

#[test]
fn stat_names_are_prometheus_safe_and_unique() {
    let e = engine(
        r#"{"stats": {"prefix": "edge_444"}, "rules": [
            {"name": "a-b", "header": "x", "present": true},
            {"name": "a.b", "header": "y", "present": true},
            {"name": "a_b", "header": "z", "present": true}]}"#,
    );
    let (prefix, names) = e.stat_names();
    assert_eq!(prefix, "edge_444");
    let names: Vec<(&str, &str)> = names.iter().map(|(r, m)| (*r, m.as_str())).collect();
    assert_eq!(
        names,
        [
            ("host-missing", "edge_444.rule.host_missing"),
            ("host-invalid", "edge_444.rule.host_invalid"),
            ("host-ip-literal", "edge_444.rule.host_ip_literal"),
            ("a-b", "edge_444.rule.a_b"),
            ("a.b", "edge_444.rule.a_b_4"),
            ("a_b", "edge_444.rule.a_b_5"),
        ]
    );
    let e = engine("");
    assert_eq!(e.stat_names().0, "drop444");
    assert_eq!(e.log_settings().max_per_second, 10);
}

#[test]
fn scope_per_rule_and_for_the_host_policy() {
    let e = engine(
        r#"{"host": {"scope": "connection"}, "rules": [
            {"name": "conn", "scope": "connection", "header": "x", "present": true},
            {"name": "stream", "header": "y", "present": true}]}"#,
    );
    // The scope a verdict's rule carries (RuleRef::scope), by rule name.
    let scope_of = |e: &Engine, name: &str| {
        (0..)
            .map_while(|id| e.rule(id))
            .find(|r| r.name == name)
            .map(|r| r.scope)
    };
    assert_eq!(scope_of(&e, "conn"), Some(Scope::Connection));
    assert_eq!(scope_of(&e, "stream"), Some(Scope::Stream));
    assert_eq!(
        scope_of(&e, builtin::HOST_IP_LITERAL),
        Some(Scope::Connection)
    );
    assert_eq!(scope_of(&e, "no-such-rule"), None);
    assert_eq!(
        scope_of(&engine(""), builtin::HOST_MISSING),
        Some(Scope::Stream)
    );
}

#[test]
fn a_verdict_carries_the_rule_handle_counters_and_scope_use() {
    let e = engine(
        r#"{"rules": [
            {"name": "watch", "action": "log", "header": "x", "present": true},
            {"name": "conn", "scope": "connection", "header": "y", "present": true},
            {"name": "ok", "action": "allow", "header": "z", "present": true}]}"#,
    );
    // Ids are positions in evaluation order: the same order as `rules()` and
    // `stat_names()`, so an adapter indexes its per-rule counters by id.
    let names: Vec<&str> = e.rules().map(|(name, _)| name).collect();
    let stat_rules: Vec<&str> = e.stat_names().1.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, stat_rules);
    let handle = |name: &str| {
        let id = names.iter().position(|n| *n == name).unwrap();
        e.rule(u32::try_from(id).unwrap()).unwrap()
    };
    let v = e.decide(
        &mut host("example.com").with("x", "1").with("y", "1"),
        &mut NoLimits,
    );
    assert_eq!(v.decision, Decision::Drop { rule: "conn" });
    assert_eq!(v.rule, Some(handle("conn")));
    assert_eq!(v.rule.map(|r| r.scope), Some(Scope::Connection));
    assert_eq!(v.logged, ["watch"]);
    assert_eq!(v.logged_rules, [handle("watch")]);
    assert_eq!(handle("watch").scope, Scope::Stream);

    let v = e.decide(
        &mut host("example.com").with("z", "1").with("y", "1"),
        &mut NoLimits,
    );
    assert_eq!(v.rule, Some(handle("ok")));
    let v = e.decide(&mut host("example.com"), &mut NoLimits);
    assert_eq!((v.decision, v.rule), (Decision::Pass, None));
    assert_eq!(e.rule(u32::MAX), None);
}

/// The built-in host rules (and a configured rule reading only the Host's
/// kind) become host tables, decided as one group from one classification
/// of the Host; their answers and their order stay those of the rules.
#[test]
fn host_rules_are_one_group_of_tables() {
    let e = engine(
        r#"{"host":{"allow":["example.com","*.example.org","192.0.2.1"]},
            "rules":[{"name":"no-names","field":"host_kind","exact":"name","action":"log"},
                     {"name":"ua","header":"user-agent","contains":"bot"}]}"#,
    );
    let groups: Vec<u32> = e
        .drop_plan
        .iter()
        .filter_map(|u| match u {
            plan::Unit::Host { len, .. } => Some(*len),
            _ => None,
        })
        .collect();
    assert_eq!(groups, [5], "{:?}", e.drop_plan);
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        ("example.com", None, &["no-names"]),
        ("a.example.org", None, &["no-names"]),
        ("example.net", Some(builtin::HOST_NOT_ALLOWED), &[]),
        ("192.0.2.1", None, &[]),
        ("192.0.2.2", Some(builtin::HOST_IP_LITERAL), &[]),
        ("127.1", Some(builtin::HOST_IP_LITERAL), &[]),
        ("exa mple.com", Some(builtin::HOST_INVALID), &[]),
        ("", Some(builtin::HOST_MISSING), &[]),
    ];
    for (value, want, logged) in cases {
        let verdict = e.decide(&mut host(value), &mut NoLimits);
        assert_eq!(verdict.drop_rule(), *want, "{value}");
        assert_eq!(verdict.logged, *logged, "{value}");
    }
    assert_eq!(
        e.decide(&mut HeaderList::new(), &mut NoLimits).drop_rule(),
        Some(builtin::HOST_MISSING)
    );
}

#[test]
fn a_decision_names_its_drop_log_event() {
    assert_eq!(Decision::Pass.log_event(), None);
    assert_eq!(Decision::Allow { rule: "a" }.log_event(), None);
    assert_eq!(Decision::Drop { rule: "a" }.log_event(), Some("drop"));
    assert_eq!(Decision::DryRun { rule: "a" }.log_event(), Some("dry-run"));
}
