//! The drop log's JSON line, written once for every adapter (the wasm HTTP
//! filter and the native module): what a line says about a request is the
//! engine's business, only where the line goes is the adapter's.

use super::request::{client_from_xff, parse_address, RequestSource};
use super::Engine;

/// Appends `"name":value` to a JSON object being written, the value a
/// JSON string or `null` (serde_json escapes it).
fn field(line: &mut String, name: &str, value: Option<&str>) {
    line.push(if line.is_empty() { '{' } else { ',' });
    line.push('"');
    line.push_str(name);
    line.push_str("\":");
    match value.map(serde_json::to_string) {
        Some(Ok(quoted)) => line.push_str(&quoted),
        _ => line.push_str("null"),
    }
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
        // One drop-log line (docs/operations.md), its fields in this order;
        // `suppressed_before` (lines not written over the rate limit since
        // the previous one) only when there were any.
        let mut line = String::new();
        field(&mut line, "drop444", Some(event));
        field(&mut line, "rule", Some(rule));
        let method = text(request.header_value(":method"));
        field(&mut line, "method", method.as_deref());
        let host = text(request.header_value(":authority"));
        field(&mut line, "host", host.as_deref());
        let path = text(request.header_value(":path"));
        field(&mut line, "path", path.as_deref());
        field(
            &mut line,
            "client",
            client.map(|c| c.to_string()).as_deref(),
        );
        field(&mut line, "user_agent", user_agent.as_deref());
        if suppressed > 0 {
            line.push_str(",\"suppressed_before\":");
            line.push_str(&suppressed.to_string());
        }
        line.push('}');
        line
    }
}
