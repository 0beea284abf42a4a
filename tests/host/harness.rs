//! A small proxy-wasm host (ABI 0.2.1) on wasmtime: a second engine for the
//! very `drop444.wasm` that Envoy runs.
//!
//! It implements the host side of the calls drop444 makes (see `docs/abi.md`),
//! answers every other import with `Unimplemented`, and records each call the
//! module makes, in order, with the status it got back, so tests can assert
//! the exact host calls of a decision. Values are handed to the guest the way
//! proxy-wasm hosts do it: memory from the guest's `proxy_on_memory_allocate`
//! (or `malloc`), then the pointer and size written where the guest asked.
//!
//! Knobs ([`HostOptions`]) let a test play a different host: one whose
//! `proxy_close_stream` fails, one without `proxy_get_header_map_pairs` or
//! Envoy's `request.headers.<name>` attribute, or Envoy's quirk of returning
//! only the first line of a repeated header from `proxy_get_header_map_value`.
//! Every host call is recorded, and every VM re-entry to allocate a returned
//! value is counted ([`Stream::allocations`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use wasmtime::{
    bail, format_err, Caller, Config, Engine, Func, Instance, Linker, Memory, Module, Result,
    Store, TypedFunc, Val, ValType,
};

/// proxy-wasm status codes (ABI 0.2.1), as returned by host functions. The
/// whole list, though this host does not answer with every code.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
    /// Not a proxy-wasm status at all: what a broken host might answer.
    Unknown = 99,
}

impl Status {
    fn code(self) -> i32 {
        self as i32
    }
}

/// `proxy_on_request_headers` results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

#[allow(dead_code)]
pub const LOG_CRITICAL: u32 = 5;
pub const LOG_ERROR: u32 = 4;
/// `BufferType::PluginConfiguration`.
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
/// `BufferType::DownstreamData`.
pub const BUFFER_DOWNSTREAM_DATA: u32 = 2;
/// `BufferType::VmConfiguration`.
pub const BUFFER_VM_CONFIGURATION: u32 = 6;
/// `MapType::HttpRequestHeaders`.
pub const MAP_REQUEST_HEADERS: u32 = 0;
/// `StreamType::HttpRequest`.
pub const STREAM_HTTP_REQUEST: u32 = 0;

/// One call the module made to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Log {
        level: u32,
        message: String,
    },
    GetBufferBytes {
        buffer: u32,
        start: u32,
        max_size: u32,
    },
    GetHeaderMapValue {
        map: u32,
        key: String,
    },
    GetHeaderMapPairs {
        map: u32,
    },
    GetProperty {
        path: Vec<String>,
    },
    SetProperty {
        path: Vec<String>,
        value: Vec<u8>,
    },
    CloseStream {
        stream: u32,
    },
    SendLocalResponse {
        status_code: u32,
        details: Vec<u8>,
        body: Vec<u8>,
        headers: Vec<(String, Vec<u8>)>,
        grpc_status: i32,
    },
    DefineMetric {
        kind: u32,
        name: String,
    },
    IncrementMetric {
        id: u32,
        offset: i64,
    },
    RecordMetric {
        id: u32,
        value: u64,
    },
    GetMetric {
        id: u32,
    },
    GetSharedData {
        key: String,
    },
    SetSharedData {
        key: String,
        value: Vec<u8>,
        cas: u32,
    },
    GetCurrentTimeNanoseconds,
    SetTickPeriodMilliseconds {
        millis: u32,
    },
    /// A WASI import (the Rust standard library's, e.g. `random_get`).
    Wasi {
        name: String,
    },
    /// An import this host does not implement: it answered `Unimplemented`.
    Unimplemented {
        module: String,
        name: String,
    },
}

impl Call {
    /// The import this call went through.
    pub fn import(&self) -> &str {
        match self {
            Call::Log { .. } => "proxy_log",
            Call::GetBufferBytes { .. } => "proxy_get_buffer_bytes",
            Call::GetHeaderMapValue { .. } => "proxy_get_header_map_value",
            Call::GetHeaderMapPairs { .. } => "proxy_get_header_map_pairs",
            Call::GetProperty { .. } => "proxy_get_property",
            Call::SetProperty { .. } => "proxy_set_property",
            Call::CloseStream { .. } => "proxy_close_stream",
            Call::SendLocalResponse { .. } => "proxy_send_local_response",
            Call::DefineMetric { .. } => "proxy_define_metric",
            Call::IncrementMetric { .. } => "proxy_increment_metric",
            Call::RecordMetric { .. } => "proxy_record_metric",
            Call::GetMetric { .. } => "proxy_get_metric",
            Call::GetSharedData { .. } => "proxy_get_shared_data",
            Call::SetSharedData { .. } => "proxy_set_shared_data",
            Call::GetCurrentTimeNanoseconds => "proxy_get_current_time_nanoseconds",
            Call::SetTickPeriodMilliseconds { .. } => "proxy_set_tick_period_milliseconds",
            Call::Wasi { name } | Call::Unimplemented { name, .. } => name,
        }
    }
}

/// A call and the status the host returned for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub call: Call,
    pub status: Status,
}

/// How `proxy_get_header_map_value` answers for a header sent on several lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderValue {
    /// All lines joined with `,` (what `request.headers.<name>` gives in Envoy).
    Joined,
    /// Only the first line: Envoy's behaviour for non-inline headers.
    FirstLine,
}

