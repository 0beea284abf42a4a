//! The request as the engine sees it, and the normalisations every rule
//! shares: one path normalisation, one query parser, one client-address rule,
//! one host classification. Each is computed at most once per request and
//! only when a rule needs it.

use std::net::IpAddr;

use super::host::{classify, HostForm};

/// Appends a header's field lines to `out` joined with `,`, as
/// [`RequestSource::header`] hands them over; false (nothing appended) if
/// there is none. Every adapter joins through this.
pub fn join_lines<'a>(lines: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) -> bool {
    let mut found = false;
    for line in lines {
        if found {
            out.push(b',');
        }
        out.extend_from_slice(line);
        found = true;
    }
    found
}

/// Where the engine reads a request from. The proxy adapter implements it with
/// host calls; `HeaderList` implements it for tests and the CLI. The engine
/// asks for each item at most once per decision, and only when a rule needs it.
/// It only reads: taking rate-limit tokens, the one effect a decision has,
/// goes through a [`RateLimiter`], handed to `Engine::decide` separately.
///
/// Values are appended to a buffer the engine owns and reuses from request to
/// request, so reading a request allocates nothing once the buffers have grown
/// to the size of typical values.
pub trait RequestSource {
    /// Appends a header's value, all field lines joined with `,`, to `out`;
    /// false (and nothing appended) if absent. `name` is lower case;
    /// HTTP/2-style pseudo-headers (`:authority`, `:path`, `:method`,
    /// `:scheme`) are asked for by those names.
    fn header(&mut self, name: &str, out: &mut Vec<u8>) -> bool;

    /// Appends the direct peer's address (`ip` or `ip:port`, IPv6 possibly in
    /// brackets) to `out`; false if unknown.
    fn peer_address(&mut self, out: &mut Vec<u8>) -> bool;

    /// Appends the HTTP version as text (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`,
    /// `HTTP/3`) to `out`; false if unknown.
    fn protocol(&mut self, out: &mut Vec<u8>) -> bool;

    /// [`RequestSource::header`] into a new buffer (for logs and tools).
    fn header_value(&mut self, name: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.header(name, &mut out).then_some(out)
    }

    /// [`RequestSource::peer_address`] into a new buffer.
    fn peer_value(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.peer_address(&mut out).then_some(out)
    }

    /// [`RequestSource::protocol`] into a new buffer.
    fn protocol_value(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.protocol(&mut out).then_some(out)
    }

    /// The current snapshot of named list `id` (see [`Engine::lists`]);
    /// `None` until it has loaded. Sources without lists keep the default.
    ///
    /// [`Engine::lists`]: super::Engine::lists
    fn list(&self, id: u32) -> Option<std::sync::Arc<super::lists::ListData>> {
        let _ = id;
        None
    }
}

/// The rate-limit buckets a decision takes tokens from (shared data in the
/// proxy adapter).
pub trait RateLimiter {
    /// Takes one token from the bucket of `key` under `limit`; true when the
    /// bucket is empty, i.e. the request is over the limit. Asked only when a
    /// rate-limited rule's condition matched and no earlier rule decided.
    fn over_limit(&mut self, limit: &RateLimit, key: &[u8]) -> bool;
}

/// No buckets: nothing is ever over a limit (tests, tools, and decisions
/// that take no tokens).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLimits;

impl RateLimiter for NoLimits {
    fn over_limit(&mut self, _limit: &RateLimit, _key: &[u8]) -> bool {
        false
    }
}

/// A compiled rate limit, handed to [`RateLimiter::over_limit`].
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

