//! The configuration as written by the operator (read by hand from the JSON
//! document, see `json.rs`). Nothing here is
//! trusted: `compile` validates every field and builds the matcher.
//!
//! Every struct denies unknown fields, so a typo is an error, not a silently
//! ignored rule.

use serde_json::Value;

use super::error::ConfigError;
use super::json;

#[derive(Debug, Default)]
pub(crate) struct ConfigSpec {
    pub mode: Mode,
    pub client_ip: ClientIpSpec,
    pub host: HostSpec,
    pub log: LogSpec,
    pub stats: StatsSpec,
    pub fallback: FallbackSpec,
    pub rules: Vec<NodeSpec>,
    /// Most requests held by `tarpit` rules at once, per plugin and Envoy
    /// worker; past it a tarpit rule drops at once (default
    /// [`DEFAULT_MAX_TARPITTED`]).
    pub max_tarpitted: Option<u32>,
    /// Named lists fetched at runtime (`in_list` in conditions).
    /// (name, declaration), sorted by name, each name once.
    pub lists: Vec<(String, super::lists::ListSpec)>,
    /// Each rule as written (compact JSON), for explanations.
    pub rule_sources: Vec<String>,
}

/// `enforce` drops; `dry-run` decides and reports exactly the same, but lets
/// every request through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

/// Where the client address of `client_ip` conditions comes from.
#[derive(Debug, Default)]
pub(crate) struct ClientIpSpec {
    /// Number of proxies in front of this one that append to
    /// `X-Forwarded-For` and are trusted. 0 (default): the direct peer.
    pub xff_trusted_hops: u32,
}

/// The Host / `:authority` policy. The defaults are the built-in rules used
/// when the configuration is empty.
#[derive(Debug)]
pub(crate) struct HostSpec {
    pub allow: Vec<String>,
    pub scope: Scope,
    pub drop_missing: bool,
    pub drop_invalid: bool,
    pub drop_ip_literal: bool,
}

impl Default for HostSpec {
    fn default() -> Self {
        HostSpec {
            allow: Vec::new(),
            scope: Scope::Stream,
            drop_missing: true,
            drop_invalid: true,
            drop_ip_literal: true,
        }
    }
}

/// The structured log line written for each drop (and dry-run drop and `log`
/// match), rate-limited so a flood cannot flood the log.
#[derive(Debug, Clone)]
pub struct LogSpec {
    /// Level of the drop lines (`off` writes none).
    pub level: LogLevel,
    /// Most drop lines per second and Envoy worker (token bucket with a
    /// burst of the same size); lines over it are counted, not written.
    pub max_per_second: u32,
    /// User-Agent bytes kept in a line.
    pub user_agent_max: u32,
}

impl Default for LogSpec {
    fn default() -> Self {
        LogSpec {
            level: LogLevel::Info,
            max_per_second: 10,
            user_agent_max: 128,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    Off,
}

/// What to do on a host that cannot close a stream (its `proxy_close_stream`
/// fails, e.g. Kong's ngx_wasm_module): answer with a minimal local response
/// and `connection: close` instead. A dropped request is never passed on.
#[derive(Debug, Clone)]
pub(crate) struct FallbackSpec {
    pub status: u16,
    /// `false`: do not even try to close; answer at once. For hosts whose
    /// close-stream call crashes the VM instead of failing (Kong's
    /// ngx_wasm_module, per its source).
    pub try_close: bool,
}

impl Default for FallbackSpec {
    fn default() -> Self {
        FallbackSpec {
            status: 403,
            try_close: true,
        }
    }
}

/// Where the counters go.
#[derive(Debug, Clone)]
pub(crate) struct StatsSpec {
    /// First part of every counter name (`<prefix>.requests_seen`, ...). Give
    /// each drop444 plugin in one Envoy its own prefix to count them apart.
    pub prefix: String,
}

impl Default for StatsSpec {
    fn default() -> Self {
        StatsSpec {
            prefix: "drop444".into(),
        }
    }
}

/// What a drop closes: the request's stream (HTTP/2: that stream only), or
/// the whole downstream connection with every stream on it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    #[default]
    Stream,
    Connection,
}

/// A rate limit on a rule: the rule matches (drops, or logs) only requests
/// over the limit of their key.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitSpec {
    /// What counts as one client: parts `client_ip`, `host`, `method`,
    /// `path`, `header:<name>`, joined.
    pub key: Vec<String>,
    /// Requests allowed per `per`.
    pub rate: u64,
    pub per: Per,
    /// Bucket size: requests a quiet client may send at once (default `rate`).
    pub burst: Option<u64>,
    /// Buckets kept for this rule (memory bound; default 65536).
    pub slots: Option<u32>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Per {
    #[default]
    Second,
    Minute,
    Hour,
}

/// What a matching rule does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Close without a response (the default).
    #[default]
    Drop,
    /// Exempt the request from every drop rule (evaluated first).
    Allow,
    /// Report the match like a drop, but let the request through (dry run of
    /// one rule).
    Log,
}

