//! The rule engine: configuration → compiled, immutable [`Engine`] →
//! [`Verdict`] for one request.
//!
//! This module never talks to a proxy. It reads requests through a
//! [`RequestSource`], so it builds and is tested natively, and the proxy-wasm
//! adapter (`src/wasm/http.rs`) stays a thin shell around it.
//!
//! All validation happens in [`Engine::from_json`]; [`Engine::decide`] has no
//! error path and cannot panic (clippy denies `unwrap`, `expect`, indexing and
//! unchecked arithmetic in this crate).

mod accept;
/// Names of the built-in host rules, as they appear in logs and stats.
pub mod builtin;
mod config;
pub mod counters;
mod droplog;
mod error;
mod facts;
mod header;
mod host;
pub(crate) mod json;
pub mod limits;
pub mod lists;
mod matchers;
mod plan;
pub mod presets;
pub mod request;
mod rules;

pub use accept::{AcceptRules, ListLookup};
pub use config::{Action, LogLevel, LogSpec, Mode, Scope};
pub use error::ConfigError;
pub use host::{classify as classify_host, HostForm};
pub(crate) use host::{FnvMap, FnvSet};
pub use request::{join_lines, NoLimits, RateLimit, RateLimiter, RequestSource};

use config::ConfigSpec;
use facts::Facts;
use limits::{MAX_LOG_PER_SECOND, MAX_RULES, MAX_RULE_NAME, MAX_USER_AGENT_LOGGED};
use matchers::SubjectIndex;
use plan::{plan, Unit};
use rules::{Compiler, Rule, Subject};

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'e> {
    /// No rule matched: let it through.
    Pass,
    /// An `allow` rule matched: let it through, whatever else matches.
    Allow { rule: &'e str },
    /// A drop rule matched: close without a response.
    Drop { rule: &'e str },
    /// A drop rule matched, but the configuration is in `dry-run` mode: report
    /// it like a drop and let the request through.
    DryRun { rule: &'e str },
}

impl Decision<'_> {
    /// The `event` of the drop-log line this decision writes for its rule:
    /// `drop` and `dry-run`; none for a pass or an allow.
    pub fn log_event(self) -> Option<&'static str> {
        match self {
            Decision::Pass | Decision::Allow { .. } => None,
            Decision::DryRun { .. } => Some("dry-run"),
            Decision::Drop { .. } => Some("drop"),
        }
    }
}

/// A rule as a verdict hands it to an adapter: its `id` (index in evaluation
/// order, the same order as [`Engine::rules`] and [`Engine::stat_names`], so
/// per-rule counters can be a `Vec` indexed by it), its name and its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef<'e> {
    pub id: u32,
    pub name: &'e str,
    pub scope: Scope,
}

/// The decision plus the `log` rules that matched on the way to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'e> {
    pub decision: Decision<'e>,
    /// `log` rules that matched before the deciding rule, in rule order.
    pub logged: Vec<&'e str>,
    /// The rule behind `decision` (`None` for [`Decision::Pass`]).
    pub rule: Option<RuleRef<'e>>,
    /// The rules of `logged`, same order.
    pub logged_rules: Vec<RuleRef<'e>>,
    /// When `rule` matched only because a list it reads has not loaded yet
    /// (its `on_missing` is `drop` or `refuse`): that list's declaration.
    pub missing_list: Option<&'e lists::ListDecl>,
}

impl Verdict<'_> {
    /// The rule that closes the request, if it is to be closed.
    pub fn drop_rule(&self) -> Option<&str> {
        match self.decision {
            Decision::Drop { rule } => Some(rule),
            _ => None,
        }
    }
}

/// A compiled configuration. Immutable; cheap to share between requests.
#[derive(Debug)]
pub struct Engine {
    mode: Mode,
    fallback_status: u16,
    fallback_try_close: bool,
    log: LogSpec,
    stats_prefix: String,
    xff_trusted_hops: u32,
    header_names: Vec<String>,
    query_names: Vec<Vec<u8>>,
    slots: Slots,
    indexes: Vec<(Subject, SubjectIndex)>,
    /// The `host_kind` index, answered ahead of time: `host_kind` has four
    /// values, so its hits for each are computed once, here.
    kind_hits: Option<(usize, [Vec<u32>; 4])>,
    leaf_rule: Vec<u32>,
    rules: Vec<Rule>,
    /// Per rule: is it flat ([`Rule::is_flat`]), decided by index hits alone?
    flat: Vec<bool>,
    allow_plan: Vec<Unit>,
    drop_plan: Vec<Unit>,
    /// The rules of the plans' [`Unit::Host`] groups.
    host_group: Vec<u32>,
    reads_peer: bool,
    max_tarpitted: u32,
    /// Named lists (`lists`), by id; their contents come with each request.
    lists: Vec<lists::ListDecl>,
}

