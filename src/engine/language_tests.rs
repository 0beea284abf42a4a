//! Table tests of the full rule language: subjects, operators, combinators,
//! actions, normalisation, presets and scale.

use super::request::{normalize_path, parse_query, percent_decode};
use super::*;

fn engine(json: &str) -> Engine {
    Engine::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("config {json} rejected: {e}"))
}

/// Rules only: the host policy off, so requests need no Host.
fn rules(rules: &str) -> Engine {
    engine(&format!(
        r#"{{"host": {{"drop_missing": false, "drop_invalid": false, "drop_ip_literal": false}}, "rules": [{rules}]}}"#
    ))
}

fn dropped<'e>(engine: &'e Engine, req: &HeaderList) -> Option<&'e str> {
    engine
        .decide(&mut req.clone(), &mut NoLimits)
        .drop_rule()
        .map(|r| {
            // Return the engine's copy so the lifetime is the engine's.
            engine
                .rules()
                .map(|(n, _)| n)
                .find(|n| *n == r)
                .unwrap_or_default()
        })
}

fn get(target: &str) -> HeaderList {
    HeaderList::new()
        .with(":authority", "example.com")
        .with(":method", "GET")
        .with(":path", target)
}

#[test]
fn path_normalisation() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"/", b"/"),
        (b"", b"/"),
        (b"/a/b", b"/a/b"),
        (b"/a/b/", b"/a/b/"),
        (b"//a///b", b"/a/b"),
        (b"/a/./b", b"/a/b"),
        (b"/a/../b", b"/b"),
        (b"/../../b", b"/b"),
        (b"/a/..", b"/"),
        (b"/a/b/..", b"/a/"),
        (b"/%2e%2e/%2E%2e/etc/passwd", b"/etc/passwd"),
        (b"/a/%2e/b", b"/a/b"),
        (b"/a%2fb", b"/a/b"),
        (b"/a%2F..%2Fb", b"/b"),
        (b"\\admin", b"/admin"),
        (b"/a\\..\\admin", b"/admin"),
        (b"/%61dmin", b"/admin"),
        (b"/%zz", b"/%zz"),
        (b"/%", b"/%"),
        (b"/a%00b", b"/a\x00b"),
        (b"/\xff", b"/\xff"),
        (b"*", b"/*"),
    ];
    for (raw, want) in cases {
        assert_eq!(
            normalize_path(raw),
            want.to_vec(),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn query_parsing() {
    let q = parse_query(b"a=1&b=x+y&c=%41%zz&&d&=e&a=2");
    let q: Vec<(String, String)> = q
        .into_iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(&n).into(),
                String::from_utf8_lossy(&v).into(),
            )
        })
        .collect();
    let want = [
        ("a", "1"),
        ("b", "x y"),
        ("c", "A%zz"),
        ("d", ""),
        ("", "e"),
        ("a", "2"),
    ];
    assert_eq!(q.len(), want.len());
    for ((n, v), (wn, wv)) in q.iter().zip(want) {
        assert_eq!((n.as_str(), v.as_str()), (wn, wv));
    }
    assert_eq!(percent_decode(b"a+b%20c", false), b"a+b c");
}

#[test]
fn path_rules_cannot_be_bypassed_by_encoding() {
    let e = rules(
        r#"{"name": "admin", "field": "path", "prefix": "/admin"},
           {"name": "env", "field": "path", "exact": "/.env", "case_insensitive": true},
           {"name": "php", "field": "path", "suffix": ".php"}"#,
    );
    let cases: &[(&str, Option<&str>)] = &[
        ("/admin", Some("admin")),
        ("/admin/users?x=1", Some("admin")),
        ("//admin", Some("admin")),
        ("/./admin", Some("admin")),
        ("/x/../admin", Some("admin")),
        ("/%61dmin", Some("admin")),
        ("/%2e/admin", Some("admin")),
        ("/x/%2e%2e/admin", Some("admin")),
        ("\\admin", Some("admin")),
        ("/Admin", None),
        ("/x/admin", None),
        ("/.env", Some("env")),
        ("/.ENV", Some("env")),
        ("/%2eenv", Some("env")),
        ("/.env?x", Some("env")),
        ("/.env/", None),
        ("/index.php", Some("php")),
        ("/index.php?a=b.html", Some("php")),
        ("/index.php%3Fa", None),
        ("/index.html?a=.php", None),
        ("/", None),
    ];
    for (target, want) in cases {
        assert_eq!(dropped(&e, &get(target)), *want, "path {target:?}");
    }
}

#[test]
fn path_and_query_method_scheme_protocol() {
    let e = rules(
        r#"{"name": "pq", "field": "path_and_query", "contains": "?debug=1"},
           {"name": "trace", "field": "method", "in": ["TRACE", "TRACK"]},
           {"name": "del", "field": "method", "exact": "delete", "case_insensitive": true},
           {"name": "plain", "all": [{"field": "scheme", "exact": "http"}, {"field": "path", "prefix": "/login"}]},
           {"name": "h10", "field": "protocol", "exact": "HTTP/1.0"}"#,
    );
    let req =
        |method: &str, target: &str| get(target).with(":method", method).with(":scheme", "https");
    let cases: Vec<(HeaderList, Option<&str>)> = vec![
        (get("/x/../a?debug=1"), Some("pq")),
        (get("/a?x=1&debug=1"), None),
        (
            HeaderList::new()
                .with(":method", "TRACE")
                .with(":path", "/"),
            Some("trace"),
        ),
        (
            HeaderList::new()
                .with(":method", "TRACK")
                .with(":path", "/"),
            Some("trace"),
        ),
        // Envoy forwards HTTP/2's lower-case `trace` as is; a server that
        // upper-cases methods reads TRACE: a drop rule sees both readings.
        (
            HeaderList::new()
                .with(":method", "trace")
                .with(":path", "/"),
            Some("trace"),
        ),
        (
            HeaderList::new()
                .with(":method", "tracee")
                .with(":path", "/"),
            None,
        ),
        (
            HeaderList::new()
                .with(":method", "DeLeTe")
                .with(":path", "/"),
            Some("del"),
        ),
        (
            HeaderList::new()
                .with(":method", "GET")
                .with(":scheme", "http")
                .with(":path", "/login"),
            Some("plain"),
        ),
        (
            HeaderList::new()
                .with(":method", "GET")
                .with(":scheme", "https")
                .with(":path", "/login"),
            None,
        ),
        (
            HeaderList::new()
                .with(":method", "GET")
                .with(":path", "/")
                .protocol("HTTP/1.0"),
            Some("h10"),
        ),
        (
            HeaderList::new()
                .with(":method", "GET")
                .with(":path", "/")
                .protocol("HTTP/2"),
            None,
        ),
    ];
    for (req, want) in &cases {
        assert_eq!(dropped(&e, req), *want, "{req:?}");
    }
    let _ = req;
}

