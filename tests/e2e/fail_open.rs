//! What Envoy does when the wasm VM fails, with `fail_open` false (the
//! default: fail closed) and true. The failure is real: a minimal proxy-wasm
//! module, assembled here byte by byte, whose `proxy_on_request_headers`
//! executes `unreachable` (a trap, as a Rust panic becomes with
//! `panic = "abort"`). drop444 itself has no such path (clippy denies
//! panics), so this is what would happen if it had one.

use std::time::Duration;

use crate::envoy::{render, skip_if_external, Envoy};
use crate::wire::{connect, exchange, read_response};

/// LEB128 for the lengths and counts of the wasm binary format.
fn leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(content.len(), out);
    out.extend_from_slice(content);
}

/// A proxy-wasm (ABI 0.2.0) module that configures fine and traps on every
/// request's headers.
fn trapping_module() -> Vec<u8> {
    const I32: u8 = 0x7f;
    let types: [(&[u8], &[u8]); 5] = [
        (&[], &[]),                 // 0: () -> ()
        (&[I32], &[I32]),           // 1: (i32) -> i32
        (&[I32, I32], &[]),         // 2: (i32, i32) -> ()
        (&[I32, I32], &[I32]),      // 3: (i32, i32) -> i32
        (&[I32, I32, I32], &[I32]), // 4: (i32, i32, i32) -> i32
    ];
    // (type, body without the locals count)
    let functions: [(u8, &[u8]); 6] = [
        (0, &[0x0b]),                   // proxy_abi_version_0_2_0
        (1, &[0x41, 0x80, 0x08, 0x0b]), // malloc: i32.const 1024
        (2, &[0x0b]),                   // proxy_on_context_create
        (3, &[0x41, 0x01, 0x0b]),       // proxy_on_vm_start: 1
        (3, &[0x41, 0x01, 0x0b]),       // proxy_on_configure: 1
        (4, &[0x00, 0x0b]),             // proxy_on_request_headers: unreachable
    ];
    let exports: [(&str, u8, u8); 8] = [
        ("memory", 2, 0),
        ("proxy_abi_version_0_2_0", 0, 0),
        ("malloc", 0, 1),
        ("proxy_on_memory_allocate", 0, 1),
        ("proxy_on_context_create", 0, 2),
        ("proxy_on_vm_start", 0, 3),
        ("proxy_on_configure", 0, 4),
        ("proxy_on_request_headers", 0, 5),
    ];
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    let mut content = Vec::new();
    leb(types.len(), &mut content);
    for (params, results) in types {
        content.push(0x60);
        leb(params.len(), &mut content);
        content.extend_from_slice(params);
        leb(results.len(), &mut content);
        content.extend_from_slice(results);
    }
    section(1, &content, &mut out);
    let mut content = Vec::new();
    leb(functions.len(), &mut content);
    content.extend(functions.iter().map(|(t, _)| *t));
    section(3, &content, &mut out);
    section(5, &[1, 0, 1], &mut out); // one memory, at least one page
    let mut content = Vec::new();
    leb(exports.len(), &mut content);
    for (name, kind, index) in exports {
        leb(name.len(), &mut content);
        content.extend_from_slice(name.as_bytes());
        content.push(kind);
        content.push(index);
    }
    section(7, &content, &mut out);
    let mut content = Vec::new();
    leb(functions.len(), &mut content);
    for (_, body) in functions {
        leb(body.len() + 1, &mut content);
        content.push(0); // no locals
        content.extend_from_slice(body);
    }
    section(10, &content, &mut out);
    out
}

fn start_trapping(fail_open: bool) -> Envoy {
    Envoy::try_start_with(|dir| {
        let module = dir.join("trap.wasm");
        std::fs::write(&module, trapping_module()).expect("write module");
        render(
            "envoy/envoy.yaml",
            &[
                ("port_value: 9901", "port_value: 0".to_string()),
                ("port_value: 10000", "port_value: 0".to_string()),
                (
                    "filename: target/wasm32-wasip1/release/drop444.wasm",
                    format!("filename: {}", module.display()),
                ),
                (
                    "root_id: drop444",
                    format!("root_id: drop444\n                fail_open: {fail_open}"),
                ),
                (
                    "path: /dev/stdout",
                    format!("path: {}", dir.join("access.log").display()),
                ),
            ],
        )
    })
    .unwrap_or_else(|log| panic!("Envoy did not start with the trapping module:\n{log}"))
}

/// Status of a request on a fresh connection; `None` for no response.
fn status(envoy: &Envoy) -> Option<u16> {
    let mut stream = connect(envoy.addr);
    let request = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    std::io::Write::write_all(&mut stream, request).expect("write");
    let mut peek = [0u8; 1];
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    match stream.peek(&mut peek) {
        Ok(1) => Some(read_response(&mut stream).status),
        _ => {
            let out = exchange(&mut stream, b"", Duration::from_millis(10));
            assert!(out.bytes.is_empty());
            None
        }
    }
}

#[test]
fn a_trapping_vm_fails_closed_by_default_and_open_with_fail_open() {
    if skip_if_external("loads its own wasm module") {
        return;
    }
    for fail_open in [false, true] {
        let envoy = start_trapping(fail_open);
        let seen: Vec<Option<u16>> = (0..3).map(|_| status(&envoy)).collect();
        let log = envoy.log();
        println!("fail_open {fail_open}: statuses {seen:?}");
        for line in log
            .lines()
            .filter(|l| l.contains("failed") || l.contains("RuntimeError"))
        {
            println!("  log: {line}");
        }
        for line in envoy.access_log(3).lines() {
            println!("  access: {line}");
        }
        assert!(
            log.contains("proxy_on_request_headers failed"),
            "the trap is in Envoy's log:\n{log}"
        );
        if fail_open {
            // Every request passes unfiltered: the route's 200.
            assert_eq!(seen, vec![Some(200); 3], "fail_open passes requests");
        } else {
            // Nothing passes: Envoy answers 503 itself, now and later.
            assert_eq!(seen, vec![Some(503); 3], "fail closed answers 503");
        }
        assert_eq!(
            crate::envoy::http_get(envoy.admin, "/ready")
                .expect("ready")
                .0,
            200,
            "Envoy itself stays up"
        );
    }
}
