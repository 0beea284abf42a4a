//! The host-free core of the L4 (network filter) plugin: its configuration and
//! the HTTP/1 request-head inspector of the `malformed` mode. No proxy-wasm
//! code, so it is unit-tested natively; `src/wasm/l4.rs` is the adapter.
//!
//! The inspector sees the bytes a client sends before Envoy's HTTP connection
//! manager does, and says whether the request head is one Envoy would answer
//! itself before any HTTP filter runs (400 / 403 / 404 / 426 / 431 / 501). The
//! judgement is the one model of Envoy's HTTP/1 codec in [`crate::http1`],
//! shared with `drop444 explain --raw`. It only ever closes on a head it has
//! parsed completely or found refused, and stops looking at a connection as
//! soon as it cannot be sure where the next request starts.

use serde_json::Value;

use crate::engine::ConfigError;
use crate::http1::{self, Body, LocalReply, Outcome};

/// Largest `max_head_bytes` accepted: above Envoy's default per-connection
/// buffer limit (1 MiB) a paused connection would stop reading instead.
pub const MAX_HEAD_BYTES_LIMIT: u32 = 1024 * 1024;
/// Smallest `max_head_bytes` accepted.
pub const MIN_HEAD_BYTES: u32 = 1024;
/// Header entries a head may have: Envoy's default `max_headers_count`.
const MAX_HEADERS: usize = 100;

/// The L4 plugin's own configuration (its plugin `configuration` JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4Config {
    /// `close`: close HTTP/1 connections whose request head Envoy would
    /// reject itself, without a byte. `pass` (default): leave them to Envoy.
    pub malformed: Malformed,
    /// With `malformed: close`, what to do with HTTP/1.0 requests, which
    /// Envoy answers with 426 unless the HCM sets `accept_http_10`.
    pub http10: Http10,
    /// With `malformed: close`, a request head longer than this is closed
    /// (Envoy answers 431 above `max_request_headers_kb`, default 60 KiB).
    pub max_head_bytes: u32,
    /// The name of the HTTP drop444 plugin (same VM) whose connection-scope
    /// `client_ip` rules are applied when a connection opens: a refused
    /// connection is closed before a byte is read. Unset: none.
    pub refuse_at_accept: Option<String>,
    /// With `malformed: close`, the HCM's path settings, so that the requests
    /// Envoy answers itself because of them are closed too. Set them to what
    /// the HTTP connection manager behind this filter sets.
    pub hcm: HcmPaths,
}

/// The HTTP connection manager's path settings, with Envoy's field names and
/// defaults (all off).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HcmPaths {
    pub normalize_path: bool,
    pub merge_slashes: bool,
    pub path_with_escaped_slashes_action: EscapedSlashes,
}

/// `path_with_escaped_slashes_action`, Envoy's names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlashes {
    #[default]
    KeepUnchanged,
    RejectRequest,
    UnescapeAndForward,
    UnescapeAndRedirect,
}

impl HcmPaths {
    /// As the codec model takes them.
    pub fn settings(&self) -> http1::PathSettings {
        http1::PathSettings {
            normalize_path: self.normalize_path,
            merge_slashes: self.merge_slashes,
            escaped_slashes: match self.path_with_escaped_slashes_action {
                EscapedSlashes::KeepUnchanged => http1::EscapedSlashes::Keep,
                EscapedSlashes::RejectRequest => http1::EscapedSlashes::Reject,
                EscapedSlashes::UnescapeAndForward => http1::EscapedSlashes::Forward,
                EscapedSlashes::UnescapeAndRedirect => http1::EscapedSlashes::Redirect,
            },
        }
    }
}