/// Header slots of the request parts that are not plain headers.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Slots {
    pub authority: Option<usize>,
    pub path: Option<usize>,
    pub method: Option<usize>,
    pub scheme: Option<usize>,
    pub xff: Option<usize>,
}

impl Engine {
    /// Parses, validates and compiles a JSON configuration. Empty input means
    /// the built-in defaults (see `docs/configuration.md`).
    pub fn from_json(json: &[u8]) -> Result<Engine, ConfigError> {
        Self::compile(config::parse(json)?)
    }

    /// The built-in configuration: drop a missing, empty, invalid or IP-literal Host.
    pub fn builtin() -> Engine {
        // The default spec always compiles; should that ever change, an empty
        // engine (which passes everything) is returned rather than a panic,
        // and the unit tests catch it.
        Self::compile(ConfigSpec::default()).unwrap_or_else(|_| Engine::empty())
    }

    fn empty() -> Engine {
        Engine {
            mode: Mode::Enforce,
            fallback_status: 403,
            fallback_try_close: true,
            log: LogSpec::default(),
            stats_prefix: "drop444".into(),
            xff_trusted_hops: 0,
            header_names: Vec::new(),
            query_names: Vec::new(),
            slots: Slots::default(),
            indexes: Vec::new(),
            kind_hits: None,
            leaf_rule: Vec::new(),
            rules: Vec::new(),
            flat: Vec::new(),
            allow_plan: Vec::new(),
            drop_plan: Vec::new(),
            host_group: Vec::new(),
            reads_peer: false,
            max_tarpitted: config::DEFAULT_MAX_TARPITTED,
            lists: Vec::new(),
        }
    }

