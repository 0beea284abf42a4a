//! The rule engine: configuration → compiled, immutable [`Engine`] →
//! [`Decision`] for one request.
//!
//! This module never talks to a proxy. It only sees header values through a
//! [`HeaderSource`], so it builds and is tested natively, and the proxy-wasm
//! adapter (`src/filter.rs`) stays a thin shell around it.
//!
//! All validation happens in [`Engine::from_json`]; [`Engine::decide`] has no
//! error path and cannot panic (clippy denies `unwrap`, `expect`, indexing and
//! unchecked arithmetic in this crate).

mod config;
mod error;
mod header;
mod host;

use std::collections::HashSet;

pub use error::ConfigError;
pub use host::{classify as classify_host, HostForm};

use config::ConfigSpec;
use header::HeaderRule;
use host::Allowlist;

/// The header that carries the Host in Envoy (HTTP/1 `Host` is mapped to it).
pub const AUTHORITY: &str = ":authority";

/// Names of the built-in host rules, as they appear in logs and stats.
pub mod builtin {
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
}

/// Longest rule name; names end up in logs, filter state and stats.
const MAX_RULE_NAME: usize = 64;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'e> {
    /// Let it through.
    Pass,
    /// Close it without a response; `rule` names the rule that fired.
    Drop { rule: &'e str },
}

/// Where the engine gets header values from. `name` is one of
/// [`Engine::header_names`], lower case. The engine asks for each at most once
/// per decision, and only when a rule needs it.
pub trait HeaderSource {
    /// The header's value, all field lines joined with `,`; `None` if absent.
    fn header(&mut self, name: &str) -> Option<Vec<u8>>;
}

/// A compiled configuration. Immutable; cheap to share between requests.
#[derive(Debug)]
pub struct Engine {
    header_names: Vec<String>,
    host: Option<HostPolicy>,
    rules: Vec<HeaderRule>,
}

#[derive(Debug)]
struct HostPolicy {
    slot: usize,
    allow: Allowlist,
    drop_missing: bool,
    drop_invalid: bool,
    drop_ip_literal: bool,
}

impl Engine {
    /// Parses, validates and compiles a JSON configuration. Empty input means
    /// the built-in defaults (see `docs/configuration.md`).
    pub fn from_json(json: &[u8]) -> Result<Engine, ConfigError> {
        Self::compile(config::parse(json)?)
    }

    /// The built-in configuration: drop a missing, empty, invalid or IP-literal Host.
    pub fn builtin() -> Engine {
        // The default spec always compiles; fall back to an engine with the
        // same host policy spelled out, never to a panic.
        Self::compile(ConfigSpec::default()).unwrap_or_else(|_| Engine {
            header_names: vec![AUTHORITY.to_string()],
            host: Some(HostPolicy {
                slot: 0,
                allow: Allowlist::default(),
                drop_missing: true,
                drop_invalid: true,
                drop_ip_literal: true,
            }),
            rules: Vec::new(),
        })
    }