impl Default for L4Config {
    fn default() -> Self {
        L4Config {
            malformed: Malformed::Pass,
            http10: Http10::Close,
            max_head_bytes: 60 * 1024,
            hcm: HcmPaths::default(),
            refuse_at_accept: None,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    #[default]
    Pass,
    Close,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Http10 {
    #[default]
    Close,
    Pass,
}

impl L4Config {
    /// Parses and validates the plugin configuration; empty means defaults.
    /// Errors carry the JSON path of the bad field.
    pub fn from_json(text: &[u8]) -> Result<L4Config, ConfigError> {
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(L4Config::default());
        }
        let value: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| ConfigError::new("", format!("not JSON: {e}")))?;
        if !value.is_object() {
            return Err(ConfigError::new("", "must be a JSON object"));
        }
        let config = l4_config(&value)?;
        if !(MIN_HEAD_BYTES..=MAX_HEAD_BYTES_LIMIT).contains(&config.max_head_bytes) {
            return Err(ConfigError::new(
                "max_head_bytes",
                format!(
                    "{} is out of range {MIN_HEAD_BYTES}..={MAX_HEAD_BYTES_LIMIT}",
                    config.max_head_bytes
                ),
            ));
        }
        Ok(config)
    }
}

fn l4_config(v: &Value) -> Result<L4Config, ConfigError> {
    use crate::engine::json;
    const FIELDS: &[&str] = &[
        "malformed",
        "http10",
        "max_head_bytes",
        "refuse_at_accept",
        "hcm",
    ];
    let mut c = L4Config::default();
    json::object(v, "", "struct L4Config", FIELDS, |name, v, at| {
        match name {
            "malformed" => {
                c.malformed = json::variant(
                    v,
                    at,
                    &[("pass", Malformed::Pass), ("close", Malformed::Close)],
                )?
            }
            "http10" => {
                c.http10 =
                    json::variant(v, at, &[("close", Http10::Close), ("pass", Http10::Pass)])?
            }
            "max_head_bytes" => c.max_head_bytes = json::u32(v, at)?,
            "refuse_at_accept" => c.refuse_at_accept = json::opt(v, at, json::string)?,
            _ => c.hcm = hcm_paths(v, at)?,
        }
        Ok(())
    })?;
    Ok(c)
}

fn hcm_paths(v: &Value, at: &str) -> Result<HcmPaths, ConfigError> {
    use crate::engine::json;
    const FIELDS: &[&str] = &[
        "normalize_path",
        "merge_slashes",
        "path_with_escaped_slashes_action",
    ];
    // Envoy's names; IMPLEMENTATION_SPECIFIC_DEFAULT is its alias of the
    // default (accepted, not listed in the error).
    const ACTIONS: &[(&str, EscapedSlashes)] = &[
        ("KEEP_UNCHANGED", EscapedSlashes::KeepUnchanged),
        ("REJECT_REQUEST", EscapedSlashes::RejectRequest),
        ("UNESCAPE_AND_FORWARD", EscapedSlashes::UnescapeAndForward),
        ("UNESCAPE_AND_REDIRECT", EscapedSlashes::UnescapeAndRedirect),
    ];
    let mut h = HcmPaths::default();
    json::object(v, at, "struct HcmPaths", FIELDS, |name, v, at| {
        match name {
            "normalize_path" => h.normalize_path = json::boolean(v, at)?,
            "merge_slashes" => h.merge_slashes = json::boolean(v, at)?,
            _ if v.as_str() == Some("IMPLEMENTATION_SPECIFIC_DEFAULT") => {
                h.path_with_escaped_slashes_action = EscapedSlashes::KeepUnchanged
            }
            _ => h.path_with_escaped_slashes_action = json::variant(v, at, ACTIONS)?,
        }
        Ok(())
    })?;
    Ok(h)
}

/// Why the inspector closes a connection (logged and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Envoy would answer this head itself (status, response code details).
    Envoy(LocalReply),
    /// The client ended its side inside a request head.
    Incomplete,
}

impl Reason {
    /// Envoy's response code details (`http1.codec_error`,
    /// `missing_host_header`, ...) or `incomplete head`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Envoy(reply) => reply.details,
            Reason::Incomplete => "incomplete head",
        }
    }
}

/// What to do with the bytes the client sent so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Hand them to Envoy.
    Pass,
    /// Hold them (the head is not complete yet); ask again with more.
    NeedMore,
    /// Close the connection without writing anything.
    Close(Reason),
}

/// Where the next byte from the client is, as far as the inspector knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a request head.
    Head,
    /// Inside a `Content-Length` body, this many bytes left.
    Body(u64),
    /// Not inspecting any more (HTTP/2, chunked body, pipelining, upgrade):
    /// everything passes.
    Off,
}

/// Per connection. Envoy hands a network filter the whole buffer it has not
/// passed on yet: the bytes held by earlier `NeedMore` answers plus the new
/// ones, so `inspect` always sees a request from its first byte.
#[derive(Debug, Clone)]
pub struct Inspector {
    state: State,
    max_head: usize,
    http10: Http10,
    paths: http1::PathSettings,
}

impl Inspector {
    /// `None` when the configuration does not inspect requests at all.
    pub fn new(config: &L4Config) -> Option<Inspector> {
        (config.malformed == Malformed::Close).then(|| Inspector {
            state: State::Head,
            max_head: usize::try_from(config.max_head_bytes).unwrap_or(usize::MAX),
            http10: config.http10,
            paths: config.hcm.settings(),
        })
    }

    /// True once nothing more will be inspected on this connection.
    pub fn is_off(&self) -> bool {
        self.state == State::Off
    }

