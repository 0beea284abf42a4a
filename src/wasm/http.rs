//! The HTTP adapter: per request it hands the engine a [`RequestSource`] over
//! the request headers, fetched from the host in one call, then acts on the
//! verdict:
//!
//! - drop: record the rule in filter state, reset the stream (Envoy closes an
//!   HTTP/1 connection without writing a byte, or sends RST_STREAM on HTTP/2);
//! - dry-run drop / `log` match: same counters and log line, request goes on;
//! - pass / allow: continue.
//!
//! It never sends a local response (except the configured fallback on a host
//! that cannot close a stream): that would put a real status on the wire.

use super::hostcall::{self, MapType};
use super::Action;
use log::{debug, error, info, warn};

use super::abi::{self, Batched, LogBudget};
use super::lists::Lists;
use super::tarpit::{self, Hold, Tarpit};
use crate::engine::counters::{Count, Total};
use crate::engine::{
    self, join_lines, AcceptRules, Decision, Engine, RateLimit, RateLimiter, RequestSource,
    RuleRef, Scope, Verdict,
};
use crate::limiter::{key_hash, BucketState};

/// Compare-and-swap attempts on a rate-limit bucket before giving up (and
/// letting the request through, counted in `ratelimit_contention`).
const MAX_CAS_TRIES: usize = 8;

/// Filter-state keys. Envoy exposes them as `%FILTER_STATE(wasm.drop444:PLAIN)%`
/// (the rule) and `%FILTER_STATE(wasm.drop444_status:PLAIN)%` (`444` for a
/// drop, `dry-run` for a dry-run drop) in access logs.
const RULE_PROPERTY: &str = "drop444";
const STATUS_PROPERTY: &str = "drop444_status";
/// `drop444_status` of a request held by a tarpit rule (then closed).
const TARPIT_STATUS: &str = "444-tarpit";

/// One per plugin and worker: the compiled configuration, its counters and
/// the drop-log budget, shared by every request context of the plugin.
pub struct Plugin {
    pub(super) engine: Engine,
    pub(super) stats: Stats,
    pub(super) log_budget: LogBudget,
    /// Requests held by `tarpit` rules on this worker.
    pub(super) tarpit: Tarpit,
    /// The rules the L4 plugin applies when a connection opens.
    pub(super) accept_rules: AcceptRules,
    /// Set once the host has shown it cannot close a stream (logged once).
    cannot_close: std::cell::Cell<bool>,
    /// Fast ticks since the last counter flush.
    fast_ticks: std::cell::Cell<u32>,
    /// The named lists' fetch state and this worker's snapshots.
    pub lists: Lists,
}

impl Plugin {
    pub fn new(engine: Engine) -> Self {
        let stats = Stats::define(&engine);
        let log_budget = LogBudget::new(engine.log_settings().max_per_second);
        let tarpit = Tarpit::new(engine.max_tarpitted());
        let accept_rules = engine.accept_rules();
        let lists = Lists::new(engine.stat_prefix(), engine.lists());
        Plugin {
            engine,
            stats,
            log_budget,
            tarpit,
            accept_rules,
            cannot_close: std::cell::Cell::new(false),
            fast_ticks: std::cell::Cell::new(0),
            lists,
        }
    }

    /// Hands the counts of this worker to the host (on the tick).
    pub fn flush(&self) {
        self.stats.flush();
    }

    /// The root's tick: closes the tarpitted requests that are due, and
    /// hands the counts to the host about once per [`TICK`] (every tick at
    /// that period; every [`tarpit::FAST_TICKS_PER_FLUSH`]th while requests
    /// are held and the tick is fast).
    pub fn on_tick(&self) {
        if self.tarpit.on_tick(TICK) {
            let ticks = self.fast_ticks.get().saturating_add(1);
            if ticks < tarpit::FAST_TICKS_PER_FLUSH {
                self.fast_ticks.set(ticks);
                return;
            }
        }
        self.fast_ticks.set(0);
        self.flush();
    }

