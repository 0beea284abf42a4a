//! Header names.

use super::error::ConfigError;

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