#[test]
fn query_parameters() {
    let e = rules(
        r#"{"name": "sqli", "query": "id", "regex": "union\\s+select", "case_insensitive": true},
           {"name": "debug", "query": "debug", "present": true},
           {"name": "evil-cb", "query": "callback", "prefix": "evil"}"#,
    );
    let cases: &[(&str, Option<&str>)] = &[
        ("/?id=1%20UNION%20SELECT%201", Some("sqli")),
        ("/?id=1+union+select+1", Some("sqli")),
        ("/?id=5&id=1+union++select", Some("sqli")),
        ("/?id=union", None),
        ("/?ID=union+select", None),
        ("/?debug", Some("debug")),
        ("/?debug=", Some("debug")),
        ("/?x=debug", None),
        ("/?callback=evil.fn", Some("evil-cb")),
        ("/?callback=%65vil", Some("evil-cb")),
        ("/?callback=notevil", None),
        ("/", None),
    ];
    for (target, want) in cases {
        assert_eq!(dropped(&e, &get(target)), *want, "target {target:?}");
    }
}

#[test]
fn regex_and_in_operators_on_headers() {
    let e = rules(
        r#"{"name": "re", "header": "user-agent", "regex": "^curl/[0-9]+\\.[0-9]+$"},
           {"name": "re-ci", "header": "x-a", "regex": "evil", "case_insensitive": true},
           {"name": "lang", "header": "accept-language", "in": ["xx", "yy-ZZ"], "case_insensitive": true}"#,
    );
    let cases: Vec<(HeaderList, Option<&str>)> = vec![
        (HeaderList::new().with("user-agent", "curl/8.4"), Some("re")),
        (HeaderList::new().with("user-agent", "curl/8.4 x"), None),
        (
            HeaderList::new()
                .with("user-agent", "Mozilla")
                .with("user-agent", "curl/7.1"),
            Some("re"),
        ),
        (HeaderList::new().with("x-a", "so EVIL"), Some("re-ci")),
        (
            HeaderList::new().with("accept-language", "XX"),
            Some("lang"),
        ),
        (
            HeaderList::new().with("accept-language", "en, yy-zz"),
            Some("lang"),
        ),
        (HeaderList::new().with("accept-language", "en-xx"), None),
    ];
    for (req, want) in &cases {
        assert_eq!(dropped(&e, req), *want, "{req:?}");
    }
}

