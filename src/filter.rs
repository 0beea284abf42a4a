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
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use serde::Serialize;

use crate::engine::request::{client_from_xff, parse_address};
use crate::engine::{self, Decision, Engine, RequestSource, Verdict};
use crate::limiter::TokenBucket;

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
        let mut request = HostRequest::default();
        let verdict = shared.engine.decide(&mut request);
        shared.record(&verdict, &mut request);
        match verdict.decision {
            Decision::Pass | Decision::Allow { .. } => Action::Continue,
            Decision::DryRun { rule } => {
                set_filter_state(rule, "dry-run");
                Action::Continue
            }
            Decision::Drop { rule } => {
                // Filter state first: the access log line is written after the reset.
                set_filter_state(rule, "444");
                // issue 7: before the reset, whose RST_STREAM is the write the L4 filter closes on.
                if shared.engine.scope_of(rule) == engine::Scope::Connection {
                    crate::l4::close_connection(rule);
                }
                if let Err(status) = hostcalls::reset_http_request() {
                    shared.stats.bump(shared.stats.reset_failed);
                    error!("host cannot reset the stream ({status:?}); request {rule} held, not passed");
                }
                Action::Pause
            }
        }
    }
}

fn set_filter_state(rule: &str, status: &str) {
    for (key, value) in [(RULE_PROPERTY, rule), (STATUS_PROPERTY, status)] {
        if let Err(status) = hostcalls::set_property(vec![key], Some(value.as_bytes())) {
            debug!("could not set filter state {key}: {status:?}");
        }
    }
}

impl Shared {
    /// Counters and the structured log line for one verdict.
    fn record(&self, verdict: &Verdict<'_>, request: &mut HostRequest) {
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
    fn log_line(&self, event: &str, rule: &str, request: &mut HostRequest) {
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
        let xff = request.header("x-forwarded-for");
        let client = client_from_xff(xff.as_deref(), self.engine.xff_trusted_hops(), peer);
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
#[derive(Default)]
struct HostRequest {
    headers: Vec<(String, Option<Vec<u8>>)>,
    peer: Option<Option<Vec<u8>>>,
}

impl RequestSource for HostRequest {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        if let Some((_, value)) = self.headers.iter().find(|(n, _)| n == name) {
            return value.clone();
        }
        let value = match hostcalls::get_property(vec!["request", "headers", name]) {
            Ok(Some(value)) => Some(value),
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
}