/// How the host answers a call it is configured to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Return(Status),
    /// The host traps the VM (Kong's ngx_wasm_module does this for functions
    /// it has not implemented, `proxy_close_stream` among them).
    Trap,
}

/// What kind of host to play.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// How `proxy_close_stream` answers. Anything but `Return(Ok)` plays a
    /// host that cannot close a stream.
    pub close_stream: Reply,
    /// What `proxy_set_property` returns for a path the host does not know
    /// (Envoy stores any path as filter state: `Ok`; Kong: `NotFound`).
    pub set_unknown_property: Status,
    pub header_value: HeaderValue,
    /// Whether `proxy_get_property(["request", "headers", name])` is answered,
    /// as Envoy does; without it the property is `NotFound`.
    pub request_header_attributes: bool,
    /// Whether `proxy_get_header_map_pairs` is answered (every header line in
    /// one call, as Envoy does); without it the call is `Unimplemented`.
    pub header_map_pairs: bool,
    /// What `proxy_get_current_time_nanoseconds` reports.
    pub now_nanos: u64,
    pub vm_configuration: Vec<u8>,
    /// Properties the host knows from the start (path segments joined with
    /// `.`), e.g. `plugin_root_id`.
    pub properties: Vec<(String, Vec<u8>)>,
    /// A hostile host: these imports (by name) answer this status, whatever
    /// they did (any output is written as usual, then the status replaced).
    pub hostile: Vec<(String, Status)>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            close_stream: Reply::Return(Status::Ok),
            set_unknown_property: Status::Ok,
            header_value: HeaderValue::Joined,
            request_header_attributes: true,
            header_map_pairs: true,
            now_nanos: 1_700_000_000_000_000_000,
            vm_configuration: Vec::new(),
            properties: Vec::new(),
            hostile: Vec::new(),
        }
    }
}

impl HostOptions {
    /// Kong's ngx_wasm_module as its source reads: `proxy_close_stream` traps
    /// ("function not yet implemented"), `proxy_set_property` outside its
    /// known and `wasmx.*` paths is `NotFound`.
    pub fn kong_like() -> Self {
        HostOptions {
            close_stream: Reply::Trap,
            set_unknown_property: Status::NotFound,
            ..HostOptions::default()
        }
    }

    /// Envoy as measured (docs/envoy-behaviour.md): attributes answered, the
    /// header map gives only the first line of a repeated header.
    pub fn envoy_like() -> Self {
        HostOptions {
            header_value: HeaderValue::FirstLine,
            ..HostOptions::default()
        }
    }
}

/// One HTTP request as the host presents it to the filter.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// `:authority` (HTTP/1 `Host`); `None`: absent.
    pub authority: Option<Vec<u8>>,
    /// Header lines in order, as sent; names are lower-cased by the host.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    pub fn get(authority: &str) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            authority: Some(authority.as_bytes().to_vec()),
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Parses an HTTP/1.1 request head the way Envoy's codec presents it to
    /// filters: `Host` becomes `:authority`, header names are lower-cased,
    /// values lose surrounding whitespace.
    pub fn from_http1(bytes: &[u8]) -> Request {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let mut request = Request {
            method: parts.next().unwrap_or_default().to_string(),
            path: parts.next().unwrap_or_default().to_string(),
            authority: None,
            headers: Vec::new(),
        };
        for line in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').expect("header line without colon");
            let value = value.trim_matches([' ', '\t']).as_bytes().to_vec();
            if name.eq_ignore_ascii_case("host") {
                request.authority = Some(value);
            } else {
                request.headers.push((name.to_string(), value));
            }
        }
        request
    }

    /// The request header map as a host holds it: pseudo-headers first.
    fn header_map(&self) -> Vec<(String, Vec<u8>)> {
        let mut map = Vec::new();
        if let Some(authority) = &self.authority {
            map.push((":authority".to_string(), authority.clone()));
        }
        map.push((":path".into(), self.path.as_bytes().to_vec()));
        map.push((":method".into(), self.method.as_bytes().to_vec()));
        map.push((":scheme".into(), b"http".to_vec()));
        map.extend(
            self.headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.clone())),
        );
        map
    }
}

/// Shared key-value store with compare-and-swap, as in proxy-wasm hosts: each
/// write gets a new non-zero CAS; a write with a non-zero CAS that is not the
/// current one fails with `CasMismatch`.
#[derive(Debug, Default)]
pub struct SharedData {
    entries: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl SharedData {
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.entries.get(key).cloned()
    }

    pub fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Status {
        if let Some((_, current)) = self.entries.get(key) {
            if cas != 0 && cas != *current {
                return Status::CasMismatch;
            }
        }
        self.last_cas = self.last_cas.wrapping_add(1).max(1);
        self.entries
            .insert(key.to_string(), (value.to_vec(), self.last_cas));
        Status::Ok
    }
}

/// Metric kinds (`MetricType`).
pub const COUNTER: u32 = 0;
pub const GAUGE: u32 = 1;
pub const HISTOGRAM: u32 = 2;

/// Metrics as a host keeps them. Counters only go up; gauges take signed
/// increments and recorded values; histograms take recorded values only.
#[derive(Debug, Default)]
pub struct Metrics {
    /// id -> (kind, name, value); histograms keep the sum of their samples.
    by_id: BTreeMap<u32, (u32, String, i64)>,
}

