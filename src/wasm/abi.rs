//! What the HTTP and the L4 plugin share: status-code forms of the raw host
//! calls ([`super::hostcall`]), the clock, the plugin-configuration read,
//! counters and the log budget.

use std::cell::Cell;
use std::time::UNIX_EPOCH;

use super::hostcall::{self, BufferType, MapType, MetricType};
use crate::limiter::TokenBucket;

/// proxy-wasm status `Ok`.
pub const OK: u32 = hostcall::OK;
/// Status used when drop444 is configured not to try closing.
pub const UNIMPLEMENTED: u32 = 12;

/// Sends an HTTP request to `cluster` from the root context; the call's
/// token, or the host's status. The answer arrives in the root's
/// `proxy_on_http_call_response`.
pub fn http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    timeout: std::time::Duration,
) -> Result<u32, hostcall::Status> {
    hostcall::dispatch_http_call(cluster, headers, None, &[], timeout)
}

/// The body of the HTTP call being answered (`None` if the host refuses).
pub fn http_call_body(size: usize) -> Option<Vec<u8>> {
    match hostcall::get_buffer(BufferType::HttpCallResponseBody, 0, size) {
        Ok(Some(body)) => Some(body),
        Ok(None) => Some(Vec::new()),
        Err(_) => None,
    }
}

/// A response header of the HTTP call being answered.
pub fn http_call_header(name: &str) -> Option<Vec<u8>> {
    hostcall::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
}

/// A gauge (set, not added to); `None` where the host refused to define it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauge(Option<u32>);

impl Gauge {
    pub fn define(name: &str) -> Self {
        Gauge(hostcall::define_metric(MetricType::Gauge, name).ok())
    }

    pub fn set(self, value: u64) {
        if let Some(id) = self.0 {
            let _ = hostcall::record_metric(id, value);
        }
    }
}

/// The status code of a host call (`OK` for success).
fn code(result: Result<(), hostcall::Status>) -> u32 {
    result.err().unwrap_or(OK)
}

/// Resets the request stream; the host's status code.
pub fn reset_request() -> u32 {
    code(hostcall::reset_http_request())
}

/// Closes the downstream connection (L4 plugin); the host's status code.
pub fn close_downstream() -> u32 {
    code(hostcall::close_downstream())
}

/// Makes `context_id` the context later host calls act on (until the
/// current callback returns); the host's status code (not OK for a context
/// that no longer exists).
pub fn set_effective_context(context_id: u32) -> u32 {
    code(hostcall::set_effective_context(context_id))
}

/// Asks for `on_tick` every `period`; the host's status code.
pub fn set_tick_period(period: std::time::Duration) -> u32 {
    code(hostcall::set_tick_period(period))
}

/// Every request header line in one host call (one allocation in the guest,
/// made by the host through `proxy_on_memory_allocate`); `None` if the host
/// refuses.
pub fn request_header_pairs() -> Option<Vec<u8>> {
    hostcall::get_map_pairs_raw(MapType::HttpRequestHeaders)
        .ok()
        .map(Option::unwrap_or_default)
}

/// Sets a one-segment property path.
pub fn set_property(key: &str, value: &[u8]) -> u32 {
    code(hostcall::set_property(vec![key], value))
}

/// Sends a local response with an empty body and these headers.
pub fn send_local_response(status: u16, details: &str, headers: &[(&str, &str)]) -> u32 {
    code(hostcall::send_http_response(
        u32::from(status),
        details,
        headers,
    ))
}

/// The host clock in nanoseconds since the epoch (0 if it has none).
pub fn now_ns() -> u64 {
    hostcall::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The plugin configuration: empty if the host has none, `None` if the host
/// refuses the read (the plugin is then refused: its rules are unknown).
pub fn plugin_configuration() -> Option<Vec<u8>> {
    match hostcall::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
        Ok(config) => Some(config.unwrap_or_default()),
        Err(status) => {
            log::error!("plugin configuration unreadable (status {status}): plugin not loaded");
            None
        }
    }
}

/// A counter: its host id, `None` where the host refused to define it.
/// Envoy keeps one counter per name, shared by all workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter(Option<u32>);

impl Counter {
    pub fn define(name: &str) -> Self {
        Counter(hostcall::define_metric(MetricType::Counter, name).ok())
    }

    /// Adds one (one host call; a host error is ignored).
    pub fn bump(self) {
        if let Some(id) = self.0 {
            let _ = hostcall::increment_metric(id, 1);
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
            let _ = hostcall::increment_metric(id, i64::try_from(pending).unwrap_or(i64::MAX));
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
