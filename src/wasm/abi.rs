//! What the HTTP and the L4 plugin share: the raw ABI calls drop444 makes
//! without the SDK's wrappers, the clock, the plugin-configuration read,
//! counters and the log budget.

use std::cell::Cell;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MetricType};

use crate::limiter::TokenBucket;

/// proxy-wasm status `Ok`.
pub const OK: u32 = 0;
/// Status used when drop444 is configured not to try closing.
pub const UNIMPLEMENTED: u32 = 12;
/// `proxy_close_stream` stream type of the HTTP request.
const HTTP_REQUEST: u32 = 0;
/// `proxy_close_stream` stream type of the downstream connection.
const DOWNSTREAM: u32 = 2;
/// `proxy_get_header_map_pairs` map type of the HTTP request headers.
const REQUEST_HEADERS: u32 = 0;

// The few host calls whose failure drop444 must survive, made without the SDK
// wrappers (which panic on any status they do not expect, and a panic aborts
// the VM). Same imports as the SDK's; only the error handling differs.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
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
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
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
}

/// `proxy_get_buffer_bytes` buffer type of an HTTP call's response body.
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
/// Header map type of an HTTP call's response headers.
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

/// Sends an HTTP request to `cluster` from the root context; the call's
/// token, or why not. The answer arrives in `on_http_call_response`.
///
/// Through the SDK, unlike the other calls here: the SDK's dispatcher routes
/// the answer by a token it registers in this wrapper (and panics on an
/// unregistered one). The wrapper panics only on a status other than
/// `BadArgument` / `InternalFailure`, the only failures Envoy's
/// `proxy_http_call` returns (unknown cluster, missing pseudo-headers, no
/// async client).
pub fn http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    timeout: std::time::Duration,
) -> Result<u32, proxy_wasm::types::Status> {
    hostcalls::dispatch_http_call(cluster, headers.to_vec(), None, Vec::new(), timeout)
}

/// Takes ownership of a buffer the host filled through the SDK's
/// `proxy_on_memory_allocate` (same hand-over as the SDK's own wrappers).
fn host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: see `request_header_pairs`.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// The body of the HTTP call being answered (`None` if the host refuses).
pub fn http_call_body(size: usize) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut got: usize = 0;
    // SAFETY: both out-pointers are valid for the call.
    let status =
        unsafe { proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, size, &mut data, &mut got) };
    (status == OK).then(|| host_bytes(data, got))
}

/// A response header of the HTTP call being answered.
pub fn http_call_header(name: &str) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut got: usize = 0;
    // SAFETY: the name is valid for its length; both out-pointers are valid.
    let status = unsafe {
        proxy_get_header_map_value(
            HTTP_CALL_RESPONSE_HEADERS,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut got,
        )
    };
    (status == OK).then(|| host_bytes(data, got))
}

/// A gauge (set, not added to); `None` where the host refused to define it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauge(Option<u32>);

impl Gauge {
    pub fn define(name: &str) -> Self {
        Gauge(hostcalls::define_metric(MetricType::Gauge, name).ok())
    }

    pub fn set(self, value: u64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// Resets the request stream; the host's status code.
pub fn reset_request() -> u32 {
    // SAFETY: no pointers; the host validates the stream type.
    unsafe { proxy_close_stream(HTTP_REQUEST) }
}

/// Closes the downstream connection (L4 plugin); the host's status code.
pub fn close_downstream() -> u32 {
    // SAFETY: no pointers; the host validates the stream type.
    unsafe { proxy_close_stream(DOWNSTREAM) }
}

/// Makes `context_id` the context later host calls act on (until the
/// current callback returns); the host's status code (not OK for a context
/// that no longer exists).
pub fn set_effective_context(context_id: u32) -> u32 {
    // SAFETY: no pointers; the host looks the id up.
    unsafe { proxy_set_effective_context(context_id) }
}

/// Asks for `on_tick` every `period`; the host's status code.
pub fn set_tick_period(period: std::time::Duration) -> u32 {
    let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    unsafe { proxy_set_tick_period_milliseconds(millis) }
}

/// Every request header line in one host call (one allocation in the guest,
/// made by the host through `proxy_on_memory_allocate`); `None` if the host
/// refuses.
pub fn request_header_pairs() -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: both out-pointers are valid for the call.
    let status = unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) };
    if status != OK {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: the host filled `size` bytes it got from the SDK's
    // `proxy_on_memory_allocate`, a boxed slice of exactly `size` bytes: the
    // same ownership hand-over as the SDK's own `get_map_bytes`.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Sets a one-segment property path.
pub fn set_property(key: &str, value: &[u8]) -> u32 {
    // SAFETY: both buffers are valid for the given lengths during the call.
    unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
}

/// Sends a local response with an empty body and these headers.
pub fn send_local_response(status: u16, details: &str, headers: &[(&str, &str)]) -> u32 {
    let map = serialize_map(headers);
    // SAFETY: all buffers are valid for the given lengths during the call.
    unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            [].as_ptr(),
            0,
            map.as_ptr(),
            map.len(),
            -1,
        )
    }
}

/// The proxy-wasm header map layout: count, then (name, value) lengths,
/// then the NUL-terminated names and values.
fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
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

/// The host clock in nanoseconds since the epoch (0 if it has none).
pub fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The plugin configuration (empty if the host has none).
pub fn plugin_configuration() -> Vec<u8> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A counter: its host id, `None` where the host refused to define it.
/// Envoy keeps one counter per name, shared by all workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter(Option<u32>);

impl Counter {
    pub fn define(name: &str) -> Self {
        Counter(hostcalls::define_metric(MetricType::Counter, name).ok())
    }

    /// Adds one (one host call; a host error is ignored).
    pub fn bump(self) {
        if let Some(id) = self.0 {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

/// A counter counted in wasm memory and added to the host's only by
/// [`Batched::flush`] (on the plugin's tick): the request path makes no host
/// call for it. The host's value lags by at most one tick period.
#[derive(Debug, Default)]
pub struct Batched {
    counter: Counter,
    pending: Cell<u64>,
}

impl Batched {
    pub fn define(name: &str) -> Self {
        Batched {
            counter: Counter::define(name),
            pending: Cell::new(0),
        }
    }

    /// Adds one, in wasm memory.
    pub fn bump(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }

    /// Hands what was counted since the last flush to the host (one host call
    /// if anything was).
    pub fn flush(&self) {
        let pending = self.pending.replace(0);
        if pending == 0 {
            return;
        }
        if let Some(id) = self.counter.0 {
            let _ = hostcalls::increment_metric(id, i64::try_from(pending).unwrap_or(i64::MAX));
        }
    }
}

/// The drop-log rate limit of one plugin on one worker: a token bucket, and
/// the lines not written since the last one that was.
pub struct LogBudget {
    bucket: Cell<TokenBucket>,
    suppressed: Cell<u64>,
}

impl LogBudget {
    pub fn new(per_second: u32) -> Self {
        LogBudget {
            bucket: Cell::new(TokenBucket::new(per_second, per_second, now_ns())),
            suppressed: Cell::new(0),
        }
    }

    /// `Some(lines suppressed before this one)` if a line may be written now;
    /// `None` (and the line is counted as suppressed) if not.
    pub fn take(&self) -> Option<u64> {
        let mut bucket = self.bucket.get();
        let granted = bucket.take(now_ns());
        self.bucket.set(bucket);
        if granted {
            Some(self.suppressed.replace(0))
        } else {
            self.suppressed.set(self.suppressed.get().saturating_add(1));
            None
        }
    }
}
