//! The adapter between Envoy's HTTP dynamic-module hooks and the engine:
//! one [`Config`] per filter configuration (shared by every worker), and per
//! request a [`NativeRequest`] the engine reads from.
//!
//! Per request it reads the request headers once (two ABI calls: count, then
//! all fields; repeated fields are all seen, joined with `,` like Envoy's
//! `request.headers` attribute), asks the engine, then acts:
//!
//! - drop: record the rule in filter state (`drop444`, `drop444_status`), then
//!   reset the stream (HTTP/1: the connection is closed without a byte; HTTP/2:
//!   RST_STREAM), or for `scope: connection` close the whole connection;
//! - dry-run drop / `log` match: same counters and log line, request goes on;
//! - pass / allow: continue.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::abi::{self, EnvoyBuffer, EnvoyHeader, FilterEnvoyPtr, ModuleBuffer};
use crate::engine_api::{
    self, join_lines, key_hash, BucketState, Count, Decided, Engine, LogLevel, Outcome, RateLimit,
    RateLimiter, RequestSource, TokenBucket, Total,
};

/// Filter-state keys, readable in access logs as `%FILTER_STATE(drop444:PLAIN)%`
/// (the rule) and `%FILTER_STATE(drop444_status:PLAIN)%` (`444` or `dry-run`).
pub const RULE_KEY: &[u8] = b"drop444";
pub const STATUS_KEY: &[u8] = b"drop444_status";
/// `%RESPONSE_CODE_DETAILS%` of a dropped request.
pub const RESET_DETAILS: &[u8] = b"drop444_reset";

/// One compiled configuration and what all its requests share.
pub struct Config {
    engine: Engine,
    stats: Stats,
    log: Mutex<LogBudget>,
    /// Rate-limit buckets, `<rule>.<slot>` → state. Shared by every worker,
    /// so a client cannot multiply its budget across workers; bounded by the
    /// rules' slot counts.
    buckets: Mutex<HashMap<String, BucketState>>,
}

// Envoy calls the hooks of one configuration from every worker thread.
const _: fn() = || {
    fn shared_by_workers<T: Send + Sync>() {}
    shared_by_workers::<Config>();
};

struct LogBudget {
    bucket: TokenBucket,
    /// Lines not written since the last one that was.
    suppressed: u64,
}

/// Counter ids; `None` where Envoy refused to define one (or, for a total,
/// where the native module never moves it).
struct Stats {
    /// By [`Total::index`].
    totals: Vec<Option<usize>>,
    /// By rule id.
    rules: Vec<Option<usize>>,
}

/// The totals the native module moves: no tarpit, no fallback response, no
/// L4 companion, and rate-limit buckets under a lock (no contention).
const NATIVE_TOTALS: [Total; 8] = [
    Total::Dropped,
    Total::Passed,
    Total::Allowed,
    Total::DryRun,
    Total::LogHits,
    Total::Suppressed,
    Total::RateLimited,
    Total::Seen,
];

impl Config {
    /// Compiles `json`; defines the counters through `config_ptr`.
    pub fn new(config_ptr: abi::ConfigEnvoyPtr, json: &[u8]) -> Result<Config, String> {
        let engine = engine_api::compile(json).map_err(|e| e.to_string())?;
        let stats = Stats::define(config_ptr, &engine);
        let per_second = engine.log_settings().max_per_second;
        Ok(Config {
            log: Mutex::new(LogBudget {
                bucket: TokenBucket::new(per_second, per_second, now_ns()),
                suppressed: 0,
            }),
            stats,
            buckets: Mutex::new(HashMap::new()),
            engine,
        })
    }

    pub fn summary(&self) -> String {
        engine_api::summary(&self.engine)
    }

    /// The request-headers hook: decide and act. Returns the hook status.
    pub fn on_request_headers(&self, filter: FilterEnvoyPtr) -> u32 {
        let mut request = NativeRequest::read(filter);
        let mut buckets = Buckets {
            config: self,
            now_ns: None,
            over_limit: 0,
        };
        let decided = engine_api::decide(&self.engine, &mut request, &mut buckets);
        self.record(&decided, &mut request, buckets.over_limit);
        let rule = decided.rule.unwrap_or_default();
        match decided.outcome {
            Outcome::Pass => abi::CONTINUE,
            Outcome::DryRun => {
                set_filter_state(filter, rule, "dry-run");
                abi::CONTINUE
            }
            Outcome::DropStream => {
                // Filter state first: the access log line is written after the reset.
                set_filter_state(filter, rule, "444");
                reset_stream(filter);
                abi::STOP_ITERATION
            }
            Outcome::DropConnection => {
                set_filter_state(filter, rule, "444");
                close_connection(filter);
                abi::STOP_ITERATION
            }
        }
    }

