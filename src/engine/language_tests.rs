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
    engine.decide(&mut req.clone()).drop_rule().map(|r| {
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
        (
            HeaderList::new()
                .with(":method", "trace")
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
    let v = e.decide(&mut req(
        "10.1.2.3:8080",
        "/healthz",
        "kube-probe",
        "10.9.9.9:1",
    ));
    assert_eq!(v.decision, Decision::Allow { rule: "healthz" });
    // Same check from outside: the host rule drops it.
    let v = e.decide(&mut req(
        "10.1.2.3:8080",
        "/healthz",
        "kube-probe",
        "203.0.113.1:1",
    ));
    assert_eq!(
        v.decision,
        Decision::Drop {
            rule: builtin::HOST_IP_LITERAL
        }
    );
    // An allow rule later in the list still wins over an earlier drop.
    let v = e.decide(&mut req(
        "example.com",
        "/",
        "Googlebot sqlmap",
        "203.0.113.1:1",
    ));
    assert_eq!(v.decision, Decision::Allow { rule: "crawler" });
    // Log rule before the drop is reported; the one after is not.
    let v = e.decide(&mut req(
        "example.com",
        "/",
        "curl/8 sqlmap",
        "203.0.113.1:1",
    ));
    assert_eq!(v.decision, Decision::Drop { rule: "sqlmap" });
    assert_eq!(v.logged, ["watch-curl"]);
    // Log rules only: the request passes and both are reported, in order.
    let v = e.decide(&mut req("example.com", "/", "curl/8 nmap", "203.0.113.1:1"));
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
    );
    assert_eq!(v.decision, Decision::DryRun { rule: "sqlmap" });
    assert_eq!(v.logged, ["log-first"]);
    assert_eq!(v.drop_rule(), None);
    let v = e.decide(&mut HeaderList::new());
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
    assert_eq!(names, ["scanners", "exploit-paths", "bad-bots"]);
    for p in &catalog {
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
           {"name": "bad-bots", "preset": "bad-bots"}"#,
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
            let want = dropped(&e, &HeaderList::new().with(":path", normalize_path(canonical.as_bytes())));
            let got = dropped(&e, &HeaderList::new().with(":path", &raw));
            prop_assert_eq!(got, want, "raw {} canonical {}", raw, canonical);
        }
    }
}

/// A request with a bucket store and a clock: the engine's view of what the
/// proxy adapter does with shared data.
struct Limited<'a> {
    req: HeaderList,
    store: &'a mut std::collections::HashMap<(String, u32), crate::limiter::BucketState>,
    now_ns: u64,
    asked: &'a std::cell::RefCell<Vec<Vec<u8>>>,
}

impl RequestSource for Limited<'_> {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.req.header(name)
    }
    fn peer_address(&mut self) -> Option<Vec<u8>> {
        self.req.peer_address()
    }
    fn protocol(&mut self) -> Option<Vec<u8>> {
        RequestSource::protocol(&mut self.req)
    }
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
        let v = e.decide(&mut Limited {
            req,
            store: &mut store,
            now_ns,
            asked: &asked,
        });
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
        e.decide(&mut Limited {
            req,
            store: &mut store,
            now_ns: 0,
            asked: &asked,
        })
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
