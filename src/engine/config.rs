//! The configuration as written by the operator (serde side). Nothing here is
//! trusted: `compile` validates every field and turns it into the matcher.
//!
//! Every struct denies unknown fields, so a typo is an error, not a silently
//! ignored rule.

use serde::Deserialize;

use super::error::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigSpec {
    #[serde(default)]
    pub host: HostSpec,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// The Host / `:authority` policy. The defaults are the built-in rules used
/// when the configuration is empty.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HostSpec {
    pub allow: Vec<String>,
    pub drop_missing: bool,
    pub drop_invalid: bool,
    pub drop_ip_literal: bool,
}

impl Default for HostSpec {
    fn default() -> Self {
        HostSpec {
            allow: Vec::new(),
            drop_missing: true,
            drop_invalid: true,
            drop_ip_literal: true,
        }
    }
}

/// One header rule: a header name and exactly one operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub header: String,
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default)]
    pub absent: Option<bool>,
    #[serde(default)]
    pub case_insensitive: bool,
}

/// Parses the plugin configuration. Empty or all-whitespace input means the
/// built-in defaults.
pub(crate) fn parse(json: &[u8]) -> Result<ConfigSpec, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(ConfigSpec::default());
    }
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|err| ConfigError::new("", format!("invalid JSON: {err}")))?;
    require_objects(&value)?;
    let spec: ConfigSpec = serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let path = if path == "." || path == "?" {
            String::new()
        } else {
            path
        };
        ConfigError::new(path, strip_position(&inner.to_string()))
    })?;
    Ok(spec)
}

/// serde lets a struct be written as a JSON array (fields by position); that
/// is never what an operator means, so objects are required where structs are.
fn require_objects(value: &serde_json::Value) -> Result<(), ConfigError> {
    use serde_json::Value;
    let object = |v: &Value, path: &str| match v {
        Value::Object(_) => Ok(()),
        _ => Err(ConfigError::new(path, "expected a JSON object")),
    };
    object(value, "")?;
    if let Some(host) = value.get("host") {
        object(host, "host")?;
    }
    if let Some(Value::Array(rules)) = value.get("rules") {
        for (i, rule) in rules.iter().enumerate() {
            object(rule, &format!("rules[{i}]"))?;
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