    /// Counters and the structured log line for one verdict.
    fn record(&self, decided: &Decided<'_>, request: &mut NativeRequest, over_limit: u32) {
        let filter = request.filter;
        for count in decided.verdict.counts() {
            bump(filter, self.stats.id(count));
        }
        for _ in 0..over_limit {
            bump(filter, self.stats.id(Count::Total(Total::RateLimited)));
        }
        for logged in &decided.verdict.logged_rules {
            self.log_line("log", logged.name, request);
        }
        if let (Some(event), Some(rule)) = (decided.verdict.decision.log_event(), decided.rule) {
            self.log_line(event, rule, request);
        }
    }

    /// Writes one JSON line to Envoy's log if the budget allows; otherwise
    /// counts it.
    fn log_line(&self, event: &str, rule: &str, request: &mut NativeRequest) {
        let settings = self.engine.log_settings();
        let level = match settings.level {
            LogLevel::Off => return,
            LogLevel::Trace => abi::level::TRACE,
            LogLevel::Debug => abi::level::DEBUG,
            LogLevel::Info => abi::level::INFO,
            LogLevel::Warn => abi::level::WARN,
            LogLevel::Error => abi::level::ERROR,
        };
        let suppressed = {
            let Ok(mut budget) = self.log.lock() else {
                return;
            };
            if !budget.bucket.take(now_ns()) {
                budget.suppressed = budget.suppressed.saturating_add(1);
                drop(budget);
                bump(
                    request.filter,
                    self.stats.id(Count::Total(Total::Suppressed)),
                );
                return;
            }
            std::mem::take(&mut budget.suppressed)
        };
        // SAFETY: no pointers.
        if !unsafe { abi::envoy_dynamic_module_callback_log_enabled(level) } {
            return;
        }
        let json = self.engine.drop_line(event, rule, request, suppressed);
        log(level, &json);
    }

    /// One token from the shared bucket of `key` under `limit`; true when it
    /// is empty (over the limit).
    fn over_limit(&self, limit: &RateLimit, key: &[u8], now: u64) -> bool {
        let hash = key_hash(key);
        let slot = hash.checked_rem(u64::from(limit.slots)).unwrap_or(0);
        let name = format!("{}.{slot}", limit.rule);
        let Ok(mut buckets) = self.buckets.lock() else {
            return false;
        };
        let stored = buckets.get(&name).copied();
        let (state, granted) = BucketState::take(stored, &limit.rate, hash, now);
        if granted {
            buckets.insert(name, state);
        }
        !granted
    }
}

impl Stats {
    fn define(config_ptr: abi::ConfigEnvoyPtr, engine: &Engine) -> Stats {
        let (prefix, rules) = engine_api::stat_names(engine);
        let counter = |name: &str| define_counter(config_ptr, name);
        Stats {
            totals: Total::ALL
                .iter()
                .map(|total| {
                    NATIVE_TOTALS
                        .contains(total)
                        .then(|| counter(&format!("{prefix}.{}", total.name())))
                        .flatten()
                })
                .collect(),
            rules: rules.iter().map(|(_, metric)| counter(metric)).collect(),
        }
    }

    /// The counter id of `count`, if defined.
    fn id(&self, count: Count) -> Option<usize> {
        match count {
            Count::Total(total) => self.totals.get(total.index()).copied().flatten(),
            Count::Rule(id) => self.rules.get(id as usize).copied().flatten(),
        }
    }
}

fn define_counter(config_ptr: abi::ConfigEnvoyPtr, name: &str) -> Option<usize> {
    let mut id = 0usize;
    // SAFETY: the name is valid for the call, no labels, `id` is writable.
    let result = unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
            config_ptr,
            ModuleBuffer::of(name.as_bytes()),
            std::ptr::null(),
            0,
            &mut id,
        )
    };
    (result == abi::METRICS_SUCCESS).then_some(id)
}

fn bump(filter: FilterEnvoyPtr, id: Option<usize>) {
    if let Some(id) = id {
        // SAFETY: `filter` is the live filter of the current hook; no labels.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                filter,
                id,
                std::ptr::null(),
                0,
                1,
            );
        }
    }
}