/// `"boundary": "segment"`: a literal on a path matches only whole
/// segments: it starts at the start of the value or of a segment (after `/`,
/// or itself starting with `/`) and ends at the end of the value or of a
/// segment (before `/`, `;` or `?`, or itself ending with `/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boundary {
    Segment,
}

/// A rule, or a condition inside `all` / `any` / `not`: one struct for both so
/// a condition reads the same wherever it is. `name` and `action` are only
/// valid on rules (checked in `compile`).
///
/// A condition is exactly one of:
/// - a subject (`header`, `query` or `field`) with one operator;
/// - a combinator (`all`, `any`, `not`);
/// - a `preset`.
#[derive(Debug, Default, Clone)]
pub(crate) struct NodeSpec {
    // Rule-only fields.
    pub name: Option<String>,
    pub action: Option<Action>,
    pub scope: Option<Scope>,
    pub rate_limit: Option<RateLimitSpec>,
    /// Hold a dropped request this long (`"10s"`, `"1500ms"`; 1 to 60 s)
    /// before closing it.
    pub tarpit: Option<String>,

    // Subjects.
    pub header: Option<String>,
    pub query: Option<String>,
    pub field: Option<String>,

    // Operators.
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub contains: Option<String>,
    pub regex: Option<String>,
    pub in_list: Option<Vec<String>>,
    /// A named list from `lists` (fetched at runtime).
    pub named_list: Option<String>,
    pub present: Option<bool>,
    pub absent: Option<bool>,
    pub case_insensitive: bool,
    /// Where a `prefix` / `suffix` / `contains` match must sit in a path.
    pub boundary: Option<Boundary>,

    // Combinators.
    pub all: Option<Vec<NodeSpec>>,
    pub any: Option<Vec<NodeSpec>>,
    pub not: Option<Box<NodeSpec>>,

    // Built-in pattern lists.
    pub preset: Option<String>,
}

/// Default of `max_tarpitted`.
pub const DEFAULT_MAX_TARPITTED: u32 = 256;
/// Largest `max_tarpitted` accepted.
pub const MAX_TARPITTED_LIMIT: u32 = 100_000;
/// Bounds of a rule's `tarpit`, in milliseconds.
pub const TARPIT_MIN_MS: u64 = 1_000;
pub const TARPIT_MAX_MS: u64 = 60_000;

/// A `tarpit` duration (`"10s"`, `"1500ms"`) in milliseconds, within
/// [`TARPIT_MIN_MS`]..=[`TARPIT_MAX_MS`].
pub(crate) fn tarpit_ms(text: &str) -> Result<u64, String> {
    let (digits, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1000)
    } else {
        return Err(format!(
            "`{text}`: write a duration like \"10s\" or \"1500ms\""
        ));
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9 {
        return Err(format!(
            "`{text}`: write a duration like \"10s\" or \"1500ms\""
        ));
    }
    let ms = digits
        .parse::<u64>()
        .map_err(|e| format!("`{text}`: {e}"))?
        .saturating_mul(scale);
    if !(TARPIT_MIN_MS..=TARPIT_MAX_MS).contains(&ms) {
        return Err(format!("`{text}`: a tarpit lasts from 1s to 60s"));
    }
    Ok(ms)
}

/// Parses the plugin configuration. Empty or all-whitespace input means the
/// built-in defaults.
pub(crate) fn parse(json: &[u8]) -> Result<ConfigSpec, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(ConfigSpec::default());
    }
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|err| ConfigError::new("", format!("invalid JSON: {err}")))?;
    require_objects(&value, "")?;
    let rule_sources = match value.get("rules") {
        Some(serde_json::Value::Array(rules)) => rules.iter().map(|r| r.to_string()).collect(),
        _ => Vec::new(),
    };
    let mut spec = config_spec(&value)?;
    spec.rule_sources = rule_sources;
    Ok(spec)
}

