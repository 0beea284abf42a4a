//! Header rules: a header name and one operator.
//!
//! Envoy hands a filter the value of a repeated header as one comma-joined
//! string (RFC 9110 §5.3 allows combining field lines that way). A rule
//! therefore matches when it matches the whole combined value *or* any
//! comma-separated element of it, so sending the bad value as a second
//! header line cannot hide it.

use memchr::memmem;

use super::config::RuleSpec;
use super::error::ConfigError;
use super::trim_ows;

#[derive(Debug)]
pub(crate) enum Op {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Contains(Box<memmem::Finder<'static>>),
    Present,
    Absent,
}

#[derive(Debug)]
pub(crate) struct HeaderRule {
    pub name: String,
    /// Index of the header in `Engine::header_names`.
    pub slot: usize,
    pub op: Op,
    pub case_insensitive: bool,
}

impl HeaderRule {
    /// Validates one rule spec. `slot_of` maps a (lower-case) header name to its slot.
    pub(crate) fn compile(
        spec: &RuleSpec,
        name: String,
        path: &str,
        slot_of: &mut dyn FnMut(String) -> usize,
    ) -> Result<Self, ConfigError> {
        let header = header_name(&spec.header, &format!("{path}.header"))?;
        let ci = spec.case_insensitive;
        let fold = |field: &str, value: &String| -> Result<Vec<u8>, ConfigError> {
            if value.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.{field}"),
                    "empty pattern would match every request; use `present` for that",
                ));
            }
            Ok(if ci {
                value.to_ascii_lowercase().into_bytes()
            } else {
                value.clone().into_bytes()
            })
        };
        let flag = |field: &str, value: bool| -> Result<(), ConfigError> {
            if value {
                Ok(())
            } else {
                Err(ConfigError::new(
                    format!("{path}.{field}"),
                    format!("`{field}` must be true (omit it instead of setting false)"),
                ))
            }
        };
        let mut ops = Vec::new();
        if let Some(v) = &spec.exact {
            ops.push(Op::Exact(fold("exact", v)?));
        }
        if let Some(v) = &spec.prefix {
            ops.push(Op::Prefix(fold("prefix", v)?));
        }
        if let Some(v) = &spec.suffix {
            ops.push(Op::Suffix(fold("suffix", v)?));
        }
        if let Some(v) = &spec.contains {
            ops.push(Op::Contains(Box::new(
                memmem::Finder::new(&fold("contains", v)?).into_owned(),
            )));
        }
        if let Some(v) = spec.present {
            flag("present", v)?;
            ops.push(Op::Present);
        }
        if let Some(v) = spec.absent {
            flag("absent", v)?;
            ops.push(Op::Absent);
        }
        let op = match (ops.pop(), ops.is_empty()) {
            (Some(op), true) => op,
            (None, _) => {
                return Err(ConfigError::new(
                    path,
                    "a rule needs one operator: exact, prefix, suffix, contains, present or absent",
                ))
            }
            (Some(_), false) => {
                return Err(ConfigError::new(
                    path,
                    "a rule takes exactly one operator (exact, prefix, suffix, contains, present, absent)",
                ))
            }
        };
        if ci && matches!(op, Op::Present | Op::Absent) {
            return Err(ConfigError::new(
                format!("{path}.case_insensitive"),
                "has no meaning with `present` / `absent`",
            ));
        }
        Ok(HeaderRule {
            name,
            slot: slot_of(header),
            op,
            case_insensitive: ci,
        })
    }

    /// Does this rule match the (combined) header value, `None` if absent?
    pub(crate) fn matches(&self, value: Option<&[u8]>) -> bool {
        let value = match (&self.op, value) {
            (Op::Present, v) => return v.is_some(),
            (Op::Absent, v) => return v.is_none(),
            (_, None) => return false,
            (_, Some(v)) => v,
        };
        let folded;
        let value = if self.case_insensitive {
            folded = value.to_ascii_lowercase();
            folded.as_slice()
        } else {
            value
        };
        match &self.op {
            // Any element's substring is a substring of the whole value.
            Op::Contains(finder) => finder.find(value).is_some(),
            Op::Exact(p) => candidates(value).any(|v| v == p.as_slice()),
            Op::Prefix(p) => candidates(value).any(|v| v.starts_with(p)),
            Op::Suffix(p) => candidates(value).any(|v| v.ends_with(p)),
            Op::Present | Op::Absent => false,
        }
    }
}

/// The whole value, then each comma-separated element with optional
/// whitespace trimmed (only when there is a comma at all).
fn candidates(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let elements = value
        .contains(&b',')
        .then(|| value.split(|b| *b == b',').map(trim_ows));
    std::iter::once(value).chain(elements.into_iter().flatten())
}

/// Header names are RFC 9110 tokens, matched case-insensitively (stored
/// lower case). HTTP/2 pseudo-headers such as `:path` are allowed too.
pub(crate) fn header_name(raw: &str, path: &str) -> Result<String, ConfigError> {
    let body = raw.strip_prefix(':').unwrap_or(raw);
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if body.is_empty() || !body.bytes().all(tchar) {
        return Err(ConfigError::new(
            path,
            format!("`{raw}` is not a valid header name"),
        ));
    }
    Ok(raw.to_ascii_lowercase())
}