    /// `data`: every byte Envoy holds for this filter (held + new).
    /// `end_of_stream`: the client has closed its side.
    pub fn inspect(&mut self, data: &[u8], end_of_stream: bool) -> Step {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        match self.state {
            State::Off => Step::Pass,
            State::Body(left) => {
                self.state = match len.cmp(&left) {
                    std::cmp::Ordering::Less => State::Body(left.saturating_sub(len)),
                    std::cmp::Ordering::Equal => State::Head,
                    // The next request came along with the body: pipelined.
                    std::cmp::Ordering::Greater => State::Off,
                };
                Step::Pass
            }
            State::Head => self.head(data, end_of_stream),
        }
    }

    fn head(&mut self, data: &[u8], end_of_stream: bool) -> Step {
        if data.is_empty() {
            return Step::Pass;
        }
        let limits = http1::Limits {
            max_head_bytes: self.max_head,
            max_headers: MAX_HEADERS,
            accept_http_10: self.http10 == Http10::Pass,
            path: self.paths,
        };
        match http1::parse(data, &limits) {
            Outcome::Http2 => {
                self.state = State::Off;
                Step::Pass
            }
            Outcome::Incomplete if end_of_stream => Step::Close(Reason::Incomplete),
            Outcome::Incomplete => Step::NeedMore,
            // Whether Envoy refuses an Upgrade depends on `upgrade_configs`,
            // which this filter cannot see: leave WebSockets alone.
            Outcome::Local(reply) if reply.details == http1::UPGRADE_FAILED => {
                self.state = State::Off;
                Step::Pass
            }
            Outcome::Local(reply) => Step::Close(Reason::Envoy(reply)),
            Outcome::Request(request) => {
                let rest = data.len().saturating_sub(request.head_len);
                let rest = u64::try_from(rest).unwrap_or(u64::MAX);
                let body = match request.body {
                    Body::None => Some(0),
                    Body::Length(n) => Some(n),
                    // Bytes after this head are not a request head we can
                    // find without following the body or tunnel: stop looking.
                    Body::Chunked | Body::Tunnel => None,
                };
                self.state = match body {
                    Some(body) if rest == body => State::Head,
                    Some(body) if rest < body => State::Body(body.saturating_sub(rest)),
                    // Pipelined request, or a tunnel / chunked body.
                    _ => State::Off,
                };
                Step::Pass
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspector() -> Inspector {
        Inspector::new(&L4Config {
            malformed: Malformed::Close,
            ..L4Config::default()
        })
        .unwrap()
    }

    #[test]
    fn hcm_path_settings_close_what_envoy_rejects() {
        let c = L4Config::from_json(
            br#"{"malformed": "close", "hcm": {"normalize_path": true, "merge_slashes": true, "path_with_escaped_slashes_action": "REJECT_REQUEST"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.hcm.settings(),
            http1::PathSettings {
                normalize_path: true,
                merge_slashes: true,
                escaped_slashes: http1::EscapedSlashes::Reject
            }
        );
        let mut shipped = Inspector::new(&c).unwrap();
        let mut default = inspector();
        for path in ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%5cb", "/admin%00"] {
            let head = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                shipped.clone().inspect(head.as_bytes(), false),
                Step::Close(Reason::Envoy(
                    http1::apply_path_settings(path.as_bytes(), &c.hcm.settings()).unwrap_err()
                )),
                "{path}"
            );
            assert_eq!(
                default.inspect(head.as_bytes(), false),
                Step::Pass,
                "{path}"
            );
            default = inspector();
        }
        for path in ["/a/../b", "/a?x=%2F", "//a", "/a%2e%41"] {
            let head = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                shipped.inspect(head.as_bytes(), false),
                Step::Pass,
                "{path}"
            );
        }
        let default_action = L4Config::from_json(
            br#"{"hcm": {"path_with_escaped_slashes_action": "IMPLEMENTATION_SPECIFIC_DEFAULT"}}"#,
        )
        .unwrap();
        assert_eq!(default_action.hcm, HcmPaths::default());
        for (bad, path) in [
            (
                &br#"{"hcm": {"path_with_escaped_slashes_action": "REJECT"}}"#[..],
                "hcm.path_with_escaped_slashes_action",
            ),
            (
                br#"{"hcm": {"normalize_path": "yes"}}"#,
                "hcm.normalize_path",
            ),
            (br#"{"hcm": {"normalise_path": true}}"#, "hcm"),
        ] {
            let err = L4Config::from_json(bad).unwrap_err();
            assert!(err.to_string().contains(path), "{err}");
        }
    }

    fn once(data: &[u8]) -> Step {
        inspector().inspect(data, false)
    }

    impl Step {
        fn reason(&self) -> &'static str {
            match self {
                Step::Close(reason) => reason.as_str(),
                other => panic!("not closed: {other:?}"),
            }
        }
    }

