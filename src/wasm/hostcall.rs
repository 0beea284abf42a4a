//! Every host call drop444 makes, through its own declarations of the
//! proxy-wasm imports (module `env`, the same imports as the SDK's).
//!
//! The Rust SDK's `hostcalls::*` wrappers (and the `Context` trait methods
//! built on them) `panic!("unexpected status")` on any status they do not
//! list, and declare the import's result as their `Status` enum, so a code
//! outside it is not even a valid value. A panic aborts the VM and breaks it
//! for every later request on that worker. Here every import returns a plain
//! `u32`; the wrappers return `Result<_, u32>` (the host's status as the
//! error) and never panic, whatever the host answers.
//!
//! Bytes the host returns live in guest memory the host allocated with the
//! module's `proxy_on_memory_allocate` (the SDK's: a boxed `[u8]` of exactly
//! the size asked for). On `Ok` they are taken over as a `Vec` of that length
//! and capacity, as the SDK does; on any other status the out-pointers are
//! not trusted and nothing is taken over.
//!
//! Function names follow the SDK's `hostcalls` where the signature fits, so
//! a call site only changes its `use`.

use std::ptr::{null, null_mut};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The proxy-wasm ABI's enumerations (spec v0.2.1), as the integers the
/// imports take. drop444 speaks the ABI itself (docs/abi.md explains why it
/// does not link the Rust SDK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// Header maps (`proxy_get_header_map_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    HttpRequestHeaders = 0,
    HttpCallResponseHeaders = 6,
}

/// Buffers (`proxy_get_buffer_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum BufferType {
    DownstreamData = 2,
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

/// Metric kinds (`proxy_define_metric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
}

/// The host's status code; `OK` is success.
pub type Status = u32;
/// proxy-wasm status `Ok`.
pub const OK: Status = 0;
/// proxy-wasm status `NotFound`.
pub const NOT_FOUND: Status = 1;
/// proxy-wasm status `CasMismatch`.
pub const CAS_MISMATCH: Status = 8;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message: *const u8, message_len: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_len: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_len: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_len: usize,
        body: *const u8,
        body_len: usize,
        headers: *const u8,
        headers_len: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name: *const u8,
        name_len: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_len: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
        cas: u32,
    ) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_len: usize,
        headers: *const u8,
        headers_len: usize,
        body: *const u8,
        body_len: usize,
        trailers: *const u8,
        trailers_len: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;
}

fn status(code: u32) -> Result<(), Status> {
    if code == OK {
        Ok(())
    } else {
        Err(code)
    }
}

/// Takes over bytes the host returned with `Ok`: `None` for a null pointer.
///
/// # Safety
/// `data` is null, or points to `size` bytes the host allocated through
/// `proxy_on_memory_allocate(size)` for this call and handed over.
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: per the contract above, an allocation of exactly `size` bytes
    // (align 1) by this module's allocator, now owned by the guest: the same
    // hand-over as the SDK's own `get_buffer` / `get_property`.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// A call that returns bytes through two out-pointers: `Ok(None)` for
/// `NotFound` or no data, `Err(status)` for anything else but `Ok`.
fn bytes_out(
    call: impl FnOnce(*mut *mut u8, *mut usize) -> u32,
) -> Result<Option<Vec<u8>>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        // SAFETY: on `Ok` the host filled both out-pointers per the ABI.
        OK => Ok(unsafe { take(data, size) }),
        NOT_FOUND => Ok(None),
        code => Err(code),
    }
}

/// Property paths are their segments joined by NUL bytes.
fn property_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(segment.as_bytes());
    }
    out
}

