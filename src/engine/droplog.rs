//! The drop log's JSON line, written once for every adapter (the wasm HTTP
//! filter and the native module): what a line says about a request is the
//! engine's business, only where the line goes is the adapter's.

use serde::Serialize;

use super::request::{client_from_xff, parse_address, RequestSource};
use super::Engine;

/// One drop-log line (docs/operations.md).
#[derive(Serialize)]
struct DropLine<'a> {
    drop444: &'a str,
    rule: &'a str,
    method: Option<String>,
    host: Option<String>,
    path: Option<String>,
    client: Option<String>,
    user_agent: Option<String>,
    /// Lines not written (over the rate limit) since the previous one.
    #[serde(skip_serializing_if = "is_zero")]
    suppressed_before: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Cuts a string to at most `max` bytes, on a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
}

impl Engine {
    /// The JSON drop-log line for `event` (`drop`, `dry-run`, `log`, …) by
    /// `rule`, read from the request the decision was made on (an adapter
    /// that keeps the headers it read answers without a further host call).
    /// `suppressed`: lines not written since the previous one.
    pub fn drop_line(
        &self,
        event: &str,
        rule: &str,
        request: &mut dyn RequestSource,
        suppressed: u64,
    ) -> String {
        let text = |v: Option<Vec<u8>>| v.map(|v| String::from_utf8_lossy(&v).into_owned());
        let peer = request.peer_value().and_then(|p| parse_address(&p));
        let hops = self.xff_trusted_hops();
        let xff = if hops > 0 {
            request.header_value("x-forwarded-for")
        } else {
            None
        };
        let client = client_from_xff(xff.as_deref(), hops, peer);
        let mut user_agent = text(request.header_value("user-agent"));
        if let Some(ua) = user_agent.as_mut() {
            truncate(ua, self.log_settings().user_agent_max as usize);
        }
        let line = DropLine {
            drop444: event,
            rule,
            method: text(request.header_value(":method")),
            host: text(request.header_value(":authority")),
            path: text(request.header_value(":path")),
            client: client.map(|c| c.to_string()),
            user_agent,
            suppressed_before: suppressed,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}