fn config_spec(v: &Value) -> Result<ConfigSpec, ConfigError> {
    const FIELDS: &[&str] = &[
        "mode",
        "client_ip",
        "host",
        "log",
        "stats",
        "fallback",
        "rules",
        "max_tarpitted",
        "lists",
    ];
    let mut c = ConfigSpec::default();
    json::object(v, "", "struct ConfigSpec", FIELDS, |name, v, at| {
        match name {
            "mode" => c.mode = mode(v, at)?,
            "client_ip" => c.client_ip = client_ip(v, at)?,
            "host" => c.host = host(v, at)?,
            "log" => c.log = log(v, at)?,
            "stats" => c.stats = stats(v, at)?,
            "fallback" => c.fallback = fallback(v, at)?,
            "rules" => c.rules = json::seq(v, at, node)?,
            "max_tarpitted" => c.max_tarpitted = json::opt(v, at, json::u32)?,
            _ => c.lists = json::map(v, at, super::lists::list_spec)?,
        }
        Ok(())
    })?;
    Ok(c)
}

fn mode(v: &Value, at: &str) -> Result<Mode, ConfigError> {
    json::variant(
        v,
        at,
        &[("enforce", Mode::Enforce), ("dry-run", Mode::DryRun)],
    )
}

fn client_ip(v: &Value, at: &str) -> Result<ClientIpSpec, ConfigError> {
    let mut c = ClientIpSpec::default();
    json::object(
        v,
        at,
        "struct ClientIpSpec",
        &["xff_trusted_hops"],
        |_, v, at| {
            c.xff_trusted_hops = json::u32(v, at)?;
            Ok(())
        },
    )?;
    Ok(c)
}

fn host(v: &Value, at: &str) -> Result<HostSpec, ConfigError> {
    const FIELDS: &[&str] = &[
        "allow",
        "scope",
        "drop_missing",
        "drop_invalid",
        "drop_ip_literal",
    ];
    let mut h = HostSpec::default();
    json::object(v, at, "struct HostSpec", FIELDS, |name, v, at| {
        match name {
            "allow" => h.allow = json::seq(v, at, json::string)?,
            "scope" => h.scope = scope(v, at)?,
            "drop_missing" => h.drop_missing = json::boolean(v, at)?,
            "drop_invalid" => h.drop_invalid = json::boolean(v, at)?,
            _ => h.drop_ip_literal = json::boolean(v, at)?,
        }
        Ok(())
    })?;
    Ok(h)
}

fn log(v: &Value, at: &str) -> Result<LogSpec, ConfigError> {
    const FIELDS: &[&str] = &["level", "max_per_second", "user_agent_max"];
    const LEVELS: &[(&str, LogLevel)] = &[
        ("trace", LogLevel::Trace),
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
        ("off", LogLevel::Off),
    ];
    let mut l = LogSpec::default();
    json::object(v, at, "struct LogSpec", FIELDS, |name, v, at| {
        match name {
            "level" => l.level = json::variant(v, at, LEVELS)?,
            "max_per_second" => l.max_per_second = json::u32(v, at)?,
            _ => l.user_agent_max = json::u32(v, at)?,
        }
        Ok(())
    })?;
    Ok(l)
}

fn fallback(v: &Value, at: &str) -> Result<FallbackSpec, ConfigError> {
    let mut f = FallbackSpec::default();
    json::object(
        v,
        at,
        "struct FallbackSpec",
        &["status", "try_close"],
        |name, v, at| {
            match name {
                "status" => f.status = json::u16(v, at)?,
                _ => f.try_close = json::boolean(v, at)?,
            }
            Ok(())
        },
    )?;
    Ok(f)
}

fn stats(v: &Value, at: &str) -> Result<StatsSpec, ConfigError> {
    let mut s = StatsSpec::default();
    json::object(v, at, "struct StatsSpec", &["prefix"], |_, v, at| {
        s.prefix = json::string(v, at)?;
        Ok(())
    })?;
    Ok(s)
}

fn scope(v: &Value, at: &str) -> Result<Scope, ConfigError> {
    json::variant(
        v,
        at,
        &[("stream", Scope::Stream), ("connection", Scope::Connection)],
    )
}