#[test]
fn element_boundaries_in_header_lists() {
    let e = rules(
        r#"{"name": "ex", "header": "x", "exact": "bad"},
           {"name": "pre", "header": "y", "prefix": "bad"},
           {"name": "suf", "header": "z", "suffix": "bad"}"#,
    );
    let cases: &[(&str, &str, bool)] = &[
        ("x", "bad", true),
        ("x", "ok, bad", true),
        ("x", "ok,bad ,ok", true),
        ("x", "ok, notbad", false),
        ("x", "bad2", false),
        ("y", "ok, bad-thing", true),
        ("y", "ok, notbad", false),
        ("z", "thing-bad, ok", true),
        ("z", "thing-bad2, ok", false),
    ];
    for (header, value, drops) in cases {
        let req = HeaderList::new().with(header, value);
        assert_eq!(dropped(&e, &req).is_some(), *drops, "{header}: {value}");
    }
    // Non-list subjects have no elements: a comma is just a byte.
    let e = rules(r#"{"name": "m", "field": "method", "exact": "GET"}"#);
    assert_eq!(
        dropped(&e, &HeaderList::new().with(":method", "POST, GET")),
        None
    );
}

#[test]
fn combinators() {
    let e = rules(
        r#"{"name": "nested",
            "all": [
              {"field": "method", "exact": "POST"},
              {"any": [{"field": "path", "prefix": "/upload"}, {"field": "path", "prefix": "/import"}]},
              {"not": {"header": "content-type", "prefix": "multipart/form-data"}}
            ]}"#,
    );
    let req = |method: &str, path: &str, ct: Option<&str>| {
        let r = HeaderList::new()
            .with(":method", method)
            .with(":path", path);
        match ct {
            Some(ct) => r.with("content-type", ct),
            None => r,
        }
    };
    let cases = [
        (req("POST", "/upload/x", Some("text/plain")), true),
        (req("POST", "/import", None), true),
        (
            req("POST", "/upload", Some("multipart/form-data; boundary=x")),
            false,
        ),
        (req("GET", "/upload", None), false),
        (req("POST", "/other", None), false),
    ];
    for (r, drops) in &cases {
        assert_eq!(dropped(&e, r).is_some(), *drops, "{r:?}");
    }
    // Depth limit.
    let mut deep = String::from(r#"{"header": "a", "present": true}"#);
    for _ in 0..40 {
        deep = format!(r#"{{"not": {deep}}}"#);
    }
    let err = Engine::from_json(format!(r#"{{"rules": [{deep}]}}"#).as_bytes()).unwrap_err();
    assert!(err.message().contains("nested deeper than 32"), "{err}");
}

#[test]
fn client_ip_cidrs_and_xff_trusted_hops() {
    let cidrs = r#"{"name": "blocked", "field": "client_ip", "in": ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]}"#;
    let direct = rules(cidrs);
    let cases: &[(&str, bool)] = &[
        ("192.0.2.77:5555", true),
        ("192.0.2.77", true),
        ("192.0.3.1:1", false),
        ("198.51.100.7:80", true),
        ("198.51.100.8:80", false),
        ("[2001:db8::1]:443", true),
        ("[2001:db9::1]:443", false),
        ("[::ffff:192.0.2.1]:80", true),
        ("not-an-ip", false),
    ];
    for (peer, drops) in cases {
        let req = HeaderList::new()
            .peer(peer)
            .with("x-forwarded-for", "192.0.2.1");
        assert_eq!(dropped(&direct, &req).is_some(), *drops, "peer {peer}");
    }
    // Two trusted proxies: the client is the 2nd entry from the right.
    let e = engine(&format!(
        r#"{{"host": {{"drop_missing": false}}, "client_ip": {{"xff_trusted_hops": 2}}, "rules": [{cidrs}]}}"#
    ));
    let req = |xff: Option<&str>| {
        let r = HeaderList::new().peer("10.0.0.1:1");
        match xff {
            Some(x) => r.with("x-forwarded-for", x),
            None => r,
        }
    };
    let cases: &[(Option<&str>, bool)] = &[
        (Some("192.0.2.5, 10.0.0.2"), true),
        (Some("203.0.113.1, 192.0.2.5, 10.0.0.2"), true),
        // Spoofed left-most entries change nothing.
        (Some("1.1.1.1, 8.8.8.8, 192.0.2.5, 10.0.0.2"), true),
        (Some("192.0.2.5, 203.0.113.9, 10.0.0.2"), false),
        (Some("192.0.2.5,   203.0.113.9 ,10.0.0.2"), false),
        (Some("[2001:db8::5]:1234, 10.0.0.2"), true),
        // Fewer entries than trusted hops: the direct peer decides.
        (Some("192.0.2.5"), false),
        (None, false),
    ];
    for (xff, drops) in cases {
        assert_eq!(dropped(&e, &req(*xff)).is_some(), *drops, "xff {xff:?}");
    }
    // Two XFF lines are one list.
    let two_lines = HeaderList::new()
        .peer("10.0.0.1:1")
        .with("x-forwarded-for", "192.0.2.5")
        .with("x-forwarded-for", "10.0.0.2");
    assert_eq!(dropped(&e, &two_lines), Some("blocked"));
}

#[test]
fn allow_rules_exempt_and_log_rules_report() {
    let e = engine(
        r#"{"host": {"allow": ["example.com"]},
            "rules": [
              {"name": "healthz", "action": "allow", "all": [{"field": "path", "exact": "/healthz"}, {"field": "client_ip", "in": ["10.0.0.0/8"]}]},
              {"name": "watch-curl", "action": "log", "header": "user-agent", "prefix": "curl/"},
              {"name": "sqlmap", "header": "user-agent", "contains": "sqlmap"},
              {"name": "watch-late", "action": "log", "header": "user-agent", "contains": "map"},
              {"name": "crawler", "action": "allow", "header": "user-agent", "contains": "Googlebot"}
            ]}"#,
    );
    let req = |host: &str, path: &str, ua: &str, peer: &str| {
        HeaderList::new()
            .with(":authority", host)
            .with(":path", path)
            .with("user-agent", ua)
            .peer(peer)
    };
    // Allowed: health check from inside, even with an IP-literal host.
    let v = e.decide(
        &mut req("10.1.2.3:8080", "/healthz", "kube-probe", "10.9.9.9:1"),
        &mut NoLimits,
    );
    assert_eq!(v.decision, Decision::Allow { rule: "healthz" });
    // Same check from outside: the host rule drops it.
    let v = e.decide(
        &mut req("10.1.2.3:8080", "/healthz", "kube-probe", "203.0.113.1:1"),
        &mut NoLimits,
    );
    assert_eq!(
        v.decision,
        Decision::Drop {
            rule: builtin::HOST_IP_LITERAL
        }
    );
    // An allow rule later in the list still wins over an earlier drop.
    let v = e.decide(
        &mut req("example.com", "/", "Googlebot sqlmap", "203.0.113.1:1"),
        &mut NoLimits,
    );
    assert_eq!(v.decision, Decision::Allow { rule: "crawler" });
    // Log rule before the drop is reported; the one after is not.
    let v = e.decide(
        &mut req("example.com", "/", "curl/8 sqlmap", "203.0.113.1:1"),
        &mut NoLimits,
    );
    assert_eq!(v.decision, Decision::Drop { rule: "sqlmap" });
    assert_eq!(v.logged, ["watch-curl"]);
    // Log rules only: the request passes and both are reported, in order.
    let v = e.decide(
        &mut req("example.com", "/", "curl/8 nmap", "203.0.113.1:1"),
        &mut NoLimits,
    );
    assert_eq!(v.decision, Decision::Pass);
    assert_eq!(v.logged, ["watch-curl", "watch-late"]);
}

#[test]
fn dry_run_mode_reports_the_drop_and_passes() {
    let e = engine(
        r#"{"mode": "dry-run", "rules": [
             {"name": "log-first", "action": "log", "header": "x", "present": true},
             {"name": "sqlmap", "header": "user-agent", "contains": "sqlmap"}]}"#,
    );
    assert_eq!(e.mode(), Mode::DryRun);
    let v = e.decide(
        &mut HeaderList::new()
            .with(":authority", "a.com")
            .with("user-agent", "sqlmap")
            .with("x", "1"),
        &mut NoLimits,
    );
    assert_eq!(v.decision, Decision::DryRun { rule: "sqlmap" });
    assert_eq!(v.logged, ["log-first"]);
    assert_eq!(v.drop_rule(), None);
    let v = e.decide(&mut HeaderList::new(), &mut NoLimits);
    assert_eq!(
        v.decision,
        Decision::DryRun {
            rule: builtin::HOST_MISSING
        }
    );
}

#[test]
fn host_field_and_host_kind_in_rules() {
    let e = rules(
        r#"{"name": "internal", "field": "host", "in": ["*.internal.example"]},
           {"name": "ips", "field": "host_kind", "exact": "ip"},
           {"name": "staging", "field": "host", "suffix": ".staging.example"}"#,
    );
    let host = |h: &str| HeaderList::new().with(":authority", h);
    assert_eq!(
        dropped(&e, &host("API.Internal.Example.:443")),
        Some("internal")
    );
    assert_eq!(dropped(&e, &host("[::1]")), Some("ips"));
    assert_eq!(dropped(&e, &host("www.staging.example")), Some("staging"));
    assert_eq!(dropped(&e, &host("www.example")), None);
    assert_eq!(dropped(&e, &HeaderList::new()), None);
}

#[test]
fn every_preset_compiles_and_is_documented() {
    let catalog = presets::catalog();
    let names: Vec<&str> = catalog.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "scanners",
            "exploit-paths",
            "bad-bots",
            "ai-crawlers",
            "verified-crawlers",
            "verified-crawlers-real"
        ]
    );
    // The verified-crawlers presets read lists: tested in lists.rs.
    for p in catalog.iter().filter(|p| !p.name.starts_with("verified-")) {
        assert!(p.entries >= 25, "{} has {} entries", p.name, p.entries);
        assert!(!p.may_catch.is_empty() && !p.description.is_empty());
        let e = engine(&format!(
            r#"{{"rules": [{{"name": "p", "preset": "{}"}}]}}"#,
            p.name
        ));
        assert_eq!(e.rules().count(), 4, "host rules + the preset");
    }
}

#[test]
fn presets_hit_probes_and_spare_browsers_and_search_engines() {
    let e = rules(
        r#"{"name": "scanners", "preset": "scanners"},
           {"name": "exploit-paths", "preset": "exploit-paths"},
           {"name": "bad-bots", "preset": "bad-bots"},
           {"name": "ai-crawlers", "preset": "ai-crawlers"}"#,
    );
    let ua = |ua: &str| get("/").with("user-agent", ua);
    let hits: Vec<(HeaderList, &str)> = vec![
        (ua("sqlmap/1.7.2#stable (https://sqlmap.org)"), "scanners"),
        (ua("Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)"), "scanners"),
        (ua("Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"), "scanners"),
        (ua("Mozilla/5.0 zgrab/0.x"), "scanners"),
        (ua("Nuclei - Open-source project (github.com/projectdiscovery/nuclei)"), "scanners"),
        (ua("WPScan v3.8.22 (https://wpscan.com/wordpress-security-scanner)"), "scanners"),
        (ua("Fuzz Faster U Fool v2.1.0"), "scanners"),
        (ua("${jndi:ldap://x/a}"), "scanners"),
        (ua("() { :; }; /bin/bash -c id"), "scanners"),
        (ua("Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)"), "bad-bots"),
        (ua("Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)"), "bad-bots"),
        (ua("Scrapy/2.11.0 (+https://scrapy.org)"), "bad-bots"),
        (get("/.env"), "exploit-paths"),
        (get("/api/.env"), "exploit-paths"),
        (get("/%2e%65nv"), "exploit-paths"),
        (get("/.git/config"), "exploit-paths"),
        (get("/static/../.git/HEAD"), "exploit-paths"),
        (get("/wp-login.php"), "exploit-paths"),
        (get("/phpMyAdmin/index.php"), "exploit-paths"),
        (get("/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh"), "exploit-paths"),
        (get("/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php"), "exploit-paths"),
        (get("/actuator/env"), "exploit-paths"),
        (get("/vpn/../vpns/cfg/smb.conf"), "exploit-paths"),
    ];
    for (req, want) in &hits {
        assert_eq!(dropped(&e, req), Some(*want), "{req:?}");
    }
    let spared = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "curl/8.5.0",
        "kube-probe/1.31",
    ];
    for agent in spared {
        assert_eq!(dropped(&e, &ua(agent)), None, "{agent}");
    }
    for path in [
        "/",
        "/index.html",
        "/environment",
        "/api/v1/users",
        "/blog/git-tips",
        "/static/app.js",
        "/.well-known/security.txt",
    ] {
        assert_eq!(dropped(&e, &get(path)), None, "{path}");
    }
}