    #[test]
    fn config_defaults_and_errors_name_the_field() {
        assert_eq!(L4Config::from_json(b"").unwrap(), L4Config::default());
        assert_eq!(L4Config::from_json(b" {} ").unwrap(), L4Config::default());
        let c = L4Config::from_json(br#"{"malformed": "close", "http10": "pass"}"#).unwrap();
        assert_eq!((c.malformed, c.http10), (Malformed::Close, Http10::Pass));
        assert!(Inspector::new(&L4Config::default()).is_none());
        let err = L4Config::from_json(br#"{"malfomed": "close"}"#).unwrap_err();
        assert_eq!(err.path(), "malfomed", "{err}");
        let err = L4Config::from_json(br#"{"malformed": "drop"}"#).unwrap_err();
        assert_eq!(err.path(), "malformed", "{err}");
        let err = L4Config::from_json(br#"{"max_head_bytes": 10}"#).unwrap_err();
        assert_eq!(err.path(), "max_head_bytes", "{err}");
        assert!(L4Config::from_json(b"{} x").is_err());
        assert!(L4Config::from_json(b"[]").is_err());
    }

    #[test]
    fn good_heads_pass() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET http://a/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                once(head),
                Step::Pass,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn malformed_heads_close() {
        for (head, reason) in [
            (&b"BLAH\r\n\r\n"[..], "http1.codec_error"),
            (b"GET / HTTP/1.1\r\n\r\n", "missing_host_header"),
            (b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", "low_version"),
            (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", "low_version"),
            (
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                "http1.codec_error",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
                "http1.invalid_characters",
            ),
            (b"\x16\x03\x01\x00\x05hello", "http1.codec_error"),
            (
                b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                "absolute_path_rejected",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: Host: localhost\r\n\r\n",
                "http.invalid_authority",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
                "http1.codec_error",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                "http1.invalid_transfer_encoding",
            ),
        ] {
            match once(head) {
                Step::Close(r) => assert_eq!(r.as_str(), reason, "{head:?}"),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(head)),
            }
        }
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(once(&many).reason(), "http1.too_many_headers");
    }

    #[test]
    fn http10_can_pass() {
        let mut i = Inspector::new(&L4Config {
            malformed: Malformed::Close,
            http10: Http10::Pass,
            ..L4Config::default()
        })
        .unwrap();
        assert_eq!(
            i.inspect(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", false),
            Step::Pass
        );
    }

    #[test]
    fn partial_heads_are_held_then_decided_and_bounded() {
        let mut i = inspector();
        let full = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 1..full.len() {
            assert_eq!(
                i.clone().inspect(&full[..cut], false),
                Step::NeedMore,
                "{cut}"
            );
            assert_eq!(
                i.clone().inspect(&full[..cut], true),
                Step::Close(Reason::Incomplete),
                "{cut}"
            );
        }
        assert_eq!(i.inspect(full, false), Step::Pass);
        // An error in a complete line does not wait for the end of the head.
        assert_eq!(
            inspector()
                .inspect(b"GET / HTTP/1.1\r\nBad Name: x\r\n", false)
                .reason(),
            "http1.codec_error"
        );
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        big.resize(61 * 1024, b'a');
        assert_eq!(once(&big).reason(), "http1.headers_too_large");
    }

    #[test]
    fn keep_alive_requests_are_inspected_while_boundaries_are_known() {
        let mut i = inspector();
        assert_eq!(
            i.inspect(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab",
                false
            ),
            Step::Pass
        );
        assert_eq!(i.inspect(b"cd", false), Step::Pass);
        assert_eq!(i.inspect(b"e", false), Step::Pass);
        assert_eq!(
            i.inspect(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            Step::Pass
        );
        assert_eq!(
            i.inspect(b"BLAH\r\n\r\n", false).reason(),
            "http1.codec_error"
        );
    }

    #[test]
    fn inspection_stops_where_the_next_head_is_unknown() {
        for first in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            let mut i = inspector();
            assert_eq!(i.inspect(first, false), Step::Pass, "{first:?}");
            assert!(i.is_off(), "{:?}", String::from_utf8_lossy(first));
            assert_eq!(i.inspect(b"BLAH\r\n\r\n", false), Step::Pass);
        }
        // A partial HTTP/2 preface is held, not judged, until Envoy's AUTO
        // codec would have chosen HTTP/2.
        assert_eq!(once(b"PRI * HTTP/"), Step::NeedMore);
        assert_eq!(once(b"PRI * HTTP/2"), Step::Pass);
    }
}
