//! The built-in host rules: the `host` policy as rules of the same language
//! (`host_kind` and `host` fields), placed before the configured rules, so
//! they behave, log and count like any other rule. Each is written once, as
//! the JSON an operator would write; that text is both what is compiled and
//! what explanations show.

use super::config::{HostSpec, NodeSpec};
use super::error::ConfigError;

pub const HOST_MISSING: &str = "host-missing";
pub const HOST_INVALID: &str = "host-invalid";
pub const HOST_IP_LITERAL: &str = "host-ip-literal";
pub const HOST_NOT_ALLOWED: &str = "host-not-allowed";
pub const ALL: [&str; 4] = [
    HOST_MISSING,
    HOST_INVALID,
    HOST_IP_LITERAL,
    HOST_NOT_ALLOWED,
];

/// The built-in rules this host policy turns on, in order: name, the rule as
/// parsed, and its JSON text.
pub(crate) fn host_rules(
    host: &HostSpec,
) -> Result<Vec<(&'static str, NodeSpec, String)>, ConfigError> {
    let allow = serde_json::to_string(&host.allow)
        .map_err(|e| ConfigError::new("host.allow", e.to_string()))?;
    let not_allowed = format!(r#"{{"not":{{"field":"host","in":{allow}}}}}"#);
    let kind = |k: &str| format!(r#"{{"field":"host_kind","exact":"{k}"}}"#);
    let has_allow = !host.allow.is_empty();
    let mut sources = Vec::new();
    if host.drop_missing {
        sources.push((HOST_MISSING, kind("missing")));
    }
    if host.drop_invalid {
        sources.push((HOST_INVALID, kind("invalid")));
    }
    if host.drop_ip_literal {
        let source = if has_allow {
            format!(r#"{{"all":[{},{not_allowed}]}}"#, kind("ip"))
        } else {
            kind("ip")
        };
        sources.push((HOST_IP_LITERAL, source));
    }
    if has_allow {
        sources.push((
            HOST_NOT_ALLOWED,
            format!(
                r#"{{"all":[{{"any":[{},{}]}},{not_allowed}]}}"#,
                kind("name"),
                kind("ip")
            ),
        ));
    }
    sources
        .into_iter()
        .map(|(name, source)| {
            // `from_slice`, not `from_str`: one serde_json reader in the module.
            let spec = serde_json::from_slice(source.as_bytes())
                .map_err(|e| e.to_string())
                .and_then(|v| super::config::node(&v, "").map_err(|e| e.to_string()))
                .map_err(|e| ConfigError::new("host", format!("built-in rule {name}: {e}")))?;
            Ok((name, spec, source))
        })
        .collect()
}