/// Rule `i` of a generated set: a literal on the user agent. Patterns are
/// unique; a request contains the patterns of the rules it should hit.
fn pattern(i: usize) -> String {
    format!("tok{i:05}x")
}

#[test]
fn ten_thousand_rules_keep_first_match_order() {
    let n = 10_000;
    let list: Vec<String> = (0..n)
        .map(|i| {
            let op = ["contains", "prefix", "suffix", "exact"][i % 4];
            format!(
                r#"{{"name": "r{i}", "header": "user-agent", "{op}": "{}"}}"#,
                pattern(i)
            )
        })
        .collect();
    let e = rules(&list.join(","));
    let ua = |v: &str| HeaderList::new().with("user-agent", v);
    // contains rules (i % 4 == 0) anywhere; prefix/suffix/exact must sit right.
    assert_eq!(
        dropped(
            &e,
            &ua(&format!("a {} b {} c", pattern(9000), pattern(5000)))
        ),
        Some("r5000")
    );
    assert_eq!(
        dropped(&e, &ua(&format!("{} {}", pattern(5001), pattern(9000)))),
        Some("r5001")
    );
    assert_eq!(dropped(&e, &ua(&format!("x {}", pattern(5001)))), None);
    assert_eq!(
        dropped(&e, &ua(&format!("zz{}", pattern(4002)))),
        Some("r4002")
    );
    assert_eq!(dropped(&e, &ua(&pattern(3))), Some("r3"));
    // Exact ignores optional whitespace around the value (as Envoy trims it), not other bytes.
    assert_eq!(dropped(&e, &ua(&format!("{} ", pattern(3)))), Some("r3"));
    assert_eq!(dropped(&e, &ua(&format!("{}.", pattern(3)))), None);
    assert_eq!(dropped(&e, &ua("Mozilla/5.0")), None);
}