/// How one reading of a raw path turns it into the path a router or backend
/// acts on. Every reading reads `..` and `.` segments (RFC 3986 §5.2.4, never
/// above the root) and merges runs of `/`; they differ in what they decode,
/// whether `\` separates segments and whether `;` parameters are stripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathReading {
    /// Decoded once, `\` read as `/` (the main reading, [`normalize_path`]).
    Decoded,
    /// Envoy's `normalize_path` + `merge_slashes`: only unreserved characters
    /// (`A-Z a-z 0-9 - . _ ~`) decoded, so `%2F` and `%5C` stay escaped.
    Rfc3986,
    /// Decoded once, `\` an ordinary byte (nginx, most Linux servers).
    BackslashLiteral,
    /// `;` path parameters stripped from every segment, then decoded
    /// (Tomcat, Jetty, Spring: `/..;/`, `/manager;/html`).
    ParamsStripped,
    /// Decoded twice (servers that decode again: `%252e` is `.`).
    DecodedTwice,
}

/// The further readings, in the order views are listed.
pub const PATH_READINGS: [PathReading; 4] = [
    PathReading::Rfc3986,
    PathReading::BackslashLiteral,
    PathReading::ParamsStripped,
    PathReading::DecodedTwice,
];

impl PathReading {
    /// The readings that can differ from [`PathReading::Decoded`] for this
    /// raw path (one scan of it). Those that cannot are not computed (no
    /// work, no allocation).
    pub fn may_differ(raw: &[u8]) -> impl Iterator<Item = PathReading> {
        let (mut percent, mut backslash, mut params, mut twice) = (false, false, false, false);
        let mut at = 0usize;
        while let Some(&b) = raw.get(at) {
            match b {
                b'%' => {
                    percent = true;
                    match escape_at(raw, at) {
                        Some(b'%') => twice = true,
                        Some(b'\\') => backslash = true,
                        // A literal `%` can become an escape once what follows
                        // is decoded (`%a%41` is `%aA` decoded once).
                        None => twice = true,
                        _ => {}
                    }
                }
                b'\\' => backslash = true,
                b';' => params = true,
                _ => {}
            }
            at = at.saturating_add(1);
        }
        PATH_READINGS.into_iter().filter(move |r| match r {
            PathReading::Decoded => false,
            PathReading::Rfc3986 => percent,
            PathReading::BackslashLiteral => backslash,
            PathReading::ParamsStripped => params,
            PathReading::DecodedTwice => twice,
        })
    }
}

impl PathReading {
    /// Its name for people (`drop444 explain`).
    pub fn name(self) -> &'static str {
        match self {
            PathReading::Decoded => "decoded, dot segments removed (main)",
            PathReading::Rfc3986 => "unreserved decoded only (Envoy normalize_path)",
            PathReading::BackslashLiteral => "decoded, \\ literal",
            PathReading::ParamsStripped => "; parameters stripped",
            PathReading::DecodedTwice => "decoded twice",
        }
    }
}

/// Normalises a request path (without query) the main way rules see it:
/// percent-decoding (once), `\` read as `/`, runs of `/` collapsed, `.` and
/// `..` segments removed (RFC 3986 §5.2.4, never above the root). The result
/// starts with `/`. So `/a/%2e%2e//b`, `/a/../b` and `\b` are all `/b`.
pub fn normalize_path(raw: &[u8]) -> Vec<u8> {
    normalize_path_as(raw, PathReading::Decoded)
}

/// Is `raw` its own main reading ([`normalize_path`] would return it
/// unchanged)? True for the common path: it starts with `/` and has no `%`,
/// no `\`, no empty, `.` or `..` segment (a trailing `/` is fine). One scan,
/// no allocation.
pub fn is_normal_path(raw: &[u8]) -> bool {
    scan_path(raw).0
}

/// [`is_normal_path`], and whether the path has a `;` (which only the
/// `;`-stripping reading reads differently), in one scan.
pub(crate) fn scan_path(raw: &[u8]) -> (bool, bool) {
    let (_, normal, semicolon) = scan(raw, false);
    (normal, semicolon)
}

/// [`scan_path`] on a request target's path, found in the same pass:
/// (the path's length, i.e. where `?` is or the target's end, is the path
/// normal, has it a `;`). The query is not read at all when the path is
/// normal.
pub(crate) fn scan_target(target: &[u8]) -> (usize, bool, bool) {
    scan(target, true)
}