fn set_filter_state(filter: FilterEnvoyPtr, rule: &str, status: &str) {
    for (key, value) in [(RULE_KEY, rule.as_bytes()), (STATUS_KEY, status.as_bytes())] {
        // SAFETY: both buffers are valid for the call; `filter` is live.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                filter,
                ModuleBuffer::of(key),
                ModuleBuffer::of(value),
            );
        }
    }
}

/// Resets the request stream: no response is ever encoded.
pub fn reset_stream(filter: FilterEnvoyPtr) {
    // SAFETY: `filter` is live; the details buffer is valid for the call.
    unsafe {
        abi::envoy_dynamic_module_callback_http_filter_reset_stream(
            filter,
            abi::RESET_LOCAL,
            ModuleBuffer::of(RESET_DETAILS),
        );
    }
}

/// Closes the whole downstream connection (not gracefully: at once).
fn close_connection(filter: FilterEnvoyPtr) {
    // SAFETY: `filter` is live.
    unsafe { abi::envoy_dynamic_module_callback_http_filter_send_go_away_and_close(filter, false) }
}

/// Writes a line to Envoy's log (`[dynamic_modules]` logger).
pub fn log(level: u32, message: &str) {
    // SAFETY: the message buffer is valid for the call.
    unsafe { abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

/// The request as the engine sees it: the header fields Envoy holds, read
/// once; the peer address and protocol asked for only when a rule needs them.
pub struct NativeRequest {
    filter: FilterEnvoyPtr,
    /// Borrowed from Envoy's header map: valid until the hook returns, and
    /// this value never outlives the hook.
    headers: Vec<EnvoyHeader>,
    peer: Option<Option<Vec<u8>>>,
}

/// The shared rate-limit buckets, as one request takes tokens from them.
struct Buckets<'c> {
    config: &'c Config,
    now_ns: Option<u64>,
    /// Rate-limit checks that found the bucket empty.
    over_limit: u32,
}

impl NativeRequest {
    fn read(filter: FilterEnvoyPtr) -> Self {
        // SAFETY: `filter` is the live filter of the current hook.
        let count = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers_size(filter, abi::REQUEST_HEADERS)
        };
        // Envoy bounds the count (`max_headers_count`, 100 by default).
        let mut headers = vec![EnvoyHeader::EMPTY; count];
        // SAFETY: `headers` has room for `count` entries, as Envoy requires.
        let ok = count > 0
            && unsafe {
                abi::envoy_dynamic_module_callback_http_get_headers(
                    filter,
                    abi::REQUEST_HEADERS,
                    headers.as_mut_ptr(),
                )
            };
        if !ok {
            headers.clear();
        }
        NativeRequest {
            filter,
            headers,
            peer: None,
        }
    }

    fn attribute(&self, id: u32) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        // SAFETY: `filter` is live; `out` is writable.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter,
                id,
                &mut out,
            )
        };
        // SAFETY: Envoy keeps the attribute's bytes valid during the hook.
        found.then(|| unsafe { abi::bytes(out.ptr, out.length) }.to_vec())
    }
}

impl RequestSource for NativeRequest {
    fn header(&mut self, name: &str, out: &mut Vec<u8>) -> bool {
        let values = self.headers.iter().filter_map(|field| {
            // SAFETY: header buffers stay valid until the hook returns, and
            // this request does not outlive the hook.
            let key = unsafe { abi::bytes(field.key_ptr, field.key_length) };
            // SAFETY: as above.
            key.eq_ignore_ascii_case(name.as_bytes())
                .then(|| unsafe { abi::bytes(field.value_ptr, field.value_length) })
        });
        join_lines(values, out)
    }

    fn peer_address(&mut self, out: &mut Vec<u8>) -> bool {
        if self.peer.is_none() {
            self.peer = Some(self.attribute(abi::attribute::SOURCE_ADDRESS));
        }
        self.peer
            .as_ref()
            .and_then(Option::as_ref)
            .map(|p| out.extend_from_slice(p))
            .is_some()
    }

    fn protocol(&mut self, out: &mut Vec<u8>) -> bool {
        self.attribute(abi::attribute::REQUEST_PROTOCOL)
            .map(|p| out.extend_from_slice(&p))
            .is_some()
    }
}

impl RateLimiter for Buckets<'_> {
    fn over_limit(&mut self, limit: &RateLimit, key: &[u8]) -> bool {
        let now = *self.now_ns.get_or_insert_with(now_ns);
        let over = self.config.over_limit(limit, key, now);
        if over {
            self.over_limit = self.over_limit.saturating_add(1);
        }
        over
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