#[test]
fn flat_and_complex_rules_interleave_in_order() {
    let e = rules(
        r#"{"name": "a", "header": "ua", "contains": "zzz"},
           {"name": "b", "all": [{"header": "ua", "contains": "yy"}, {"header": "x", "present": true}]},
           {"name": "c", "header": "ua", "contains": "yy"},
           {"name": "d", "any": [{"header": "ua", "contains": "q"}, {"field": "path", "prefix": "/q"}]}"#,
    );
    let req = |ua: &str, x: bool| {
        let r = HeaderList::new().with("ua", ua).with(":path", "/q");
        if x {
            r.with("x", "1")
        } else {
            r
        }
    };
    assert_eq!(dropped(&e, &req("yy zzz", true)), Some("a"));
    assert_eq!(dropped(&e, &req("yy", true)), Some("b"));
    assert_eq!(dropped(&e, &req("yy", false)), Some("c"));
    assert_eq!(dropped(&e, &req("nothing", false)), Some("d"));
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A reference evaluation for flat literal rules on one header: the first
    /// rule (in order) whose pattern sits right in the value or an element.
    fn naive(rules: &[(u8, String)], value: &str) -> Option<usize> {
        let elements: Vec<&str> = std::iter::once(value)
            .chain(
                value
                    .split(',')
                    .map(|e| e.trim_matches(|c| c == ' ' || c == '\t')),
            )
            .collect();
        rules.iter().position(|(op, p)| match op % 4 {
            0 => value.contains(p.as_str()),
            1 => elements.iter().any(|e| e.starts_with(p.as_str())),
            2 => elements.iter().any(|e| e.ends_with(p.as_str())),
            _ => elements.iter().any(|e| e == p),
        })
    }

    proptest! {
        #[test]
        fn batched_literals_agree_with_naive_order(
            rules in prop::collection::vec((any::<u8>(), "[ab,]{1,3}"), 1..30),
            value in "[ab, ]{0,12}",
        ) {
            let list: Vec<String> = rules.iter().enumerate().map(|(i, (op, p))| {
                let op = ["contains", "prefix", "suffix", "exact"][usize::from(*op % 4)];
                format!(r#"{{"name": "r{i}", "header": "h", "{op}": {}}}"#, serde_json::to_string(p).unwrap())
            }).collect();
            let e = super::rules(&list.join(","));
            let got = dropped(&e, &HeaderList::new().with("h", &value)).map(|n| n.trim_start_matches('r').parse::<usize>().unwrap());
            // Patterns with commas only match the whole value; elements never contain commas.
            let want = naive(&rules, &value);
            if rules.iter().all(|(_, p)| !p.contains(',')) {
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn host_spellings_decide_like_the_normal_form(
            labels in prop::collection::vec("[a-z][a-z0-9-]{0,5}", 1..4),
            upper in prop::collection::vec(any::<bool>(), 0..20),
            port in prop::option::of(1u16..),
            dot in any::<bool>(),
        ) {
            let e = engine(r#"{"host": {"allow": ["*.example.com", "example.com"]}}"#);
            let name = format!("{}.example.com", labels.join("."));
            let mut spelled: String = name.chars().enumerate()
                .map(|(i, c)| if upper.get(i).copied().unwrap_or(false) { c.to_ascii_uppercase() } else { c })
                .collect();
            if dot { spelled.push('.'); }
            if let Some(p) = port { spelled.push_str(&format!(":{p}")); }
            let normal = dropped(&e, &HeaderList::new().with(":authority", &name));
            let raw = dropped(&e, &HeaderList::new().with(":authority", &spelled));
            prop_assert_eq!(normal, None);
            prop_assert_eq!(raw, normal);
        }

        #[test]
        fn path_spellings_decide_like_the_normal_form(
            segments in prop::collection::vec("[a-z.]{1,6}", 1..5),
            encode in prop::collection::vec(any::<bool>(), 0..40),
            noise in prop::collection::vec(0u8..4, 0..5),
        ) {
            let e = rules(r#"{"name": "p", "field": "path", "prefix": "/admin/"}"#);
            let canonical = format!("/admin/{}", segments.join("/"));
            // Percent-encode some characters, add `//`, `/./` and `x/../` detours.
            let mut raw = String::from("/");
            for (i, c) in "admin".chars().enumerate() {
                if encode.get(i).copied().unwrap_or(false) { raw.push_str(&format!("%{:02X}", c as u32)); } else { raw.push(c); }
            }
            for (i, seg) in segments.iter().enumerate() {
                match noise.get(i).copied().unwrap_or(0) {
                    1 => raw.push_str("//"),
                    2 => raw.push_str("/./"),
                    3 => raw.push_str("/x/../"),
                    _ => raw.push('/'),
                }
                raw.push_str(seg);
            }
            // No spelling escapes the rule. (A spelling may be caught where
            // the normal form is not: `/admin/..` is `/` decoded, but Envoy
            // routes it under `/admin/` as written.)
            let want = dropped(&e, &HeaderList::new().with(":path", normalize_path(canonical.as_bytes())));
            let got = dropped(&e, &HeaderList::new().with(":path", &raw));
            if want.is_some() {
                prop_assert_eq!(got, want, "raw {} canonical {}", raw, canonical);
            }
            if raw.starts_with("/admin/") {
                prop_assert_eq!(got, Some("p"), "raw {}: Envoy routes it under /admin/", raw);
            }
        }
    }
}

/// A bucket store and a clock: the engine's view of what the proxy adapter
/// does with shared data.
struct Limited<'a> {
    store: &'a mut std::collections::HashMap<(String, u32), crate::limiter::BucketState>,
    now_ns: u64,
    asked: &'a std::cell::RefCell<Vec<Vec<u8>>>,
}

impl RateLimiter for Limited<'_> {
    fn over_limit(&mut self, limit: &RateLimit, key: &[u8]) -> bool {
        use crate::limiter::{key_hash, BucketState};
        self.asked.borrow_mut().push(key.to_vec());
        let hash = key_hash(key);
        let slot = u32::try_from(hash.checked_rem(u64::from(limit.slots)).unwrap()).unwrap();
        let entry = (limit.rule.clone(), slot);
        let (state, granted) = BucketState::take(
            self.store.get(&entry).copied(),
            &limit.rate,
            hash,
            self.now_ns,
        );
        self.store.insert(entry, state);
        !granted
    }
}

#[test]
fn rate_limited_rules_drop_only_over_the_limit() {
    let e = engine(
        r#"{"rules": [
            {"name": "early", "header": "x-early", "present": true},
            {"name": "login", "field": "path", "prefix": "/login",
             "rate_limit": {"key": ["client_ip", "header:x-tenant"], "rate": 2, "per": "second", "burst": 3}},
            {"name": "everyone", "action": "log", "rate_limit": {"key": ["host"], "rate": 100, "per": "hour", "burst": 5}}
        ]}"#,
    );
    let mut store = std::collections::HashMap::new();
    let asked = std::cell::RefCell::new(Vec::new());
    let mut send = |path: &str, peer: &str, extra: Option<(&str, &str)>, now_ns: u64| {
        let mut req = HeaderList::new()
            .with(":authority", "example.com")
            .with(":path", path)
            .peer(peer);
        if let Some((n, v)) = extra {
            req = req.with(n, v);
        }
        let v = e.decide(
            &mut req,
            &mut Limited {
                store: &mut store,
                now_ns,
                asked: &asked,
            },
        );
        (v.decision, v.logged)
    };
    let s = 1_000_000_000u64;
    // Burst of 3 for client A, then drops.
    for i in 0..3 {
        assert_eq!(
            send("/login", "192.0.2.1:1", None, 0).0,
            Decision::Pass,
            "request {i}"
        );
    }
    assert_eq!(
        send("/login", "192.0.2.1:1", None, 0).0,
        Decision::Drop { rule: "login" }
    );
    // Another client (or tenant) has its own bucket.
    assert_eq!(send("/login", "192.0.2.2:1", None, 0).0, Decision::Pass);
    assert_eq!(
        send("/login", "192.0.2.1:1", Some(("x-tenant", "b")), 0).0,
        Decision::Pass
    );
    // 2/s: after 0.5 s one more token.
    assert_eq!(send("/login", "192.0.2.1:1", None, s / 2).0, Decision::Pass);
    assert_eq!(
        send("/login", "192.0.2.1:1", None, s / 2).0,
        Decision::Drop { rule: "login" }
    );
    // Other paths are not limited by this rule.
    assert_eq!(send("/", "192.0.2.1:1", None, s / 2).0, Decision::Pass);
    // An earlier rule decides first and takes no token.
    let before = asked.borrow().len();
    assert_eq!(
        send("/login", "192.0.2.9:1", Some(("x-early", "1")), s).0,
        Decision::Drop { rule: "early" }
    );
    assert_eq!(
        asked.borrow().len(),
        before,
        "the limiter is not asked when an earlier rule dropped"
    );
    // The log rule limits every request by host at 100/hour with a burst of
    // 5: seven requests reached it so far (not the ones dropped before it);
    // now it reports.
    let (decision, logged) = send("/", "192.0.2.3:1", None, s);
    assert_eq!(decision, Decision::Pass);
    assert_eq!(logged, ["everyone"]);
    assert!(
        asked
            .borrow()
            .iter()
            .any(|k| k.as_slice() == b"192.0.2.1\x1f"),
        "key parts joined with 0x1f: {asked:?}"
    );
}

#[test]
fn rate_limit_dry_run_and_config_errors() {
    let e = engine(
        r#"{"mode": "dry-run", "rules": [{"name": "rl", "rate_limit": {"key": ["client_ip"], "rate": 1, "burst": 1}}]}"#,
    );
    let mut store = std::collections::HashMap::new();
    let asked = std::cell::RefCell::new(Vec::new());
    let mut send = || {
        let req = HeaderList::new()
            .with(":authority", "a.com")
            .peer("10.0.0.1:1");
        let mut req = req;
        e.decide(
            &mut req,
            &mut Limited {
                store: &mut store,
                now_ns: 0,
                asked: &asked,
            },
        )
        .decision
    };
    assert_eq!(send(), Decision::Pass);
    assert_eq!(send(), Decision::DryRun { rule: "rl" });
    let bad: &[(&str, &str, &str)] = &[
        (
            r#"{"rules": [{"rate_limit": {"key": [], "rate": 1}}]}"#,
            "rules[0].rate_limit.key",
            "at least one key part",
        ),
        (
            r#"{"rules": [{"rate_limit": {"key": ["ip"], "rate": 1}}]}"#,
            "rules[0].rate_limit.key[0]",
            "unknown key part `ip`",
        ),
        (
            r#"{"rules": [{"rate_limit": {"key": ["header:a b"], "rate": 1}}]}"#,
            "rules[0].rate_limit.key[0]",
            "not a valid header name",
        ),
        (
            r#"{"rules": [{"rate_limit": {"key": ["host"], "rate": 0}}]}"#,
            "rules[0].rate_limit.rate",
            "at least 1",
        ),
        (
            r#"{"rules": [{"rate_limit": {"key": ["host"], "rate": 1, "burst": 0}}]}"#,
            "rules[0].rate_limit.burst",
            "at least 1",
        ),
        (
            r#"{"rules": [{"rate_limit": {"key": ["host"], "rate": 1, "slots": 0}}]}"#,
            "rules[0].rate_limit.slots",
            "must be 1 to",
        ),
        (
            r#"{"rules": [{"rate_limit": {"key": ["host"], "rate": 1, "per": "day"}}]}"#,
            "rules[0].rate_limit.per",
            "unknown variant `day`",
        ),
        (
            r#"{"rules": [{"rate_limit": {"key": ["host"], "rate": 1, "window": 5}}]}"#,
            "rules[0].rate_limit.window",
            "unknown field",
        ),
        (
            r#"{"rules": [{"rate_limit": [1]}]}"#,
            "rules[0].rate_limit",
            "expected a JSON object",
        ),
        (
            r#"{"rules": [{"action": "allow", "header": "a", "present": true, "rate_limit": {"key": ["host"], "rate": 1}}]}"#,
            "rules[0].rate_limit",
            "cannot be rate limited",
        ),
        (
            r#"{"rules": [{"all": [{"header": "a", "present": true, "rate_limit": {"key": ["host"], "rate": 1}}]}]}"#,
            "rules[0].all[0].rate_limit",
            "only a rule",
        ),
    ];
    for (config, path, phrase) in bad {
        let err = Engine::from_json(config.as_bytes()).unwrap_err();
        assert_eq!(err.path(), *path, "{config}: {err}");
        assert!(err.message().contains(phrase), "{config}: {err}");
    }
}

// ------------------------------------------------------------------ readings
// One request, one view (issue 14): a drop or log condition matches when it
// matches on any reading a router or backend may give the request; an allow
// condition only when it matches on every reading; `not` swaps the two.

fn readings(raw: &str) -> Vec<String> {
    let views = super::facts::path_views(raw.as_bytes());
    views
        .all(raw.as_bytes())
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn path_readings_are_distinct_and_cost_nothing_when_equal() {
    let cases: &[(&str, &[&str])] = &[
        // One reading: no extra view is even computed.
        ("/index.html", &["/index.html"]),
        ("/a/b/", &["/a/b/"]),
        // (main: decoded; raw; RFC 3986 / Envoy normalize_path; `\` literal;
        // `;` stripped; decoded twice), duplicates left out.
        ("/admin/..%2fx", &["/x", "/admin/..%2fx"]),
        (
            "/admin%2f%2e%2e%2fx",
            &["/x", "/admin%2f%2e%2e%2fx", "/admin%2f..%2fx"],
        ),
        ("/admin/.%2e/x", &["/x", "/admin/.%2e/x"]),
        ("/admin\\..\\x", &["/x", "/admin\\..\\x"]),
        ("/a\\b/../c", &["/a/c", "/a\\b/../c", "/c"]),
        (
            "/admin%5c..%5cx",
            &["/x", "/admin%5c..%5cx", "/admin\\..\\x"],
        ),
        ("/foo/..;/admin", &["/foo/..;/admin", "/admin"]),
        ("/;/admin", &["/;/admin", "/admin"]),
        ("/.env;", &["/.env;", "/.env"]),
        ("/a/%252e%252e/b", &["/a/%2e%2e/b", "/a/%252e%252e/b", "/b"]),
        ("//admin", &["/admin", "//admin"]),
        ("/%61dmin", &["/admin", "/%61dmin"]),
    ];
    for (raw, want) in cases {
        assert_eq!(readings(raw), *want, "{raw}");
    }
    // Equal readings allocate nothing beyond the main one.
    for raw in ["/index.html", "/a/b/c.css", "/", "/search"] {
        let views = super::facts::path_views(raw.as_bytes());
        assert_eq!(views.extra(), 0, "{raw}");
        assert_eq!(views.all(raw.as_bytes()).len(), 1, "{raw}");
    }
}

/// The README configuration plus a `/admin` prefix rule and an exact
/// `/healthz` allow rule: the issue's bypasses, each with its verdict.
fn readme_with_admin() -> Engine {
    engine(
        r#"{"host": {"allow": ["example.com", "*.example.com"]},
            "rules": [
              {"name": "healthz", "action": "allow", "field": "path", "exact": "/healthz"},
              {"name": "scanners", "preset": "scanners"},
              {"name": "exploit-paths", "preset": "exploit-paths"},
              {"name": "admin", "field": "path", "prefix": "/admin"}
            ]}"#,
    )
}

#[test]
fn no_spelling_walks_around_a_path_rule() {
    let e = readme_with_admin();
    for path in [
        "/admin",
        "/admin/..%2fx",
        "/admin%2f%2e%2e%2fx",
        "/admin/x%2f..%2f..",
        "/admin%5c..%5cx",
        "/admin\\..\\x",
        "/admin/.%2e/x",
        "/admin/%2e%2e/x",
        "/admin/../x",
        "/foo/..;/admin",
        "/;/admin",
        "/x/%252e%252e/admin",
        "//admin",
        "/%61dmin",
        "/x/..%2fadmin",
    ] {
        assert_eq!(dropped(&e, &get(path)), Some("admin"), "{path}");
    }
    for path in ["/", "/x", "/administration/../x"] {
        // `/administration/../x`: every reading is `/administration/..` or
        // `/x`, which `/admin` does prefix-match on the raw reading.
        let want = path.starts_with("/admin").then_some("admin");
        assert_eq!(dropped(&e, &get(path)), want, "{path}");
    }
}

#[test]
fn an_allow_rule_cannot_be_reached_by_traversal_encoding_or_parameters() {
    let e = readme_with_admin();
    let verdict = |req: &HeaderList| e.decide(&mut req.clone(), &mut NoLimits).decision;
    let sqlmap = |path: &str| get(path).with("user-agent", "sqlmap/1.7");
    // The real health check is exempt, even with a bad Host and UA.
    let probe = get("/healthz")
        .with(":authority", "127.0.0.1")
        .with("user-agent", "sqlmap");
    assert_eq!(verdict(&probe), Decision::Allow { rule: "healthz" });
    // The issue's worst case: Host 127.0.0.1 and sqlmap used to be exempt.
    let worst = HeaderList::new()
        .with(":authority", "127.0.0.1")
        .with(":path", "/admin/..%2fhealthz")
        .with("user-agent", "sqlmap");
    assert_eq!(
        verdict(&worst),
        Decision::Drop {
            rule: "host-ip-literal"
        }
    );
    for path in [
        "/admin/..%2fhealthz",
        "/admin%2f..%2fhealthz",
        "/admin\\..\\healthz",
        "/x/../healthz",
        "/healthz;x",
        "/x/..;/healthz",
        "/%68ealthz",
        "/x/%252e%252e/healthz",
        "//healthz",
    ] {
        let d = verdict(&sqlmap(path));
        assert!(
            matches!(d, Decision::Drop { .. }),
            "{path}: not exempt, so dropped: {d:?}"
        );
    }
    // A flat `any` allow rule is judged per reading too.
    let e = engine(
        r#"{"rules": [
              {"name": "probes", "action": "allow", "any": [
                 {"field": "path", "exact": "/healthz"}, {"field": "path", "exact": "/ready"}]},
              {"name": "all", "header": "user-agent", "present": true}]}"#,
    );
    let ua = |path: &str| get(path).with("user-agent", "x");
    assert_eq!(
        e.decide(&mut ua("/ready"), &mut NoLimits).decision,
        Decision::Allow { rule: "probes" }
    );
    assert_eq!(dropped(&e, &ua("/healthz;/../ready")), Some("all"));
    assert_eq!(dropped(&e, &ua("/healthz/..%2fready")), Some("all"));
}

