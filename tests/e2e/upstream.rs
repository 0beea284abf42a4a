//! What the upstream receives (issue 14, point 5): real Envoy routes
//! `prefix: /admin` to one echo upstream and everything else to another; a
//! drop444 configuration drops the path prefix `/admin`, allows the exact path
//! `/healthz` and drops a scanner User-Agent. For every spelling in
//! [`SPELLINGS`], the request is either dropped (0 bytes, then a close), or
//! answered by Envoy itself without forwarding, or forwarded to the *other*
//! route with a path that no reasonable backend reads as `/admin…`
//! ([`interpretations`]). Run twice: with the shipped HTTP connection manager
//! path settings (`envoy/envoy.yaml`) and with a bare one (no
//! `normalize_path`, `merge_slashes` or escaped-slash action): drop444 must be
//! safe without them too (docs/path-safety.md).

use std::path::Path;
use std::time::Duration;

use crate::envoy::{self, render_config, Envoy};
use crate::serve::EchoServer;
use crate::wire::{connect, exchange, End};

/// How long to wait for Envoy's answer or close.
const PATIENCE: Duration = Duration::from_secs(3);

const PLUGIN: &str = r#"{
  "rules": [
    {"name": "healthz", "action": "allow", "field": "path", "exact": "/healthz"},
    {"name": "admin", "field": "path", "prefix": "/admin"},
    {"name": "scanner-ua", "header": "user-agent", "contains": "sqlmap", "case_insensitive": true}
  ]
}"#;

/// Request-targets, sent as written (`\\` is one backslash, `\t` a tab).
/// Each is tried with a browser User-Agent and `Host: example.com`.
pub const SPELLINGS: &[&str] = &[
    // The wire-confirmed bypasses of the issue.
    "/admin/..%2fx",
    "/admin%2f%2e%2e%2fx",
    "/admin/x%2f..%2f..",
    "/admin%5c..%5cx",
    "/admin\\..\\x",
    "/admin/.%2e/x",
    "/admin/%2e%2e/x",
    "/admin/../x",
    // Plain and encoded traversal into /admin.
    "/x/../admin",
    "/x/y/../../admin",
    "/../admin",
    "/%2e%2e/admin",
    "/x/%2e%2e/admin",
    "/x/%2E%2E/admin",
    "/x/.%2e/admin",
    "/x/%2e./admin",
    "/%2e/admin",
    // Encoded slashes and backslashes.
    "/%2fadmin",
    "/%2Fadmin",
    "/x%2f..%2fadmin",
    "/x%2F..%2Fadmin",
    "/x/..%2fadmin",
    "/admin%2Fx",
    "/%5cadmin",
    "/%5Cadmin",
    "/x%5c..%5cadmin",
    "/x/..%5Cadmin",
    // Double encoding (a backend decodes once).
    "/%2561dmin",
    "/%252fadmin",
    "/x/%252e%252e/admin",
    "/x%252f..%252fadmin",
    "/admin%252f..%252fx",
    // Overlong UTF-8 for `/` and `.` (invalid UTF-8: never a separator).
    "/%c0%afadmin",
    "/x/..%c0%afadmin",
    "/x%c0%af..%c0%afadmin",
    "/%c0%ae%c0%ae/admin",
    "/%e0%80%afadmin",
    // NUL.
    "/admin%00",
    "/admin%00.jpg",
    "/x%00/../admin",
    // Repeated slashes and dot segments.
    "//admin",
    "///admin",
    "//admin//x",
    "/x//../admin",
    "/./admin",
    "/././admin",
    "/x/./../admin",
    "/.//admin",
    // Path parameters (servlet containers strip `;…` per segment).
    "/x/..;/admin",
    "/..;/admin",
    "/x/..;/..;/admin",
    "/;/admin",
    "/.;/admin",
    "/admin;",
    "/admin;jsessionid=1",
    "/admin;/x",
    "/admin;.css",
    // Backslashes, raw and mixed.
    "\\admin",
    "/\\admin",
    "/x\\..\\admin",
    "/x/..\\admin",
    "/x\\../admin",
    "\\\\admin",
    // Case and percent-encoded letters.
    "/ADMIN",
    "/Admin",
    "/%41dmin",
    "/%61dmin",
    "/%61%64%6d%69%6e",
    // Trailing spaces, dots, tabs (Windows trims trailing dots and spaces).
    "/admin%20",
    "/admin%20/x",
    "/admin%09",
    "/admin.",
    "/admin./x",
    "/admin%2e",
    "/admin\t",
    "/ad\tmin",
    // Fragments and queries.
    "/admin#x",
    "/x#/../admin",
    "/x?/../admin",
    "/admin?x=1",
    "/x?a=/admin",
    // Absolute-form targets.
    "http://example.com/admin",
    "HTTP://example.com/admin",
    "http://example.com/x/../admin",
    "http://example.com//admin",
    "http://example.com/%2e%2e/admin",
    "http://evil.test/admin",
    // Detours through the allowed path.
    "/healthz/../admin",
    "/healthz/..%2fadmin",
    "/healthz%2f..%2fadmin",
    "/healthz;/../admin",
    "/healthz/..;/admin",
    "/healthz\\..\\admin",
    "/healthz%00/../admin",
    "/healthz#/../admin",
    // Harmless look-alikes (served is fine; they are here to show it).
    "/x/admin",
    "/healthz",
    "/",
];

