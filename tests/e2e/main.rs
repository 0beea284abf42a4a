//! End-to-end tests: the built `drop444.wasm` in a real Envoy (started from the
//! shipped `envoy/envoy.yaml`), checked on the wire with raw sockets and an
//! HTTP/2 client. Run with `make test` (it builds the module and installs
//! Envoy first). `decisions` runs the decision table shared with the wasmtime
//! host harness (`tests/cases/decisions.json`).

// Test harness code: panicking with a message is how it reports a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::type_complexity
)]

#[path = "../cases/mod.rs"]
mod cases;
mod codec;
mod decisions;
mod envoy;
mod fail_open;
mod hostile;
mod l4;
mod language;
mod lists;
mod native;
mod operations;
mod ratelimit;
mod serve;
mod soak;
mod tarpit;
mod tls;
mod upstream;
mod wire;

use std::time::Duration;

use envoy::Envoy;
use wire::{connect, exchange, get, read_response, End};

/// A drop must close at once (`delayed_close_timeout: 0s`); Envoy's default
/// would hold the connection for 1 s.
const CLOSE_WITHIN: Duration = Duration::from_millis(100);
/// How long to wait for a close that should come.
const PATIENCE: Duration = Duration::from_secs(3);

const BODY: &[u8] = b"hello from behind drop444\n";

/// A configuration exercising the host allowlist and every header operator.
/// `make compose-test` starts its second Envoy with this very file.
const RULES: &str = include_str!("rules.json");

/// Sends one request on a fresh connection and asserts the silent drop:
/// zero bytes, then an orderly close (FIN) within `CLOSE_WITHIN`.
pub(crate) fn assert_dropped(envoy: &Envoy, request: &[u8]) {
    let mut stream = connect(envoy.addr);
    let out = exchange(&mut stream, request, PATIENCE);
    let shown = String::from_utf8_lossy(request);
    assert!(
        out.bytes.is_empty(),
        "request {shown:?} got bytes: {:?}",
        String::from_utf8_lossy(&out.bytes)
    );
    assert_eq!(out.end, End::Fin, "request {shown:?}: {out:?}");
    assert!(
        out.elapsed < CLOSE_WITHIN,
        "request {shown:?} closed after {:?}",
        out.elapsed
    );
}

/// Sends one request on a fresh connection and asserts a 200 with our body.
pub(crate) fn assert_served(envoy: &Envoy, request: &[u8]) {
    let mut stream = connect(envoy.addr);
    std::io::Write::write_all(&mut stream, request).expect("write");
    let response = read_response(&mut stream);
    let shown = String::from_utf8_lossy(request);
    assert_eq!(response.status, 200, "request {shown:?}: {}", response.head);
    assert_eq!(response.body, BODY, "request {shown:?}");
}

#[test]
fn default_config_drops_ip_literal_and_invalid_hosts_with_zero_bytes() {
    let envoy = Envoy::start("");
    for host in [
        "127.0.0.1",
        "127.0.0.1:10000",
        "10.1.2.3",
        "[::1]",
        "[::1]:10000",
        "[2001:db8::1]:443",
        "2130706433",
        "0x7f.1",
        "127.1",
        "a..b",
        "localhost,example.com",
    ] {
        assert_dropped(&envoy, &get(Some(host), &[]));
    }
    // Empty Host: Envoy hands it to the filter, which drops it.
    assert_dropped(&envoy, b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
}

#[test]
fn default_config_serves_named_hosts() {
    let envoy = Envoy::start("");
    for host in [
        "localhost",
        "LOCALHOST:10000",
        "example.com.",
        "www.example.org",
    ] {
        assert_served(&envoy, &get(Some(host), &[]));
    }
}

#[test]
fn keep_alive_connection_gets_first_response_then_nothing_and_a_close() {
    let envoy = Envoy::start("");
    let mut stream = connect(envoy.addr);
    std::io::Write::write_all(&mut stream, &get(Some("localhost"), &[])).expect("write");
    let response = read_response(&mut stream);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, BODY);
    let out = exchange(&mut stream, &get(Some("127.0.0.1"), &[]), PATIENCE);
    assert!(
        out.bytes.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&out.bytes)
    );
    assert_eq!(out.end, End::Fin);
    assert!(out.elapsed < CLOSE_WITHIN, "closed after {:?}", out.elapsed);
}