    fn compile(spec: ConfigSpec) -> Result<Engine, ConfigError> {
        let total = spec.rules.len().saturating_add(builtin::ALL.len());
        if total > MAX_RULES {
            return Err(ConfigError::new(
                "rules",
                format!("more than {MAX_RULES} rules"),
            ));
        }
        validate_settings(&spec)?;
        let list_decls = lists::compile_decls(&spec.lists)?;
        let mut compiler = Compiler::default();
        compiler.list_decls = list_decls
            .iter()
            .map(|d| (d.name.clone(), d.format))
            .collect();
        // Bytes, not `String`s: the same set type as `in` lists use.
        let mut names: FnvSet<Vec<u8>> = FnvSet::default();
        let mut compiled: Vec<Rule> = Vec::with_capacity(total);

        // The host policy is sugar for built-in rules in the same language,
        // placed before the configured rules. Its allowlist is checked here
        // so errors name `host.allow`, not the generated rule.
        host::Allowlist::compile(&spec.host.allow, "host.allow")?;
        for (name, rule_spec, source) in builtin::host_rules(&spec.host)? {
            let index = compiled.len();
            let mut rule = compiler.rule(&rule_spec, index, name.to_string(), "host")?;
            rule.source = source;
            rule.scope = spec.host.scope;
            names.insert(name.as_bytes().to_vec());
            compiled.push(rule);
        }
        for reserved in builtin::ALL {
            names.insert(reserved.as_bytes().to_vec());
        }

        for (i, rule_spec) in spec.rules.iter().enumerate() {
            let path = format!("rules[{i}]");
            let name = match &rule_spec.name {
                Some(name) => {
                    validate_rule_name(name, &format!("{path}.name"))?;
                    name.clone()
                }
                None => format!("rule-{i}"),
            };
            if !names.insert(name.as_bytes().to_vec()) {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    format!(
                        "duplicate rule name `{name}` (names must be unique and not one of {})",
                        builtin::ALL.join(", ")
                    ),
                ));
            }
            let index = compiled.len();
            let mut rule = compiler.rule(rule_spec, index, name, &path)?;
            rule.source = spec.rule_sources.get(i).cloned().unwrap_or_default();
            compiled.push(rule);
        }

        let mut slots = Slots::default();
        let used = std::mem::take(&mut compiler.used);
        let uses = |s: Subject| used.contains(&s);
        if uses(Subject::Host) || uses(Subject::HostKind) {
            slots.authority = Some(compiler.header_slot(":authority".into()));
        }
        if uses(Subject::Path) || uses(Subject::PathAndQuery) || !compiler.query_names.is_empty() {
            slots.path = Some(compiler.header_slot(":path".into()));
        }
        if uses(Subject::Method) {
            slots.method = Some(compiler.header_slot(":method".into()));
        }
        if uses(Subject::Scheme) {
            slots.scheme = Some(compiler.header_slot(":scheme".into()));
        }
        if uses(Subject::ClientIp) && spec.client_ip.xff_trusted_hops > 0 {
            slots.xff = Some(compiler.header_slot("x-forwarded-for".into()));
        }

        let mut indexes = Vec::with_capacity(compiler.indexes.len());
        for (subject, builder) in compiler
            .index_subjects
            .iter()
            .zip(std::mem::take(&mut compiler.indexes))
        {
            indexes.push((*subject, builder.build(subject.is_list())?));
        }
        let kind_hits = indexes
            .iter()
            .position(|(subject, _)| *subject == Subject::HostKind)
            .and_then(|at| {
                let (_, index) = indexes.get(at)?;
                let per_kind = request::HOST_KINDS.map(|kind| {
                    let mut hits = Vec::new();
                    index.search(kind, false, &mut hits);
                    hits.sort_unstable();
                    hits.dedup();
                    hits
                });
                Some((at, per_kind))
            });
        // Conditions that read only the Host's kind and one allowlist (the
        // built-in host rules) become a lookup per kind.
        let kind_index = kind_hits.as_ref().map(|(at, per_kind)| (*at, per_kind));
        for rule in &mut compiled {
            rules::host_table(&mut rule.node, kind_index);
        }
        let mut host_group = Vec::new();
        let allow_plan = plan(&compiled, |a| a == Action::Allow, &mut host_group);
        let drop_plan = plan(&compiled, |a| a != Action::Allow, &mut host_group);
        Ok(Engine {
            mode: spec.mode,
            fallback_status: spec.fallback.status,
            fallback_try_close: spec.fallback.try_close,
            log: spec.log,
            stats_prefix: spec.stats.prefix,
            xff_trusted_hops: spec.client_ip.xff_trusted_hops,
            header_names: compiler.header_names,
            query_names: compiler.query_names,
            slots,
            indexes,
            kind_hits,
            leaf_rule: compiler.leaf_rule,
            flat: compiled.iter().map(Rule::is_flat).collect(),
            rules: compiled,
            allow_plan,
            drop_plan,
            host_group,
            reads_peer: uses(Subject::ClientIp),
            max_tarpitted: spec.max_tarpitted.unwrap_or(config::DEFAULT_MAX_TARPITTED),
            lists: list_decls,
        })
    }

    /// The named lists this configuration declares; a list's id (for
    /// [`RequestSource::list`] and [`lists::ListSet`]) is its index here.
    pub fn lists(&self) -> &[lists::ListDecl] {
        &self.lists
    }

    /// The rules that read list `id`, by name (for `check` and docs).
    pub fn rules_reading_list(&self, id: u32) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .filter(move |r| r.lists.contains(&id))
            .map(|r| r.name.as_str())
    }

    /// The headers (and pseudo-headers) this configuration may read, lower
    /// case. A proxy adapter fetches them lazily through [`RequestSource`].
    pub fn header_names(&self) -> &[String] {
        &self.header_names
    }

    /// Trusted `X-Forwarded-For` hops for `client_ip` (0: the direct peer).
    pub fn xff_trusted_hops(&self) -> u32 {
        self.xff_trusted_hops
    }

    /// How drops are logged.
    pub fn log_settings(&self) -> &LogSpec {
        &self.log
    }

    /// Counter names: `(rule, counter)` for every rule in evaluation order,
    /// plus the prefix for the totals. Rule names are made Prometheus-safe
    /// (`-` and `.` become `_`); should two names collide that way, the later
    /// one gets its index appended.
    pub fn stat_names(&self) -> (String, Vec<(&str, String)>) {
        let prefix = self.stats_prefix.clone();
        let mut seen: FnvSet<Vec<u8>> = FnvSet::default();
        let names = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let safe: String = r
                    .name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let unique = if seen.insert(safe.as_bytes().to_vec()) {
                    safe
                } else {
                    format!("{safe}_{i}")
                };
                (r.name.as_str(), format!("{prefix}.rule.{unique}"))
            })
            .collect();
        (prefix, names)
    }

    /// Status of the local response sent on hosts that cannot close a stream.
    pub fn fallback_status(&self) -> u16 {
        self.fallback_status
    }

    /// Should a drop try to close the stream at all (`fallback.try_close`)?
    pub fn fallback_try_close(&self) -> bool {
        self.fallback_try_close
    }

    /// The stats prefix (also names rate-limit buckets in shared data).
    pub fn stat_prefix(&self) -> &str {
        &self.stats_prefix
    }

    /// Enforce or dry-run.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Rule names in evaluation order (built-in host rules first), with their
    /// actions: what stats and logs can report.
    pub fn rules(&self) -> impl Iterator<Item = (&str, Action)> {
        self.rules.iter().map(|r| (r.name.as_str(), r.action))
    }

    /// A rule as configured (compact JSON; a description for built-in rules).
    pub fn rule_source(&self, name: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.source.as_str())
    }

    /// Does any rule need the direct peer's address?
    pub fn reads_peer_address(&self) -> bool {
        self.reads_peer
    }

    /// Decides one request. `allow` rules first (any match exempts the
    /// request); then the built-in host rules and the configured drop / log
    /// rules in order: the first drop decides, `log` rules before it are
    /// reported. Rate-limited rules reached in order take their token from
    /// `limiter` (pass [`NoLimits`] where there are no buckets).
    pub fn decide<'e>(
        &'e self,
        source: &mut dyn RequestSource,
        limiter: &mut dyn RateLimiter,
    ) -> Verdict<'e> {
        let mut scratch = facts::take_scratch();
        let verdict = self.decide_with(source, limiter, &mut scratch);
        facts::keep_scratch(scratch);
        verdict
    }

    /// [`Engine::decide`] with this thread's buffers.
    fn decide_with<'e>(
        &'e self,
        source: &mut dyn RequestSource,
        limiter: &mut dyn RateLimiter,
        scratch: &mut facts::Scratch,
    ) -> Verdict<'e> {
        let mut facts = Facts::new(self, source, limiter, scratch);
        let mut logged_rules = Vec::new();
        let allowed = if self.allow_plan.is_empty() {
            None
        } else {
            self.first_match(&self.allow_plan, true, &mut facts, &mut Vec::new())
        };
        if let Some(rule) = allowed {
            let missing_list = self.missing_decided(&facts, Some(rule));
            facts.finish();
            return Verdict {
                decision: Decision::Allow { rule: rule.name },
                logged: Vec::new(),
                rule: Some(rule),
                logged_rules,
                missing_list,
            };
        }
        let found = self.first_match(&self.drop_plan, false, &mut facts, &mut logged_rules);
        let missing_list = self.missing_decided(&facts, found);
        facts.finish();
        self.drop_phase_verdict(found, logged_rules, missing_list)
    }

    /// The verdict once the drop phase found `found` (or nothing): a drop,
    /// a dry-run drop or a pass, with the `log` rules matched before it.
    fn drop_phase_verdict<'e>(
        &'e self,
        found: Option<RuleRef<'e>>,
        logged_rules: Vec<RuleRef<'e>>,
        missing_list: Option<&'e lists::ListDecl>,
    ) -> Verdict<'e> {
        let decision = match found {
            None => Decision::Pass,
            Some(rule) if self.mode == Mode::DryRun => Decision::DryRun { rule: rule.name },
            Some(rule) => Decision::Drop { rule: rule.name },
        };
        let logged = if logged_rules.is_empty() {
            Vec::new()
        } else {
            logged_rules.iter().map(|r| r.name).collect()
        };
        Verdict {
            decision,
            logged,
            rule: found,
            logged_rules,
            missing_list,
        }
    }

    fn missing_decided(
        &self,
        facts: &Facts<'_, '_>,
        rule: Option<RuleRef<'_>>,
    ) -> Option<&lists::ListDecl> {
        let rule = rule?;
        let (_, list) = facts.missing_hits().iter().find(|(r, _)| *r == rule.id)?;
        self.lists.get(*list as usize)
    }

    /// The rule with this id (see [`RuleRef`]).
    pub fn rule(&self, id: u32) -> Option<RuleRef<'_>> {
        self.rules.get(id as usize).map(|r| RuleRef {
            id,
            name: r.name.as_str(),
            scope: r.scope,
        })
    }
}

