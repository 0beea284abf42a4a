//! The proxy-wasm adapter: the only code that talks to the host.
//!
//! Per request it hands the engine a [`RequestSource`] that fetches single
//! headers and attributes from the host on demand (never the whole header
//! map, which costs 10-20 % throughput), then acts on the verdict:
//!
//! - drop: record the rule in filter state, reset the stream (Envoy closes an
//!   HTTP/1 connection without writing a byte, or sends RST_STREAM on HTTP/2);
//! - dry-run drop / `log` match: same counters and log line, request goes on;
//! - pass / allow: continue.
//!
//! It never sends a local response: that would put a real status on the wire.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use serde::Serialize;

use crate::engine::request::{client_from_xff, parse_address};
use crate::engine::{self, Decision, Engine, RateLimit, RequestSource, Verdict};
use crate::limiter::{key_hash, BucketState, TokenBucket};

/// Compare-and-swap attempts on a rate-limit bucket before giving up (and
/// letting the request through, counted in `ratelimit_contention`).
const MAX_CAS_TRIES: usize = 8;

/// Filter-state keys. Envoy exposes them as `%FILTER_STATE(wasm.drop444:PLAIN)%`
/// (the rule) and `%FILTER_STATE(wasm.drop444_status:PLAIN)%` (`444` for a
/// drop, `dry-run` for a dry-run drop) in access logs.
const RULE_PROPERTY: &str = "drop444";
const STATUS_PROPERTY: &str = "drop444_status";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { crate::l4::root(Box::new(Plugin::new(Engine::builtin()))) });
}}

/// One per plugin and worker: owns the compiled configuration, its counters
/// and the drop-log budget.
struct Plugin {
    shared: Rc<Shared>,
}

/// What every request context of a plugin shares (one worker thread).
struct Shared {
    engine: Engine,
    stats: Stats,
    log_budget: Cell<TokenBucket>,
    /// Drop lines not written since the last one that was.
    suppressed: Cell<u64>,
    /// Set once the host has shown it cannot close a stream (logged once).
    cannot_close: Cell<bool>,
}

impl Plugin {
    fn new(engine: Engine) -> Self {
        let stats = Stats::define(&engine);
        let log = engine.log_settings();
        let budget = TokenBucket::new(log.max_per_second, log.max_per_second, now_ns());
        Plugin {
            shared: Rc::new(Shared {
                engine,
                stats,
                log_budget: Cell::new(budget),
                suppressed: Cell::new(0),
                cannot_close: Cell::new(false),
            }),
        }
    }
}

impl Context for Plugin {}

impl RootContext for Plugin {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Engine::from_json(&config) {
            Ok(engine) => {
                info!(
                    "configuration loaded: {} rules, mode {:?}, reads {:?}",
                    engine.rules().count(),
                    engine.mode(),
                    engine.header_names()
                );
                *self = Plugin::new(engine);
                true
            }
            Err(err) => {
                // Returning false makes Envoy reject the plugin: fail closed.
                error!("invalid configuration, plugin not loaded: {err}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            shared: Rc::clone(&self.shared),
        }))
    }
}

/// One per HTTP request (stream).
struct Request {
    shared: Rc<Shared>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let shared = &*self.shared;
        let mut request = HostRequest::new(shared.engine.stat_prefix());
        let verdict = shared.engine.decide(&mut request);
        shared.record(&verdict, &mut request);
        for _ in 0..request.over_limit {
            shared.stats.bump(shared.stats.rate_limited);
        }
        for _ in 0..request.contention {
            shared.stats.bump(shared.stats.contention);
        }
        match verdict.decision {
            Decision::Pass | Decision::Allow { .. } => Action::Continue,
            Decision::DryRun { rule } => {
                set_filter_state(rule, "dry-run");
                Action::Continue
            }
            Decision::Drop { rule } => {
                // Filter state first: the access log line is written after the reset.
                set_filter_state(rule, "444");
                // Before the reset: its RST_STREAM is the write the L4 filter
                // closes the connection on (docs/connection-close.md).
                if shared.engine.scope_of(rule) == engine::Scope::Connection {
                    crate::l4::close_connection(rule);
                }
                shared.close(rule);
                Action::Pause
            }
        }
    }
}

/// Records the rule for the access log. Through the raw ABI: the SDK's
/// wrapper panics (and so kills the VM) on hosts that refuse the property.
fn set_filter_state(rule: &str, status: &str) {
    for (key, value) in [(RULE_PROPERTY, rule), (STATUS_PROPERTY, status)] {
        let code = raw::set_property(key, value.as_bytes());
        if code != raw::OK {
            debug!("could not set filter state {key}: status {code}");
        }
    }
}

/// The few host calls whose failure drop444 must survive, made without the
/// SDK wrappers (which panic on any status they do not expect, and a panic
/// aborts the VM). Same imports as the SDK's; only the error handling differs.
mod raw {
    pub const OK: u32 = 0;
    /// Status used when drop444 is configured not to try closing.
    pub const UNIMPLEMENTED: u32 = 12;
    /// `proxy_close_stream` stream type of the HTTP request.
    const HTTP_REQUEST: u32 = 0;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_close_stream(stream_type: u32) -> u32;
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
    }

    /// Resets the request stream; the host's status code.
    pub fn reset_request() -> u32 {
        // SAFETY: no pointers; the host validates the stream type.
        unsafe { proxy_close_stream(HTTP_REQUEST) }
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
}

