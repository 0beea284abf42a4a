//! A model of how Envoy 1.40 reads an HTTP/1 request head (balsa parser,
//! `accept_http_10: false` unless set, no `upgrade_configs`, 60 KiB / 100
//! headers, and the HCM path settings of [`PathSettings`], all off by
//! default): either the local reply Envoy sends itself before any HTTP filter
//! runs, or the request exactly as a filter sees it (`:authority`, `:path`
//! after Envoy's path normalisation, `:method`, header entries).
//!
//! One model for two users: `drop444 explain --raw` (what would the filter
//! decide, or does Envoy answer itself?) and the L4 plugin's `malformed: close`
//! mode (close without a byte whatever Envoy would answer itself). Every rule
//! here was measured against Envoy 1.40.0 and is listed, with Envoy's response
//! code details, in docs/envoy-behaviour.md; the end-to-end test
//! `tests/e2e/codec.rs` sends a corpus through both and compares.
//!
//! Pure code: no proxy-wasm, no allocation-heavy parsing, never panics.

/// Envoy's limits that decide a local reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Raw bytes of a request head, terminating empty line included, above
    /// which Envoy answers 431 (`max_request_headers_kb` × 1024, default 61440).
    pub max_head_bytes: usize,
    /// Header map entries above which Envoy answers 431
    /// (`max_request_headers_count`, default 100).
    pub max_headers: usize,
    /// The HCM's `http_protocol_options.accept_http_10`.
    pub accept_http_10: bool,
    /// The HCM's path settings.
    pub path: PathSettings,
}

/// The HTTP connection manager's path settings (Envoy's field names); all
/// off by default, as in Envoy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PathSettings {
    /// `normalize_path`: dot segments resolved (RFC 3986 §5.2.4), `\` read
    /// as `/`, escapes of unreserved characters decoded, `"` `<` `>` `^`
    /// backtick `{` `|` `}` escaped;
    /// `%00` answered with 400.
    pub normalize_path: bool,
    /// `merge_slashes`: runs of `/` merged, after `normalize_path`.
    pub merge_slashes: bool,
    /// `path_with_escaped_slashes_action`: what a path with `%2F`, `%2f`,
    /// `%5C` or `%5c` (before `?`) gets.
    pub escaped_slashes: EscapedSlashes,
}

/// The HCM's `path_with_escaped_slashes_action`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// `KEEP_UNCHANGED` (and `IMPLEMENTATION_SPECIFIC_DEFAULT`, Envoy's default).
    #[default]
    Keep,
    /// `REJECT_REQUEST`: Envoy's 400.
    Reject,
    /// `UNESCAPE_AND_FORWARD`: `%2F` → `/`, `%5C` → `\`, then the other settings.
    Forward,
    /// `UNESCAPE_AND_REDIRECT`: Envoy's 307 to the unescaped, normalised path.
    Redirect,
}

impl EscapedSlashes {
    /// From Envoy's enum name.
    pub fn from_envoy(name: &str) -> Option<EscapedSlashes> {
        Some(match name {
            "KEEP_UNCHANGED" | "IMPLEMENTATION_SPECIFIC_DEFAULT" => EscapedSlashes::Keep,
            "REJECT_REQUEST" => EscapedSlashes::Reject,
            "UNESCAPE_AND_FORWARD" => EscapedSlashes::Forward,
            "UNESCAPE_AND_REDIRECT" => EscapedSlashes::Redirect,
            _ => return None,
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 60 * 1024,
            max_headers: 100,
            accept_http_10: false,
            path: PathSettings::default(),
        }
    }
}

/// A reply Envoy sends itself; the HTTP filters never see the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    /// Envoy's `%RESPONSE_CODE_DETAILS%` for it.
    pub details: &'static str,
    /// What in the request causes it, for people.
    pub why: &'static str,
}

/// How the bytes after a head are framed (what the L4 inspector needs to
/// find the next head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body (no Content-Length, or zero).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// CONNECT or an `Upgrade` request: the rest is not HTTP/1.
    Tunnel,
}

/// The request as an HTTP filter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// `None` for CONNECT.
    pub path: Option<Vec<u8>>,
    /// From the absolute-form target, else the Host lines (joined with `,`).
    pub authority: Option<Vec<u8>>,
    /// `https` only for an `https://` target; lower case.
    pub scheme: &'static str,
    /// `HTTP/1.1` (or `HTTP/1.0` with `accept_http_10`).
    pub protocol: &'static str,
    /// Header map entries in order, names lower case, without Host and the
    /// headers Envoy removes before the filters. Repeated lines of an Envoy
    /// "inline" header are one entry (joined with `,`); others are separate
    /// entries, which the filter's attribute read joins with `,`.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Length of the head in the input, leading empty lines included.
    pub head_len: usize,
    pub body: Body,
}

/// The HTTP/2 connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes of the preface after which Envoy's `codec_type: AUTO` has chosen
/// HTTP/2 (`PRI * HTTP/2`).
const H2_PREFIX_SEEN: usize = 12;

/// What Envoy does with the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The bytes start like the HTTP/2 preface: Envoy (`codec_type: AUTO`)
    /// speaks HTTP/2 on this connection; not modelled here.
    Http2,
    /// The head is not complete and nothing in it is refused yet: Envoy waits.
    Incomplete,
    /// Envoy answers itself.
    Local(LocalReply),
    /// The request reaches the HTTP filters.
    Request(Box<Request>),
}

const fn reply(status: u16, details: &'static str, why: &'static str) -> LocalReply {
    LocalReply {
        status,
        details,
        why,
    }
}

const INVALID_CHARS: LocalReply = reply(
    400,
    "http1.invalid_characters",
    "a control character (other than tab, CR, LF) in the request head",
);
const TOO_LARGE: LocalReply = reply(
    431,
    "http1.headers_too_large",
    "the request head is longer than max_request_headers_kb",
);
const TOO_MANY: LocalReply = reply(
    431,
    "http1.too_many_headers",
    "more header entries than max_request_headers_count",
);

/// Request methods balsa accepts (exact, upper case).
const METHODS: &[&str] = &[
    "ACL",
    "BIND",
    "CHECKOUT",
    "CONNECT",
    "COPY",
    "DELETE",
    "GET",
    "HEAD",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MOVE",
    "MSEARCH",
    "NOTIFY",
    "OPTIONS",
    "PATCH",
    "POST",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "PUT",
    "QUERY",
    "REBIND",
    "REPORT",
    "SEARCH",
    "SOURCE",
    "SUBSCRIBE",
    "TRACE",
    "UNBIND",
    "UNLINK",
    "UNLOCK",
    "UNSUBSCRIBE",
];