    /// The plugin for this configuration; `None` (after an error log naming
    /// the bad field) for an invalid one, which makes the host refuse it.
    pub fn configure(config: &[u8]) -> Option<Self> {
        match Engine::from_json(config) {
            Ok(engine) => {
                info!(
                    "configuration loaded: {} rules, mode {:?}, reads {:?}",
                    engine.rules().count(),
                    engine.mode(),
                    engine.header_names()
                );
                Some(Plugin::new(engine))
            }
            Err(err) => {
                error!("invalid configuration, plugin not loaded: {err}");
                None
            }
        }
    }
}

impl Drop for Plugin {
    /// A plugin replaced by a new configuration (or shut down) hands over
    /// what it counted since its last tick.
    fn drop(&mut self) {
        self.flush();
    }
}

/// Holds request `context_id` for a tarpit rule; false if the bound is
/// reached (the caller drops at once).
fn tarpit(plugin: &Plugin, context_id: u32, rule: RuleRef<'_>, delay: std::time::Duration) -> bool {
    let connection = (rule.scope == Scope::Connection).then_some(rule.name);
    match plugin.tarpit.hold(context_id, delay, connection) {
        Hold::Held => {
            plugin.stats.bump(Total::Tarpitted);
            set_filter_state(rule.name, TARPIT_STATUS);
            true
        }
        Hold::Full => {
            plugin.stats.bump(Total::TarpitOverflow);
            false
        }
    }
}

/// A request's headers: the whole decision. No state is kept for the
/// request afterwards except a tarpit's hold.
pub fn on_request_headers(plugin: &Plugin, context_id: u32) -> Action {
    let mut request = HostRequest::new(&plugin.lists);
    let mut buckets = SharedBuckets::new(plugin.engine.stat_prefix());
    let verdict = plugin.engine.decide(&mut request, &mut buckets);
    plugin.record(&verdict, &mut request);
    for _ in 0..buckets.over_limit {
        plugin.stats.bump(Total::RateLimited);
    }
    for _ in 0..buckets.contention {
        plugin.stats.bump(Total::Contention);
    }
    match (verdict.decision, verdict.rule) {
        (Decision::DryRun { .. }, Some(rule)) => {
            set_filter_state(rule.name, "dry-run");
            Action::Continue
        }
        (Decision::Drop { .. }, Some(rule)) => {
            if let Some(delay) = plugin.engine.tarpit_of(rule) {
                if tarpit(plugin, context_id, rule, delay) {
                    return Action::Pause;
                }
            }
            // Filter state first: the access log line is written after the reset.
            set_filter_state(rule.name, "444");
            // Before the reset: its RST_STREAM is the write the L4 filter
            // closes the connection on (docs/connection-close.md).
            if plugin.refuses(&verdict) {
                return Action::Pause;
            }
            if rule.scope == Scope::Connection {
                super::l4::close_connection(rule.name);
            }
            plugin.close(rule.name);
            Action::Pause
        }
        _ => Action::Continue,
    }
}

/// Body of a request held by a tarpit. Envoy hands no body to a stream whose
/// headers paused (measured: `tarpit_with_a_request_body_stays_silent`). On
/// a host that does, a held request stays held while its body arrives (a
/// Continue would resume it); past [`tarpit::MAX_HELD_BODY`] it is closed at
/// once, before a buffer limit could make the host answer 413 itself.
pub fn on_held_body(plugin: &Plugin, context_id: u32, body_size: usize) -> Action {
    if body_size > tarpit::MAX_HELD_BODY && plugin.tarpit.release(context_id) {
        plugin.close("tarpit-body");
    }
    Action::Pause
}

/// Records the rule for the access log. Through the raw ABI: the SDK's
/// wrapper panics (and so kills the VM) on hosts that refuse the property.
fn set_filter_state(rule: &str, status: &str) {
    for (key, value) in [(RULE_PROPERTY, rule), (STATUS_PROPERTY, status)] {
        let code = abi::set_property(key, value.as_bytes());
        if code != abi::OK {
            debug!("could not set filter state {key}: status {code}");
        }
    }
}

impl Plugin {
    /// A drop decided only because a list the rule reads has not loaded and
    /// its `on_missing` is `refuse`: answered 503 (the client may retry)
    /// instead of closed. True if the answer was sent.
    fn refuses(&self, verdict: &Verdict<'_>) -> bool {
        let refuse = verdict
            .missing_list
            .is_some_and(|d| d.on_missing == engine::lists::OnMissing::Refuse);
        refuse
            && abi::send_local_response(503, "drop444_list_missing", &[("retry-after", "10")])
                == abi::OK
    }