impl Shared {
    /// Closes the request without a response. On a host that cannot (its
    /// close-stream call fails), sends the configured minimal response with
    /// `connection: close` instead: never passes the request on.
    fn close(&self, rule: &str) {
        let code = if self.engine.fallback_try_close() {
            raw::reset_request()
        } else {
            raw::UNIMPLEMENTED
        };
        if code == raw::OK {
            return;
        }
        self.stats.bump(self.stats.reset_failed);
        if !self.cannot_close.replace(true) {
            warn!(
                "this host cannot close a stream (proxy_close_stream status {code}): drops are answered with a {} response and connection: close instead of silence",
                self.engine.fallback_status()
            );
        }
        let sent = raw::send_local_response(
            self.engine.fallback_status(),
            "drop444_fallback",
            &[("connection", "close")],
        );
        if sent == raw::OK {
            self.stats.bump(self.stats.fallback);
        } else {
            error!("host refused both closing and answering (status {sent}); request {rule} held, not passed");
        }
    }

    /// Counters and the structured log line for one verdict.
    fn record(&self, verdict: &Verdict<'_>, request: &mut HostRequest<'_>) {
        let s = &self.stats;
        s.bump(s.seen);
        let (event, rule) = match verdict.decision {
            Decision::Pass => {
                s.bump(s.passed);
                (None, None)
            }
            Decision::Allow { rule } => {
                s.bump(s.passed);
                s.bump(s.allowed);
                (None, Some(rule))
            }
            Decision::DryRun { rule } => {
                s.bump(s.passed);
                s.bump(s.dry_run);
                (Some("dry-run"), Some(rule))
            }
            Decision::Drop { rule } => {
                s.bump(s.dropped);
                (Some("drop"), Some(rule))
            }
        };
        if let Some(rule) = rule {
            s.bump_rule(rule);
        }
        for logged in &verdict.logged {
            s.bump(s.log_hits);
            s.bump_rule(logged);
            self.log_line("log", logged, request);
        }
        if let (Some(event), Some(rule)) = (event, rule) {
            self.log_line(event, rule, request);
        }
    }

    /// Writes one JSON line if the budget allows; otherwise counts it.
    fn log_line(&self, event: &str, rule: &str, request: &mut HostRequest<'_>) {
        let settings = self.engine.log_settings();
        if settings.level == engine::LogLevel::Off {
            return;
        }
        let mut budget = self.log_budget.get();
        let granted = budget.take(now_ns());
        self.log_budget.set(budget);
        if !granted {
            self.stats.bump(self.stats.suppressed);
            self.suppressed.set(self.suppressed.get().saturating_add(1));
            return;
        }
        let suppressed = self.suppressed.replace(0);
        let text = |v: Option<Vec<u8>>| v.map(|v| String::from_utf8_lossy(&v).into_owned());
        let peer = request.peer_address().and_then(|p| parse_address(&p));
        let hops = self.engine.xff_trusted_hops();
        let xff = if hops > 0 {
            request.header("x-forwarded-for")
        } else {
            None
        };
        let client = client_from_xff(xff.as_deref(), hops, peer);
        let mut user_agent = text(request.header("user-agent"));
        if let Some(ua) = user_agent.as_mut() {
            truncate(ua, settings.user_agent_max as usize);
        }
        let line = DropLine {
            drop444: event,
            rule,
            method: text(request.header(":method")),
            host: text(request.header(":authority")),
            path: text(request.header(":path")),
            client: client.map(|c| c.to_string()),
            user_agent,
            suppressed_before: suppressed,
        };
        let json = serde_json::to_string(&line).unwrap_or_default();
        match settings.level {
            engine::LogLevel::Trace => log::trace!("{json}"),
            engine::LogLevel::Debug => debug!("{json}"),
            engine::LogLevel::Info => info!("{json}"),
            engine::LogLevel::Warn => warn!("{json}"),
            engine::LogLevel::Error => error!("{json}"),
            engine::LogLevel::Off => {}
        }
    }
}

/// One structured drop log line.
#[derive(Serialize)]
struct DropLine<'a> {
    drop444: &'a str,
    rule: &'a str,
    method: Option<String>,
    host: Option<String>,
    path: Option<String>,
    client: Option<String>,
    user_agent: Option<String>,
    /// Lines not written (over the rate limit) since the previous one.
    #[serde(skip_serializing_if = "is_zero")]
    suppressed_before: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Cuts a string to at most `max` bytes, on a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
}

fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Counter ids, defined once per configuration (Envoy keeps one counter per
/// name, shared by all workers). `None` where the host refused to define one.
struct Stats {
    seen: Option<u32>,
    dropped: Option<u32>,
    passed: Option<u32>,
    allowed: Option<u32>,
    dry_run: Option<u32>,
    log_hits: Option<u32>,
    suppressed: Option<u32>,
    reset_failed: Option<u32>,
    fallback: Option<u32>,
    rate_limited: Option<u32>,
    contention: Option<u32>,
    rules: HashMap<String, u32>,
}

impl Stats {
    fn define(engine: &Engine) -> Self {
        let (prefix, rules) = engine.stat_names();
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        let total = |name: &str| counter(&format!("{prefix}.{name}"));
        Stats {
            seen: total("requests_seen"),
            dropped: total("requests_dropped"),
            passed: total("requests_passed"),
            allowed: total("requests_allowed"),
            dry_run: total("dry_run_drops"),
            log_hits: total("log_rule_hits"),
            suppressed: total("drop_logs_suppressed"),
            reset_failed: total("reset_failures"),
            fallback: total("fallback_responses"),
            rate_limited: total("rate_limited"),
            contention: total("ratelimit_contention"),
            rules: rules
                .into_iter()
                .filter_map(|(rule, metric)| counter(&metric).map(|id| (rule.to_string(), id)))
                .collect(),
        }
    }

    fn bump(&self, id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn bump_rule(&self, rule: &str) {
        self.bump(self.rules.get(rule).copied());
    }
}

/// The request, read from the host one item at a time and remembered, so the
/// drop log reuses what the rules already fetched.
///
/// Measured on Envoy 1.40: `proxy_get_header_map_value` returns only the
/// *first* field line of a repeated non-inline header (`X-A: 1` + `X-A: 2`
/// gives `1`), which would let a client hide a value in a second line. The
/// attribute `request.headers.<name>` returns all lines joined with `,`, so it
/// is read first; the header map is asked only when the attribute has no
/// value, for hosts without that attribute (and then it is the only source).
struct HostRequest<'e> {
    headers: Vec<(String, Option<Vec<u8>>)>,
    peer: Option<Option<Vec<u8>>>,
    now_ns: Option<u64>,
    /// Shared-data keys are `<prefix>.rl.<rule>.<slot>`.
    stat_prefix: &'e str,
    /// Rate-limit checks that found the bucket empty.
    over_limit: u32,
    /// Rate-limit checks abandoned after `MAX_CAS_TRIES` conflicts.
    contention: u32,
}

impl<'e> HostRequest<'e> {
    fn new(stat_prefix: &'e str) -> Self {
        HostRequest {
            headers: Vec::new(),
            peer: None,
            now_ns: None,
            stat_prefix,
            over_limit: 0,
            contention: 0,
        }
    }
}

impl RequestSource for HostRequest<'_> {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        if let Some((_, value)) = self.headers.iter().find(|(n, _)| n == name) {
            return value.clone();
        }
        let value = match hostcalls::get_property(vec!["request", "headers", name]) {
            Ok(Some(value)) => Some(value),
            // Also for a header that is present but empty: Envoy answers the
            // attribute of an empty value with no data, so only the header
            // map tells empty from absent (`absent` rules depend on it).
            _ => hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten(),
        };
        self.headers.push((name.to_string(), value.clone()));
        value
    }

    fn peer_address(&mut self) -> Option<Vec<u8>> {
        self.peer
            .get_or_insert_with(|| {
                hostcalls::get_property(vec!["source", "address"])
                    .ok()
                    .flatten()
            })
            .clone()
    }

    fn protocol(&mut self) -> Option<Vec<u8>> {
        hostcalls::get_property(vec!["request", "protocol"])
            .ok()
            .flatten()
    }

    /// The bucket lives in proxy-wasm shared data, so every Envoy worker
    /// draws from the same one: a client cannot multiply its budget by
    /// spreading connections over workers. Updates are compare-and-swap,
    /// retried on conflict. Keys are hashed into the rule's fixed number of
    /// slots, which bounds memory however many distinct keys arrive.
    fn over_limit(&mut self, limit: &RateLimit, key: &[u8]) -> bool {
        let hash = key_hash(key);
        let slot = hash.checked_rem(u64::from(limit.slots)).unwrap_or(0);
        let name = format!("{}.rl.{}.{slot}", self.stat_prefix, limit.rule);
        let now = *self.now_ns.get_or_insert_with(now_ns);
        for _ in 0..MAX_CAS_TRIES {
            let Ok((data, cas)) = hostcalls::get_shared_data(&name) else {
                return false;
            };
            let stored = data.as_deref().and_then(BucketState::from_bytes);
            let (state, granted) = BucketState::take(stored, &limit.rate, hash, now);
            if !granted {
                // Nothing taken, nothing to write: an empty bucket refills
                // the same whether or not this moment is recorded, and a
                // flood of over-limit requests then costs no writes.
                self.over_limit = self.over_limit.saturating_add(1);
                return true;
            }
            match hostcalls::set_shared_data(&name, Some(&state.to_bytes()), cas) {
                Ok(()) => return false,
                Err(Status::CasMismatch) => continue,
                Err(_) => return false,
            }
        }
        self.contention = self.contention.saturating_add(1);
        false
    }
}