/// Envoy's built-in ("inline") request headers: repeated lines are joined
/// into one entry with `,`, an empty line adding nothing. The list Envoy
/// 1.40.0 prints at start-up ("request header map"), plus `host`.
const INLINE: &[&str] = &[
    "host",
    "accept",
    "accept-encoding",
    "access-control-request-headers",
    "access-control-request-method",
    "access-control-request-private-network",
    "authentication",
    "authorization",
    "cache-control",
    "cdn-loop",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "expect",
    "grpc-accept-encoding",
    "grpc-timeout",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "origin",
    "pragma",
    "proxy-connection",
    "proxy-status",
    "referer",
    "te",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "via",
    "x-client-trace-id",
    "x-envoy-attempt-count",
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-external-address",
    "x-envoy-force-trace",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-ip-tags",
    "x-envoy-is-timeout-retry",
    "x-envoy-max-retries",
    "x-envoy-original-host",
    "x-envoy-original-path",
    "x-envoy-original-url",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-retry-grpc-on",
    "x-envoy-retry-on",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-stream-duration-ms",
    "x-forwarded-client-cert",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-request-id",
];

/// Hop-by-hop headers Envoy removes before the filters run.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Bytes balsa refuses anywhere in a head.
fn is_invalid_char(b: u8) -> bool {
    matches!(b, 0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f)
}

/// RFC 9110 token characters (header names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ws(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ws(*last) {
            break;
        }
        v = rest;
    }
    v
}

/// Where the head ends: the index just past the empty line, if it is there.
/// Lines end with LF; a CR before it is optional.
fn head_end(data: &[u8], start: usize) -> Option<usize> {
    let mut line_start = start;
    let mut i = start;
    while let Some(&b) = data.get(i) {
        i = i.saturating_add(1);
        if b == b'\n' {
            let line = data.get(line_start..i).unwrap_or_default();
            if line.iter().all(|c| *c == b'\r' || *c == b'\n') && line_start > start {
                return Some(i);
            }
            line_start = i;
        }
    }
    None
}

/// Parses what a client sent so far, the way Envoy 1.40 does.
pub fn parse(data: &[u8], limits: &Limits) -> Outcome {
    if H2_PREFACE.starts_with(
        data.get(..H2_PREFACE.len().min(data.len()))
            .unwrap_or_default(),
    ) && data.len() >= H2_PREFIX_SEEN
    {
        return Outcome::Http2;
    }
    // Empty lines before the request line are skipped.
    let start = data
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(data.len());
    // Balsa refuses a request that starts (after empty lines) with a space
    // or a control byte at once, before the line is complete.
    if data.get(start).is_some_and(|b| *b <= b' ') {
        return Outcome::Local(reply(
            400,
            "http1.codec_error",
            "the request starts with a space or a control byte (a TLS ClientHello, ...)",
        ));
    }
    let end = head_end(data, start);
    let head = data.get(..end.unwrap_or(data.len())).unwrap_or_default();
    if head.iter().any(|b| is_invalid_char(*b)) {
        return Outcome::Local(INVALID_CHARS);
    }
    let Some(end) = end else {
        // Lines complete so far may already be refused.
        if data.len() > limits.max_head_bytes {
            return Outcome::Local(TOO_LARGE);
        }
        return match early_errors(data.get(start..).unwrap_or_default()) {
            Some(reply) => Outcome::Local(reply),
            None => Outcome::Incomplete,
        };
    };
    if end > limits.max_head_bytes {
        return Outcome::Local(TOO_LARGE);
    }
    match complete(data.get(start..end).unwrap_or_default(), limits) {
        Ok(mut request) => {
            request.head_len = end;
            Outcome::Request(Box::new(request))
        }
        Err(reply) => Outcome::Local(reply),
    }
}

/// The lines of a head: split on LF, without the line end; a CR inside a
/// line is kept (callers decide).
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// On an incomplete head: a refusal already certain from its complete lines.
fn early_errors(partial: &[u8]) -> Option<LocalReply> {
    let complete_len = partial.iter().rposition(|b| *b == b'\n')?;
    let mut it = lines(partial.get(..complete_len).unwrap_or_default());
    let first = it.next()?;
    match request_line(first) {
        Err(reply) => return Some(reply),
        Ok(line) if line.http09 => return None,
        Ok(_) => {}
    }
    let mut seen_header = false;
    for line in it {
        if line.first().is_some_and(|b| is_ws(*b)) {
            if !seen_header {
                return Some(CODEC_ERROR);
            }
            continue;
        }
        if header_line(line).is_err() {
            return Some(CODEC_ERROR);
        }
        seen_header = true;
    }
    None
}

const CODEC_ERROR: LocalReply = reply(
    400,
    "http1.codec_error",
    "the request line or a header line is not valid HTTP/1",
);

struct Line<'a> {
    method: &'a str,
    target: &'a [u8],
    http11: bool,
    /// No version at all (HTTP/0.9 style): balsa reads no header lines.
    http09: bool,
}

/// `METHOD SP target SP HTTP/d.d`, separators runs of spaces or tabs.
fn request_line(mut line: &[u8]) -> Result<Line<'_>, LocalReply> {
    while let Some(rest) = line.strip_suffix(b"\r") {
        line = rest;
    }
    if line.first().is_some_and(|b| is_ws(*b)) || line.contains(&b'\r') {
        return Err(CODEC_ERROR);
    }
    let mut parts = line.split(|b| is_ws(*b)).filter(|p| !p.is_empty());
    let method = parts.next().unwrap_or_default();
    let target = parts.next();
    let version = parts.next();
    if parts.next().is_some() {
        return Err(CODEC_ERROR);
    }
    let method = std::str::from_utf8(method)
        .ok()
        .filter(|m| METHODS.contains(m))
        .ok_or(reply(
            400,
            "http1.codec_error",
            "a method balsa does not know (methods are case-sensitive)",
        ))?;
    let Some(target) = target else {
        return Err(CODEC_ERROR);
    };
    if !target_chars_valid(target, method == "CONNECT") {
        return Err(reply(
            400,
            "http1.codec_error",
            "a byte the request target may not contain",
        ));
    }
    let http11 = match version {
        None => false, // HTTP/0.9 style: Envoy treats it as HTTP/1.0
        Some(b"HTTP/1.1") => true,
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            false
        }
        Some(_) => {
            return Err(reply(
                400,
                "http1.codec_error",
                "the version is not HTTP/<digit>.<digit>",
            ))
        }
    };
    Ok(Line {
        method,
        target,
        http11,
        http09: version.is_none(),
    })
}