#[test]
fn not_swaps_any_and_every() {
    // Drop everything not under /public: a detour through /public is no way out.
    let e = rules(r#"{"name": "private", "not": {"field": "path", "prefix": "/public"}}"#);
    assert_eq!(dropped(&e, &get("/public/app.js")), None);
    for path in [
        "/public/..%2fadmin",
        "/public/..;/admin",
        "/public\\..\\admin",
    ] {
        assert_eq!(dropped(&e, &get(path)), Some("private"), "{path}");
    }
    // Allow everything that is not under /admin: no reading may be under it.
    let e = rules(
        r#"{"name": "not-admin", "action": "allow", "not": {"field": "path", "prefix": "/admin"}},
           {"name": "rest", "field": "path", "prefix": "/"}"#,
    );
    let decision = |path: &str| e.decide(&mut get(path), &mut NoLimits).decision;
    assert_eq!(decision("/shop"), Decision::Allow { rule: "not-admin" });
    for path in [
        "/shop/..%2fadmin",
        "/shop/..;/admin",
        "/admin",
        "/x/%2e%2e/admin",
    ] {
        assert_eq!(decision(path), Decision::Drop { rule: "rest" }, "{path}");
    }
    // Nested: all [not, …] inside a drop; any inside an allow's not.
    let e = rules(
        r#"{"name": "post-outside-api", "all": [
              {"field": "method", "exact": "POST"},
              {"not": {"any": [{"field": "path", "prefix": "/api/"}, {"field": "path", "exact": "/login"}]}}]}"#,
    );
    let post = |path: &str| {
        HeaderList::new()
            .with(":method", "POST")
            .with(":path", path)
    };
    assert_eq!(dropped(&e, &post("/api/x")), None);
    assert_eq!(dropped(&e, &post("/login")), None);
    assert_eq!(
        dropped(&e, &post("/api/..%2fadmin")),
        Some("post-outside-api")
    );
    assert_eq!(
        dropped(&e, &post("/login;/../admin")),
        Some("post-outside-api")
    );
    assert_eq!(dropped(&e, &post("/x")), Some("post-outside-api"));
}

