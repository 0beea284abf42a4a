//! Issue 14, point 4: `drop444 explain --raw` reads a raw request the way
//! Envoy's HTTP/1 codec does. Differential: every request of
//! `tests/cases/raw_requests.txt` goes through the built CLI and through a real
//! Envoy running the same rules, and the verdicts must agree case by case:
//! the CLI's DROP is 0 bytes and a close, its PASS a 200 from the route, its
//! "Envoy answers NNN itself" Envoy's own NNN.
//!
//! The Envoy here is a bare connection manager with Envoy's defaults (no
//! path normalisation settings), the setup the CLI models by default; it
//! compares the CLI with the same engine in Envoy, so it holds whatever the
//! engine decides. The corpus runs a second time against an Envoy with the
//! shipped path settings (`normalize_path`, `merge_slashes`,
//! `REJECT_REQUEST`) and the CLI with the matching flags.

use std::io::{ErrorKind, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::envoy::{self, wasm_path, Envoy};
use crate::wire::connect;
use crate::BODY;

/// Host allowlist, an exact-path allow rule, a path prefix, a UA rule, a
/// header rule and a method rule.
const CONFIG: &str = r#"{"host": {"allow": ["localhost", "example.com", "*.example.com"]},
 "rules": [
  {"name": "healthz", "action": "allow", "field": "path", "exact": "/healthz"},
  {"name": "admin", "field": "path", "prefix": "/admin"},
  {"name": "ua", "header": "user-agent", "contains": "sqlmap", "case_insensitive": true},
  {"name": "probe", "header": "x-probe", "exact": "evil"},
  {"name": "no-trace", "field": "method", "in": ["TRACE", "TRACK"]}]}"#;

/// A bare HCM with Envoy's defaults, drop444, and a 200 for every route
/// (CONNECT included).
const ENVOY_YAML: &str = r#"
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 0 }
static_resources:
  listeners:
  - name: http
    address:
      socket_address: { address: 127.0.0.1, port_value: 0 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          delayed_close_timeout: 0s
          proxy_100_continue: true
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ACCESS_LOG
              log_format:
                text_format_source:
                  inline_string: "%RESPONSE_CODE% %RESPONSE_CODE_DETAILS% rule=%FILTER_STATE(wasm.drop444:PLAIN)%\n"
          http_filters:
          - name: drop444
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: drop444
                root_id: drop444
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: PLUGIN_CONFIG
                vm_config:
                  vm_id: drop444
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local:
                      filename: WASM_FILE
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "hello from behind drop444\n" } }
"#;

/// What happened to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// The filter passed it: the route's 200.
    Served,
    /// The filter dropped it: 0 bytes, then the close.
    Dropped,
    /// Envoy answered it itself with this status.
    Envoy(u16),
}

/// `\r`, `\n`, `\t`, `\\` and `\xNN` escapes.
fn unescape(line: &str) -> Vec<u8> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                other => panic!("unknown escape \\{} in {line:?}", other as char),
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

pub fn corpus() -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(envoy::repo_root().join("tests/cases/raw_requests.txt"))
        .expect("tests/cases/raw_requests.txt");
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| (l.to_string(), unescape(l)))
        .collect()
}

/// The CLI flags for the shipped HCM path settings.
const PATH_FLAGS: &[&str] = &[
    "--normalize-path",
    "--merge-slashes",
    "--escaped-slashes",
    "REJECT_REQUEST",
];
/// The same settings in the HCM.
const PATH_SETTINGS_YAML: &str = "proxy_100_continue: true
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST";

fn cli(config: &std::path::Path, flags: &[&str], request: &[u8]) -> (Verdict, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_drop444"))
        .arg("explain")
        .arg(config)
        .arg("--raw")
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run drop444");
    child.stdin.take().unwrap().write_all(request).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let verdict = match out.status.code() {
        Some(0) => Verdict::Served,
        Some(2) => Verdict::Dropped,
        Some(3) => {
            let status = stdout
                .strip_prefix("ENVOY ")
                .and_then(|s| s.get(..3))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no status in {stdout}"));
            Verdict::Envoy(status)
        }
        other => panic!(
            "drop444 exit {other:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    (verdict, stdout)
}

/// Sends `request` on a fresh connection and reads one response, or the
/// close: `None` for 0 bytes, else the status and the bytes received.
pub fn response_to(addr: std::net::SocketAddr, request: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut stream = connect(addr);
    stream.write_all(request).expect("write");
    let head_only = request.starts_with(b"HEAD ");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no verdict from Envoy in time: {bytes:?}");
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if head_only || bytes.len() >= end + 4 + length {
                break;
            }
        }
    }
    if bytes.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text:?}"));
    Some((status, bytes))
}

fn envoy_verdict(envoy: &Envoy, request: &[u8]) -> Verdict {
    let Some((status, bytes)) = response_to(envoy.addr, request) else {
        return Verdict::Dropped;
    };
    let head_only = request.starts_with(b"HEAD ");
    // No route matches CONNECT here: a CONNECT the filter passed gets the
    // router's 404 (a route for it would make Envoy answer 403 itself, as
    // there are no upgrade_configs). Envoy's own replies to CONNECT are 400,
    // 403 or 501.
    let connect = request.starts_with(b"CONNECT ");
    if (status == 200 && (head_only || bytes.ends_with(BODY))) || (connect && status == 404) {
        Verdict::Served
    } else {
        Verdict::Envoy(status)
    }
}