/// The request-target check of Envoy's balsa adapter (modelled on
/// http-parser): bytes 0x21..=0x7e in a path; `scheme://host` with a
/// restricted host alphabet otherwise.
fn target_chars_valid(target: &[u8], connect: bool) -> bool {
    let path_char = |c: &u8| *c == 9 || *c == 12 || (0x21..=0x7e).contains(c);
    match target.split_first() {
        None => false,
        Some((b'/' | b'*', rest)) => rest.iter().all(path_char),
        Some(_) => {
            let mut url = target;
            if !connect {
                let alpha = url.iter().take_while(|c| c.is_ascii_alphabetic()).count();
                if alpha == 0 {
                    return false;
                }
                let Some(rest) = url.get(alpha..).and_then(|r| r.strip_prefix(b"://")) else {
                    return false;
                };
                url = rest;
            }
            let split = url
                .iter()
                .position(|c| *c == b'/' || *c == b'?')
                .unwrap_or(url.len());
            let (host, path) = url.split_at(split);
            host.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"!$%&'()*+,-.:;=@[]_~".contains(c))
                && !host.windows(2).any(|w| w == b"@@")
                && path.iter().all(path_char)
        }
    }
}

/// `name: value` with a token name; returns the name and the raw value.
fn header_line(line: &[u8]) -> Result<(&[u8], &[u8]), ()> {
    let colon = line.iter().position(|b| *b == b':').ok_or(())?;
    let (name, value) = line.split_at(colon);
    if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
        return Err(());
    }
    Ok((name, value.get(1..).unwrap_or_default()))
}

/// One header-map entry being built.
struct Entry {
    name: String,
    value: Vec<u8>,
}

