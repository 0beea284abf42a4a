//! Issue 7, TLS: `envoy/envoy-tls.yaml` refuses connections whose SNI is not
//! an allowed name (or that send none) before any handshake reply. Checked
//! with a hand-written ClientHello on a raw socket (every byte accounted for)
//! and with a real TLS client (`openssl s_client`), against a certificate
//! generated for the test.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::envoy::{self, render, wasm_path, Envoy};
use crate::l4::assert_quiet_log;
use crate::wire::{connect, exchange, read_until_close, End};
use crate::{BODY, CLOSE_WITHIN, PATIENCE};

/// A self-signed P-256 certificate for the allowed names, valid one day.
fn make_certificate(dir: &Path) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,DNS:example.com,DNS:*.example.com",
        ])
        .arg("-keyout")
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(dir.join("server.crt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (Debian package `openssl`)");
    assert!(status.success(), "openssl req failed");
}

fn start_tls() -> Envoy {
    Envoy::try_start_with(|dir| {
        make_certificate(dir);
        render(
            "envoy/envoy-tls.yaml",
            &[
                ("port_value: 9901", "port_value: 0".into()),
                ("port_value: 10443", "port_value: 0".into()),
                (
                    "filename: target/wasm32-wasip1/release/drop444.wasm",
                    format!("filename: {}", wasm_path().display()),
                ),
                (
                    "filename: /etc/drop444/tls/server.crt",
                    format!("filename: {}", dir.join("server.crt").display()),
                ),
                (
                    "filename: /etc/drop444/tls/server.key",
                    format!("filename: {}", dir.join("server.key").display()),
                ),
                (
                    "path: /dev/stdout",
                    format!("path: {}", dir.join("access.log").display()),
                ),
            ],
        )
    })
    .unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"))
}

/// A minimal TLS 1.2 ClientHello (ECDHE-ECDSA-AES128-GCM, P-256), with a
/// server_name extension when `sni` is given.
fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let n = name.len() as u16;
        ext.extend_from_slice(&[0x00, 0x00]);
        ext.extend_from_slice(&(n + 5).to_be_bytes());
        ext.extend_from_slice(&(n + 3).to_be_bytes());
        ext.push(0x00);
        ext.extend_from_slice(&n.to_be_bytes());
        ext.extend_from_slice(name.as_bytes());
    }
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17]); // groups: P-256
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]); // point formats
    ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03]); // ecdsa_secp256r1_sha256
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x44; 32]);
    body.push(0x00); // no session id
    body.extend_from_slice(&[0x00, 0x02, 0xc0, 0x2b]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// `openssl s_client` with this SNI (`None`: no SNI) sending `input`;
/// returns its exit success and its stdout + stderr.
fn s_client(envoy: &Envoy, sni: Option<&str>, input: &[u8]) -> (bool, String) {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &envoy.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match sni {
        Some(name) => command.args(["-servername", name, "-quiet"]),
        None => command.arg("-noservername"),
    };
    let mut child = command.spawn().expect("run openssl s_client");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[test]
fn tls_unknown_or_missing_sni_is_closed_before_any_byte() {
    if envoy::skip_if_external("starts its own TLS Envoy") {
        return;
    }
    let envoy = start_tls();
    let from = envoy.log().len();
    // An allowed connection, opened first and left waiting mid-handshake.
    let mut allowed = connect(envoy.addr);
    allowed.write_all(&client_hello(Some("localhost"))).unwrap();

    for sni in [
        Some("evil.test"),
        Some("EXAMPLE.COM.evil"),
        Some("example.org"),
        None,
    ] {
        let mut stream = connect(envoy.addr);
        let out = exchange(&mut stream, &client_hello(sni), PATIENCE);
        assert!(out.bytes.is_empty(), "SNI {sni:?} got {:?}", out.bytes);
        // The ClientHello was only peeked at (tls_inspector), so it is still
        // unread when Envoy closes the socket: the kernel sends RST.
        assert_eq!(out.end, End::Reset, "SNI {sni:?}: {out:?}");
        assert!(out.elapsed < CLOSE_WITHIN, "SNI {sni:?}: {out:?}");
        println!("TLS SNI {sni:?}: {out:?}");
    }

    // The allowed connection got its ServerHello meanwhile.
    let hello = read_until_close(&mut allowed, Duration::from_millis(500));
    assert!(
        hello.bytes.len() > 6 && hello.bytes[0] == 0x16 && hello.bytes[5] == 0x02,
        "no ServerHello for SNI localhost: {hello:?}"
    );
    for sni in ["localhost", "www.example.com"] {
        let mut stream = connect(envoy.addr);
        let out = exchange(
            &mut stream,
            &client_hello(Some(sni)),
            Duration::from_millis(500),
        );
        assert_eq!(out.bytes.first(), Some(&0x16), "SNI {sni}: {out:?}");
    }

    let stats = envoy.stats();
    let no_match = stats
        .iter()
        .find(|(k, _)| {
            k.starts_with("listener.127.0.0.1_") && k.ends_with(".no_filter_chain_match")
        })
        .map(|(_, v)| *v);
    assert_eq!(no_match, Some(4), "{stats:?}");
    assert_quiet_log(&envoy, from);
}

#[test]
fn tls_real_client_is_served_for_allowed_names_and_refused_otherwise() {
    if envoy::skip_if_external("starts its own TLS Envoy") {
        return;
    }
    let envoy = start_tls();
    let from = envoy.log().len();
    let (ok, text) = s_client(&envoy, Some("localhost"), REQUEST);
    assert!(ok, "{text}");
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains(std::str::from_utf8(BODY).unwrap()), "{text}");

    for sni in [Some("evil.test"), None] {
        let (ok, text) = s_client(&envoy, sni, REQUEST);
        assert!(!ok, "SNI {sni:?}: {text}");
        assert!(!text.contains("HTTP/1.1"), "SNI {sni:?}: {text}");
        // No certificate, no alert: the client read nothing at all.
        assert!(!text.contains("alert"), "SNI {sni:?}: {text}");
        assert!(!text.contains("BEGIN CERTIFICATE"), "SNI {sni:?}: {text}");
        if sni.is_none() {
            assert!(text.contains("SSL handshake has read 0 bytes"), "{text}");
        }
        println!("openssl s_client, SNI {sni:?}:\n{text}");
    }

    // Inside an allowed TLS connection the Host is still checked.
    let (_, text) = s_client(
        &envoy,
        Some("localhost"),
        b"GET / HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    );
    assert!(!text.contains("HTTP/1.1"), "{text}");
    // And the allowed name still works afterwards.
    let (ok, text) = s_client(&envoy, Some("www.example.com"), REQUEST);
    assert!(ok && text.contains("HTTP/1.1 200 OK"), "{text}");
    assert_quiet_log(&envoy, from);
}