/// The proxy-wasm map layout: count, then (name, value) lengths, then the
/// NUL-terminated names and values.
pub fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&len32(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&len32(name.len()));
        out.extend_from_slice(&len32(value.len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Reads a buffer in the proxy-wasm map layout; `None` if it is malformed.
#[allow(dead_code)] // for the list fetcher (src/wasm/lists.rs)
pub fn deserialize_map(data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let Some((count, mut table)) = data.split_first_chunk::<4>() else {
        return Some(Vec::new());
    };
    let count = usize::try_from(u32::from_le_bytes(*count)).ok()?;
    let mut body = table.get(count.checked_mul(8)?..)?;
    let mut pairs = Vec::new();
    for _ in 0..count {
        let (sizes, rest) = table.split_first_chunk::<8>()?;
        table = rest;
        let (name_len, value_len) = sizes.split_first_chunk::<4>()?;
        let name_len = usize::try_from(u32::from_le_bytes(*name_len)).ok()?;
        let value_len = usize::try_from(u32::from_le_bytes(value_len.try_into().ok()?)).ok()?;
        let name = body.get(..name_len)?;
        let after_name = body.get(name_len.checked_add(1)?..)?;
        let value = after_name.get(..value_len)?;
        body = after_name.get(value_len.checked_add(1)?..)?;
        pairs.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    Some(pairs)
}

/// Writes a log line (a refused line is lost, nothing else).
pub fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    // SAFETY: the message is valid for its length during the call.
    status(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}

/// The host clock.
pub fn get_current_time() -> Result<SystemTime, Status> {
    let mut nanos: u64 = 0;
    // SAFETY: the out-pointer is valid for the call.
    status(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(UNIX_EPOCH
        .checked_add(Duration::from_nanos(nanos))
        .unwrap_or(UNIX_EPOCH))
}

/// Asks for `proxy_on_tick` every `period` (saturated to `u32` milliseconds).
pub fn set_tick_period(period: Duration) -> Result<(), Status> {
    let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    status(unsafe { proxy_set_tick_period_milliseconds(millis) })
}

/// Makes `context_id` the context later host calls act on (until the current
/// callback returns); an error for a context that no longer exists.
pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: no pointers; the host looks the id up.
    status(unsafe { proxy_set_effective_context(context_id) })
}

/// `proxy_close_stream` stream types.
const STREAM_HTTP_REQUEST: u32 = 0;
const STREAM_DOWNSTREAM: u32 = 2;

/// Resets the current HTTP request stream.
pub fn reset_http_request() -> Result<(), Status> {
    // SAFETY: no pointers; the host validates the stream type.
    status(unsafe { proxy_close_stream(STREAM_HTTP_REQUEST) })
}

/// Closes the downstream connection (network filter).
pub fn close_downstream() -> Result<(), Status> {
    // SAFETY: no pointers; the host validates the stream type.
    status(unsafe { proxy_close_stream(STREAM_DOWNSTREAM) })
}

/// Up to `max_size` bytes of a buffer from `start`; `Ok(None)` if the host
/// has none. Also the body of an `http_call` response
/// ([`BufferType::HttpCallResponseBody`]).
pub fn get_buffer(
    buffer_type: BufferType,
    start: usize,
    max_size: usize,
) -> Result<Option<Vec<u8>>, Status> {
    bytes_out(|data, size| {
        // SAFETY: both out-pointers are valid for the call.
        unsafe { proxy_get_buffer_bytes(buffer_type as u32, start, max_size, data, size) }
    })
}

/// A whole header map in one call, in the proxy-wasm map layout (undecoded);
/// `Ok(None)` for an empty map. Any status but `Ok` (`NotFound` too) is an
/// error.
pub fn get_map_pairs_raw(map_type: MapType) -> Result<Option<Vec<u8>>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: both out-pointers are valid for the call.
    status(unsafe { proxy_get_header_map_pairs(map_type as u32, &mut data, &mut size) })?;
    // SAFETY: on `Ok` the host filled both out-pointers per the ABI.
    Ok(unsafe { take(data, size) })
}

/// A whole header map as (name, value) pairs, e.g. the headers of an
/// `http_call` response ([`MapType::HttpCallResponseHeaders`]). A map the
/// host returns malformed is `Err(BAD_MAP)`.
#[allow(dead_code)] // for the list fetcher (src/wasm/lists.rs)
pub fn get_map_bytes(map_type: MapType) -> Result<Vec<(String, Vec<u8>)>, Status> {
    match get_map_pairs_raw(map_type)? {
        None => Ok(Vec::new()),
        Some(data) => deserialize_map(&data).ok_or(BAD_MAP),
    }
}

/// The error [`get_map_bytes`] reports for a malformed map
/// (`SerializationFailure`).
#[allow(dead_code)] // for the list fetcher (src/wasm/lists.rs)
pub const BAD_MAP: Status = 3;

/// One header's value; `Ok(None)` if absent.
pub fn get_map_value_bytes(map_type: MapType, key: &str) -> Result<Option<Vec<u8>>, Status> {
    bytes_out(|data, size| {
        // SAFETY: the key is valid for its length; out-pointers for the call.
        unsafe { proxy_get_header_map_value(map_type as u32, key.as_ptr(), key.len(), data, size) }
    })
}

/// A host property (attribute); `Ok(None)` if the host has none.
pub fn get_property(path: Vec<&str>) -> Result<Option<Vec<u8>>, Status> {
    get_property_path(&property_path(&path))
}

/// [`get_property`] with the path already in the ABI's form (segments
/// separated by NUL bytes), as a constant: no allocation for the path on the
/// request path.
pub fn get_property_path(path: &[u8]) -> Result<Option<Vec<u8>>, Status> {
    bytes_out(|data, size| {
        // SAFETY: the path is valid for its length; out-pointers for the call.
        unsafe { proxy_get_property(path.as_ptr(), path.len(), data, size) }
    })
}

/// Sets a property (for drop444: filter state read by the access log).
pub fn set_property(path: Vec<&str>, value: &[u8]) -> Result<(), Status> {
    let path = property_path(&path);
    // SAFETY: both buffers are valid for their lengths during the call.
    status(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// Sends a local response with an empty body and these headers.
pub fn send_http_response(
    status_code: u32,
    details: &str,
    headers: &[(&str, &str)],
) -> Result<(), Status> {
    let map = serialize_map(headers);
    // SAFETY: all buffers are valid for their lengths during the call.
    status(unsafe {
        proxy_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            null(),
            0,
            map.as_ptr(),
            map.len(),
            -1,
        )
    })
}

/// Defines a metric; its host id.
pub fn define_metric(metric_type: MetricType, name: &str) -> Result<u32, Status> {
    let mut id: u32 = 0;
    // SAFETY: the name is valid for its length; the out-pointer for the call.
    status(unsafe { proxy_define_metric(metric_type as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Adds `offset` to a metric.
pub fn increment_metric(metric_id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    status(unsafe { proxy_increment_metric(metric_id, offset) })
}

/// Sets a gauge (or records a histogram sample).
#[allow(dead_code)] // for the list fetcher's gauges (src/wasm/lists.rs)
pub fn record_metric(metric_id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: no pointers.
    status(unsafe { proxy_record_metric(metric_id, value) })
}

/// A shared-data value and its CAS token; `Ok((None, None))` if absent.
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: the key is valid for its length; out-pointers for the call.
    let code =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match code {
        // SAFETY: on `Ok` the host filled the out-pointers per the ABI.
        OK => Ok((unsafe { take(data, size) }, (cas != 0).then_some(cas))),
        NOT_FOUND => Ok((None, None)),
        code => Err(code),
    }
}

/// Stores a shared-data value; with `cas`, only if it is still that version
/// (else `Err(CAS_MISMATCH)`).
pub fn set_shared_data(key: &str, value: Option<&[u8]>, cas: Option<u32>) -> Result<(), Status> {
    let value = value.unwrap_or_default();
    // SAFETY: both buffers are valid for their lengths during the call.
    status(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

/// Dispatches an HTTP call to cluster `upstream`; its token. The response
/// arrives at the root context that made the call, through the module's
/// own `proxy_on_http_call_response` (src/wasm/mod.rs).
pub fn dispatch_http_call(
    upstream: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    trailers: &[(&str, &str)],
    timeout: Duration,
) -> Result<u32, Status> {
    let headers = serialize_map(headers);
    let trailers = serialize_map(trailers);
    let body = body.unwrap_or_default();
    let timeout = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut token: u32 = 0;
    // SAFETY: all buffers are valid for their lengths; out-pointer for the call.
    status(unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout,
            &mut token,
        )
    })?;
    Ok(token)
}

/// The `log` crate's logger, writing through [`log`]: the SDK's logger
/// unwraps `proxy_log`'s status (and its panic hook too).
struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let _ = log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

static LOGGER: HostLogger = HostLogger;

/// Installs the logger (every level: the host drops lines below its own) and
/// a panic hook that reports a panic at `Critical` without unwrapping.
/// Called once from the module's start; instead of the SDK's
/// `proxy_wasm::set_log_level`.
pub fn init_logging() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
        std::panic::set_hook(Box::new(|info| {
            let _ = log(LogLevel::Critical, &info.to_string());
        }));
    }
}