fn complete(head: &[u8], limits: &Limits) -> Result<Request, LocalReply> {
    let mut it = lines(head);
    let line = request_line(it.next().unwrap_or_default())?;
    if line.http09 && !limits.accept_http_10 {
        // Whatever follows the request line.
        return Err(LOW_VERSION);
    }

    // Header lines, obs-fold continuations appended (line ends dropped, the
    // folding whitespace kept), CR bytes inside values dropped, then trimmed.
    let mut raw: Vec<(String, Vec<u8>)> = Vec::new();
    for l in it {
        if l.is_empty() {
            break;
        }
        if l.first().is_some_and(|b| is_ws(*b)) {
            let Some((_, value)) = raw.last_mut() else {
                return Err(reply(
                    400,
                    "http1.codec_error",
                    "a folded (obs-fold) line with no header before it",
                ));
            };
            value.extend(l.iter().filter(|b| **b != b'\r'));
            continue;
        }
        let (name, value) = header_line(l).map_err(|()| {
            reply(
                400,
                "http1.codec_error",
                "a header line without a colon, or a name that is not a token",
            )
        })?;
        raw.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            value.iter().copied().filter(|b| *b != b'\r').collect(),
        ));
    }

    let content_length_lines = raw.iter().filter(|(n, _)| n == "content-length").count();
    // The header map: inline headers joined into one entry.
    let mut entries: Vec<Entry> = Vec::new();
    for (name, value) in raw {
        let value = trim(&value).to_vec();
        if INLINE.contains(&name.as_str()) {
            if let Some(entry) = entries.iter_mut().find(|e| e.name == name) {
                if !value.is_empty() {
                    if !entry.value.is_empty() {
                        entry.value.push(b',');
                    }
                    entry.value.extend_from_slice(&value);
                }
                continue;
            }
        }
        entries.push(Entry { name, value });
        if entries.len() > limits.max_headers {
            return Err(TOO_MANY);
        }
    }
    let get = |name: &str| entries.iter().find(|e| e.name == name).map(|e| &e.value);

    // Codec: framing.
    let connect = line.method == "CONNECT";
    if content_length_lines > 1 {
        return Err(reply(
            400,
            "http1.codec_error",
            "more than one Content-Length line",
        ));
    }
    let mut length = match get("content-length") {
        None => None,
        Some(v) => Some(
            std::str::from_utf8(v)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(reply(
                    400,
                    "http1.codec_error",
                    "a Content-Length that is not a number",
                ))?,
        ),
    };
    let te = get("transfer-encoding");
    if te.is_some() && length.is_some() {
        return Err(reply(
            400,
            "http1.content_length_and_chunked_not_allowed",
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if let Some(te) = te {
        if connect || !te.eq_ignore_ascii_case(b"chunked") {
            return Err(reply(
                501,
                "http1.invalid_transfer_encoding",
                "a Transfer-Encoding other than exactly `chunked`",
            ));
        }
    }
    if connect {
        match length {
            Some(0) => length = None,
            Some(_) => {
                return Err(reply(
                    400,
                    "http1.body_disallowed",
                    "a CONNECT request with a body",
                ))
            }
            None => {}
        }
    }
    let upgrade = is_upgrade(&entries);
    let h2c = upgrade && get("upgrade").is_some_and(|u| u.eq_ignore_ascii_case(b"h2c"));
    // An Upgrade Envoy would tunnel (`h2c` it strips and serves as HTTP/1).
    let tunnel = upgrade && !h2c;

    // Codec: the Connection header's nominated headers.
    let mut nominated: Vec<String> = Vec::new();
    if !connect && !tunnel {
        if let Some(connection) = get("connection") {
            let tokens: Vec<&[u8]> = connection
                .split(|b| *b == b',')
                .filter(|t| !t.is_empty())
                .collect();
            if tokens.len() >= 10 {
                return Err(CONNECTION_REJECTED);
            }
            for token in tokens {
                let token = String::from_utf8_lossy(trim(token)).to_ascii_lowercase();
                match token.as_str() {
                    "close" | "http2-settings" | "keep-alive" | "upgrade" | "connection" => {}
                    "x-forwarded-for" | "x-forwarded-host" | "x-forwarded-proto" => {
                        return Err(CONNECTION_REJECTED)
                    }
                    t if t.starts_with(':') => return Err(CONNECTION_REJECTED),
                    "te" => {
                        // Kept as `trailers` if it has that token (below).
                        if get("te").is_some_and(|v| v.len() >= 256) {
                            return Err(CONNECTION_REJECTED);
                        }
                    }
                    _ => nominated.push(token),
                }
            }
        }
    }

    // Codec: the target.
    let mut scheme = "http";
    let (path, authority) = if connect {
        if !authority_form_valid(line.target) {
            return Err(INVALID_URL);
        }
        (None, Some(line.target.to_vec()))
    } else if line.target.first() == Some(&b'/')
        || (line.method == "OPTIONS" && line.target.first() == Some(&b'*'))
    {
        let host = if nominated.iter().any(|n| n == "host") {
            None
        } else {
            get("host").cloned()
        };
        (Some(line.target.to_vec()), host)
    } else {
        let url = absolute_url(line.target)?;
        scheme = url.scheme;
        (Some(url.path), Some(url.authority))
    };

    // Connection manager, in Envoy's order.
    if !line.http11 && !limits.accept_http_10 {
        return Err(LOW_VERSION);
    }
    let Some(authority) = authority else {
        return Err(reply(
            400,
            "missing_host_header",
            "HTTP/1.1 without a Host header",
        ));
    };
    if !authority.iter().all(|b| authority_char(*b)) {
        return Err(reply(
            400,
            "http.invalid_authority",
            "a Host (joined, if repeated) with a byte an authority may not contain",
        ));
    }
    if line.method == "QUERY" && get("content-type").is_none() {
        return Err(reply(
            400,
            "query_missing_content_type",
            "a QUERY request without Content-Type",
        ));
    }
    if let Some(path) = &path {
        if path.first() != Some(&b'/') {
            return Err(reply(
                404,
                "absolute_path_rejected",
                "a path that does not start with `/` (`OPTIONS *`, `http://host?query`)",
            ));
        }
        if path.contains(&b'#') {
            return Err(reply(
                400,
                "path_normalization_failed",
                "a `#` fragment in the path",
            ));
        }
    }
    let path = match path {
        Some(path) => Some(apply_path_settings(&path, &limits.path)?),
        None => None,
    };
    if tunnel {
        return Err(reply(
            403,
            UPGRADE_FAILED,
            "an Upgrade request (Connection: upgrade) and no upgrade_configs",
        ));
    }

    let body = if connect || tunnel {
        Body::Tunnel
    } else if te.is_some() {
        Body::Chunked
    } else {
        match length {
            None | Some(0) => Body::None,
            Some(n) => Body::Length(n),
        }
    };

    // What the filters see: hop-by-hop and nominated headers removed, TE
    // reduced to `trailers`, Host as :authority, X-Forwarded-Proto set.
    let mut headers = Vec::new();
    for Entry { name, value } in entries {
        if name == "host"
            || name == "x-forwarded-proto"
            || HOP_BY_HOP.contains(&name.as_str())
            || nominated.contains(&name)
            || (h2c && name == "http2-settings")
        {
            continue;
        }
        if name == "te" {
            let trailers = value
                .split(|b| *b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"trailers"));
            if trailers {
                headers.push((name, b"trailers".to_vec()));
            }
            continue;
        }
        headers.push((name, value));
    }
    // Set from the listener's transport: this model is for plaintext.
    headers.push(("x-forwarded-proto".into(), b"http".to_vec()));
    Ok(Request {
        method: line.method.to_string(),
        path,
        authority: Some(authority),
        scheme,
        protocol: if line.http11 { "HTTP/1.1" } else { "HTTP/1.0" },
        headers,
        head_len: 0,
        body,
    })
}

const ESCAPED_SLASH: LocalReply = reply(
    400,
    "path_normalization_failed",
    "`%2F` or `%5C` in the path and path_with_escaped_slashes_action: REJECT_REQUEST",
);
const ESCAPED_SLASH_REDIRECT: LocalReply = reply(
    307,
    "path_normalization_failed",
    "`%2F` or `%5C` in the path and path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT (Location: the unescaped, normalised path)",
);
const NORMALIZATION_FAILED: LocalReply = reply(
    400,
    "path_normalization_failed",
    "`%00` in the path and normalize_path: true",
);

/// The HCM's path settings applied to a `:path` (path and query) in Envoy's
/// order: escaped slashes, `normalize_path`, `merge_slashes`. The query is
/// never changed. Either the `:path` the filters see, or Envoy's 400 (or the
/// 307 of `UNESCAPE_AND_REDIRECT`, after a successful normalisation).
pub fn apply_path_settings(target: &[u8], settings: &PathSettings) -> Result<Vec<u8>, LocalReply> {
    let split = target
        .iter()
        .position(|b| *b == b'?')
        .unwrap_or(target.len());
    let (path, query) = target.split_at(split);
    let escaped_slash = |at: usize| match path.get(at..at.saturating_add(3)) {
        Some([b'%', b'2', b'f' | b'F']) => Some(b'/'),
        Some([b'%', b'5', b'c' | b'C']) => Some(b'\\'),
        _ => None,
    };
    let has_escaped_slash = (0..path.len()).any(|at| escaped_slash(at).is_some());
    let unescaped;
    let path = match settings.escaped_slashes {
        EscapedSlashes::Reject if has_escaped_slash => return Err(ESCAPED_SLASH),
        EscapedSlashes::Forward | EscapedSlashes::Redirect if has_escaped_slash => {
            let mut out = Vec::with_capacity(path.len());
            let mut at = 0usize;
            while let Some(&b) = path.get(at) {
                match escaped_slash(at) {
                    Some(slash) => {
                        out.push(slash);
                        at = at.saturating_add(3);
                    }
                    None => {
                        out.push(b);
                        at = at.saturating_add(1);
                    }
                }
            }
            unescaped = out;
            &unescaped[..]
        }
        _ => path,
    };
    let mut out = if settings.normalize_path {
        canonical_path(path).ok_or(NORMALIZATION_FAILED)?
    } else {
        path.to_vec()
    };
    if settings.merge_slashes {
        out.dedup_by(|a, b| *a == b'/' && *b == b'/');
    }
    out.extend_from_slice(query);
    if settings.escaped_slashes == EscapedSlashes::Redirect && has_escaped_slash {
        return Err(ESCAPED_SLASH_REDIRECT);
    }
    Ok(out)
}

/// Envoy's `normalize_path` (its copy of Chromium's path canonicaliser), as
/// measured on Envoy 1.40.0: `/` and `\` separate segments; a segment that
/// is `.` or `..` once unreserved escapes are decoded, or a literal `.` or
/// `..` followed by `;` parameters, is a dot segment; empty segments are kept
/// (`merge_slashes` removes them). `None` for `%00`.
fn canonical_path(path: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(path.len().saturating_add(1));
    let mut trailing_slash = false;
    let mut segments = path.split(|b| *b == b'/' || *b == b'\\');
    // The path starts with `/`: the first piece is the empty root.
    segments.next();
    let mut seg = Vec::new();
    for raw in segments {
        canonical_segment(raw, &mut seg)?;
        let literal_dots = raw
            .iter()
            .position(|b| *b == b';')
            .map(|semi| raw.get(..semi));
        let dots = match literal_dots {
            Some(Some(b".")) => Some(false),
            Some(Some(b"..")) => Some(true),
            _ => match seg.as_slice() {
                b"." => Some(false),
                b".." => Some(true),
                _ => None,
            },
        };
        trailing_slash = false;
        match dots {
            Some(up) => {
                if up {
                    let cut = out.iter().rposition(|b| *b == b'/').unwrap_or(0);
                    out.truncate(cut);
                }
                trailing_slash = true;
            }
            None => {
                out.push(b'/');
                out.extend_from_slice(&seg);
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    Some(out)
}

/// One segment canonicalised into `out`: unreserved escapes decoded, other
/// valid escapes kept as written, `"` `<` `>` `^` backtick `{` `|` `}`,
/// control and non-ASCII bytes
/// escaped (upper-case hex), a `%` that is no escape kept unless what follows
/// it reads as two hex digits (then `%25`). `None` for `%00`.
fn canonical_segment(raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    let mut lone = Vec::new();
    let mut i = 0usize;
    while let Some(&b) = raw.get(i) {
        let escape = match (raw.get(i.saturating_add(1)), raw.get(i.saturating_add(2))) {
            (Some(&h), Some(&l)) if b == b'%' => {
                hex_value(h).zip(hex_value(l)).map(|(h, l)| (h << 4) | l)
            }
            _ => None,
        };
        match escape {
            Some(0) => return None,
            Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                out.push(c);
                i = i.saturating_add(3);
            }
            Some(_) => {
                out.extend_from_slice(raw.get(i..i.saturating_add(3)).unwrap_or_default());
                i = i.saturating_add(3);
            }
            None => {
                if b == b'%' {
                    lone.push(out.len());
                    out.push(b);
                } else if !(0x21..=0x7e).contains(&b) || b"\"<>^`{|}".contains(&b) {
                    push_escape(out, b);
                } else {
                    out.push(b);
                }
                i = i.saturating_add(1);
            }
        }
    }
    // Replace lone `%` from the back so earlier positions stay valid.
    for at in lone.into_iter().rev() {
        let next = |k: usize| out.get(at.saturating_add(k)).copied().and_then(hex_value);
        if next(1).is_some() && next(2).is_some() {
            out.splice(at..at.saturating_add(1), *b"%25");
        }
    }
    Some(())
}

fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(b'%');
    out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
    out.push(HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'));
}

fn hex_value(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Details of Envoy's 403 to an Upgrade without `upgrade_configs`.
pub const UPGRADE_FAILED: &str = "upgrade_failed";

const LOW_VERSION: LocalReply = reply(
    426,
    "low_version",
    "not HTTP/1.1 (HTTP/1.0, /0.9, /1.2, /2.0 ...) and accept_http_10 is off",
);

const CONNECTION_REJECTED: LocalReply = reply(
    400,
    "http1.connection_header_rejected",
    "Connection nominates X-Forwarded-For/-Host/-Proto or a pseudo-header, or 10+ tokens",
);
const INVALID_URL: LocalReply = reply(
    400,
    "http1.invalid_url",
    "an absolute-form or CONNECT target Envoy cannot parse",
);

/// `Connection` has an `upgrade` token and there is an `Upgrade` header.
fn is_upgrade(entries: &[Entry]) -> bool {
    let get = |name: &str| entries.iter().find(|e| e.name == name).map(|e| &e.value);
    get("upgrade").is_some()
        && get("connection").is_some_and(|c| {
            c.split(|b| *b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"upgrade"))
        })
}

/// Characters Envoy accepts in `:authority` (nghttp2's authority check).
fn authority_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@[]".contains(&b)
}

struct Url {
    scheme: &'static str,
    authority: Vec<u8>,
    path: Vec<u8>,
}

/// `scheme://[userinfo@]host[:port][/path][?query]` as Envoy's URL parser
/// (http-parser, strict) reads it.
fn absolute_url(target: &[u8]) -> Result<Url, LocalReply> {
    let split = target
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(INVALID_URL)?;
    let (scheme, rest) = target.split_at(split);
    let rest = rest.get(3..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|c| *c == b'/' || *c == b'?' || *c == b'#')
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let hostport = match authority.iter().position(|c| *c == b'@') {
        Some(at) => {
            let (user, host) = authority.split_at(at);
            if !user
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.!~*'()%;:&=+$,".contains(c))
            {
                return Err(INVALID_URL);
            }
            host.get(1..).unwrap_or_default()
        }
        None => authority,
    };
    if !host_and_port_valid(hostport) {
        return Err(INVALID_URL);
    }
    let scheme = if scheme.eq_ignore_ascii_case(b"http") {
        "http"
    } else if scheme.eq_ignore_ascii_case(b"https") {
        "https"
    } else {
        return Err(reply(
            400,
            "http1.invalid_scheme",
            "an absolute-form target whose scheme is not http or https",
        ));
    };
    Ok(Url {
        scheme,
        authority: hostport.to_vec(),
        path: if path.is_empty() {
            b"/".to_vec()
        } else {
            path.to_vec()
        },
    })
}

/// `host[:port]`: a name of letters, digits, `-` and `.`, or `[IPv6]`; a
/// port of up to five digits, at most 65535.
fn host_and_port_valid(hostport: &[u8]) -> bool {
    let (host, port) = if let Some(inner) = hostport.strip_prefix(b"[") {
        let Some(close) = inner.iter().position(|c| *c == b']') else {
            return false;
        };
        let (v6, after) = inner.split_at(close);
        if v6.is_empty()
            || !v6
                .iter()
                .all(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.')
        {
            return false;
        }
        let after = after.get(1..).unwrap_or_default();
        match after.split_first() {
            None => return true,
            Some((b':', port)) => (v6, Some(port)),
            Some(_) => return false,
        }
    } else {
        match hostport.iter().position(|c| *c == b':') {
            Some(colon) => {
                let (h, p) = hostport.split_at(colon);
                (h, Some(p.get(1..).unwrap_or_default()))
            }
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return false;
    }
    if !hostport.starts_with(b"[")
        && !host
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
    {
        return false;
    }
    match port {
        None => true,
        Some(p) => {
            !p.is_empty()
                && p.len() <= 5
                && p.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(p)
                    .ok()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|p| p <= 65535)
        }
    }
}

/// A CONNECT target: `host:port`, the port mandatory.
fn authority_form_valid(target: &[u8]) -> bool {
    let has_port = match target.strip_prefix(b"[") {
        Some(inner) => inner
            .iter()
            .position(|c| *c == b']')
            .and_then(|close| inner.get(close.saturating_add(1)..))
            .is_some_and(|after| after.starts_with(b":")),
        None => target.contains(&b':'),
    };
    has_port && host_and_port_valid(target)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    fn run(raw: &[u8]) -> Outcome {
        parse(raw, &Limits::default())
    }

    fn request(raw: &[u8]) -> Request {
        match run(raw) {
            Outcome::Request(r) => *r,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn local(raw: &[u8]) -> LocalReply {
        match run(raw) {
            Outcome::Local(r) => r,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn header<'r>(r: &'r Request, name: &str) -> Vec<&'r [u8]> {
        r.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    #[test]
    fn repeated_host_is_joined_and_absolute_form_wins() {
        let r = request(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        assert_eq!(r.authority.as_deref(), Some(&b"a,b"[..]));
        let r = request(b"GET / HTTP/1.1\r\nHost:\r\nHost: b\r\n\r\n");
        assert_eq!(r.authority.as_deref(), Some(&b"b"[..]));
        let r = request(b"GET http://evil.test/ HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(r.authority.as_deref(), Some(&b"evil.test"[..]));
        assert_eq!(r.path.as_deref(), Some(&b"/"[..]));
        let r = request(b"GET HTTP://example.com/admin HTTP/1.1\r\n\r\n");
        assert_eq!(
            (r.scheme, r.authority.as_deref(), r.path.as_deref()),
            ("http", Some(&b"example.com"[..]), Some(&b"/admin"[..]))
        );
        let r = request(b"GET https://u:p@[::1]:8443 HTTP/1.1\r\nHost: a b\r\n\r\n");
        assert_eq!(
            (r.scheme, r.authority.as_deref(), r.path.as_deref()),
            ("https", Some(&b"[::1]:8443"[..]), Some(&b"/"[..]))
        );
        assert_eq!(header(&r, "x-forwarded-proto"), [b"http"]);
    }

    #[test]
    fn values_are_folded_trimmed_and_kept_as_bytes() {
        let r = request(
            b"GET /p HTTP/1.1\r\nhOsT:  a  \r\nX-A: 1 \r\n  folded \r\nX-B:\t\xff\xfe v\rw\t\r\nX-A: 2\r\nUser-Agent: u\r\nUser-Agent:\r\nUser-Agent: v\r\n\r\n",
        );
        assert_eq!(r.authority.as_deref(), Some(&b"a"[..]));
        assert_eq!(header(&r, "x-a"), [&b"1   folded"[..], b"2"]);
        assert_eq!(header(&r, "x-b"), [&b"\xff\xfe vw"[..]]);
        assert_eq!(header(&r, "user-agent"), [&b"u,v"[..]]);
        // A fold of Host makes it invalid.
        assert_eq!(
            local(b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n").details,
            "http.invalid_authority"
        );
    }

    #[test]
    fn envoy_removes_hop_by_hop_and_nominated_headers() {
        let r = request(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, User-Agent\r\nUser-Agent: sqlmap\r\nKeep-Alive: 5\r\nTE: gzip, trailers\r\nX-Keep: 1\r\n\r\n",
        );
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["te", "x-keep", "x-forwarded-proto"]);
        assert_eq!(header(&r, "te"), [b"trailers"]);
        for nominated in ["x-forwarded-for", ":path", "X-Forwarded-Proto"] {
            let raw = format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: {nominated}\r\n\r\n");
            assert_eq!(
                local(raw.as_bytes()).details,
                "http1.connection_header_rejected"
            );
        }
        assert_eq!(
            local(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n").details,
            "missing_host_header"
        );
    }

    #[test]
    fn envoy_local_replies() {
        let cases: &[(&[u8], u16, &str)] = &[
            (b"GET / HTTP/1.1\r\nHost: Host: localhost\r\n\r\n", 400, "http.invalid_authority"),
            (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "http.invalid_authority"),
            (b"GET / HTTP/1.1\r\n\r\n", 400, "missing_host_header"),
            (b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", 426, "low_version"),
            (b"GET / HTTP/1.2\r\n\r\n", 426, "low_version"),
            (b"GET /\r\n\r\n", 426, "low_version"),
            (b"GET /a\nb HTTP/1.1\r\nHost: a\r\n\r\n", 426, "low_version"),
            (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, "http1.codec_error"),
            (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "http1.codec_error"),
            (b"BLAH\r\n\r\n", 400, "http1.codec_error"),
            (b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "http1.codec_error"),
            (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "http1.codec_error"),
            (b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400, "http1.codec_error"),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "http1.codec_error"),
            (b"GET / HTTP/1.1\r\n folded\r\nHost: a\r\n\r\n", 400, "http1.codec_error"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n", 400, "http1.invalid_characters"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", 400, "http1.codec_error"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na", 400, "http1.codec_error"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "http1.content_length_and_chunked_not_allowed"),
            (b"GET / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "http1.invalid_transfer_encoding"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "http1.invalid_transfer_encoding"),
            (b"GET ftp://a/ HTTP/1.1\r\n\r\n", 400, "http1.invalid_scheme"),
            (b"GET http://a_b/ HTTP/1.1\r\n\r\n", 400, "http1.invalid_url"),
            (b"GET http://a:65536/ HTTP/1.1\r\n\r\n", 400, "http1.invalid_url"),
            (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "http1.invalid_url"),
            (b"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "http1.invalid_url"),
            (b"CONNECT a:443 HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 400, "http1.body_disallowed"),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 404, "absolute_path_rejected"),
            (b"GET http://a?x HTTP/1.1\r\n\r\n", 404, "absolute_path_rejected"),
            (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "path_normalization_failed"),
            (b"QUERY / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "query_missing_content_type"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 403, "upgrade_failed"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a,b,c,d,e,f,g,h,i,j\r\n\r\n", 400, "http1.connection_header_rejected"),
        ];
        for (raw, status, details) in cases {
            let got = local(raw);
            assert_eq!(
                (got.status, got.details),
                (*status, *details),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn limits_count_raw_bytes_and_entries() {
        let head = |n: usize| {
            let mut h = b"GET /ab HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
            h.resize(h.len() + n, b'v');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        // Measured: 61402 passes, 61403 gets 431 (61440 raw bytes).
        assert!(matches!(run(&head(61402)), Outcome::Request(_)));
        assert_eq!(local(&head(61403)).status, 431);
        let many = |n: usize, name: &str| {
            let mut h = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            for i in 0..n {
                h.extend_from_slice(format!("{name}{i}: v\r\n").as_bytes());
            }
            h.extend_from_slice(b"\r\n");
            h
        };
        assert!(matches!(run(&many(99, "X-")), Outcome::Request(_)));
        assert_eq!(local(&many(100, "X-")).details, "http1.too_many_headers");
        // Repeated inline lines are one entry.
        let mut ua = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for _ in 0..150 {
            ua.extend_from_slice(b"User-Agent: v\r\n");
        }
        ua.extend_from_slice(b"\r\n");
        assert!(matches!(run(&ua), Outcome::Request(_)));
    }

    #[test]
    fn incomplete_heads_wait_unless_already_refused() {
        let full = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(run(&full[..cut]), Outcome::Incomplete, "{cut}");
        }
        assert!(matches!(run(full), Outcome::Request(_)));
        assert_eq!(run(b"GET / HTTP/1.1\r\nBad Name").status_or_zero(), 0);
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nBad Name: x\r\n").status_or_zero(),
            400
        );
        assert_eq!(run(b"get / HTTP/1.1\r\n").status_or_zero(), 400);
        assert_eq!(run(b"\x16\x03\x01\x00\xa5").status_or_zero(), 400);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(61441, b'a');
        assert_eq!(run(&big).status_or_zero(), 431);
    }

    #[test]
    fn body_framing_and_head_length() {
        let r = request(b"\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 03\r\n\r\nabc");
        assert_eq!((r.body, r.head_len), (Body::Length(3), 50));
        let r = request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(r.body, Body::Chunked);
        let r = request(b"CONNECT a:443 HTTP/1.1\r\n\r\n");
        assert_eq!((r.body, r.path.clone()), (Body::Tunnel, None));
        assert_eq!(r.authority.as_deref(), Some(&b"a:443"[..]));
    }

    /// Measured on Envoy 1.40.0 with `normalize_path`, `merge_slashes` and
    /// `REJECT_REQUEST` (what an echo upstream received; `None`: 400
    /// `path_normalization_failed`).
    #[test]
    fn shipped_path_settings_as_envoy_applies_them() {
        let shipped = PathSettings {
            normalize_path: true,
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        };
        let cases: &[(&str, Option<&str>)] = &[
            ("/a/../b", Some("/b")),
            ("/a\\..\\b", Some("/b")),
            ("/a/%2e%2e/b", Some("/b")),
            ("/x/..;/admin", Some("/admin")),
            ("/x/..;a/y", Some("/y")),
            ("/x/.;a/y", Some("/x/y")),
            ("/a/..;x;y/b", Some("/b")),
            ("/a/.;x/../b", Some("/b")),
            ("/a/b/..;", Some("/a/")),
            ("/a/%2e;x/b", Some("/a/.;x/b")),
            ("/a/.%2e;x/b", Some("/a/..;x/b")),
            ("/a/x.;y/b", Some("/a/x.;y/b")),
            ("/a/..%3B/b", Some("/a/..%3B/b")),
            ("/;/admin", Some("/;/admin")),
            ("/%41dmin", Some("/Admin")),
            ("//a//b/", Some("/a/b/")),
            ("/x//../admin", Some("/x/admin")),
            ("/a/b/..//c", Some("/a/c")),
            ("//../a", Some("/a")),
            ("/a?b/../c", Some("/a?b/../c")),
            ("/a?x=%2F&y=%00", Some("/a?x=%2F&y=%00")),
            ("/a%zz", Some("/a%zz")),
            ("/a%2", Some("/a%2")),
            ("/a%7e%7E", Some("/a~~")),
            ("/a\"<>`{}|^", Some("/a%22%3C%3E%60%7B%7D%7C%5E")),
            ("/a%C3%A9%c0%af%25%20", Some("/a%C3%A9%c0%af%25%20")),
            ("/a/./b/.", Some("/a/b/")),
            ("/a/..", Some("/")),
            ("/..", Some("/")),
            ("/a/.%2E", Some("/")),
            ("/a/..%2e", Some("/a/...")),
            ("/a/.../../b", Some("/a/b")),
            ("/a%2%32F", Some("/a%2522F")),
            ("/a%%341", Some("/a%2541")),
            ("/a%4%31", Some("/a%2541")),
            ("/admin%00", None),
            ("/a%2fb", None),
            ("/a%2Fb", None),
            ("/a%5cb", None),
            ("/a%5Cb", None),
            ("/a/..%2F", None),
        ];
        for (raw, want) in cases {
            let got = apply_path_settings(raw.as_bytes(), &shipped);
            match (want, got) {
                (Some(want), Ok(got)) => assert_eq!(String::from_utf8_lossy(&got), *want, "{raw}"),
                (None, Err(reply)) => assert_eq!(
                    (reply.status, reply.details),
                    (400, "path_normalization_failed"),
                    "{raw}"
                ),
                (want, got) => panic!("{raw}: want {want:?}, got {got:?}"),
            }
            // Through the whole model, with and without the settings.
            let head = format!("GET {raw} HTTP/1.1\r\nHost: a\r\n\r\n");
            let limits = Limits {
                path: shipped,
                ..Limits::default()
            };
            match (want, parse(head.as_bytes(), &limits)) {
                (Some(want), Outcome::Request(r)) => {
                    assert_eq!(r.path.as_deref(), Some(want.as_bytes()))
                }
                (None, Outcome::Local(reply)) => assert_eq!(reply.status, 400),
                (want, got) => panic!("{raw}: want {want:?}, got {got:?}"),
            }
            assert_eq!(
                request(head.as_bytes()).path.as_deref(),
                Some(raw.as_bytes()),
                "defaults change nothing"
            );
        }
        // Each setting on its own.
        let only = |normalize_path, merge_slashes, reject: bool, raw: &str| {
            let escaped_slashes = if reject {
                EscapedSlashes::Reject
            } else {
                EscapedSlashes::Keep
            };
            apply_path_settings(
                raw.as_bytes(),
                &PathSettings {
                    normalize_path,
                    merge_slashes,
                    escaped_slashes,
                },
            )
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .map_err(|r| r.status)
        };
        assert_eq!(
            only(false, true, false, "//a/./%2F//b?x//y"),
            Ok("/a/./%2F/b?x//y".into())
        );
        assert_eq!(only(false, false, true, "/a/../%2F"), Err(400));
        assert_eq!(
            only(false, false, true, "/a/../%00"),
            Ok("/a/../%00".into())
        );
        assert_eq!(
            only(true, false, false, "//a/%2F/../%5C"),
            Ok("//a/%5C".into())
        );
        assert_eq!(only(true, false, false, "/%00"), Err(400));
    }

    /// Measured on Envoy 1.40.0 with `normalize_path` + `merge_slashes` and
    /// the unescape actions: FORWARD hands the filter the unescaped,
    /// normalised path; REDIRECT answers 307 with it as `Location`.
    #[test]
    fn unescape_actions_as_envoy_applies_them() {
        let cases: &[(&str, &str)] = &[
            ("/a%2Fb", "/a/b"),
            ("/a%2fb/../c", "/a/c"),
            ("/a%5Cb", "/a/b"),
            ("/a%5c..%5cb", "/b"),
            ("/x/..%2fadmin", "/admin"),
            ("/a%2F%2F/b", "/a/b"),
            ("/a%2F?x=%2F", "/a/?x=%2F"),
            ("/%2F%2E%2E/x", "/x"),
        ];
        let with = |escaped_slashes| PathSettings {
            normalize_path: true,
            merge_slashes: true,
            escaped_slashes,
        };
        for (raw, want) in cases {
            let got = apply_path_settings(raw.as_bytes(), &with(EscapedSlashes::Forward)).unwrap();
            assert_eq!(String::from_utf8_lossy(&got), *want, "{raw}");
            let reply =
                apply_path_settings(raw.as_bytes(), &with(EscapedSlashes::Redirect)).unwrap_err();
            assert_eq!(
                (reply.status, reply.details),
                (307, "path_normalization_failed"),
                "{raw}"
            );
        }
        for action in [EscapedSlashes::Forward, EscapedSlashes::Redirect] {
            for (raw, want) in [("/a?x=%2F", "/a?x=%2F"), ("/a%252Fb", "/a%252Fb")] {
                let got = apply_path_settings(raw.as_bytes(), &with(action)).unwrap();
                assert_eq!(String::from_utf8_lossy(&got), want, "{raw}");
            }
            // A failed normalisation wins over the redirect.
            let reply = apply_path_settings(b"/a%00%2F", &with(action)).unwrap_err();
            assert_eq!(reply.status, 400);
        }
    }

    impl Outcome {
        fn status_or_zero(&self) -> u16 {
            match self {
                Outcome::Local(r) => r.status,
                _ => 0,
            }
        }
    }
}

/// Properties over generated heads (native only: proptest is not built for
/// the wasm32 test run).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod props {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    const FIRST: &[&str] = &[
        "GET / HTTP/1.1",
        "GET /admin HTTP/1.1",
        "POST /x?y HTTP/1.1",
        "GET http://a/ HTTP/1.1",
        "get / HTTP/1.1",
        "GET / HTTP/1.0",
        "CONNECT a:443 HTTP/1.1",
        "OPTIONS * HTTP/1.1",
        " GET / HTTP/1.1",
        "GET /a b HTTP/1.1",
        "BLAH",
    ];
    const LINES: &[&str] = &[
        "Host: a",
        "Host: a b",
        "Host:",
        "User-Agent: x",
        " folded",
        "X-A: \u{1}",
        "Bad Name: x",
        "Content-Length: 3",
        "Content-Length: x",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: gzip",
        "Connection: x-a",
        "Connection: x-forwarded-for",
        "Upgrade: websocket",
        "Connection: upgrade",
        "X-A",
    ];

    fn head() -> impl Strategy<Value = Vec<u8>> {
        (
            0..FIRST.len(),
            proptest::collection::vec((0..LINES.len(), any::<bool>()), 0..6),
            any::<bool>(),
        )
            .prop_map(|(first, lines, crlf)| {
                let end = if crlf { "\r\n" } else { "\n" };
                let mut h = format!("{}{end}", FIRST[first]);
                for (line, crlf) in lines {
                    h.push_str(LINES[line]);
                    h.push_str(if crlf { "\r\n" } else { "\n" });
                }
                h.push_str(end);
                h.push_str("abc");
                h.into_bytes()
            })
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..400),
                        max in 0usize..200, headers in 0usize..5, ten in any::<bool>()) {
            let limits = Limits { max_head_bytes: max, max_headers: headers, accept_http_10: ten, path: PathSettings::default() };
            let _ = parse(&data, &limits);
            let _ = parse(&data, &Limits::default());
        }

        /// Path settings never panic, keep the query as sent and, with
        /// `merge_slashes`, leave no `//` in the path.
        #[test]
        fn path_settings_never_panic(path in "(/|\\\\|\\.|;|%|%2[eEfF]|%5[cC]|%00|%41|[a-z0-9]){0,24}",
                                     query in proptest::option::of("[a-z%/.]{0,6}"),
                                     normalize_path in any::<bool>(), merge_slashes in any::<bool>(),
                                     action in 0usize..4) {
            let escaped_slashes = [EscapedSlashes::Keep, EscapedSlashes::Reject, EscapedSlashes::Forward, EscapedSlashes::Redirect][action];
            let settings = PathSettings { normalize_path, merge_slashes, escaped_slashes };
            let mut target = format!("/{path}");
            if let Some(q) = &query {
                target.push('?');
                target.push_str(q);
            }
            if let Ok(out) = apply_path_settings(target.as_bytes(), &settings) {
                let (p, q) = out.split_at(out.iter().position(|b| *b == b'?').unwrap_or(out.len()));
                prop_assert_eq!(q, target.find('?').map_or(&b""[..], |at| &target.as_bytes()[at..]));
                prop_assert!(p.starts_with(b"/"));
                if merge_slashes {
                    prop_assert!(!p.windows(2).any(|w| w == b"//"), "{:?}", String::from_utf8_lossy(&out));
                }
            }
        }

        /// The L4 inspector may close on a partial head only if Envoy refuses
        /// the whole head too: a prefix refused means the head is refused.
        #[test]
        fn a_refused_prefix_means_a_refused_head(raw in head()) {
            let full = parse(&raw, &Limits::default());
            for cut in 0..raw.len() {
                if let Outcome::Local(early) = parse(&raw[..cut], &Limits::default()) {
                    prop_assert!(matches!(full, Outcome::Local(_)),
                        "{:?}: prefix {cut} refused ({early:?}), whole {full:?}",
                        String::from_utf8_lossy(&raw));
                }
            }
        }
    }
}
