//! A tiny HTTP/1.1 file server on an ephemeral loopback port, for Envoy's
//! remote wasm fetch: serves the files of one directory, counts the requests.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct FileServer {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl FileServer {
    /// Serves `dir` until the test process ends (the thread is detached).
    pub fn start(dir: PathBuf) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Skip the rest of the head.
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let path = request_line.split_whitespace().nth(1).unwrap_or("/");
                let name = path.trim_start_matches('/');
                let file = (!name.contains('/') && !name.is_empty())
                    .then(|| std::fs::read(dir.join(name)).ok())
                    .flatten();
                let mut stream = reader.into_inner();
                let _ = match file {
                    Some(body) => write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .and_then(|()| stream.write_all(&body)),
                    None => stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        FileServer { addr, hits }
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A loopback HTTP/1.1 upstream that records the request-target of every
/// request it receives, byte for byte, and answers `200` with an `x-echo`
/// header naming it. One request per connection (it answers
/// `Connection: close`), so Envoy opens a new connection for each.
pub struct EchoServer {
    pub addr: SocketAddr,
    received: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl EchoServer {
    /// Serves until the test process ends (the thread is detached).
    pub fn start(name: &'static str) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut request_line = Vec::new();
                if reader.read_until(b'\n', &mut request_line).is_err() {
                    continue;
                }
                let mut line = Vec::new();
                while reader
                    .read_until(b'\n', &mut line)
                    .map(|n| n > 2)
                    .unwrap_or(false)
                {
                    line.clear();
                }
                // `METHOD SP request-target SP HTTP/1.1`: the target is
                // everything between the first and the last space.
                let trimmed = request_line.trim_ascii_end();
                let target = match (
                    trimmed.iter().position(|&b| b == b' '),
                    trimmed.iter().rposition(|&b| b == b' '),
                ) {
                    (Some(first), Some(last)) if first < last => trimmed[first + 1..last].to_vec(),
                    _ => trimmed.to_vec(),
                };
                log.lock().expect("echo log").push(target);
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nx-echo: {name}\r\nContent-Length: 5\r\nConnection: close\r\n\r\necho\n"
                );
            }
        });
        EchoServer { addr, received }
    }

    /// The request-targets received since the last call (and forgets them).
    pub fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.received.lock().expect("echo log"))
    }
}
