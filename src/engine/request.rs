//! The request as the engine sees it, and the normalisations every rule
//! shares: one path normalisation, one query parser, one client-address rule,
//! one host classification. Each is computed at most once per request and
//! only when a rule needs it.

use std::net::IpAddr;

use super::host::{classify, HostForm};

/// Where the engine reads a request from. The proxy adapter implements it with
/// host calls; `HeaderList` implements it for tests and the CLI. The engine
/// asks for each item at most once per decision, and only when a rule needs it.
pub trait RequestSource {
    /// A header's value, all field lines joined with `,`; `None` if absent.
    /// `name` is lower case; HTTP/2-style pseudo-headers (`:authority`,
    /// `:path`, `:method`, `:scheme`) are asked for by those names.
    fn header(&mut self, name: &str) -> Option<Vec<u8>>;

    /// The direct peer's address (`ip` or `ip:port`, IPv6 possibly in brackets).
    fn peer_address(&mut self) -> Option<Vec<u8>>;

    /// The HTTP version as text: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`.
    fn protocol(&mut self) -> Option<Vec<u8>>;

    /// Takes one token from the bucket of `key` under `limit`; true when the
    /// bucket is empty, i.e. the request is over the limit. Asked only when a
    /// rate-limited rule's condition matched and no earlier rule decided.
    fn over_limit(&mut self, limit: &RateLimit, key: &[u8]) -> bool;
}

/// A compiled rate limit, handed to [`RequestSource::over_limit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// The rule it belongs to (names the bucket namespace).
    pub rule: String,
    pub rate: crate::limiter::Rate,
    /// Buckets kept for this rule: keys are hashed into this many slots.
    pub slots: u32,
    pub(crate) key: Vec<KeyPart>,
}

/// One part of a rate-limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyPart {
    ClientIp,
    Host,
    Method,
    Path,
    Header(usize),
}

/// Normalises a request path (without query) the one way every rule sees it:
/// percent-decoding (once), `\` read as `/`, runs of `/` collapsed, `.` and
/// `..` segments removed (RFC 3986 §5.2.4, never above the root). The result
/// starts with `/`. So `/a/%2e%2e//b`, `/a/../b` and `\b` are all `/b`.
pub fn normalize_path(raw: &[u8]) -> Vec<u8> {
    let decoded = percent_decode(raw, false);
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split(|b| *b == b'/' || *b == b'\\') {
        trailing_slash = false;
        match segment {
            b"" | b"." => trailing_slash = true,
            b".." => {
                segments.pop();
                trailing_slash = true;
            }
            other => segments.push(other),
        }
    }
    let mut out = Vec::with_capacity(decoded.len().saturating_add(1));
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    out
}

/// Splits a request target into path and query (without the `?`). A fragment,
/// which clients should not send, stays part of whatever it follows.
pub fn split_target(target: &[u8]) -> (&[u8], Option<&[u8]>) {
    match target.iter().position(|b| *b == b'?') {
        Some(at) => (
            target.get(..at).unwrap_or_default(),
            target.get(at.saturating_add(1)..),
        ),
        None => (target, None),
    }
}

/// `application/x-www-form-urlencoded` pairs: split on `&`, name and value
/// split at the first `=`, `+` read as space, percent-decoded.
pub fn parse_query(query: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    query
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (
                    pair.get(..at).unwrap_or_default(),
                    pair.get(at.saturating_add(1)..).unwrap_or_default(),
                ),
                None => (pair, &b""[..]),
            };
            (percent_decode(name, true), percent_decode(value, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (invalid ones are kept as written); with `plus`,
/// `+` becomes a space.
pub fn percent_decode(raw: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0usize;
    while let Some(&b) = raw.get(i) {
        let escaped = match (
            b,
            raw.get(i.saturating_add(1)),
            raw.get(i.saturating_add(2)),
        ) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| (h << 4) | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i = i.saturating_add(3);
            }
            None => {
                out.push(if plus && b == b'+' { b' ' } else { b });
                i = i.saturating_add(1);
            }
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Parses one address as written in `X-Forwarded-For` or a peer address:
/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`.
pub fn parse_address(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(super::trim_ows(text)).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    text.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// The client address with `trusted_hops` trusted proxies in front of us:
/// each appended the address it saw to `X-Forwarded-For`, so the client is
/// the `trusted_hops`-th entry from the right. Entries left of it are whatever
/// the client sent and are never looked at. With fewer entries than trusted
/// hops the request did not come through those proxies, and the direct peer
/// is used.
pub fn client_from_xff(
    xff: Option<&[u8]>,
    trusted_hops: u32,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    if trusted_hops == 0 {
        return peer;
    }
    let skip = usize::try_from(trusted_hops).ok()?.saturating_sub(1);
    match xff.and_then(|list| list.rsplit(|b| *b == b',').nth(skip)) {
        Some(entry) => parse_address(entry),
        None => peer,
    }
}

/// The kind of Host a request has, as the `host_kind` field shows it.
pub fn host_kind(form: &HostForm) -> &'static [u8] {
    match form {
        HostForm::Missing | HostForm::Empty => b"missing",
        HostForm::Invalid => b"invalid",
        HostForm::IpLiteral(_) => b"ip",
        HostForm::Name(_) => b"name",
    }
}

/// The `host` field: the normalised name, or the canonical text of an IP
/// literal (`::1`, `10.0.0.1`); absent when missing or invalid.
pub fn host_value(form: &HostForm, raw: Option<&[u8]>) -> Option<Vec<u8>> {
    match form {
        HostForm::Name(name) => Some(name.clone().into_bytes()),
        HostForm::IpLiteral(Some(ip)) => Some(ip.to_string().into_bytes()),
        HostForm::IpLiteral(None) => raw.map(|r| super::trim_ows(r).to_ascii_lowercase()),
        HostForm::Missing | HostForm::Empty | HostForm::Invalid => None,
    }
}

/// Classifies the raw `:authority` (re-exported for the CLI's explanations).
pub fn classify_authority(raw: Option<&[u8]>) -> HostForm {
    classify(raw)
}