    /// Closes the request without a response. On a host that cannot (its
    /// close-stream call fails), sends the configured minimal response with
    /// `connection: close` instead: never passes the request on.
    fn close(&self, rule: &str) {
        let code = if self.engine.fallback_try_close() {
            abi::reset_request()
        } else {
            abi::UNIMPLEMENTED
        };
        if code == abi::OK {
            return;
        }
        self.stats.bump(Total::ResetFailed);
        if !self.cannot_close.replace(true) {
            warn!(
                "this host cannot close a stream (proxy_close_stream status {code}): drops are answered with a {} response and connection: close instead of silence",
                self.engine.fallback_status()
            );
        }
        let sent = abi::send_local_response(
            self.engine.fallback_status(),
            "drop444_fallback",
            &[("connection", "close")],
        );
        if sent == abi::OK {
            self.stats.bump(Total::Fallback);
        } else {
            error!("host refused both closing and answering (status {sent}); request {rule} held, not passed");
        }
    }

    /// Counters and the structured log line for one verdict.
    fn record(&self, verdict: &Verdict<'_>, request: &mut HostRequest<'_>) {
        for count in verdict.counts() {
            self.stats.count(count);
        }
        for logged in &verdict.logged_rules {
            self.log_line("log", logged.name, request);
        }
        if let (Some(event), Some(rule)) = (verdict.decision.log_event(), verdict.rule) {
            self.log_line(event, rule.name, request);
        }
    }