/// The bare Envoy with drop444 and `CONFIG` (with the shipped path settings
/// if `paths`), and the CLI's config file.
fn start(paths: bool) -> (Envoy, std::path::PathBuf) {
    let envoy = Envoy::try_start_with(|dir| {
        let yaml = if paths {
            ENVOY_YAML.replace("proxy_100_continue: true", PATH_SETTINGS_YAML)
        } else {
            ENVOY_YAML.to_string()
        };
        assert_eq!(yaml.contains("normalize_path"), paths);
        yaml.replace("ACCESS_LOG", &dir.join("access.log").display().to_string())
            .replace("PLUGIN_CONFIG", &serde_json::to_string(CONFIG).unwrap())
            .replace("WASM_FILE", &wasm_path().display().to_string())
    })
    .unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
    let config = envoy.scratch().join("drop444.json");
    std::fs::write(&config, CONFIG).unwrap();
    (envoy, config)
}

/// Sends every request through the CLI and Envoy; returns the verdict
/// counts and the disagreements.
fn compare(
    envoy: &Envoy,
    config: &std::path::Path,
    flags: &[&str],
    requests: &[(String, Vec<u8>)],
) -> (std::collections::BTreeMap<String, usize>, Vec<String>) {
    let mut disagreements = Vec::new();
    let mut counts = std::collections::BTreeMap::new();
    for (shown, request) in requests {
        let (predicted, explanation) = cli(config, flags, request);
        let actual = envoy_verdict(envoy, request);
        *counts.entry(format!("{actual:?}")).or_insert(0) += 1;
        if predicted != actual {
            disagreements.push(format!(
                "{shown}\n  CLI {predicted:?}, Envoy {actual:?}\n  {}",
                explanation.trim().replace('\n', "\n  ")
            ));
        }
    }
    (counts, disagreements)
}

/// Every byte value at seven places of a request: the first byte, the
/// method, the path, a header name, a header value, the Host, the host of an
/// absolute-form target (7 × 256 requests).
#[test]
fn cli_raw_verdicts_agree_with_envoy_for_every_byte_at_every_place() {
    if envoy::skip_if_external("starts its own bare Envoy") {
        return;
    }
    let (envoy, config) = start(false);
    let places: [(&str, &str); 7] = [
        ("first", "@GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        ("method", "G@T / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        ("path", "GET /adm@in HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        (
            "name",
            "GET / HTTP/1.1\r\nHost: example.com\r\nX-Pr@obe: evil\r\n\r\n",
        ),
        (
            "value",
            "GET / HTTP/1.1\r\nHost: example.com\r\nX-Probe: ev@il\r\n\r\n",
        ),
        ("host", "GET / HTTP/1.1\r\nHost: exa@mple.com\r\n\r\n"),
        ("absolute", "GET http://exa@mple.com/ HTTP/1.1\r\n\r\n"),
    ];
    let mut requests = Vec::new();
    for (place, template) in places {
        let (before, after) = template.split_once('@').unwrap();
        for byte in 0..=255u8 {
            let mut request = before.as_bytes().to_vec();
            request.push(byte);
            request.extend_from_slice(after.as_bytes());
            requests.push((format!("{place} byte {byte:#04x}"), request));
        }
    }
    let (counts, disagreements) = compare(&envoy, &config, &[], &requests);
    println!("{} requests: {counts:?}", requests.len());
    assert!(
        disagreements.is_empty(),
        "{} of {} disagree:\n{}",
        disagreements.len(),
        requests.len(),
        disagreements.join("\n")
    );
}

#[test]
fn cli_raw_verdicts_agree_with_envoy_case_by_case() {
    if envoy::skip_if_external("starts its own bare Envoy") {
        return;
    }
    let corpus = corpus();
    assert!(corpus.len() >= 150, "corpus has {} requests", corpus.len());
    let (envoy, config) = start(false);
    let (counts, disagreements) = compare(&envoy, &config, &[], &corpus);
    println!("{} requests: {counts:?}", corpus.len());
    // The corpus exercises all three outcomes.
    for kind in ["Served", "Dropped", "Envoy(400)"] {
        assert!(counts.get(kind).copied().unwrap_or(0) >= 5, "{counts:?}");
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} disagree:\n{}",
        disagreements.len(),
        corpus.len(),
        disagreements.join("\n")
    );
}

/// The corpus again, Envoy with the shipped path settings and the CLI with
/// `--normalize-path --merge-slashes --escaped-slashes REJECT_REQUEST`.
#[test]
fn cli_raw_verdicts_agree_with_envoy_with_the_shipped_path_settings() {
    if envoy::skip_if_external("starts its own bare Envoy") {
        return;
    }
    let corpus = corpus();
    let (envoy, config) = start(true);
    let (counts, disagreements) = compare(&envoy, &config, PATH_FLAGS, &corpus);
    println!("{} requests: {counts:?}", corpus.len());
    for kind in ["Served", "Dropped", "Envoy(400)"] {
        assert!(counts.get(kind).copied().unwrap_or(0) >= 5, "{counts:?}");
    }
    // The settings change verdicts: without the flags the CLI disagrees.
    let (_, without_flags) = compare(&envoy, &config, &[], &corpus);
    println!(
        "without the flags the CLI disagrees on {}",
        without_flags.len()
    );
    assert!(without_flags.len() >= 10, "{}", without_flags.len());
    assert!(
        disagreements.is_empty(),
        "{} of {} disagree:\n{}",
        disagreements.len(),
        corpus.len(),
        disagreements.join("\n")
    );
}