#[test]
fn http2_drop_resets_only_that_stream() {
    let envoy = Envoy::start("");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(envoy.addr)
            .await
            .expect("connect");
        let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        let driver = tokio::spawn(connection);
        let mut client = client.ready().await.expect("ready");

        // Stream 1: IP-literal :authority -> RST_STREAM, no HEADERS, no DATA.
        let request = http::Request::get("http://127.0.0.1/")
            .body(())
            .expect("request");
        let (response, _) = client.send_request(request, true).expect("send");
        let err = tokio::time::timeout(PATIENCE, response)
            .await
            .expect("reset in time")
            .expect_err("stream must be reset");
        assert_eq!(err.reason(), Some(h2::Reason::INTERNAL_ERROR), "{err:?}");
        assert!(err.is_remote(), "reset must come from Envoy: {err:?}");

        // Stream 3 on the same connection: served.
        let mut client = client.ready().await.expect("connection still usable");
        let request = http::Request::get("http://localhost/")
            .body(())
            .expect("request");
        let (response, _) = client.send_request(request, true).expect("send");
        let response = tokio::time::timeout(PATIENCE, response)
            .await
            .expect("in time")
            .expect("response");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("data");
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        assert_eq!(bytes, BODY);
        assert!(!driver.is_finished(), "connection must stay up");
    });
}

#[test]
fn header_rules_drop_and_access_log_names_the_rule() {
    let envoy = Envoy::start(RULES);
    let ok = ["Accept: */*", "User-Agent: Mozilla/5.0"];
    assert_served(&envoy, &get(Some("www.example.com"), &ok));
    let with = |line: &'static str| [ok[0], ok[1], line];
    // (request, rule that must fire)
    let drops: Vec<(Vec<u8>, &str)> = vec![
        (get(Some("evil.com"), &ok), "host-not-allowed"),
        (
            get(
                Some("example.com"),
                &["Accept: */*", "User-Agent: SQLMap/1.7 (https://sqlmap.org)"],
            ),
            "scanner-sqlmap",
        ),
        (
            get(Some("example.com"), &with("X-Probe: evil")),
            "probe-exact",
        ),
        (
            get(Some("example.com"), &with("X-Probe: bad-thing")),
            "probe-prefix",
        ),
        (
            get(Some("example.com"), &with("X-Probe: /index.php")),
            "probe-suffix",
        ),
        (
            get(Some("example.com"), &with("X-Debug-Token: 1")),
            "debug-present",
        ),
        (
            get(Some("example.com"), &["User-Agent: Mozilla/5.0"]),
            "accept-absent",
        ),
        // The bad value in a second field line of the same header is seen too.
        (
            get(
                Some("example.com"),
                &[ok[0], ok[1], "X-Probe: fine", "X-Probe: evil"],
            ),
            "probe-exact",
        ),
        (
            get(
                Some("example.com"),
                &[
                    "Accept: */*",
                    "User-Agent: Mozilla/5.0",
                    "User-Agent: sqlmap",
                ],
            ),
            "scanner-sqlmap",
        ),
    ];
    for (request, _) in &drops {
        assert_dropped(&envoy, request);
    }
    // Near misses pass.
    assert_served(&envoy, &get(Some("example.com"), &with("X-Probe: evil2")));
    assert_served(
        &envoy,
        &get(Some("example.com"), &with("X-Probe: not-bad-")),
    );

    let total = drops.len() + 3;
    let log = envoy.access_log(total);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), total, "access log:\n{log}");
    let served = format!("\" 200 {} drop444=- rule=- ", envoy.served_details);
    assert!(lines[0].contains(&served), "want {served}: {}", lines[0]);
    for (line, (_, rule)) in lines[1..].iter().zip(&drops) {
        assert!(
            line.contains(&format!("\" 0 wasm_close_stream drop444=444 rule={rule} ")),
            "want rule {rule}: {line}"
        );
        assert!(line.ends_with("bytes_sent=0"), "{line}");
    }
}

#[test]
fn invalid_config_makes_envoy_refuse_the_plugin_and_names_the_field() {
    if envoy::skip_if_external("starts its own Envoy with an invalid configuration") {
        return;
    }
    let bad = r#"{"rules": [{"name": "ok", "header": "user-agent", "contains": "x"}, {"header": "user-agent", "contians": "y"}]}"#;
    let log = match Envoy::try_start(bad) {
        Ok(envoy) => panic!("Envoy started with an invalid config:\n{}", envoy.log()),
        Err(log) => log,
    };
    assert!(
        log.contains(
            "invalid configuration, plugin not loaded: rules[1].contians: unknown field `contians`"
        ),
        "{log}"
    );
    assert!(
        log.contains("Unable to create Wasm plugin drop444"),
        "{log}"
    );
}