/// The one scan behind [`scan_path`] and [`scan_target`]: (where the path
/// ends, is it normal, has it a `;`). With `query_ends`, a `?` ends the path
/// (a request target); without, it is a byte like any other (a path). One
/// table lookup a byte; a path that is not normal is reported as having a
/// `;` (every reading is then computed).
fn scan(bytes: &[u8], query_ends: bool) -> (usize, bool, bool) {
    let not_normal = || {
        let end = if query_ends {
            split_target(bytes).0.len()
        } else {
            bytes.len()
        };
        (end, false, true)
    };
    let Some((b'/', rest)) = bytes.split_first() else {
        return not_normal();
    };
    let mut semicolon = false;
    // The segment being read: its length, and whether it is dots only.
    let (mut len, mut dots) = (0usize, true);
    let class = |b: u8| PATH_BYTE.get(usize::from(b)).copied().unwrap_or(P_PLAIN);
    let mut end = bytes.len();
    // Plain bytes (nearly all) are passed over in a loop of their own.
    let mut i = 0usize;
    loop {
        let plain = rest
            .get(i..)
            .unwrap_or_default()
            .iter()
            .position(|b| class(*b) != P_PLAIN);
        let run = plain.unwrap_or(rest.len().saturating_sub(i));
        if run > 0 {
            len = len.saturating_add(run);
            dots = false;
            i = i.saturating_add(run);
        }
        let Some(&b) = rest.get(i) else {
            break;
        };
        i = i.saturating_add(1);
        match class(b) {
            P_SLASH => {
                if len == 0 || (dots && len <= 2) {
                    return not_normal();
                }
                (len, dots) = (0, true);
            }
            P_DOT => len = len.saturating_add(1),
            P_SEMICOLON => {
                semicolon = true;
                len = len.saturating_add(1);
                dots = false;
            }
            P_QUERY if query_ends => {
                // `rest` starts after the leading `/`; `i` is past the `?`.
                end = i;
                break;
            }
            P_QUERY => {
                len = len.saturating_add(1);
                dots = false;
            }
            P_ESCAPE => return not_normal(),
            _ => return not_normal(),
        }
    }
    // The last segment may be empty (a trailing `/`), not `.` or `..`.
    (end, len == 0 || !dots || len > 2, semicolon)
}

/// Classes of bytes in a path ([`PATH_BYTE`]).
const P_PLAIN: u8 = 0;
const P_SLASH: u8 = 1;
const P_DOT: u8 = 2;
const P_SEMICOLON: u8 = 3;
const P_QUERY: u8 = 4;
/// `%` and `\\`: the path is not its own main reading.
const P_ESCAPE: u8 = 5;

/// Each byte's class in a path: `/` `P_SLASH`, `.` `P_DOT`, `;`
/// `P_SEMICOLON`, `?` `P_QUERY`, `%` and `\\` `P_ESCAPE`, the rest `P_PLAIN`.
/// Built at compile time.
static PATH_BYTE: [u8; 256] = path_byte_table();

// Evaluated at compile time: an index out of bounds fails the build.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn path_byte_table() -> [u8; 256] {
    let mut table = [P_PLAIN; 256];
    let mut b = 0usize;
    while b < 256 {
        table[b] = match b as u8 {
            b'/' => P_SLASH,
            b'.' => P_DOT,
            b';' => P_SEMICOLON,
            b'?' => P_QUERY,
            b'%' | b'\\' => P_ESCAPE,
            _ => P_PLAIN,
        };
        b += 1;
    }
    table
}