impl Metrics {
    pub fn define(&mut self, kind: u32, name: &str) -> Result<u32, Status> {
        if kind > HISTOGRAM {
            return Err(Status::BadArgument);
        }
        if let Some((id, _)) = self
            .by_id
            .iter()
            .find(|(_, (k, n, _))| *k == kind && n == name)
        {
            return Ok(*id);
        }
        let id = self.by_id.len() as u32 + 1;
        self.by_id.insert(id, (kind, name.to_string(), 0));
        Ok(id)
    }

    pub fn increment(&mut self, id: u32, offset: i64) -> Status {
        match self.by_id.get_mut(&id) {
            None => Status::NotFound,
            Some((COUNTER, _, _)) if offset < 0 => Status::BadArgument,
            Some((HISTOGRAM, _, _)) => Status::BadArgument,
            Some((_, _, value)) => {
                *value = value.saturating_add(offset);
                Status::Ok
            }
        }
    }

    pub fn record(&mut self, id: u32, sample: u64) -> Status {
        let sample = i64::try_from(sample).unwrap_or(i64::MAX);
        match self.by_id.get_mut(&id) {
            None => Status::NotFound,
            Some((COUNTER, _, _)) => Status::BadArgument,
            Some((GAUGE, _, value)) => {
                *value = sample;
                Status::Ok
            }
            Some((_, _, value)) => {
                *value = value.saturating_add(sample);
                Status::Ok
            }
        }
    }

    pub fn get(&self, id: u32) -> Result<u64, Status> {
        match self.by_id.get(&id) {
            None => Err(Status::NotFound),
            Some((HISTOGRAM, _, _)) => Err(Status::BadArgument),
            Some((_, _, value)) => Ok(*value as u64),
        }
    }

    /// Value by name, for assertions.
    pub fn value(&self, name: &str) -> Option<i64> {
        self.by_id
            .values()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, v)| *v)
    }
}

/// Everything the host knows; `Store` data.
pub struct HostState {
    pub options: HostOptions,
    pub plugin_configuration: Vec<u8>,
    /// The request whose context is active, if any.
    request: Option<Vec<(String, Vec<u8>)>>,
    /// Properties set by the module (path segments joined with `.`).
    pub properties: HashMap<String, Vec<u8>>,
    pub calls: Vec<Record>,
    pub shared_data: SharedData,
    pub metrics: Metrics,
    pub tick_period_millis: u32,
    /// Bytes the module wrote to stdout/stderr through WASI.
    pub stdio: Vec<u8>,
    /// The downstream bytes of the L4 connection being inspected.
    pub downstream: Vec<u8>,
    /// Times the host re-entered the VM to allocate memory for a value it
    /// returns (`proxy_on_memory_allocate` / `malloc`).
    pub allocations: usize,
    /// Exports this host used: called, or read (`memory`, the ABI version).
    pub exports_used: BTreeSet<String>,
    /// Calls into the VM: every export called (callbacks the module does not
    /// export are not called, as in Envoy's host) and every allocation.
    pub vm_entries: usize,
    /// Wasm operators the module executed, all VM entries together (fuel).
    pub wasm_ops: u64,
    random_counter: u8,
    memory: Option<Memory>,
    allocate: Option<(TypedFunc<i32, i32>, &'static str)>,
}

impl HostState {
    fn record(&mut self, call: Call, status: Status) -> i32 {
        let status = self
            .options
            .hostile
            .iter()
            .find(|(import, _)| *import == call.import())
            .map_or(status, |(_, hostile)| *hostile);
        self.calls.push(Record { call, status });
        status.code()
    }