/// Paths sent with `User-Agent: sqlmap` and `Host: 127.0.0.1` (both dropped
/// by themselves): each may be exempted by the `/healthz` allow rule only if
/// the upstream got exactly `/healthz` by every reading, on the main route.
const ALLOW_ABUSE: &[&str] = &[
    "/admin/..%2fhealthz",
    "/admin%2f..%2fhealthz",
    "/admin%5c..%5chealthz",
    "/admin/..%5chealthz",
    "/admin\\..\\healthz",
    "/admin/..;/healthz",
    "/admin;/../healthz",
    "/admin/%2e%2e/healthz",
    "/admin/../healthz",
    "//healthz",
    "/healthz;x",
    "/healthz%00",
    "/healthz/",
    "/healthz",
];

/// The HTTP connection manager path settings of the shipped config, and what
/// the bare run sets them to (Envoy's defaults).
const HCM_PATH_SETTINGS: &[(&str, &str)] = &[
    ("normalize_path: true", "normalize_path: false"),
    ("merge_slashes: true", "merge_slashes: false"),
    (
        "path_with_escaped_slashes_action: REJECT_REQUEST",
        "path_with_escaped_slashes_action: KEEP_UNCHANGED",
    ),
];

/// Replaces each `from` (which must occur exactly once) by `to`.
fn substitute(mut text: String, substitutions: &[(&str, String)]) -> String {
    for (from, to) in substitutions {
        assert_eq!(
            text.matches(from).count(),
            1,
            "envoy/envoy.yaml: expected `{from}` exactly once"
        );
        text = text.replacen(from, to, 1);
    }
    text
}

/// `envoy/envoy.yaml` (as the other tests render it) with its one route
/// replaced by `prefix: /admin` → cluster `admin` and `prefix: /` → cluster
/// `main`, and, when `bare`, its path settings set to Envoy's defaults.
fn render(access_log: &Path, admin: &EchoServer, main: &EchoServer, bare: bool) -> String {
    let routes = "- name: admin\n                match: { prefix: \"/admin\" }\n                route: { cluster: admin }\n              - name: main\n                match: { prefix: \"/\" }";
    let mut substitutions = vec![
        ("- match: { prefix: \"/\" }", routes.to_string()),
        (
            "direct_response:\n                  status: 200\n                  body: { inline_string: \"hello from behind drop444\\n\" }",
            "route: { cluster: main }".to_string(),
        ),
    ];
    if bare {
        substitutions.extend(HCM_PATH_SETTINGS.iter().map(|(k, v)| (*k, v.to_string())));
    }
    let mut text = substitute(render_config(PLUGIN, access_log), &substitutions);
    text.push_str("  clusters:\n");
    for (name, server) in [("admin", admin), ("main", main)] {
        text.push_str(&format!(
            "  - name: {name}\n    connect_timeout: 2s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {} }}\n",
            server.addr.port()
        ));
    }
    text
}

/// Percent-decodes once; invalid escapes stay as written.
fn percent_decode(path: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex(path[i + 1]), hex(path[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(path[i]);
        i += 1;
    }
    out
}

fn backslash_as_slash(path: &[u8]) -> Vec<u8> {
    path.iter()
        .map(|&b| if b == b'\\' { b'/' } else { b })
        .collect()
}

/// Removes `;…` from every segment (servlet containers).
fn strip_params(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut skipping = false;
    for &b in path {
        match b {
            b'/' => {
                skipping = false;
                out.push(b);
            }
            b';' => skipping = true,
            _ if !skipping => out.push(b),
            _ => {}
        }
    }
    out
}

fn merge_slashes(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    for &b in path {
        if !(b == b'/' && out.last() == Some(&b'/')) {
            out.push(b);
        }
    }
    out
}

/// RFC 3986 §5.2.4 on segments: `.` dropped, `..` pops (never above root).
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    let segments: Vec<&[u8]> = path.split(|&b| b == b'/').skip(1).collect();
    let mut out: Vec<&[u8]> = Vec::new();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            b"." => trailing_slash = i == last,
            b".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = Vec::with_capacity(path.len());
    for segment in &out {
        result.push(b'/');
        result.extend_from_slice(segment);
    }
    if trailing_slash || result.is_empty() {
        result.push(b'/');
    }
    result
}

