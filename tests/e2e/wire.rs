//! Raw-socket helpers: what exactly did the client receive, and how did the
//! connection end?

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a connection ended from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Orderly close (FIN): `read` returned 0.
    Fin,
    /// Connection reset (RST).
    Reset,
    /// Still open when we stopped waiting.
    StillOpen,
}

/// Bytes received after a request, how the connection ended, and when.
#[derive(Debug)]
pub struct Outcome {
    pub bytes: Vec<u8>,
    pub end: End,
    /// From the end of our write to the end of the connection (or give-up).
    pub elapsed: Duration,
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Writes `request` and reads until the peer closes or `wait` passes.
pub fn exchange(stream: &mut TcpStream, request: &[u8], wait: Duration) -> Outcome {
    stream.write_all(request).expect("write request");
    read_until_close(stream, wait)
}

pub fn read_until_close(stream: &mut TcpStream, wait: Duration) -> Outcome {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = wait.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Outcome {
                bytes,
                end: End::StillOpen,
                elapsed: start.elapsed(),
            };
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => {
                return Outcome {
                    bytes,
                    end: End::Fin,
                    elapsed: start.elapsed(),
                }
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Outcome {
                    bytes,
                    end: End::Reset,
                    elapsed: start.elapsed(),
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Outcome {
                    bytes,
                    end: End::StillOpen,
                    elapsed: start.elapsed(),
                }
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// A parsed HTTP/1.1 response (Content-Length bodies only: all ours have one).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Reads exactly one response from a keep-alive connection.
pub fn read_response(stream: &mut TcpStream) -> Response {
    try_read_response(stream).expect("connection closed before any response byte")
}

/// Reads one response, or `None` if the connection closed before its first
/// byte (a drop on a keep-alive connection).
pub fn try_read_response(stream: &mut TcpStream) -> Option<Response> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            Ok(0) if raw.is_empty() => return None,
            other => panic!(
                "connection ended inside a response head: {other:?}, got {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("body");
    Some(Response { status, head, body })
}

/// A GET request with the given extra header lines (each without CRLF).
pub fn get(host: Option<&str>, extra: &[&str]) -> Vec<u8> {
    let mut req = String::from("GET / HTTP/1.1\r\n");
    if let Some(host) = host {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}