    /// Log lines at `level` or above.
    pub fn logs(&self, min_level: u32) -> Vec<String> {
        self.calls
            .iter()
            .filter_map(|r| match &r.call {
                Call::Log { level, message } if *level >= min_level => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn request_header(&self, name: &str, mode: HeaderValue) -> Option<Vec<u8>> {
        let map = self.request.as_ref()?;
        let name = name.to_ascii_lowercase();
        let mut lines = map.iter().filter(|(n, _)| *n == name).map(|(_, v)| v);
        let first = lines.next()?.clone();
        Some(match mode {
            HeaderValue::FirstLine => first,
            HeaderValue::Joined => lines.fold(first, |mut joined, v| {
                joined.push(b',');
                joined.extend_from_slice(v);
                joined
            }),
        })
    }
}

/// The outcome of one request's `proxy_on_request_headers`.
#[derive(Debug)]
pub struct Stream {
    /// `None` if the call trapped.
    pub action: Option<Action>,
    pub trap: Option<String>,
    /// Host calls made during `proxy_on_request_headers`, in order.
    pub calls: Vec<Record>,
    /// Host calls made while the host finished the context
    /// (`proxy_on_done`, `proxy_on_log`, `proxy_on_delete`).
    pub teardown_calls: Vec<Record>,
    /// VM re-entries to allocate memory for returned values, during
    /// context creation and `proxy_on_request_headers` (`teardown_calls`
    /// make none: the teardown is checked to call nothing).
    pub allocations: usize,
    /// Every call into the VM for this request, from context creation to
    /// deletion: callbacks the module exports, and allocations.
    pub vm_entries: usize,
    /// Wasm operators the module executed for this request, from context
    /// creation to deletion, allocations included (wasmtime fuel).
    pub wasm_ops: u64,
}

impl Stream {
    /// The calls without logging and WASI noise.
    pub fn proxy_calls(&self) -> Vec<&Call> {
        self.calls
            .iter()
            .map(|r| &r.call)
            .filter(|c| !matches!(c, Call::Log { .. } | Call::Wasi { .. }))
            .collect()
    }

    pub fn count(&self, import: &str) -> usize {
        self.calls
            .iter()
            .filter(|r| r.call.import() == import)
            .count()
    }
}

/// The outcome of one L4 connection ([`Plugin::connection`]).
#[derive(Debug)]
pub struct Connection {
    /// Each export called and its result (0 Continue, 1 Pause for actions).
    pub actions: Vec<(&'static str, Option<i32>)>,
    /// The first trap, if any (the export and the error).
    pub trap: Option<String>,
    pub calls: Vec<Record>,
}

/// The plugin failed to start; what the host saw.
#[derive(Debug)]
pub struct Rejected {
    pub reason: String,
    pub calls: Vec<Record>,
}

pub fn wasm_path() -> PathBuf {
    let path = std::env::var_os("DROP444_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/wasm32-wasip1/release/drop444.wasm")
        });
    assert!(
        path.is_file(),
        "{} is missing: run `make wasm` (or `make test-host`, which builds it)",
        path.display()
    );
    path
}

/// The built module's bytes, read once.
pub fn wasm_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| fs::read(wasm_path()).expect("read drop444.wasm"))
}

/// The names of the module's exports, sorted.
pub fn module_exports() -> Vec<String> {
    let (_, module) = compiled();
    let mut names: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
    names.sort();
    names
}

/// Compiled once per test process and shared by every plugin instance.
///
/// Cranelift is a debug build in `cargo test`, and compiling this module
/// takes it 4-10 s on a busy 2-core machine, so the compiled module is cached
/// in `target/drop444-host-cache/`, keyed by the module's bytes. wasmtime
/// refuses a cached file from another wasmtime version or configuration; the
/// harness then compiles afresh.
fn compiled() -> &'static (Engine, Module) {
    static COMPILED: OnceLock<(Engine, Module)> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let start = std::time::Instant::now();
        // Fuel metering: wasmtime charges one unit per wasm operator executed
        // (control markers such as `nop`, `block` and `end` are free), so the
        // fuel a call burns is the module's own work, in wasm operators, the
        // same on every machine (`Stream::wasm_ops`).
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).expect("wasmtime engine with fuel");
        let bytes = wasm_bytes();
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(bytes, &mut hasher);
        let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/drop444-host-cache")
            .join(format!(
                "{:016x}-{}-fuel.cwasm",
                std::hash::Hasher::finish(&hasher),
                bytes.len()
            ));
        // SAFETY: the file is one this harness wrote with Module::serialize
        // (and wasmtime checks its version and configuration header).
        if let Ok(module) = unsafe { Module::deserialize_file(&engine, &cache) } {
            eprintln!("wasmtime: drop444.wasm from cache in {:?}", start.elapsed());
            return (engine, module);
        }
        let module = Module::new(&engine, bytes).expect("compile drop444.wasm");
        eprintln!("wasmtime: compiled drop444.wasm in {:?}", start.elapsed());
        if let (Some(dir), Ok(serialized)) = (cache.parent(), module.serialize()) {
            let _ = fs::create_dir_all(dir);
            let _ = fs::write(&cache, serialized);
        }
        (engine, module)
    })
}

const ROOT_CONTEXT: u32 = 1;
/// Fuel each VM entry starts with: far more than any callback needs (a
/// 10,000-rule configuration takes about 10^9), so it never runs out.
const FUEL: u64 = 1 << 48;
/// The export that declares the ABI version drop444 is built for.
pub const ABI_VERSION: &str = "proxy_abi_version_0_2_1";

/// One VM with drop444 loaded and configured: a root context, ready for
/// requests. Like one Envoy worker's copy of the plugin.
pub struct Plugin {
    store: Store<HostState>,
    instance: Instance,
    next_context: u32,
}

impl Plugin {
    /// Starts the VM and configures the plugin; panics if it refuses.
    pub fn start(configuration: &str, options: HostOptions) -> Plugin {
        match Plugin::try_start(configuration, options) {
            Ok(plugin) => plugin,
            Err(rejected) => panic!("plugin refused to start: {rejected:#?}"),
        }
    }