/// The path part of a request-target as an upstream got it: absolute-form
/// reduced to its path, query and fragment cut off.
fn path_part(target: &[u8]) -> Vec<u8> {
    let lower = target.to_ascii_lowercase();
    let target = ["http://", "https://"]
        .iter()
        .find(|scheme| lower.starts_with(scheme.as_bytes()))
        .map(|scheme| {
            let rest = &target[scheme.len()..];
            rest.iter()
                .position(|&b| b == b'/')
                .map_or(&b"/"[..], |at| &rest[at..])
        })
        .unwrap_or(target);
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    target[..end].to_vec()
}

/// How backends may read the path they got: each reading, named.
pub fn interpretations(target: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let raw = path_part(target);
    let decoded = percent_decode(&raw);
    let until_nul = decoded
        .split(|&b| b == 0)
        .next()
        .unwrap_or_default()
        .to_vec();
    let full =
        |p: &[u8]| remove_dot_segments(&merge_slashes(&strip_params(&backslash_as_slash(p))));
    vec![
        ("as received", raw.clone()),
        (
            "as received, dot segments removed",
            remove_dot_segments(&raw),
        ),
        (
            "decoded, dot segments removed",
            remove_dot_segments(&decoded),
        ),
        (
            "decoded, \\ as /, ;params stripped, // merged, dots removed",
            full(&decoded),
        ),
        (
            ";params stripped before decoding, then \\ as /, // merged, dots removed",
            full(&percent_decode(&strip_params(&raw))),
        ),
        (
            "decoded up to a NUL, \\ as /, // merged, dots removed",
            full(&until_nul),
        ),
    ]
}

/// True if the first segment is `admin`, ignoring trailing dots and spaces
/// (which Windows drops from file names). Case-sensitive, as the rule and the
/// route are (a case-insensitive backend needs `case_insensitive: true`).
fn under_admin(path: &[u8]) -> bool {
    let first = path
        .strip_prefix(b"/")
        .unwrap_or(path)
        .split(|&b| b == b'/')
        .next()
        .unwrap_or_default();
    let end = first
        .iter()
        .rposition(|&b| b != b'.' && b != b' ')
        .map_or(0, |at| at + 1);
    &first[..end] == b"admin"
}

/// What happened to one request.
#[derive(Debug)]
enum Fate {
    /// 0 bytes, then FIN.
    Dropped,
    /// Envoy answered (with this status line) and forwarded nothing.
    Answered(String),
    /// Forwarded: which route (upstream) and the request-target it got.
    Forwarded(&'static str, Vec<u8>),
    /// Anything else (bytes and a forward, several forwards, a hang…).
    Odd(String),
}

impl std::fmt::Display for Fate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fate::Dropped => write!(f, "dropped"),
            Fate::Answered(status) => write!(f, "answered by Envoy: {status}"),
            Fate::Forwarded(route, path) => {
                write!(
                    f,
                    "route {route}, upstream got {:?}",
                    String::from_utf8_lossy(path)
                )
            }
            Fate::Odd(what) => write!(f, "odd: {what}"),
        }
    }
}

struct Setup {
    envoy: Envoy,
    admin: EchoServer,
    main: EchoServer,
}

fn setup(bare: bool) -> Option<Setup> {
    if envoy::skip_if_external("needs its own routes and echo upstreams") {
        return None;
    }
    let admin = EchoServer::start("admin");
    let main = EchoServer::start("main");
    let envoy = Envoy::try_start_with(|dir| render(&dir.join("access.log"), &admin, &main, bare))
        .unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
    Some(Setup { envoy, admin, main })
}