    /// Writes one JSON line if the budget allows; otherwise counts it. The
    /// request items come from what the decision already fetched: with the
    /// header map read in one call, a log line costs no further host read
    /// (the peer address is read only if no rule did).
    fn log_line(&self, event: &str, rule: &str, request: &mut HostRequest<'_>) {
        let settings = self.engine.log_settings();
        if settings.level == engine::LogLevel::Off {
            return;
        }
        let Some(suppressed) = self.log_budget.take() else {
            self.stats.bump(Total::Suppressed);
            return;
        };
        let json = self.engine.drop_line(event, rule, request, suppressed);
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

/// Counters, defined once per configuration, counted in wasm memory and
/// handed to the host on the plugin's tick ([`TICK`]): a request makes no
/// host call for them. The totals are the engine's ([`Total`], one slot
/// each); per-rule counters are indexed by the rule id a verdict carries
/// ([`RuleRef::id`]).
pub(super) struct Stats {
    totals: Vec<Batched>,
    rules: Vec<Batched>,
}

/// How often counters reach the host: Envoy's counters lag drop444's by at
/// most this (plus the time to the worker's next event).
pub const TICK: std::time::Duration = std::time::Duration::from_secs(1);

impl Stats {
    fn define(engine: &Engine) -> Self {
        let (prefix, rules) = engine.stat_names();
        Stats {
            totals: Total::ALL
                .iter()
                .map(|total| Batched::define(&format!("{prefix}.{}", total.name())))
                .collect(),
            rules: rules
                .iter()
                .map(|(_, metric)| Batched::define(metric))
                .collect(),
        }
    }

    /// Adds one to a total.
    pub(super) fn bump(&self, total: Total) {
        if let Some(counter) = self.totals.get(total.index()) {
            counter.bump();
        }
    }

    /// Adds one to the counter of `count`.
    fn count(&self, count: Count) {
        match count {
            Count::Total(total) => self.bump(total),
            Count::Rule(id) => {
                if let Some(counter) = self.rules.get(id as usize) {
                    counter.bump();
                }
            }
        }
    }

    /// Adds one to the counter of `rule`.
    pub(super) fn bump_rule(&self, rule: RuleRef<'_>) {
        self.count(Count::Rule(rule.id));
    }

    /// Hands every count to the host, in [`Total::ALL`]'s order with the
    /// rules' counters before `requests_seen` (last), so a reader that sees
    /// it at N sees every other counter of those N requests.
    fn flush(&self) {
        let (seen, totals) = self.totals.split_last().unzip();
        for counter in totals.into_iter().flatten().chain(&self.rules).chain(seen) {
            counter.flush();
        }
    }
}

/// The request headers as the host returned them: one buffer in the
/// proxy-wasm map layout (count; name and value lengths; NUL-terminated names
/// and values), read in place, never copied line by line. One pass checks
/// the layout and notes where each line's name and value are, for every
/// line (no cap, so no second way to look a header up). The index's buffer
/// is the worker's, lent for the request and given back on drop: neither
/// allocated nor cleared in full per request. (The fixed 48-slot index it
/// replaced was 2,700 of a passed request's 18,600 wasm operators in
/// wasmtime, `tests/host/cost.rs`; on Envoy with V8 the two cost the same.)
struct HeaderPairs {
    data: Vec<u8>,
    /// (name start, name length, value start, value length) of each line.
    index: Vec<(u32, u32, u32, u32)>,
}

thread_local! {
    /// The index buffer between requests (see [`HeaderPairs`]).
    static SPARE_INDEX: std::cell::Cell<Vec<(u32, u32, u32, u32)>> =
        const { std::cell::Cell::new(Vec::new()) };
}

impl Drop for HeaderPairs {
    fn drop(&mut self) {
        SPARE_INDEX.set(std::mem::take(&mut self.index));
    }
}

impl HeaderPairs {
    /// `None` if the buffer is not a well-formed map: its line table and
    /// the lines it describes lie within the buffer.
    fn parse(data: Vec<u8>) -> Option<Self> {
        let mut index = SPARE_INDEX.take();
        index.clear();
        let mut pairs = HeaderPairs { data, index };
        let Some(count) = pairs.data.first_chunk::<4>() else {
            return pairs.data.is_empty().then_some(pairs);
        };
        let count = usize::try_from(u32::from_le_bytes(*count)).ok()?;
        let table_end = count.checked_mul(8)?.checked_add(4)?;
        let mut table = pairs.data.get(4..table_end)?;
        let mut at = table_end;
        while let Some((sizes, rest)) = table.split_first_chunk::<8>() {
            table = rest;
            let (name_len, value_len) = sizes.split_first_chunk::<4>()?;
            let name_len = u32::from_le_bytes(*name_len);
            let value_len = u32::from_le_bytes(value_len.try_into().ok()?);
            let name_at = at;
            let value_at = name_at
                .checked_add(usize::try_from(name_len).ok()?)?
                .checked_add(1)?;
            at = value_at
                .checked_add(usize::try_from(value_len).ok()?)?
                .checked_add(1)?;
            if at > pairs.data.len() {
                return None;
            }
            pairs.index.push((
                u32::try_from(name_at).ok()?,
                name_len,
                u32::try_from(value_at).ok()?,
                value_len,
            ));
        }
        Some(pairs)
    }

    /// Appends a header's value, every line of it joined with `,` (as
    /// Envoy's `request.headers.<name>` attribute joins them), to `out`;
    /// false if absent.
    fn get(&self, name: &str, out: &mut Vec<u8>) -> bool {
        let name = name.as_bytes();
        let values = self
            .index
            .iter()
            .filter(|&&(_, name_len, _, _)| name_len as usize == name.len())
            .filter(|&&(name_at, name_len, _, _)| {
                slice(&self.data, name_at, name_len).is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .map(|&(_, _, value_at, value_len)| {
                slice(&self.data, value_at, value_len).unwrap_or_default()
            });
        join_lines(values, out)
    }
}

/// `data[at..at + len]`.
fn slice(data: &[u8], at: u32, len: u32) -> Option<&[u8]> {
    let at = at as usize;
    data.get(at..at.checked_add(len as usize)?)
}

/// The request as the engine reads it. The header map comes in one host call
/// (`proxy_get_header_map_pairs`) at the first header a rule needs: it holds
/// every field line, so a repeated header is seen whole (joined with `,`).
///
/// A host that refuses the map gets the old per-header reads instead: the
/// attribute `request.headers.<name>` first (Envoy joins every line of a
/// repeated header there, while `proxy_get_header_map_value` returns only the
/// first line of a non-inline one), then the header map value when the
/// attribute has none (hosts without attributes; and only the map tells an
/// empty header from an absent one).
struct HostRequest<'e> {
    /// `None`: not fetched yet; `Some(None)`: the host refused the map.
    pairs: Option<Option<HeaderPairs>>,
    /// Per-header reads on a host without the map, remembered.
    single: Vec<(String, Option<Vec<u8>>)>,
    peer: Option<Option<Vec<u8>>>,
    lists: &'e Lists,
}

impl<'e> HostRequest<'e> {
    fn new(lists: &'e Lists) -> Self {
        HostRequest {
            pairs: None,
            single: Vec::new(),
            peer: None,
            lists,
        }
    }

    fn single_header(&mut self, name: &str) -> Option<Vec<u8>> {
        if let Some((_, value)) = self.single.iter().find(|(n, _)| n == name) {
            return value.clone();
        }
        let value = match hostcall::get_property(vec!["request", "headers", name]) {
            Ok(Some(value)) => Some(value),
            _ => hostcall::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten(),
        };
        self.single.push((name.to_string(), value.clone()));
        value
    }
}

impl RequestSource for HostRequest<'_> {
    fn header(&mut self, name: &str, out: &mut Vec<u8>) -> bool {
        let pairs = self
            .pairs
            .get_or_insert_with(|| abi::request_header_pairs().and_then(HeaderPairs::parse));
        match pairs {
            Some(pairs) => pairs.get(name, out),
            None => self
                .single_header(name)
                .map(|v| out.extend_from_slice(&v))
                .is_some(),
        }
    }

    fn peer_address(&mut self, out: &mut Vec<u8>) -> bool {
        self.peer
            .get_or_insert_with(|| {
                hostcall::get_property_path(b"source\0address")
                    .ok()
                    .flatten()
            })
            .as_ref()
            .map(|p| out.extend_from_slice(p))
            .is_some()
    }

    fn protocol(&mut self, out: &mut Vec<u8>) -> bool {
        hostcall::get_property_path(b"request\0protocol")
            .ok()
            .flatten()
            .map(|p| out.extend_from_slice(&p))
            .is_some()
    }

    fn list(&self, id: u32) -> Option<std::sync::Arc<engine::lists::ListData>> {
        self.lists.get(id)
    }
}

impl RateLimiter for SharedBuckets<'_> {
    fn over_limit(&mut self, limit: &RateLimit, key: &[u8]) -> bool {
        SharedBuckets::over_limit(self, limit, key)
    }
}

/// Rate-limit buckets in proxy-wasm shared data, so every Envoy worker draws
/// from the same one: a client cannot multiply its budget by spreading
/// connections over workers. Updates are compare-and-swap, retried on
/// conflict. Keys are hashed into the rule's fixed number of slots, which
/// bounds memory however many distinct keys arrive.
struct SharedBuckets<'e> {
    /// Shared-data keys are `<prefix>.rl.<rule>.<slot>`.
    stat_prefix: &'e str,
    now_ns: Option<u64>,
    /// Checks that found the bucket empty.
    over_limit: u32,
    /// Checks abandoned after `MAX_CAS_TRIES` conflicts.
    contention: u32,
}

impl<'e> SharedBuckets<'e> {
    fn new(stat_prefix: &'e str) -> Self {
        SharedBuckets {
            stat_prefix,
            now_ns: None,
            over_limit: 0,
            contention: 0,
        }
    }

    /// Takes a token from `key`'s bucket; true if it was empty.
    fn over_limit(&mut self, limit: &RateLimit, key: &[u8]) -> bool {
        let hash = key_hash(key);
        let slot = hash.checked_rem(u64::from(limit.slots)).unwrap_or(0);
        let name = format!("{}.rl.{}.{slot}", self.stat_prefix, limit.rule);
        let now = *self.now_ns.get_or_insert_with(abi::now_ns);
        for _ in 0..MAX_CAS_TRIES {
            let Ok((data, cas)) = hostcall::get_shared_data(&name) else {
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
            match hostcall::set_shared_data(&name, Some(&state.to_bytes()), cas) {
                Ok(()) => return false,
                Err(hostcall::CAS_MISMATCH) => continue,
                Err(_) => return false,
            }
        }
        self.contention = self.contention.saturating_add(1);
        false
    }
}