fn validate_settings(spec: &ConfigSpec) -> Result<(), ConfigError> {
    let prefix = &spec.stats.prefix;
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    if prefix.is_empty() || prefix.len() > MAX_RULE_NAME || !prefix.bytes().all(ok) {
        return Err(ConfigError::new(
            "stats.prefix",
            format!("`{prefix}`: a stats prefix is 1-{MAX_RULE_NAME} characters of a-z 0-9 _"),
        ));
    }
    if !(200..=599).contains(&spec.fallback.status) {
        return Err(ConfigError::new(
            "fallback.status",
            "an HTTP status from 200 to 599",
        ));
    }
    if spec.log.max_per_second > MAX_LOG_PER_SECOND {
        return Err(ConfigError::new(
            "log.max_per_second",
            format!("at most {MAX_LOG_PER_SECOND}"),
        ));
    }
    if let Some(max) = spec.max_tarpitted {
        if !(1..=config::MAX_TARPITTED_LIMIT).contains(&max) {
            return Err(ConfigError::new(
                "max_tarpitted",
                format!("from 1 to {}", config::MAX_TARPITTED_LIMIT),
            ));
        }
    }
    if spec.log.user_agent_max > MAX_USER_AGENT_LOGGED {
        return Err(ConfigError::new(
            "log.user_agent_max",
            format!("at most {MAX_USER_AGENT_LOGGED}"),
        ));
    }
    Ok(())
}