fn send(setup: &Setup, target: &str, host: &str, user_agent: &str) -> Fate {
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\nConnection: close\r\n\r\n");
    let mut stream = connect(setup.envoy.addr);
    let out = exchange(&mut stream, request.as_bytes(), PATIENCE);
    let mut forwarded: Vec<(&'static str, Vec<u8>)> = Vec::new();
    forwarded.extend(setup.admin.take().into_iter().map(|t| ("admin", t)));
    forwarded.extend(setup.main.take().into_iter().map(|t| ("main", t)));
    let status =
        String::from_utf8_lossy(out.bytes.split(|&b| b == b'\r').next().unwrap_or_default())
            .into_owned();
    match (out.bytes.is_empty(), out.end, forwarded.len()) {
        (true, End::Fin, 0) => Fate::Dropped,
        (false, End::Fin, 0) => Fate::Answered(status),
        (false, End::Fin, 1) => {
            let (route, path) = forwarded.remove(0);
            Fate::Forwarded(route, path)
        }
        _ => Fate::Odd(format!(
            "{} bytes ({status:?}), end {:?}, forwarded {:?}",
            out.bytes.len(),
            out.end,
            forwarded
                .iter()
                .map(|(r, p)| format!("{r}: {}", String::from_utf8_lossy(p)))
                .collect::<Vec<_>>()
        )),
    }
}

/// Checks every spelling; returns one line per failure.
fn admin_never_reached(setup: &Setup) -> Vec<String> {
    let mut failures = Vec::new();
    for &spelling in SPELLINGS {
        let fate = send(
            setup,
            spelling,
            "example.com",
            "Mozilla/5.0 (X11; Linux x86_64)",
        );
        println!("  {spelling:?} -> {fate}");
        let why = match &fate {
            Fate::Dropped | Fate::Answered(_) => None,
            Fate::Forwarded("admin", path) => Some(format!(
                "route /admin chosen by the router, upstream path {:?}",
                String::from_utf8_lossy(path)
            )),
            Fate::Forwarded(route, path) => interpretations(path)
                .into_iter()
                .find(|(_, p)| under_admin(p))
                .map(|(reading, p)| {
                    format!(
                        "route {route}, upstream path {:?} reads as {:?} ({reading})",
                        String::from_utf8_lossy(path),
                        String::from_utf8_lossy(&p)
                    )
                }),
            Fate::Odd(what) => Some(what.clone()),
        };
        if let Some(why) = why {
            failures.push(format!("{spelling:?}: {why}"));
        }
    }
    failures
}

/// Checks the allow-abuse requests; returns one line per failure.
fn allow_not_abused(setup: &Setup) -> Vec<String> {
    let mut failures = Vec::new();
    for &spelling in ALLOW_ABUSE {
        let fate = send(
            setup,
            spelling,
            "127.0.0.1",
            "sqlmap/1.8#stable (https://sqlmap.org)",
        );
        println!("  sqlmap {spelling:?} -> {fate}");
        let why = match &fate {
            Fate::Dropped | Fate::Answered(_) => None,
            Fate::Forwarded("main", path)
                if interpretations(path).iter().all(|(_, p)| p == b"/healthz") =>
            {
                None
            }
            Fate::Forwarded(route, path) => Some(format!(
                "exempted by the /healthz allow: route {route}, upstream path {:?}",
                String::from_utf8_lossy(path)
            )),
            Fate::Odd(what) => Some(what.clone()),
        };
        if let Some(why) = why {
            failures.push(format!("{spelling:?} (sqlmap, Host 127.0.0.1): {why}"));
        }
    }
    failures
}

fn run(bare: bool) {
    let Some(setup) = setup(bare) else { return };
    // The harness itself: a plain request reaches the main upstream as sent.
    match send(&setup, "/x", "example.com", "Mozilla/5.0") {
        Fate::Forwarded("main", path) => assert_eq!(path, b"/x"),
        other => panic!("GET /x: {other:?}"),
    }
    let mut failures = admin_never_reached(&setup);
    failures.extend(allow_not_abused(&setup));
    let which = if bare {
        "bare HCM"
    } else {
        "shipped HCM path settings"
    };
    println!(
        "{which}: {} spellings + {} allow-abuse requests, {} failures",
        SPELLINGS.len(),
        ALLOW_ABUSE.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{which}: {} of {} requests reached /admin or abused the allow rule:\n{}",
        failures.len(),
        SPELLINGS.len() + ALLOW_ABUSE.len(),
        failures.join("\n")
    );
}

#[test]
fn upstream_never_gets_admin_with_shipped_path_settings() {
    run(false);
}

#[test]
fn upstream_never_gets_admin_with_bare_hcm() {
    run(true);
}

#[test]
fn interpretations_read_admin_the_ways_backends_do() {
    for (target, admin) in [
        ("/admin", true),
        ("/x/..;/admin", true),
        ("/x%2f..%2fadmin", true),
        ("/x\\..\\admin", true),
        ("//admin", true),
        ("/admin%00.jpg", true),
        ("/admin.", true),
        ("/admin%20/x", true),
        ("http://h/x/../admin?q", true),
        ("/x/admin", false),
        ("/administrator", false),
        ("/%2561dmin", false),
        ("/%c0%afadmin", false),
        ("/ADMIN", false),
        ("/x?/../admin", false),
    ] {
        assert_eq!(
            interpretations(target.as_bytes())
                .iter()
                .any(|(_, p)| under_admin(p)),
            admin,
            "{target}: {:?}",
            interpretations(target.as_bytes())
        );
    }
}