    /// The host's start-up sequence: instantiate, `_initialize`, create the
    /// root context, `proxy_on_vm_start`, `proxy_on_configure`.
    pub fn try_start(configuration: &str, options: HostOptions) -> Result<Plugin, Rejected> {
        let (engine, module) = compiled();
        let vm_configuration_size = options.vm_configuration.len() as i32;
        let properties = options.properties.iter().cloned().collect();
        let mut store = Store::new(
            engine,
            HostState {
                options,
                plugin_configuration: configuration.as_bytes().to_vec(),
                request: None,
                properties,
                calls: Vec::new(),
                shared_data: SharedData::default(),
                metrics: Metrics::default(),
                tick_period_millis: 0,
                stdio: Vec::new(),
                downstream: Vec::new(),
                allocations: 0,
                exports_used: BTreeSet::new(),
                vm_entries: 0,
                wasm_ops: 0,
                random_counter: 0,
                memory: None,
                allocate: None,
            },
        );
        let reject = |store: &Store<HostState>, reason: String| Rejected {
            reason,
            calls: store.data().calls.clone(),
        };
        // Like Envoy, refuse a module that does not declare the ABI version.
        if !module.exports().any(|e| e.name() == ABI_VERSION) {
            return Err(reject(&store, format!("no {ABI_VERSION} export")));
        }
        store.data_mut().exports_used.insert(ABI_VERSION.into());
        let linker = linker(engine, module).map_err(|e| reject(&store, format!("{e:#}")))?;
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| reject(&store, format!("instantiate: {e:#}")))?;
        let memory = instance.get_memory(&mut store, "memory");
        let allocate = ["proxy_on_memory_allocate", "malloc"]
            .into_iter()
            .find_map(|name| {
                let func = instance.get_typed_func::<i32, i32>(&mut store, name).ok()?;
                Some((func, name))
            });
        if memory.is_some() {
            store.data_mut().exports_used.insert("memory".into());
        }
        store.data_mut().memory = memory;
        store.data_mut().allocate = allocate;
        let mut plugin = Plugin {
            store,
            instance,
            next_context: ROOT_CONTEXT + 1,
        };
        let steps: [(&str, &[i32]); 4] = [
            ("_initialize", &[]),
            ("proxy_on_context_create", &[ROOT_CONTEXT as i32, 0]),
            (
                "proxy_on_vm_start",
                &[ROOT_CONTEXT as i32, vm_configuration_size],
            ),
            (
                "proxy_on_configure",
                &[ROOT_CONTEXT as i32, configuration.len() as i32],
            ),
        ];
        for (export, args) in steps {
            match plugin.call(export, args) {
                Ok(Some(0)) => {
                    return Err(reject(&plugin.store, format!("{export} returned false")))
                }
                Ok(_) => {}
                Err(e) => return Err(reject(&plugin.store, format!("{export} trapped: {e:#}"))),
            }
        }
        Ok(plugin)
    }

    /// Calls an exported function with i32 arguments; its i32 result if any.
    /// A `proxy_on_*` callback the module does not export is not called and
    /// answers what proxy-wasm-cpp-host (Envoy's host) assumes then: true for
    /// `proxy_on_vm_start`, `proxy_on_configure` and `proxy_on_done`,
    /// Continue for a stream callback, nothing for the others.
    fn call(&mut self, export: &str, args: &[i32]) -> Result<Option<i32>> {
        let Some(func) = self.instance.get_func(&mut self.store, export) else {
            return match export {
                "proxy_on_vm_start" | "proxy_on_configure" | "proxy_on_done" => Ok(Some(1)),
                "proxy_on_request_headers"
                | "proxy_on_request_body"
                | "proxy_on_request_trailers"
                | "proxy_on_response_headers"
                | "proxy_on_response_body"
                | "proxy_on_response_trailers"
                | "proxy_on_new_connection"
                | "proxy_on_downstream_data"
                | "proxy_on_upstream_data" => Ok(Some(0)),
                _ if export.starts_with("proxy_on_") => Ok(None),
                _ => Err(format_err!("module does not export {export}")),
            };
        };
        let func: Func = func;
        self.store.data_mut().vm_entries += 1;
        self.store
            .data_mut()
            .exports_used
            .insert(export.to_string());
        let params: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
        let mut results = vec![Val::I32(0); func.ty(&self.store).results().len()];
        self.store.set_fuel(FUEL)?;
        let called = func.call(&mut self.store, &params, &mut results);
        let burnt = FUEL - self.store.get_fuel()?;
        self.store.data_mut().wasm_ops += burnt;
        if std::env::var_os("HOST_FUEL_TRACE").is_some() {
            eprintln!("  {export}: {burnt} wasm operators");
        }
        called?;
        Ok(results.first().and_then(Val::i32))
    }

    /// Runs one request through the filter the way Envoy does: create an HTTP
    /// context, `proxy_on_request_headers` (end of stream: a GET), then
    /// finish the context.
    pub fn request(&mut self, request: &Request) -> Stream {
        let context = self.next_context;
        self.next_context += 1;
        let map = request.header_map();
        let num_headers = map.len() as i32;
        self.store.data_mut().request = Some(map);

        let before = self.store.data().calls.len();
        let allocations_before = self.store.data().allocations;
        let entries_before = self.store.data().vm_entries;
        let ops_before = self.store.data().wasm_ops;
        let created = self.call(
            "proxy_on_context_create",
            &[context as i32, ROOT_CONTEXT as i32],
        );
        let result = created.and_then(|_| {
            self.call(
                "proxy_on_request_headers",
                &[context as i32, num_headers, 1],
            )
        });
        let calls = self.store.data().calls[before..].to_vec();
        let allocations = self.store.data().allocations - allocations_before;
        let (action, trap) = match result {
            Ok(Some(0)) => (Some(Action::Continue), None),
            Ok(Some(1)) => (Some(Action::Pause), None),
            Ok(other) => (None, Some(format!("bad action {other:?}"))),
            Err(e) => (None, Some(format!("{e:#}"))),
        };

        let before = self.store.data().calls.len();
        if trap.is_none() {
            for export in ["proxy_on_done", "proxy_on_log", "proxy_on_delete"] {
                if let Err(e) = self.call(export, &[context as i32]) {
                    panic!("{export} trapped: {e:#}");
                }
            }
        }
        let teardown_calls = self.store.data().calls[before..].to_vec();
        self.store.data_mut().request = None;
        let state = self.store.data();
        let vm_entries = state.vm_entries - entries_before + state.allocations - allocations_before;
        let wasm_ops = state.wasm_ops - ops_before;
        Stream {
            action,
            trap,
            calls,
            teardown_calls,
            allocations,
            vm_entries,
            wasm_ops,
        }
    }

    /// Runs one downstream connection through the filter loaded as a network
    /// filter (the L4 plugin): create a stream context, new connection,
    /// `data` from downstream, one upstream write, downstream close, then
    /// finish the context. Stops at the first trap.
    pub fn connection(&mut self, data: &[u8]) -> Connection {
        let context = self.next_context;
        self.next_context += 1;
        self.store.data_mut().downstream = data.to_vec();
        let before = self.store.data().calls.len();
        let c = context as i32;
        let steps: [(&str, Vec<i32>); 8] = [
            ("proxy_on_context_create", vec![c, ROOT_CONTEXT as i32]),
            ("proxy_on_new_connection", vec![c]),
            ("proxy_on_downstream_data", vec![c, data.len() as i32, 0]),
            ("proxy_on_upstream_data", vec![c, 10, 0]),
            ("proxy_on_downstream_connection_close", vec![c, 1]),
            ("proxy_on_done", vec![c]),
            ("proxy_on_log", vec![c]),
            ("proxy_on_delete", vec![c]),
        ];
        let mut actions = Vec::new();
        let mut trap = None;
        for (export, args) in steps {
            match self.call(export, &args) {
                Ok(result) => actions.push((export, result)),
                Err(e) => {
                    trap = Some(format!("{export}: {e:#}"));
                    break;
                }
            }
        }
        self.store.data_mut().downstream.clear();
        Connection {
            actions,
            trap,
            calls: self.store.data().calls[before..].to_vec(),
        }
    }

    /// The root context's timer fires (`proxy_on_tick`), as Envoy does every
    /// tick period the module asked for; the host calls it made.
    pub fn tick(&mut self) -> Vec<Record> {
        match self.try_tick() {
            Ok(calls) => calls,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Plugin::tick`], with a trap as `Err`.
    pub fn try_tick(&mut self) -> Result<Vec<Record>, String> {
        let before = self.store.data().calls.len();
        if let Err(e) = self.call("proxy_on_tick", &[ROOT_CONTEXT as i32]) {
            return Err(format!("proxy_on_tick trapped: {e:#}"));
        }
        Ok(self.store.data().calls[before..].to_vec())
    }

    pub fn state(&self) -> &HostState {
        self.store.data()
    }

    /// Size of the module's linear memory in bytes.
    pub fn memory_size(&self) -> usize {
        self.store
            .data()
            .memory
            .map(|m| m.data_size(&self.store))
            .unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// Guest memory helpers.

fn memory(caller: &Caller<'_, HostState>) -> Result<Memory> {
    caller
        .data()
        .memory
        .ok_or_else(|| format_err!("module exports no memory"))
}

fn read(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len as u32 as usize];
    memory(caller)?.read(caller, ptr as u32 as usize, &mut buf)?;
    Ok(buf)
}

fn read_string(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

fn write(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let memory = memory(caller)?;
    memory.write(caller, ptr as u32 as usize, bytes)?;
    Ok(())
}

fn write_u32(caller: &mut Caller<'_, HostState>, ptr: i32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Copies `data` into memory the guest allocates, and writes its address and
/// size to `ptr_ptr` / `size_ptr`: how every proxy-wasm host returns bytes.
fn give(
    caller: &mut Caller<'_, HostState>,
    data: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> Result<()> {
    let (allocate, name) = caller
        .data()
        .allocate
        .clone()
        .ok_or_else(|| format_err!("module exports no proxy_on_memory_allocate/malloc"))?;
    caller.data_mut().exports_used.insert(name.to_string());
    caller.data_mut().allocations += 1;
    let fuel = caller.get_fuel().unwrap_or(0);
    let address = allocate.call(&mut *caller, data.len() as i32)?;
    if std::env::var_os("HOST_FUEL_TRACE").is_some() {
        let burnt = fuel.saturating_sub(caller.get_fuel().unwrap_or(0));
        eprintln!("    {name}({}): {burnt} wasm operators", data.len());
    }
    if address == 0 && !data.is_empty() {
        bail!("guest allocation of {} bytes failed", data.len());
    }
    write(caller, address, data)?;
    write_u32(caller, ptr_ptr, address as u32)?;
    write_u32(caller, size_ptr, data.len() as u32)
}

/// Property paths are their segments separated by NUL bytes.
fn split_path(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Header map serialisation: u32 count, then (u32 key size, u32 value size)
/// per pair, then each key and value followed by a NUL byte; little endian.
pub fn serialize_map(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

pub fn deserialize_map(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let word = |at: usize| -> Result<usize> {
        let b = bytes
            .get(at..at + 4)
            .ok_or_else(|| format_err!("map truncated"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = word(0)?;
    let mut data = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let (klen, vlen) = (word(4 + i * 8)?, word(8 + i * 8)?);
        let key = bytes
            .get(data..data + klen)
            .ok_or_else(|| format_err!("map truncated"))?;
        data += klen + 1;
        let value = bytes
            .get(data..data + vlen)
            .ok_or_else(|| format_err!("map truncated"))?;
        data += vlen + 1;
        pairs.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
    }
    Ok(pairs)
}

// ---------------------------------------------------------------------------
// The host functions.

type C<'a> = Caller<'a, HostState>;

fn linker(engine: &Engine, module: &Module) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    linker.allow_shadowing(true);

    // First every import answers `Unimplemented` (or traps, for WASI), so the
    // module instantiates whatever it links; the real ones below shadow them.
    for import in module.imports() {
        let (module_name, name) = (import.module().to_string(), import.name().to_string());
        let Some(ty) = import.ty().func().cloned() else {
            bail!("non-function import {module_name}.{name}");
        };
        let (m, n) = (module_name.clone(), name.clone());
        let wide: Vec<bool> = ty.results().map(|t| matches!(t, ValType::I64)).collect();
        linker.func_new(
            &module_name,
            &name,
            ty,
            move |mut caller: C<'_>, _params, results| {
                if m.starts_with("wasi") {
                    bail!("WASI {n} is not provided by this host");
                }
                let code = caller.data_mut().record(
                    Call::Unimplemented {
                        module: m.clone(),
                        name: n.clone(),
                    },
                    Status::Unimplemented,
                );
                for (r, wide) in results.iter_mut().zip(&wide) {
                    *r = if *wide { Val::I64(0) } else { Val::I32(code) };
                }
                Ok(())
            },
        )?;
    }

    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            let message = read_string(&c, ptr, len)?;
            Ok(c.data_mut().record(
                Call::Log {
                    level: level as u32,
                    message,
                },
                Status::Ok,
            ))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>,
         buffer: i32,
         start: i32,
         max_size: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            let call = Call::GetBufferBytes {
                buffer: buffer as u32,
                start: start as u32,
                max_size: max_size as u32,
            };
            let data = match buffer as u32 {
                BUFFER_PLUGIN_CONFIGURATION => c.data().plugin_configuration.clone(),
                BUFFER_VM_CONFIGURATION => c.data().options.vm_configuration.clone(),
                BUFFER_DOWNSTREAM_DATA => c.data().downstream.clone(),
                _ => return Ok(c.data_mut().record(call, Status::NotFound)),
            };
            let start = (start as u32 as usize).min(data.len());
            let end = start
                .saturating_add(max_size as u32 as usize)
                .min(data.len());
            // Like proxy-wasm hosts: nothing to copy is `Ok` with the
            // guest's return pointers left as they were (null).
            if end > start {
                give(&mut c, &data[start..end], ptr_ptr, size_ptr)?;
            }
            Ok(c.data_mut().record(call, Status::Ok))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>,
         map: i32,
         key_ptr: i32,
         key_len: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            let key = read_string(&c, key_ptr, key_len)?;
            let value = if map as u32 == MAP_REQUEST_HEADERS {
                let mode = c.data().options.header_value;
                c.data().request_header(&key, mode)
            } else {
                None
            };
            let status = match value {
                Some(value) => {
                    give(&mut c, &value, ptr_ptr, size_ptr)?;
                    Status::Ok
                }
                None => Status::NotFound,
            };
            Ok(c.data_mut().record(
                Call::GetHeaderMapValue {
                    map: map as u32,
                    key,
                },
                status,
            ))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, map: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            if !c.data().options.header_map_pairs {
                return Ok(c.data_mut().record(
                    Call::GetHeaderMapPairs { map: map as u32 },
                    Status::Unimplemented,
                ));
            }
            let pairs = match (map as u32, c.data().request.clone()) {
                (MAP_REQUEST_HEADERS, Some(pairs)) => pairs,
                _ => Vec::new(),
            };
            give(&mut c, &serialize_map(&pairs), ptr_ptr, size_ptr)?;
            Ok(c.data_mut()
                .record(Call::GetHeaderMapPairs { map: map as u32 }, Status::Ok))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, path_ptr: i32, path_len: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            let path = split_path(&read(&c, path_ptr, path_len)?);
            let value = match path.as_slice() {
                [request, headers, name]
                    if request == "request"
                        && headers == "headers"
                        && c.data().options.request_header_attributes =>
                {
                    c.data().request_header(name, HeaderValue::Joined)
                }
                _ => c.data().properties.get(&path.join(".")).cloned(),
            };
            let status = match value {
                Some(value) => {
                    give(&mut c, &value, ptr_ptr, size_ptr)?;
                    Status::Ok
                }
                None => Status::NotFound,
            };
            Ok(c.data_mut().record(Call::GetProperty { path }, status))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>,
         path_ptr: i32,
         path_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> Result<i32> {
            let path = split_path(&read(&c, path_ptr, path_len)?);
            let value = read(&c, value_ptr, value_len)?;
            let status = c.data().options.set_unknown_property;
            if status == Status::Ok {
                c.data_mut()
                    .properties
                    .insert(path.join("."), value.clone());
            }
            Ok(c.data_mut()
                .record(Call::SetProperty { path, value }, status))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: C<'_>, stream: i32| -> Result<i32> {
            let call = Call::CloseStream {
                stream: stream as u32,
            };
            match c.data().options.close_stream {
                Reply::Return(status) => Ok(c.data_mut().record(call, status)),
                Reply::Trap => {
                    c.data_mut().record(call, Status::Unimplemented);
                    bail!("host trap: proxy_close_stream not implemented")
                }
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         status_code: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         grpc_status: i32|
         -> Result<i32> {
            let details = read(&c, details_ptr, details_len)?;
            let body = read(&c, body_ptr, body_len)?;
            let headers = deserialize_map(&read(&c, headers_ptr, headers_len)?)?;
            Ok(c.data_mut().record(
                Call::SendLocalResponse {
                    status_code: status_code as u32,
                    details,
                    body,
                    headers,
                    grpc_status,
                },
                Status::Ok,
            ))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, kind: i32, name_ptr: i32, name_len: i32, id_ptr: i32| -> Result<i32> {
            let name = read_string(&c, name_ptr, name_len)?;
            let result = c.data_mut().metrics.define(kind as u32, &name);
            let status = match result {
                Ok(id) => {
                    write_u32(&mut c, id_ptr, id)?;
                    Status::Ok
                }
                Err(status) => status,
            };
            Ok(c.data_mut().record(
                Call::DefineMetric {
                    kind: kind as u32,
                    name,
                },
                status,
            ))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: C<'_>, id: i32, offset: i64| -> Result<i32> {
            let status = c.data_mut().metrics.increment(id as u32, offset);
            Ok(c.data_mut().record(
                Call::IncrementMetric {
                    id: id as u32,
                    offset,
                },
                status,
            ))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: C<'_>, id: i32, value: i64| -> Result<i32> {
            let status = c.data_mut().metrics.record(id as u32, value as u64);
            Ok(c.data_mut().record(
                Call::RecordMetric {
                    id: id as u32,
                    value: value as u64,
                },
                status,
            ))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: i32, value_ptr: i32| -> Result<i32> {
            let result = c.data().metrics.get(id as u32);
            let status = match result {
                Ok(value) => {
                    write(&mut c, value_ptr, &value.to_le_bytes())?;
                    Status::Ok
                }
                Err(status) => status,
            };
            Ok(c.data_mut()
                .record(Call::GetMetric { id: id as u32 }, status))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>,
         key_ptr: i32,
         key_len: i32,
         ptr_ptr: i32,
         size_ptr: i32,
         cas_ptr: i32|
         -> Result<i32> {
            let key = read_string(&c, key_ptr, key_len)?;
            let status = match c.data().shared_data.get(&key) {
                Some((value, cas)) => {
                    give(&mut c, &value, ptr_ptr, size_ptr)?;
                    write_u32(&mut c, cas_ptr, cas)?;
                    Status::Ok
                }
                None => Status::NotFound,
            };
            Ok(c.data_mut().record(Call::GetSharedData { key }, status))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32,
         cas: i32|
         -> Result<i32> {
            let key = read_string(&c, key_ptr, key_len)?;
            let value = read(&c, value_ptr, value_len)?;
            let status = c.data_mut().shared_data.set(&key, &value, cas as u32);
            Ok(c.data_mut().record(
                Call::SetSharedData {
                    key,
                    value,
                    cas: cas as u32,
                },
                status,
            ))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, time_ptr: i32| -> Result<i32> {
            let now = c.data().options.now_nanos;
            write(&mut c, time_ptr, &now.to_le_bytes())?;
            Ok(c.data_mut()
                .record(Call::GetCurrentTimeNanoseconds, Status::Ok))
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, millis: i32| -> Result<i32> {
            c.data_mut().tick_period_millis = millis as u32;
            Ok(c.data_mut().record(
                Call::SetTickPeriodMilliseconds {
                    millis: millis as u32,
                },
                Status::Ok,
            ))
        },
    )?;

    // The few WASI calls the Rust standard library links (checked against the
    // module by the ABI test). No files, no environment, no clock.
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "random_get",
        |mut c: C<'_>, ptr: i32, len: i32| -> Result<i32> {
            // Deterministic "randomness": tests must be repeatable.
            let start = c.data().random_counter;
            let bytes: Vec<u8> = (0..len as u32)
                .map(|i| start.wrapping_add(i as u8))
                .collect();
            c.data_mut().random_counter = start.wrapping_add(1);
            write(&mut c, ptr, &bytes)?;
            Ok(c.data_mut().record(
                Call::Wasi {
                    name: "random_get".into(),
                },
                Status::Ok,
            ))
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut c: C<'_>, count_ptr: i32, size_ptr: i32| -> Result<i32> {
            write_u32(&mut c, count_ptr, 0)?;
            write_u32(&mut c, size_ptr, 0)?;
            Ok(c.data_mut().record(
                Call::Wasi {
                    name: "environ_sizes_get".into(),
                },
                Status::Ok,
            ))
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_get",
        |mut c: C<'_>, _environ: i32, _buf: i32| -> Result<i32> {
            Ok(c.data_mut().record(
                Call::Wasi {
                    name: "environ_get".into(),
                },
                Status::Ok,
            ))
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: C<'_>, _fd: i32, iovs: i32, iovs_len: i32, written_ptr: i32| -> Result<i32> {
            let vectors = read(&c, iovs, iovs_len.saturating_mul(8))?;
            let mut total = 0u32;
            for iov in vectors.chunks_exact(8) {
                let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let bytes = read(&c, ptr as i32, len as i32)?;
                c.data_mut().stdio.extend_from_slice(&bytes);
                total += len;
            }
            write_u32(&mut c, written_ptr, total)?;
            Ok(c.data_mut().record(
                Call::Wasi {
                    name: "fd_write".into(),
                },
                Status::Ok,
            ))
        },
    )?;
    linker.func_wrap(WASI, "proc_exit", |_c: C<'_>, code: i32| -> Result<()> {
        bail!("proc_exit({code})")
    })?;

    Ok(linker)
}