/// Envoy answers some malformed requests itself, before any HTTP filter runs
/// (see docs/envoy-behaviour.md). This pins that documented behaviour: if a new
/// Envoy changes it, this test says so.
#[test]
fn envoy_answers_some_malformed_requests_before_the_filter() {
    let envoy = Envoy::start("");
    for (request, status) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 400"),
        (
            &b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"[..],
            "HTTP/1.1 426",
        ),
        (&b"BLAH\r\n\r\n"[..], "HTTP/1.1 400"),
    ] {
        let mut stream = connect(envoy.addr);
        let out = exchange(&mut stream, request, PATIENCE);
        let text = String::from_utf8_lossy(&out.bytes);
        assert!(
            text.starts_with(status),
            "{:?} -> {text:?}",
            String::from_utf8_lossy(request)
        );
    }
}

/// The release layout of `make release`: `dist/drop444-<version>.wasm` and its
/// `.sha256` (sha256sum format). Returns the file name and the digest.
fn release_artifact() -> (String, String) {
    let name = format!("drop444-{}.wasm", env!("CARGO_PKG_VERSION"));
    let dist = envoy::repo_root().join("dist");
    let sums = std::fs::read_to_string(dist.join(format!("{name}.sha256")))
        .unwrap_or_else(|e| panic!("dist/{name}.sha256: {e} (run `make release`)"));
    let fields: Vec<&str> = sums.split_whitespace().collect();
    assert_eq!(fields.len(), 2, "sha256sum format: {sums:?}");
    assert_eq!(fields[1], name, "{sums:?}");
    let digest = fields[0].to_string();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{digest:?}"
    );
    (name, digest)
}

/// `envoy/envoy-remote.yaml` with the ports, the sha256 and the access log
/// substituted; the module comes from `server`.
fn start_remote(server: &serve::FileServer, sha256: &str) -> Envoy {
    let name = format!("drop444-{}.wasm", env!("CARGO_PKG_VERSION"));
    Envoy::try_start_with(|dir| {
        envoy::render(
            "envoy/envoy-remote.yaml",
            &[
                ("port_value: 9901", "port_value: 0".into()),
                ("port_value: 10000", "port_value: 0".into()),
                (
                    "port_value: 8000",
                    format!("port_value: {}", server.addr.port()),
                ),
                (
                    &format!("uri: http://127.0.0.1:8000/{name}"),
                    format!("uri: http://{}/{name}", server.addr),
                ),
                // Quoted: a digest of digits only (the wrong one below is 0s and 1s)
                // would be read by YAML as a number.
                ("sha256: RELEASE_SHA256", format!("sha256: \"{sha256}\"")),
                (
                    "path: /dev/stdout",
                    format!("path: {}", dir.join("access.log").display()),
                ),
            ],
        )
    })
    .unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"))
}

#[test]
fn release_artifact_loads_remotely_with_its_sha256() {
    if envoy::skip_if_external("starts its own Envoy that fetches the module over HTTP") {
        return;
    }
    let (_, digest) = release_artifact();
    let server = serve::FileServer::start(envoy::repo_root().join("dist"));
    let envoy = start_remote(&server, &digest);
    assert!(server.hits() >= 1, "Envoy never fetched the module");
    assert_dropped(&envoy, &get(Some("127.0.0.1"), &[]));
    assert_served(&envoy, &get(Some("localhost"), &[]));
}

/// The other side of the sha256 flow: a module whose digest does not match is
/// not loaded, and Envoy fails closed (503) instead of passing traffic.
#[test]
fn remote_module_with_a_wrong_sha256_is_refused() {
    if envoy::skip_if_external("starts its own Envoy that fetches the module over HTTP") {
        return;
    }
    let (_, digest) = release_artifact();
    let wrong: String = digest
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let server = serve::FileServer::start(envoy::repo_root().join("dist"));
    let envoy = start_remote(&server, &wrong);
    // Envoy fetches, rejects the digest, retries (`retry_policy`), gives up.
    assert!(
        envoy.wait_log(
            "Retry limit exceeded for fetching data from remote data source",
            Duration::from_secs(20)
        ),
        "{}",
        envoy.log()
    );
    assert!(server.hits() >= 2, "fetched {} times", server.hits());
    let mut stream = connect(envoy.addr);
    std::io::Write::write_all(&mut stream, &get(Some("localhost"), &[])).expect("write");
    let response = read_response(&mut stream);
    assert_eq!(response.status, 503, "{}", response.head);
    assert_ne!(response.body, BODY);
}