fn rate_limit(v: &Value, at: &str) -> Result<RateLimitSpec, ConfigError> {
    const FIELDS: &[&str] = &["key", "rate", "per", "burst", "slots"];
    const PER: &[(&str, Per)] = &[
        ("second", Per::Second),
        ("minute", Per::Minute),
        ("hour", Per::Hour),
    ];
    let (mut key, mut rate, mut per, mut burst, mut slots) =
        (None, None, Per::default(), None, None);
    json::object(v, at, "struct RateLimitSpec", FIELDS, |name, v, at| {
        match name {
            "key" => key = Some(json::seq(v, at, json::string)?),
            "rate" => rate = Some(json::u64(v, at)?),
            "per" => per = json::variant(v, at, PER)?,
            "burst" => burst = json::opt(v, at, json::u64)?,
            _ => slots = json::opt(v, at, json::u32)?,
        }
        Ok(())
    })?;
    Ok(RateLimitSpec {
        key: key.ok_or_else(|| json::missing(at, "key"))?,
        rate: rate.ok_or_else(|| json::missing(at, "rate"))?,
        per,
        burst,
        slots,
    })
}

/// The fields of a rule or condition ([`NodeSpec`]).
const NODE_FIELDS: &[&str] = &[
    "name",
    "action",
    "scope",
    "rate_limit",
    "tarpit",
    "header",
    "query",
    "field",
    "exact",
    "prefix",
    "suffix",
    "contains",
    "regex",
    "in",
    "in_list",
    "present",
    "absent",
    "case_insensitive",
    "boundary",
    "all",
    "any",
    "not",
    "preset",
];

/// A rule or condition at `at` (`rules[3]`, `rules[3].all[0]`).
pub(crate) fn node(v: &Value, at: &str) -> Result<NodeSpec, ConfigError> {
    const ACTIONS: &[(&str, Action)] = &[
        ("drop", Action::Drop),
        ("allow", Action::Allow),
        ("log", Action::Log),
    ];
    let mut n = NodeSpec::default();
    let text = |v: &Value, at: &str| json::opt(v, at, json::string);
    json::object(v, at, "struct NodeSpec", NODE_FIELDS, |name, v, at| {
        match name {
            "name" => n.name = text(v, at)?,
            "action" => n.action = json::opt(v, at, |v, at| json::variant(v, at, ACTIONS))?,
            "scope" => n.scope = json::opt(v, at, scope)?,
            "rate_limit" => n.rate_limit = json::opt(v, at, rate_limit)?,
            "tarpit" => n.tarpit = text(v, at)?,
            "header" => n.header = text(v, at)?,
            "query" => n.query = text(v, at)?,
            "field" => n.field = text(v, at)?,
            "exact" => n.exact = text(v, at)?,
            "prefix" => n.prefix = text(v, at)?,
            "suffix" => n.suffix = text(v, at)?,
            "contains" => n.contains = text(v, at)?,
            "regex" => n.regex = text(v, at)?,
            "in" => n.in_list = json::opt(v, at, |v, at| json::seq(v, at, json::string))?,
            "in_list" => n.named_list = text(v, at)?,
            "present" => n.present = json::opt(v, at, json::boolean)?,
            "absent" => n.absent = json::opt(v, at, json::boolean)?,
            "case_insensitive" => n.case_insensitive = json::boolean(v, at)?,
            "boundary" => {
                n.boundary = json::opt(v, at, |v, at| {
                    json::variant(v, at, &[("segment", Boundary::Segment)])
                })?
            }
            "all" => n.all = json::opt(v, at, |v, at| json::seq(v, at, node))?,
            "any" => n.any = json::opt(v, at, |v, at| json::seq(v, at, node))?,
            "not" => n.not = json::opt(v, at, node)?.map(Box::new),
            _ => n.preset = text(v, at)?,
        }
        Ok(())
    })?;
    Ok(n)
}

/// serde lets a struct be written as a JSON array (fields by position); that
/// is never what an operator means, so objects are required wherever a struct
/// is expected: the document, `host`, `client_ip`, rules and conditions.
fn require_objects(value: &serde_json::Value, path: &str) -> Result<(), ConfigError> {
    use serde_json::Value;
    let Value::Object(map) = value else {
        return Err(ConfigError::new(path, "expected a JSON object"));
    };
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    for (key, child) in map {
        match (key.as_str(), child) {
            ("host" | "client_ip" | "log" | "stats" | "fallback", _) if path.is_empty() => {
                require_objects(child, &join(key))?
            }
            ("lists", Value::Object(lists)) if path.is_empty() => {
                for (name, list) in lists {
                    require_objects(list, &format!("lists.{name}"))?;
                }
            }
            ("not" | "rate_limit", _) if !path.is_empty() => require_objects(child, &join(key))?,
            ("rules" | "all" | "any", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    require_objects(item, &format!("{}[{i}]", join(key)))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}
