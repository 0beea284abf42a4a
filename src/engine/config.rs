//! The configuration as written by the operator (serde side). Nothing here is
//! trusted: `compile` validates every field and builds the matcher.
//!
//! Every struct denies unknown fields, so a typo is an error, not a silently
//! ignored rule.

use serde::Deserialize;

use super::error::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigSpec {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub client_ip: ClientIpSpec,
    #[serde(default)]
    pub host: HostSpec,
    #[serde(default)]
    pub log: LogSpec,
    #[serde(default)]
    pub stats: StatsSpec,
    #[serde(default)]
    pub fallback: FallbackSpec,
    #[serde(default)]
    pub rules: Vec<NodeSpec>,
    /// Most requests held by `tarpit` rules at once, per plugin and Envoy
    /// worker; past it a tarpit rule drops at once (default
    /// [`DEFAULT_MAX_TARPITTED`]).
    pub max_tarpitted: Option<u32>,
    /// Named lists fetched at runtime (`in_list` in conditions).
    #[serde(default)]
    pub lists: std::collections::BTreeMap<String, super::lists::ListSpec>,
    /// Each rule as written (compact JSON), for explanations.
    #[serde(skip)]
    pub rule_sources: Vec<String>,
}

/// `enforce` drops; `dry-run` decides and reports exactly the same, but lets
/// every request through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

/// Where the client address of `client_ip` conditions comes from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientIpSpec {
    /// Number of proxies in front of this one that append to
    /// `X-Forwarded-For` and are trusted. 0 (default): the direct peer.
    #[serde(default)]
    pub xff_trusted_hops: u32,
}

/// The Host / `:authority` policy. The defaults are the built-in rules used
/// when the configuration is empty.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
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

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    #[default]
    Stream,
    Connection,
}

/// A rate limit on a rule: the rule matches (drops, or logs) only requests
/// over the limit of their key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitSpec {
    /// What counts as one client: parts `client_ip`, `host`, `method`,
    /// `path`, `header:<name>`, joined.
    pub key: Vec<String>,
    /// Requests allowed per `per`.
    pub rate: u64,
    #[serde(default)]
    pub per: Per,
    /// Bucket size: requests a quiet client may send at once (default `rate`).
    pub burst: Option<u64>,
    /// Buckets kept for this rule (memory bound; default 65536).
    pub slots: Option<u32>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Per {
    #[default]
    Second,
    Minute,
    Hour,
}

/// What a matching rule does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
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
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(rename = "in")]
    pub in_list: Option<Vec<String>>,
    /// A named list from `lists` (fetched at runtime).
    #[serde(rename = "in_list")]
    pub named_list: Option<String>,
    pub present: Option<bool>,
    pub absent: Option<bool>,
    #[serde(default)]
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
    let mut spec: ConfigSpec = serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." || path == "?" {
            String::new()
        } else {
            path
        };
        ConfigError::new(path, strip_position(&err.into_inner().to_string()))
    })?;
    spec.rule_sources = rule_sources;
    Ok(spec)
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

/// serde_json appends " at line L column C" to data errors; the JSON path is
/// more useful to an operator than a column in a one-line Envoy string.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) => message.get(..cut).unwrap_or(message).to_string(),
        None => message.to_string(),
    }
}