#[test]
fn query_and_path_and_query_readings() {
    let e = rules(
        r#"{"name": "sqli", "query": "id", "regex": "union\\s+select", "case_insensitive": true},
           {"name": "debug", "query": "debug", "present": true},
           {"name": "pq", "field": "path_and_query", "contains": "?cmd=rm"}"#,
    );
    for (target, want) in [
        ("/?id=union+select", Some("sqli")),
        ("/?id=union%20select", Some("sqli")),
        ("/?%69d=UNION%09SELECT", Some("sqli")),
        ("/?de%62ug", Some("debug")),
        ("/?debug=0", Some("debug")),
        ("/?%63md=rm", Some("pq")),
        ("/x?cmd=%72m", Some("pq")),
        ("/?id=1", None),
        ("/?debugx=1", None),
    ] {
        assert_eq!(dropped(&e, &get(target)), want, "{target}");
    }
    // An allow condition on a query parameter holds only when every reading
    // and every occurrence agree (a backend may read the first or the last).
    let e = rules(
        r#"{"name": "token", "action": "allow", "query": "token", "exact": "s3cret"},
           {"name": "rest", "field": "path", "prefix": "/"}"#,
    );
    let decision = |target: &str| e.decide(&mut get(target), &mut NoLimits).decision;
    assert_eq!(
        decision("/?token=s3cret"),
        Decision::Allow { rule: "token" }
    );
    assert_eq!(
        decision("/?a=1&token=s3cret"),
        Decision::Allow { rule: "token" }
    );
    for target in [
        "/?token=s3cret&token=x",
        "/?token=s3%63ret",
        "/?tok%65n=s3cret",
        "/",
    ] {
        assert_eq!(
            decision(target),
            Decision::Drop { rule: "rest" },
            "{target}"
        );
    }
}

#[test]
fn methods_are_read_as_sent_and_upper_cased() {
    let e = rules(
        r#"{"name": "get-ok", "action": "allow", "field": "method", "exact": "GET"},
           {"name": "trace", "field": "method", "exact": "TRACE"},
           {"name": "rest", "field": "path", "prefix": "/"}"#,
    );
    let decision = |m: &str| {
        let mut r = HeaderList::new().with(":method", m).with(":path", "/");
        e.decide(&mut r, &mut NoLimits).decision
    };
    assert_eq!(decision("GET"), Decision::Allow { rule: "get-ok" });
    // `get` is GET to a server that upper-cases, but not to one that does
    // not: not exempt.
    assert_eq!(decision("get"), Decision::Drop { rule: "rest" });
    assert_eq!(decision("trace"), Decision::Drop { rule: "trace" });
    assert_eq!(decision("TrAcE"), Decision::Drop { rule: "trace" });
    assert_eq!(decision("TRACE"), Decision::Drop { rule: "trace" });
}

#[test]
fn an_unparsable_trusted_forwarded_for_entry_fails_closed() {
    let e = engine(
        r#"{"host": {"drop_missing": false}, "client_ip": {"xff_trusted_hops": 1},
            "rules": [
              {"name": "office", "action": "allow", "field": "client_ip", "in": ["10.0.0.0/8"]},
              {"name": "blocked", "field": "client_ip", "in": ["192.0.2.0/24"]},
              {"name": "only-known", "not": {"field": "client_ip", "in": ["0.0.0.0/0", "::/0"]}}
            ]}"#,
    );
    let req = |xff: &str| {
        HeaderList::new()
            .peer("203.0.113.1:1")
            .with("x-forwarded-for", xff)
    };
    let decision = |xff: &str| e.decide(&mut req(xff), &mut NoLimits).decision;
    assert_eq!(decision("10.1.2.3"), Decision::Allow { rule: "office" });
    assert_eq!(decision("192.0.2.9"), Decision::Drop { rule: "blocked" });
    assert_eq!(decision("198.51.100.1"), Decision::Pass);
    // Unknown: in every network for a drop rule, in none for an allow rule.
    for xff in ["unknown", "garbage", "10.1.2.3.4", "", "1.2.3.4, _hidden"] {
        assert_eq!(
            decision(xff),
            Decision::Drop { rule: "blocked" },
            "xff {xff:?}"
        );
    }
    // And `not` over it: "not in any network" still drops an unknown client.
    let e = engine(
        r#"{"host": {"drop_missing": false}, "client_ip": {"xff_trusted_hops": 1},
            "rules": [{"name": "outsiders", "not": {"field": "client_ip", "in": ["10.0.0.0/8"]}}]}"#,
    );
    assert_eq!(dropped(&e, &req("10.0.0.1")), None);
    assert_eq!(dropped(&e, &req("unknown")), Some("outsiders"));
    // No XFF at all: the direct peer, as before.
    let direct = HeaderList::new().peer("192.0.2.1:1");
    assert_eq!(
        dropped(
            &engine(
                r#"{"host": {"drop_missing": false}, "client_ip": {"xff_trusted_hops": 1},
            "rules": [{"name": "blocked", "field": "client_ip", "in": ["192.0.2.0/24"]}]}"#,
            ),
            &direct
        ),
        Some("blocked")
    );
}