/// The path as one [`PathReading`] reads it.
pub fn normalize_path_as(raw: &[u8], reading: PathReading) -> Vec<u8> {
    let decoded = match reading {
        PathReading::Decoded | PathReading::BackslashLiteral => percent_decode(raw, false),
        PathReading::Rfc3986 => decode_unreserved(raw),
        PathReading::ParamsStripped => percent_decode(&strip_params(raw), false),
        PathReading::DecodedTwice => percent_decode(&percent_decode(raw, false), false),
    };
    let backslash = reading != PathReading::BackslashLiteral;
    // Segments are written straight to the output; `..` cuts back to the
    // previous `/` (segments never contain one). No list of segments: that
    // would cost 16 bytes per segment, 8× a path of one-letter segments.
    let mut out = Vec::with_capacity(decoded.len().saturating_add(1));
    let mut trailing_slash = false;
    for segment in decoded.split(|b| *b == b'/' || (backslash && *b == b'\\')) {
        trailing_slash = false;
        match segment {
            b"" | b"." => trailing_slash = true,
            b".." => {
                let cut = out.iter().rposition(|b| *b == b'/').unwrap_or(0);
                out.truncate(cut);
                trailing_slash = true;
            }
            other => {
                out.push(b'/');
                out.extend_from_slice(other);
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    out
}

/// Removes `;` parameters from every segment (`/a;x=1/b;` → `/a/b`); `\`
/// ends a segment too.
fn strip_params(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_params = false;
    for &b in raw {
        if b == b'/' || b == b'\\' {
            in_params = false;
        } else if b == b';' {
            in_params = true;
        }
        if !in_params {
            out.push(b);
        }
    }
    out
}

/// Decodes only escapes of unreserved characters (RFC 3986 §2.3, §6.2.2.2);
/// every other escape, `%2F` and `%5C` included, stays as written.
fn decode_unreserved(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0usize;
    while let Some(&b) = raw.get(i) {
        let escaped = escape_at(raw, i)
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'));
        match escaped {
            Some(byte) => {
                out.push(byte);
                i = i.saturating_add(3);
            }
            None => {
                out.push(b);
                i = i.saturating_add(1);
            }
        }
    }
    out
}

/// The byte a valid `%XX` escape at `i` stands for.
fn escape_at(raw: &[u8], i: usize) -> Option<u8> {
    match (
        raw.get(i),
        raw.get(i.saturating_add(1)),
        raw.get(i.saturating_add(2)),
    ) {
        (Some(b'%'), Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| (h << 4) | l),
        _ => None,
    }
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

/// How the query string is read: names and values split the same way (on
/// `&`, then the first `=`), decoded differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryReading {
    /// `application/x-www-form-urlencoded`: `+` is a space, `%XX` decoded
    /// (the main reading, [`parse_query`]).
    Form,
    /// `%XX` decoded, `+` kept (RFC 3986 readers).
    Percent,
    /// As sent, nothing decoded.
    Raw,
}

/// `application/x-www-form-urlencoded` pairs: split on `&`, name and value
/// split at the first `=`, `+` read as space, percent-decoded.
pub fn parse_query(query: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    parse_query_as(query, QueryReading::Form)
}

/// The query's pairs as one [`QueryReading`] reads them.
pub fn parse_query_as(query: &[u8], reading: QueryReading) -> Vec<(Vec<u8>, Vec<u8>)> {
    let read = |part: &[u8]| match reading {
        QueryReading::Form => percent_decode(part, true),
        QueryReading::Percent => percent_decode(part, false),
        QueryReading::Raw => part.to_vec(),
    };
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
            (read(name), read(value))
        })
        .collect()
}

/// Decodes `%XX` escapes (invalid ones are kept as written); with `plus`,
/// `+` becomes a space.
pub fn percent_decode(raw: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0usize;
    while let Some(&b) = raw.get(i) {
        match escape_at(raw, i) {
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
    let text = super::trim_ows(text);
    if let Some(v4) = ipv4_with_port(text) {
        return Some(IpAddr::V4(v4));
    }
    parse_address_general(text)
}

/// Every address form [`parse_address`] reads (`text` trimmed).
fn parse_address_general(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    text.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// `a.b.c.d` or `a.b.c.d:port`, the way every peer address of an IPv4
/// client is written, read in one pass. Anything else (IPv6, odd forms) is
/// `None` and left to the general parser, which reads what this reads the
/// same way: octets of 1-3 digits up to 255, no leading zeros.
fn ipv4_with_port(text: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut rest = text;
    for (i, slot) in octets.iter_mut().enumerate() {
        if i > 0 {
            // (A pattern, not `strip_prefix`: that is two out-of-line calls
            // in the size-optimised build.)
            let [b'.', tail @ ..] = rest else {
                return None;
            };
            rest = tail;
        }
        (*slot, rest) = octet(rest)?;
    }
    match rest {
        [] => {}
        // A port of digits only: then the general parser, which ignores
        // what follows the last `:`, reads the same address.
        [b':', port @ ..] if !port.is_empty() && super::all_digits(port) => {}
        _ => return None,
    }
    Some(std::net::Ipv4Addr::from(octets))
}

/// One decimal octet at the start of `text` (1-3 digits, no leading zero,
/// at most 255) and what follows it.
fn octet(text: &[u8]) -> Option<(u8, &[u8])> {
    let digit = |b: u8| u32::from(b.wrapping_sub(b'0'));
    let (value, rest) = match text {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9', rest @ ..] => (
            digit(*a)
                .wrapping_mul(100)
                .wrapping_add(digit(*b).wrapping_mul(10))
                .wrapping_add(digit(*c)),
            rest,
        ),
        [a @ b'1'..=b'9', b @ b'0'..=b'9', rest @ ..] => {
            (digit(*a).wrapping_mul(10).wrapping_add(digit(*b)), rest)
        }
        [a @ b'0'..=b'9', rest @ ..] => (digit(*a), rest),
        _ => return None,
    };
    Some((u8::try_from(value).ok()?, rest))
}

/// The client address `client_ip` conditions see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddress {
    Known(IpAddr),
    /// The trusted `X-Forwarded-For` entry is there but is not an address
    /// (`unknown`, garbage): it could be any address, so it is in every
    /// network for a drop or log condition and in none for an allow
    /// condition.
    Unknown,
    /// No address at all (the host gave no peer address).
    None,
}

/// The client address with `trusted_hops` trusted proxies in front of us:
/// each appended the address it saw to `X-Forwarded-For`, so the client is
/// the `trusted_hops`-th entry from the right. Entries left of it are whatever
/// the client sent and are never looked at. With fewer entries than trusted
/// hops the request did not come through those proxies, and the direct peer
/// is used.
pub fn client_address(
    xff: Option<&[u8]>,
    trusted_hops: u32,
    peer: Option<IpAddr>,
) -> ClientAddress {
    let from_peer = || peer.map_or(ClientAddress::None, ClientAddress::Known);
    if trusted_hops == 0 {
        return from_peer();
    }
    let Some(skip) = usize::try_from(trusted_hops)
        .ok()
        .map(|h| h.saturating_sub(1))
    else {
        return from_peer();
    };
    match xff.and_then(|list| list.rsplit(|b| *b == b',').nth(skip)) {
        Some(entry) => parse_address(entry).map_or(ClientAddress::Unknown, ClientAddress::Known),
        None => from_peer(),
    }
}

/// [`client_address`] as an address, `None` when unknown (for logs).
pub fn client_from_xff(
    xff: Option<&[u8]>,
    trusted_hops: u32,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    match client_address(xff, trusted_hops, peer) {
        ClientAddress::Known(ip) => Some(ip),
        ClientAddress::Unknown | ClientAddress::None => None,
    }
}

/// Every value of the `host_kind` field, in [`host_kind_slot`] order.
pub const HOST_KINDS: [&[u8]; 4] = [b"missing", b"invalid", b"ip", b"name"];

/// Which of [`HOST_KINDS`] a Host is.
pub fn host_kind_slot(form: &HostForm) -> usize {
    match form {
        HostForm::Missing | HostForm::Empty => 0,
        HostForm::Invalid => 1,
        HostForm::IpLiteral(_) => 2,
        HostForm::Name(_) => 3,
    }
}

/// The kind of Host a request has, as the `host_kind` field shows it.
pub fn host_kind(form: &HostForm) -> &'static [u8] {
    HOST_KINDS
        .get(host_kind_slot(form))
        .copied()
        .unwrap_or(b"invalid")
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

#[cfg(test)]
mod address_tests {
    use super::*;

    /// The one-pass IPv4 reading agrees with the general parser wherever it
    /// answers, and answers for the usual forms.
    #[test]
    fn ipv4_fast_path_agrees_with_the_general_parser() {
        let alphabet = [b'0', b'1', b'5', b'.', b':'];
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        let mut answered = 0;
        while let Some(text) = stack.pop() {
            if let Some(fast) = ipv4_with_port(&text) {
                answered += 1;
                assert_eq!(
                    Some(IpAddr::V4(fast)),
                    parse_address_general(&text),
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
            if text.len() < 8 {
                for b in alphabet {
                    let mut next = text.clone();
                    next.push(b);
                    stack.push(next);
                }
            }
        }
        assert!(answered > 10, "{answered}");
        for text in [
            "255.255.255.255",
            "198.51.100.77:40000",
            "0.0.0.0:0",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.4:",
            "1.2.3.4:8a",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4:5:6",
            "1.2.3.4 ",
        ] {
            let fast = ipv4_with_port(text.as_bytes()).map(IpAddr::V4);
            if fast.is_some() {
                assert_eq!(fast, parse_address_general(text.as_bytes()), "{text}");
            }
        }
        assert!(ipv4_with_port(b"198.51.100.77:40000").is_some());
        assert!(ipv4_with_port(b"10.0.0.1").is_some());
    }
}

#[cfg(test)]
mod normal_path_tests {
    use super::*;

    #[test]
    fn path_byte_table_is_its_definition() {
        for b in 0..=255u8 {
            let want = match b {
                b'/' => P_SLASH,
                b'.' => P_DOT,
                b';' => P_SEMICOLON,
                b'?' => P_QUERY,
                b'%' | b'\\' => P_ESCAPE,
                _ => P_PLAIN,
            };
            assert_eq!(PATH_BYTE[usize::from(b)], want, "byte {b}");
        }
    }

    /// `scan_target` is `split_target` then `scan_path`, on every short
    /// target over the bytes that matter.
    #[test]
    fn scan_target_is_split_then_scan() {
        let alphabet = [b'/', b'.', b'a', b'%', b'\\', b';', b'?'];
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        let mut checked = 0;
        while let Some(target) = stack.pop() {
            let (raw, _) = split_target(&target);
            let (normal, semicolon) = scan_path(raw);
            assert_eq!(
                scan_target(&target),
                (raw.len(), normal, semicolon),
                "{:?}",
                String::from_utf8_lossy(&target)
            );
            checked += 1;
            if target.len() < 6 {
                for b in alphabet {
                    let mut next = target.clone();
                    next.push(b);
                    stack.push(next);
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
    }

    /// A path `is_normal_path` accepts is its own main reading, and every
    /// plain path (no `%`, no `\\`) that is its own main reading is accepted.
    #[test]
    fn normal_paths_are_their_own_main_reading() {
        let alphabet = [b'/', b'.', b'a', b'%', b'\\', b';'];
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        let mut normal = 0;
        while let Some(raw) = stack.pop() {
            let same = normalize_path(&raw) == raw;
            if is_normal_path(&raw) {
                normal += 1;
                assert!(same, "{:?}", String::from_utf8_lossy(&raw));
            } else if !raw.contains(&b'%') && !raw.contains(&b'\\') {
                assert!(!same, "{:?} missed", String::from_utf8_lossy(&raw));
            }
            if raw.len() < 7 {
                for b in alphabet {
                    let mut next = raw.clone();
                    next.push(b);
                    stack.push(next);
                }
            }
        }
        assert!(normal > 100, "{normal}");
    }
}