fn validate_rule_name(name: &str, path: &str) -> Result<(), ConfigError> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
    if name.is_empty() || name.len() > MAX_RULE_NAME || !name.bytes().all(ok_char) {
        return Err(ConfigError::new(
            path,
            format!("`{name}`: rule names are 1-{MAX_RULE_NAME} characters of A-Z a-z 0-9 - _ ."),
        ));
    }
    Ok(())
}

/// Is every byte an ASCII digit (true for an empty slice)? A plain loop:
/// the iterator form is a shared out-of-line call in the size-optimised
/// build, on the request path.
pub(crate) fn all_digits(v: &[u8]) -> bool {
    for b in v {
        if !b.is_ascii_digit() {
            return false;
        }
    }
    true
}

/// Optional whitespace (RFC 9110 OWS) trimmed from both ends.
pub(crate) fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    // The common value has none: two comparisons.
    if !v.first().is_some_and(is_ows) && !v.last().is_some_and(is_ows) {
        return v;
    }
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i.saturating_add(1));
    v.get(start..end).unwrap_or_default()
}

/// A [`RequestSource`] over a list of header lines, for tests and tools.
/// Repeated headers are joined with `,`, as Envoy presents them. Pseudo-headers
/// (`:authority`, `:path`, `:method`, `:scheme`) are given like headers.
#[derive(Debug, Default, Clone)]
pub struct HeaderList {
    lines: Vec<(String, Vec<u8>)>,
    peer: Option<Vec<u8>>,
    protocol: Option<Vec<u8>>,
    /// What the engine read, in order (tests check each is read once).
    pub fetched: Vec<String>,
    /// Named lists' contents (`in_list`); none loaded by default.
    lists: lists::ListSet,
}

impl HeaderList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one header line (name matched case-insensitively).
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.lines
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// Sets the direct peer address (`ip` or `ip:port`).
    pub fn peer(mut self, address: &str) -> Self {
        self.peer = Some(address.as_bytes().to_vec());
        self
    }

    /// Sets the protocol (`HTTP/1.1`, `HTTP/2`, ...).
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = Some(protocol.as_bytes().to_vec());
        self
    }

    /// Sets the named lists' contents.
    pub fn lists(mut self, lists: lists::ListSet) -> Self {
        self.lists = lists;
        self
    }
}

impl RequestSource for HeaderList {
    fn header(&mut self, name: &str, out: &mut Vec<u8>) -> bool {
        self.fetched.push(name.to_string());
        let lines = self.lines.iter().filter(|(n, _)| n == name);
        join_lines(lines.map(|(_, value)| value.as_slice()), out)
    }

    fn peer_address(&mut self, out: &mut Vec<u8>) -> bool {
        self.fetched.push("<peer>".into());
        self.peer
            .as_ref()
            .map(|p| out.extend_from_slice(p))
            .is_some()
    }

    fn protocol(&mut self, out: &mut Vec<u8>) -> bool {
        self.fetched.push("<protocol>".into());
        self.protocol
            .as_ref()
            .map(|p| out.extend_from_slice(p))
            .is_some()
    }

    fn list(&self, id: u32) -> Option<std::sync::Arc<lists::ListData>> {
        self.lists.get(id).cloned()
    }
}

#[cfg(test)]
mod language_tests;
#[cfg(test)]
mod tests;