    fn compile(spec: ConfigSpec) -> Result<Engine, ConfigError> {
        let mut header_names: Vec<String> = Vec::new();
        let mut slot_of = |name: String| -> usize {
            match header_names.iter().position(|n| *n == name) {
                Some(slot) => slot,
                None => {
                    header_names.push(name);
                    header_names.len().saturating_sub(1)
                }
            }
        };

        let h = &spec.host;
        let allow = Allowlist::compile(&h.allow, "host.allow")?;
        let host_active =
            h.drop_missing || h.drop_invalid || h.drop_ip_literal || !allow.is_empty();
        let host = host_active.then(|| HostPolicy {
            slot: slot_of(AUTHORITY.to_string()),
            allow,
            drop_missing: h.drop_missing,
            drop_invalid: h.drop_invalid,
            drop_ip_literal: h.drop_ip_literal,
        });

        let mut seen: HashSet<String> = builtin::ALL.iter().map(|s| s.to_string()).collect();
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (i, rule) in spec.rules.iter().enumerate() {
            let path = format!("rules[{i}]");
            let name = match &rule.name {
                Some(name) => {
                    validate_rule_name(name, &format!("{path}.name"))?;
                    name.clone()
                }
                None => format!("rule-{i}"),
            };
            if !seen.insert(name.clone()) {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    format!(
                        "duplicate rule name `{name}` (names must be unique and not one of {})",
                        builtin::ALL.join(", ")
                    ),
                ));
            }
            rules.push(HeaderRule::compile(rule, name, &path, &mut slot_of)?);
        }
        Ok(Engine {
            header_names,
            host,
            rules,
        })
    }

    /// The headers this configuration reads, lower case. A proxy adapter
    /// fetches exactly these (lazily, through [`HeaderSource`]).
    pub fn header_names(&self) -> &[String] {
        &self.header_names
    }

    /// Decides one request: the host policy first, then header rules in
    /// order; the first rule that matches drops.
    pub fn decide<'e>(&'e self, source: &mut dyn HeaderSource) -> Decision<'e> {
        let mut cache = Cache::new(self.header_names.len());
        if let Some(host) = &self.host {
            if let Some(rule) = host.check(cache.get(source, &self.header_names, host.slot)) {
                return Decision::Drop { rule };
            }
        }
        for rule in &self.rules {
            if rule.matches(cache.get(source, &self.header_names, rule.slot)) {
                return Decision::Drop { rule: &rule.name };
            }
        }
        Decision::Pass
    }
}

impl HostPolicy {
    fn check(&self, raw: Option<&[u8]>) -> Option<&'static str> {
        match classify_host(raw) {
            HostForm::Missing | HostForm::Empty => {
                self.drop_missing.then_some(builtin::HOST_MISSING)
            }
            HostForm::Invalid => self.drop_invalid.then_some(builtin::HOST_INVALID),
            HostForm::IpLiteral(ip) => {
                if self.allow.allows_ip(ip) {
                    None
                } else if self.drop_ip_literal {
                    Some(builtin::HOST_IP_LITERAL)
                } else {
                    (!self.allow.is_empty()).then_some(builtin::HOST_NOT_ALLOWED)
                }
            }
            HostForm::Name(name) => (!self.allow.is_empty() && !self.allow.allows_name(&name))
                .then_some(builtin::HOST_NOT_ALLOWED),
        }
    }
}

/// Header values fetched so far for one decision: each slot is fetched at
/// most once, and only if a rule reaches it.
struct Cache {
    slots: Vec<Option<Option<Vec<u8>>>>,
}

impl Cache {
    fn new(len: usize) -> Self {
        Cache {
            slots: (0..len).map(|_| None).collect(),
        }
    }

    fn get<'c>(
        &'c mut self,
        source: &mut dyn HeaderSource,
        names: &[String],
        slot: usize,
    ) -> Option<&'c [u8]> {
        let entry = self.slots.get_mut(slot)?;
        if entry.is_none() {
            let name = names.get(slot)?;
            *entry = Some(source.header(name));
        }
        entry.as_ref().and_then(|v| v.as_deref())
    }
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

/// Optional whitespace (RFC 9110 OWS) trimmed from both ends.
pub(crate) fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i.saturating_add(1));
    v.get(start..end).unwrap_or_default()
}

/// A [`HeaderSource`] over a list of header lines, for tests and tools.
/// Repeated headers are joined with `,`, as Envoy presents them.
#[derive(Debug, Default, Clone)]
pub struct HeaderList {
    lines: Vec<(String, Vec<u8>)>,
    /// Names fetched, in order (tests use it to check each is read once).
    pub fetched: Vec<String>,
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
}

impl HeaderSource for HeaderList {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.fetched.push(name.to_string());
        let mut values = self
            .lines
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice());
        let first = values.next()?.to_vec();
        Some(values.fold(first, |mut acc, v| {
            acc.push(b',');
            acc.extend_from_slice(v);
            acc
        }))
    }
}

#[cfg(test)]
mod tests;