#[test]
fn segment_boundaries() {
    let e = rules(
        r#"{"name": "actuator", "field": "path", "prefix": "/actuator", "boundary": "segment", "case_insensitive": true},
           {"name": "config", "field": "path", "suffix": "config", "boundary": "segment"},
           {"name": "login", "field": "path", "contains": "/wp-login.php", "boundary": "segment"},
           {"name": "api", "field": "path_and_query", "prefix": "/api", "boundary": "segment"},
           {"name": "git", "field": "path", "prefix": "/.git/", "boundary": "segment"}"#,
    );
    let cases: &[(&str, Option<&str>)] = &[
        ("/actuator", Some("actuator")),
        ("/actuator/", Some("actuator")),
        ("/actuator/env", Some("actuator")),
        ("/ACTUATOR;x", Some("actuator")),
        ("/actuators/linear-12v", None),
        ("/actuatorx", None),
        ("/news/actuator", None),
        ("/x/config", Some("config")),
        ("/config", Some("config")),
        ("/x/myconfig", None),
        ("/x/config/y", None),
        ("/wp-login.php", Some("login")),
        ("/blog/wp-login.php/x", Some("login")),
        ("/wp-login.php;jsessionid=1", Some("login")),
        ("/wp-login.php.bak", None),
        ("/wp-login-help", None),
        ("/xwp-login.php", None),
        ("/api", Some("api")),
        ("/api?x=1", Some("api")),
        ("/api/v1", Some("api")),
        ("/apis", None),
        ("/.git/HEAD", Some("git")),
    ];
    for (path, want) in cases {
        assert_eq!(dropped(&e, &get(path)), *want, "{path}");
    }
    for (config, path, phrase) in [
        (
            r#"{"header": "x", "prefix": "a", "boundary": "segment"}"#,
            "rules[0].boundary",
            "applies to the `path` and `path_and_query` fields",
        ),
        (
            r#"{"field": "path", "exact": "/a", "boundary": "segment"}"#,
            "rules[0].boundary",
            "goes with `prefix`, `suffix` or `contains`",
        ),
        (
            r#"{"field": "path", "prefix": "/a", "boundary": "word"}"#,
            "rules[0].boundary",
            "unknown variant `word`",
        ),
        (
            r#"{"all": [{"field": "path", "prefix": "/a"}], "boundary": "segment"}"#,
            "rules[0]",
            "takes no operator",
        ),
    ] {
        let err = Engine::from_json(format!(r#"{{"rules": [{config}]}}"#).as_bytes()).unwrap_err();
        assert_eq!(err.path(), path, "{config}: {err}");
        assert!(err.message().contains(phrase), "{config}: {err}");
    }
}

/// Legitimate paths that look like probe paths: no preset may drop them.
const LOOK_ALIKES: &[&str] = &[
    "/actuators/linear-12v",
    "/actuators",
    "/actuator-parts/catalog",
    "/products/actuator",
    "/bin/shop",
    "/bin/shell-scripting-guide",
    "/bin/s",
    "/server-status-page",
    "/server-statuses",
    "/manager/html5-intro",
    "/manager/htmlx",
    "/manager/htm",
    "/solr/administration",
    "/solr/admin-guide",
    "/administration-guide",
    "/wp-login-help",
    "/docs/wp-login.php.html",
    "/wp-admin-tips",
    "/wp-administrator-course",
    "/wp-includes-explained",
    "/wp-content/plugins-list",
    "/phpmyadmin-tutorial",
    "/phpmyadmin-vs-adminer",
    "/pma-guide",
    "/myadmin-panel",
    "/mysqladmin-docs",
    "/.environment",
    "/.envrc-docs",
    "/.env-example",
    "/api/.environment",
    "/git/config-guide",
    "/blog/git-config",
    "/.github/workflows/ci.yml",
    "/.gitignore",
    "/.gitattributes",
    "/.gitlab-ci.yml",
    "/jolokia-docs",
    "/telescope/requests-log",
    "/nacos-intro",
    "/cgi-binary",
    "/vpns-compared",
    "/dana-navigation",
    "/boaformat",
    "/hnap1-docs",
    "/setup.cgi.html",
    "/owa/auth/x.json",
    "/remote/fgt_language",
    "/api/jsonws/invoker",
    "/_ignition/execute-solutions",
    "/mifs-guide",
    "/xmlrpc.php.txt",
    "/xmlrpc-php-explained",
    "/eval-stdin.phps",
    "/phpinfo.php.html",
    "/keys/id_rsa.pub",
    "/.htaccess-generator",
    "/config.php.bak.txt",
    "/wp-config.php-sample",
    "/web-information",
    "/etc/passwords-guide",
    "/vendor/phpunit-docs",
    "/.ds_store_app",
    "/.svn-guide",
    "/.aws-tips",
    "/.ssh-keys-guide",
    "/.vscode-tips",
    "/.idea-board",
    "/gponforms",
    "/containers/jsonl",
    "/druid/index.html5",
    "/news/server-status",
    "/blog/actuator;review",
];

#[test]
fn presets_match_path_entries_on_segment_boundaries() {
    let e = rules(
        r#"{"name": "scanners", "preset": "scanners"},
           {"name": "exploit-paths", "preset": "exploit-paths"},
           {"name": "bad-bots", "preset": "bad-bots"}"#,
    );
    let browser = |path: &str| {
        get(path).with(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        )
    };
    assert!(LOOK_ALIKES.len() >= 50);
    for path in LOOK_ALIKES {
        assert_eq!(dropped(&e, &browser(path)), None, "look-alike {path}");
    }
    for path in [
        "/actuator",
        "/actuator/",
        "/actuator/env",
        "/actuator;x",
        "/;/actuator/env",
        "/ACTUATOR/health",
        "/bin/sh",
        "/bin/sh/x",
        "/server-status",
        "/server-status?auto",
        "/manager/html",
        "/manager;/html",
        "/manager/html/list",
        "/solr/admin/cores",
        "/wp-login.php",
        "/wp-login.php/x",
        "/blog/wp-login.php",
        "/xmlrpc.php/",
        "/xmlrpc.php;x",
        "/.env",
        "/.env;",
        "/api/.env",
        "/.env/x",
        "/.env.production",
        "/.git",
        "/.git/config",
        "/.git;/config",
        "/.git/HEAD",
        "/wp-admin",
        "/wp-admin/setup-config.php",
        "/phpmyadmin/",
        "/static/..%2f..%2f.env",
        "/x/..;/.env",
        "/%2e%65nv",
        "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh",
        "/eval-stdin.php/x",
        "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
        "/keys/id_rsa",
        "/phpinfo.php/x",
    ] {
        assert_eq!(
            dropped(&e, &browser(path)),
            Some("exploit-paths"),
            "probe {path}"
        );
    }
}
