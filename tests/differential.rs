//! Differential test: the compiled engine (Aho-Corasick automata, RegexSets,
//! hash sets, the ordered evaluation plan) decides exactly as a naive
//! reference evaluator written here from `docs/configuration.md` alone:
//! straightforward loops over the rules in order, one regex at a time,
//! substring scans for literals.
//!
//! Random configurations (every subject and operator, case flags, `all` /
//! `any` / `not`, presets, allow / log / drop actions, the host policy,
//! dry-run, trusted XFF hops) against random requests (repeated headers,
//! pseudo-headers, path tricks, non-UTF-8 bytes). `PROPTEST_CASES` raises the
//! count (default here: 2,000 configurations × 8 requests).
//!
//! Shared on purpose (not under test here, covered by the engine's own
//! tests): the Host classification (`classify_host`), which decides what is
//! a name, an IP literal or invalid.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::net::IpAddr;

use drop444::engine::{classify_host, Decision, Engine, HeaderList, HostForm, NoLimits};
use proptest::prelude::*;
use regex::bytes::RegexBuilder;
use serde_json::{json, Value};

// ---------------------------------------------------------------- requests

/// A request: header lines as sent (repeated allowed), peer, protocol.
#[derive(Debug, Clone)]
struct Req {
    lines: Vec<(String, Vec<u8>)>,
    peer: Option<String>,
    protocol: Option<String>,
}

impl Req {
    fn source(&self) -> HeaderList {
        let mut list = HeaderList::new();
        for (name, value) in &self.lines {
            list = list.with(name, value);
        }
        if let Some(peer) = &self.peer {
            list = list.peer(peer);
        }
        if let Some(protocol) = &self.protocol {
            list = list.protocol(protocol);
        }
        list
    }

    /// All lines of a header joined with `,` (what Envoy hands over).
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        let name = name.to_ascii_lowercase();
        let mut out: Option<Vec<u8>> = None;
        for (n, v) in &self.lines {
            if n.to_ascii_lowercase() == name {
                match &mut out {
                    None => out = Some(v.clone()),
                    Some(acc) => {
                        acc.push(b',');
                        acc.extend_from_slice(v);
                    }
                }
            }
        }
        out
    }
}

// --------------------------------------------------- reference: request view

fn decode(raw: &[u8], plus: bool) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if plus && raw[i] == b'+' { b' ' } else { raw[i] });
        i += 1;
    }
    out
}

/// The dot-segment step every path reading ends with (docs): split on `/`
/// (and on `\` when it is a separator), drop empty and `.` segments, `..`
/// removes the one before (never above the root), re-join with a leading
/// `/`, keeping a trailing `/`.
fn segments(decoded: &[u8], backslash: bool) -> Vec<u8> {
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut dir = false;
    for part in decoded.split(|b| *b == b'/' || (backslash && *b == b'\\')) {
        dir = false;
        if part.is_empty() || part == b"." {
            dir = true;
        } else if part == b".." {
            stack.pop();
            dir = true;
        } else {
            stack.push(part.to_vec());
        }
    }
    let mut out = Vec::new();
    for seg in &stack {
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if out.is_empty() || dir {
        out.push(b'/');
    }
    out
}

/// The main reading as the docs list it: decode once, `\` is `/`, runs of
/// `/` collapse, `.` / `..` segments go (never above the root).
fn normalise(path: &[u8]) -> Vec<u8> {
    segments(&decode(path, false), true)
}

/// Every reading of a raw path, as the docs' table lists them (duplicates
/// included: they change nothing).
fn path_readings(raw: &[u8]) -> Vec<Vec<u8>> {
    let unreserved = {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'%' && i + 2 < raw.len() {
                if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                    let c = h * 16 + l;
                    if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                        out.push(c);
                        i += 3;
                        continue;
                    }
                }
            }
            out.push(raw[i]);
            i += 1;
        }
        out
    };
    // `;` parameters: from a `;` to the end of its segment.
    let mut stripped = Vec::new();
    for seg in raw.split_inclusive(|b| *b == b'/' || *b == b'\\') {
        let end = seg.iter().position(|b| *b == b';');
        match end {
            Some(at) => {
                stripped.extend_from_slice(&seg[..at]);
                if let Some(sep) = seg.last().filter(|b| **b == b'/' || **b == b'\\') {
                    stripped.push(*sep);
                }
            }
            None => stripped.extend_from_slice(seg),
        }
    }
    vec![
        normalise(raw),
        raw.to_vec(),
        segments(&unreserved, true),
        segments(&decode(raw, false), false),
        normalise(&stripped),
        normalise(&decode(raw, false)),
    ]
}

fn target(req: &Req) -> (Vec<u8>, Option<Vec<u8>>) {
    let t = req.header(":path").unwrap_or_else(|| b"/".to_vec());
    match t.iter().position(|b| *b == b'?') {
        Some(q) => (t[..q].to_vec(), Some(t[q + 1..].to_vec())),
        None => (t, None),
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !ows(b)).map_or(start, |e| e + 1);
    &v[start..end]
}

fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(trim(text)).ok()?;
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
}

/// The client address: `Ok(None)` when there is none, `Err(())` when the
/// trusted `X-Forwarded-For` entry is not an address (unknown).
fn client_ip(req: &Req, hops: u32) -> Result<Option<IpAddr>, ()> {
    let peer = req.peer.as_deref().and_then(|p| parse_ip(p.as_bytes()));
    if hops == 0 {
        return Ok(peer);
    }
    let Some(xff) = req.header("x-forwarded-for") else {
        return Ok(peer);
    };
    let entries: Vec<&[u8]> = xff.split(|b| *b == b',').collect();
    if entries.len() < hops as usize {
        return Ok(peer);
    }
    parse_ip(entries[entries.len() - hops as usize])
        .map(Some)
        .ok_or(())
}

/// The readings of a subject for this request (each a list of values), and
/// whether values are lists (headers).
fn readings(cond: &Value, req: &Req) -> (Vec<Vec<Vec<u8>>>, bool) {
    if let Some(h) = cond["header"].as_str() {
        return (vec![req.header(h).into_iter().collect()], true);
    }
    if let Some(q) = cond["query"].as_str() {
        let (_, query) = target(req);
        let mut out = Vec::new();
        // form-decoded, percent-decoded with `+` kept, raw
        for mode in 0..3 {
            let read = |part: &[u8]| match mode {
                0 => decode(part, true),
                1 => decode(part, false),
                _ => part.to_vec(),
            };
            let mut values = Vec::new();
            for pair in query.clone().unwrap_or_default().split(|b| *b == b'&') {
                if pair.is_empty() {
                    continue;
                }
                let (n, v) = match pair.iter().position(|b| *b == b'=') {
                    Some(e) => (&pair[..e], &pair[e + 1..]),
                    None => (pair, &b""[..]),
                };
                if read(n) == q.as_bytes() {
                    values.push(read(v));
                }
            }
            out.push(values);
        }
        return (out, false);
    }
    let field = cond["field"].as_str().unwrap();
    let authority = req.header(":authority");
    let form = classify_host(authority.as_deref());
    let one = |v: Option<Vec<u8>>| vec![v.into_iter().collect::<Vec<_>>()];
    let r = match field {
        "path" => path_readings(&target(req).0)
            .into_iter()
            .map(|p| vec![p])
            .collect(),
        "path_and_query" => {
            let (p, q) = target(req);
            let join = |mut v: Vec<u8>, q: &Option<Vec<u8>>| {
                if let Some(q) = q {
                    v.push(b'?');
                    v.extend_from_slice(q);
                }
                v
            };
            let mut out: Vec<Vec<Vec<u8>>> = path_readings(&p)
                .into_iter()
                .map(|r| vec![join(r, &q)])
                .collect();
            out.push(vec![req.header(":path").unwrap_or_else(|| b"/".to_vec())]);
            let decoded_q = q.as_ref().map(|q| decode(q, false));
            out.push(vec![join(normalise(&p), &decoded_q)]);
            out
        }
        "method" => {
            let m = req.header(":method");
            let upper = m.as_ref().map(|m| m.to_ascii_uppercase());
            vec![m.into_iter().collect(), upper.into_iter().collect()]
        }
        "scheme" => one(req.header(":scheme")),
        "protocol" => one(req.protocol.clone().map(String::into_bytes)),
        "host_kind" => one(Some(
            match form {
                HostForm::Missing | HostForm::Empty => "missing",
                HostForm::Invalid => "invalid",
                HostForm::IpLiteral(_) => "ip",
                HostForm::Name(_) => "name",
            }
            .into(),
        )),
        "host" => one(match form {
            HostForm::Name(n) => Some(n.into_bytes()),
            HostForm::IpLiteral(Some(ip)) => Some(ip.to_string().into_bytes()),
            HostForm::IpLiteral(None) => {
                Some(trim(authority.as_deref().unwrap_or_default()).to_ascii_lowercase())
            }
            _ => None,
        }),
        other => panic!("field {other}"),
    };
    (r, false)
}

// ------------------------------------------------------ reference: operators

fn fold(v: &[u8], ci: bool) -> Vec<u8> {
    if ci {
        v.to_ascii_lowercase()
    } else {
        v.to_vec()
    }
}

/// Is `at` where a list element starts (start of value, or after `,` and OWS)?
fn element_start(v: &[u8], at: usize) -> bool {
    let before = trim(&v[..at]);
    let raw_before = &v[..at];
    before.is_empty()
        || raw_before
            .iter()
            .rev()
            .find(|b| **b != b' ' && **b != b'\t')
            == Some(&b',')
}

fn element_end(v: &[u8], at: usize) -> bool {
    let after = &v[at..];
    trim(after).is_empty() || after.iter().find(|b| **b != b' ' && **b != b'\t') == Some(&b',')
}

/// A literal operator on one value. On a list (a header), an occurrence
/// counts when it sits on element boundaries as the operator requires.
fn literal(op: &str, pattern: &[u8], v: &[u8], ci: bool, list: bool) -> bool {
    let (p, v) = (fold(pattern, ci), fold(v, ci));
    if !list {
        return match op {
            "exact" => v == p,
            "prefix" => v.starts_with(&p),
            "suffix" => v.ends_with(&p),
            _ => v.windows(p.len()).any(|w| w == p.as_slice()),
        };
    }
    (0..=v.len().saturating_sub(p.len()))
        .filter(|&s| v.len() >= p.len() && v[s..s + p.len()] == p[..])
        .any(|s| {
            let (starts, ends) = (element_start(&v, s), element_end(&v, s + p.len()));
            match op {
                "exact" => starts && ends,
                "prefix" => starts,
                "suffix" => ends,
                _ => true,
            }
        })
}

fn elements(v: &[u8]) -> Vec<&[u8]> {
    v.split(|b| *b == b',').map(trim).collect()
}

fn host_allowed(list: &[Value], form: &HostForm) -> bool {
    list.iter()
        .filter_map(Value::as_str)
        .any(|entry| match form {
            HostForm::Name(name) => {
                let entry = entry.to_ascii_lowercase();
                let entry = entry.strip_suffix('.').unwrap_or(&entry);
                match entry.strip_prefix("*.") {
                    Some(suffix) => name.ends_with(&format!(".{suffix}")),
                    None => name == entry,
                }
            }
            HostForm::IpLiteral(Some(ip)) => {
                let bare = entry.trim_start_matches('[').trim_end_matches(']');
                bare.parse::<IpAddr>().ok() == Some(*ip)
            }
            _ => false,
        })
}

/// Is `at` a path-segment start (value start, after `/`, or on a `/`)?
fn segment_start(v: &[u8], at: usize) -> bool {
    at == 0 || v.get(at) == Some(&b'/') || v[at - 1] == b'/'
}

/// Is `at` a path-segment end (value end, before `/` `;` `?`, or after `/`)?
fn segment_end(v: &[u8], at: usize) -> bool {
    at == v.len() || b"/;?".contains(&v[at]) || (at > 0 && v[at - 1] == b'/')
}

/// A literal with `"boundary": "segment"` (paths only): an occurrence placed
/// as the operator says that starts and ends on segment boundaries.
fn segment_literal(op: &str, pattern: &[u8], v: &[u8], ci: bool) -> bool {
    let (p, v) = (fold(pattern, ci), fold(v, ci));
    if v.len() < p.len() {
        return false;
    }
    (0..=v.len() - p.len())
        .filter(|&s| v[s..s + p.len()] == p[..])
        .filter(|&s| match op {
            "prefix" => s == 0,
            "suffix" => s + p.len() == v.len(),
            _ => true,
        })
        .any(|s| segment_start(&v, s) && segment_end(&v, s + p.len()))
}

/// A condition on any reading (`every` false: drop and log rules) or on
/// every reading (`every`: allow rules); `not` swaps them (docs).
fn eval(cond: &Value, req: &Req, hops: u32, every: bool) -> bool {
    if let Some(all) = cond["all"].as_array() {
        return all.iter().all(|c| eval(c, req, hops, every));
    }
    if let Some(any) = cond["any"].as_array() {
        return any.iter().any(|c| eval(c, req, hops, every));
    }
    if !cond["not"].is_null() {
        return !eval(&cond["not"], req, hops, !every);
    }
    if let Some(name) = cond["preset"].as_str() {
        return preset(name)
            .iter()
            .any(|entry| eval(&entry["match"], req, hops, every));
    }
    let ci = cond["case_insensitive"].as_bool().unwrap_or(false);
    if cond["field"] == "client_ip" {
        let ip = match client_ip(req, hops) {
            Ok(Some(ip)) => ip.to_canonical(),
            Ok(None) => return false,
            // Unknown: any address for a drop, none for an allow.
            Err(()) => return !every,
        };
        return cond["in"].as_array().unwrap().iter().any(|n| {
            let n = n.as_str().unwrap();
            match n.parse::<ipnet::IpNet>() {
                Ok(net) => net.contains(&ip),
                Err(_) => n.parse::<IpAddr>().ok() == Some(ip),
            }
        });
    }
    if cond["field"] == "host" && cond["in"].is_array() {
        let form = classify_host(req.header(":authority").as_deref());
        return host_allowed(cond["in"].as_array().unwrap(), &form);
    }
    let (readings, list) = readings(cond, req);
    let quantify = |per_reading: &dyn Fn(&Vec<Vec<u8>>) -> bool| {
        if every {
            readings.iter().all(per_reading)
        } else {
            readings.iter().any(per_reading)
        }
    };
    if cond["present"] == true {
        return quantify(&|vals| !vals.is_empty());
    }
    if cond["absent"] == true {
        return quantify(&|vals| vals.is_empty());
    }
    let matches = |v: &Vec<u8>| {
        for op in ["exact", "prefix", "suffix", "contains"] {
            if let Some(p) = cond[op].as_str() {
                if cond["boundary"] == "segment" {
                    return segment_literal(op, p.as_bytes(), v, ci);
                }
                return literal(op, p.as_bytes(), v, ci, list);
            }
        }
        if let Some(items) = cond["in"].as_array() {
            return items
                .iter()
                .any(|i| literal("exact", i.as_str().unwrap().as_bytes(), v, ci, list));
        }
        let re = RegexBuilder::new(cond["regex"].as_str().unwrap())
            .unicode(false)
            .case_insensitive(ci)
            .build()
            .unwrap();
        re.is_match(v) || (list && elements(v).iter().any(|e| re.is_match(e)))
    };
    // Any reading, any value; or every reading with a value, every value.
    if every {
        readings
            .iter()
            .all(|vals| !vals.is_empty() && vals.iter().all(&matches))
    } else {
        readings.iter().any(|vals| vals.iter().any(&matches))
    }
}

fn preset(name: &str) -> Vec<Value> {
    let path = format!("{}/presets/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    file["entries"].as_array().unwrap().clone()
}

/// The host policy as the docs' table writes it.
fn host_rules(host: &Value) -> Vec<(String, String, Value)> {
    let flag = |k: &str| host[k].as_bool().unwrap_or(true);
    let allow = host["allow"].as_array().cloned().unwrap_or_default();
    let kind = |k: &str| json!({"field": "host_kind", "exact": k});
    let not_allowed = json!({"not": {"field": "host", "in": allow}});
    let mut out = Vec::new();
    let mut push = |name: &str, cond: Value| out.push((name.to_string(), "drop".to_string(), cond));
    if flag("drop_missing") {
        push("host-missing", kind("missing"));
    }
    if flag("drop_invalid") {
        push("host-invalid", kind("invalid"));
    }
    if flag("drop_ip_literal") {
        if allow.is_empty() {
            push("host-ip-literal", kind("ip"));
        } else {
            push("host-ip-literal", json!({"all": [kind("ip"), not_allowed]}));
        }
    }
    if !allow.is_empty() {
        push(
            "host-not-allowed",
            json!({"all": [{"field": "host_kind", "in": ["name", "ip"]}, not_allowed]}),
        );
    }
    out
}

/// (decision kind, rule, logged) as the docs' precedence describes it.
fn reference(config: &Value, req: &Req) -> (&'static str, Option<String>, Vec<String>) {
    let hops = config["client_ip"]["xff_trusted_hops"]
        .as_u64()
        .unwrap_or(0) as u32;
    let mut rules = host_rules(&config["host"]);
    for (i, r) in config["rules"].as_array().unwrap().iter().enumerate() {
        let name = r["name"]
            .as_str()
            .map_or(format!("rule-{i}"), str::to_string);
        let action = r["action"].as_str().unwrap_or("drop").to_string();
        let mut cond = r.clone();
        let map = cond.as_object_mut().unwrap();
        map.remove("name");
        map.remove("action");
        rules.push((name, action, cond));
    }
    for (name, action, cond) in &rules {
        if action == "allow" && eval(cond, req, hops, true) {
            return ("allow", Some(name.clone()), Vec::new());
        }
    }
    let mut logged = Vec::new();
    for (name, action, cond) in &rules {
        if action == "allow" || !eval(cond, req, hops, false) {
            continue;
        }
        if action == "log" {
            logged.push(name.clone());
            continue;
        }
        let kind = if config["mode"] == "dry-run" {
            "dry-run"
        } else {
            "drop"
        };
        return (kind, Some(name.clone()), logged);
    }
    ("pass", None, logged)
}

// --------------------------------------------------------------- generators

/// Fragments of values and patterns: encodings, separators, case variants,
/// host and address shapes, so that rules and requests meet often.
const TOKENS: &[&str] = &[
    "a",
    "A",
    "b",
    "B",
    "/",
    "//",
    "\\",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2f",
    "%5C",
    "%5c",
    "%252e",
    "%2F",
    ";",
    "..;",
    "%3b",
    "unknown",
    "%41",
    "%",
    "%g1",
    ",",
    ", ",
    " ",
    "\t",
    "?",
    "&",
    "=",
    "+",
    ":",
    "-",
    "admin",
    "ADMIN",
    "evil",
    "x",
    "X",
    "example.com",
    "Example.COM",
    "localhost",
    "127.0.0.1",
    "10.0.0.7",
    "[::1]",
    ":8080",
    "GET",
    "get",
    "http",
    "sqlmap",
    "id",
    "é",
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 1..4).prop_map(|t| t.concat())
}

fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
            1 => prop::sample::select(vec![vec![0u8], vec![0xff], vec![0xc3], vec![b'\r']]),
        ],
        0..5,
    )
    .prop_map(|parts| parts.concat())
}

fn regex_pattern() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        3 => text().prop_map(|t| regex::escape(&t)),
        1 => prop::sample::select(vec!["^", "$", ".", "[a-b]", "\\d", "[^/]+", "(?i)a", "x*", "\\x00", "\\xff"])
            .prop_map(str::to_string),
    ];
    prop::collection::vec(atom, 1..4).prop_flat_map(|atoms| {
        let joined = atoms.concat();
        prop_oneof![
            Just(joined.clone()),
            text().prop_map(move |t| format!("{joined}|{}", regex::escape(&t))),
        ]
    })
}

const HEADERS: &[&str] = &[
    "user-agent",
    "x-probe",
    "X-Probe",
    "accept",
    ":authority",
    ":path",
    ":method",
    "x-forwarded-for",
];

fn leaf() -> impl Strategy<Value = Value> {
    let literal_op = prop::sample::select(vec!["exact", "prefix", "suffix", "contains"]);
    let generic = prop_oneof![
        prop::sample::select(HEADERS).prop_map(|h| ("header", h)),
        prop::sample::select(vec!["id", "x", "a b"]).prop_map(|q| ("query", q)),
        prop::sample::select(vec![
            "path",
            "path_and_query",
            "method",
            "scheme",
            "protocol",
            "host",
            "host_kind"
        ])
        .prop_map(|f| ("field", f)),
    ];
    let ops = (
        generic,
        literal_op,
        text(),
        regex_pattern(),
        prop::collection::vec(text(), 1..4),
        0..8u8,
        any::<bool>(),
    );
    let plain = ops.prop_map(|((key, subject), lit, t, re, items, op, ci)| {
        let mut m = serde_json::Map::new();
        m.insert(key.into(), json!(subject));
        let listy = key != "field";
        match op {
            0..=3 => {
                m.insert(lit.into(), json!(t));
                let pathy = subject == "path" || subject == "path_and_query";
                if pathy && lit != "exact" && t.len() % 2 == 0 {
                    m.insert("boundary".into(), json!("segment"));
                }
            }
            4 => {
                m.insert("regex".into(), json!(re));
            }
            5 if subject == "host" => {
                m.insert(
                    "in".into(),
                    json!(["example.com", "*.example.com", "127.0.0.1", "[::1]"]),
                );
                return Value::Object(m);
            }
            5 => {
                m.insert("in".into(), json!(items));
            }
            6 if listy => {
                m.insert("present".into(), json!(true));
                return Value::Object(m);
            }
            7 if listy => {
                m.insert("absent".into(), json!(true));
                return Value::Object(m);
            }
            _ => {
                m.insert("contains".into(), json!(t));
            }
        }
        if ci {
            m.insert("case_insensitive".into(), json!(true));
        }
        Value::Object(m)
    });
    let ip = prop::collection::vec(
        prop::sample::select(vec![
            "10.0.0.0/8",
            "127.0.0.1",
            "::1",
            "2001:db8::/32",
            "192.0.2.0/24",
        ]),
        1..3,
    )
    .prop_map(|nets| json!({"field": "client_ip", "in": nets}));
    prop_oneof![9 => plain, 1 => ip]
}

fn condition() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|c| json!({"all": c})),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|c| json!({"any": c})),
            inner.prop_map(|c| json!({"not": c})),
        ]
    })
}

fn rule() -> impl Strategy<Value = Value> {
    let cond = prop_oneof![
        20 => condition(),
        1 => prop::sample::select(vec!["scanners", "exploit-paths", "bad-bots"]).prop_map(|p| json!({"preset": p})),
    ];
    (
        cond,
        prop::sample::select(vec!["drop", "drop", "drop", "allow", "log"]),
        any::<bool>(),
    )
        .prop_map(|(mut c, action, explicit)| {
            let m = c.as_object_mut().unwrap();
            if action != "drop" || explicit {
                m.insert("action".into(), json!(action));
            }
            c
        })
}

fn config() -> impl Strategy<Value = Value> {
    let host = prop_oneof![
        Just(Value::Null),
        (
            prop::collection::vec(prop::sample::select(vec!["example.com", "*.example.com", "localhost", "127.0.0.1", "::1"]), 0..3),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(allow, m, i, l)| json!({"allow": allow, "drop_missing": m, "drop_invalid": i, "drop_ip_literal": l})),
    ];
    (
        prop::collection::vec(rule(), 0..8),
        host,
        any::<bool>(),
        0..3u32,
    )
        .prop_map(|(rules, host, dry, hops)| {
            let rules: Vec<Value> = rules
                .into_iter()
                .enumerate()
                .map(|(i, mut r)| {
                    if i % 3 != 0 {
                        r.as_object_mut()
                            .unwrap()
                            .insert("name".into(), json!(format!("r{i}")));
                    }
                    r
                })
                .collect();
            let mut c = json!({"rules": rules, "client_ip": {"xff_trusted_hops": hops}});
            if !host.is_null() {
                c["host"] = host;
            }
            if dry {
                c["mode"] = json!("dry-run");
            }
            c
        })
}

fn request() -> impl Strategy<Value = Req> {
    let line = (prop::sample::select(HEADERS), value_bytes()).prop_map(|(n, v)| (n.to_string(), v));
    let path = prop::collection::vec(prop::sample::select(TOKENS), 0..6)
        .prop_map(|t| format!("/{}", t.concat()).into_bytes());
    (
        prop::collection::vec(line, 0..6),
        prop::option::of(path),
        prop::option::of(prop::sample::select(vec![
            "example.com",
            "a.example.com",
            "127.0.0.1",
            "[::1]:80",
            "localhost",
            "bad host",
            "",
            "127.1",
        ])),
        prop::option::of(prop::sample::select(vec![
            "10.1.2.3:4",
            "[::1]:5",
            "192.0.2.9",
            "[::ffff:10.0.0.1]:1",
            "junk",
        ])),
        prop::option::of(prop::sample::select(vec!["HTTP/1.0", "HTTP/1.1", "HTTP/2"])),
    )
        .prop_map(|(mut lines, path, host, peer, protocol)| {
            if let Some(p) = path {
                lines.push((":path".into(), p));
            }
            if let Some(h) = host {
                lines.push((":authority".into(), h.as_bytes().to_vec()));
            }
            Req {
                lines,
                peer: peer.map(str::to_string),
                protocol: protocol.map(str::to_string),
            }
        })
}

fn engine_says(engine: &Engine, req: &Req) -> (&'static str, Option<String>, Vec<String>) {
    let verdict = engine.decide(&mut req.source(), &mut NoLimits);
    let logged = verdict.logged.iter().map(|s| s.to_string()).collect();
    let (kind, rule) = match verdict.decision {
        Decision::Pass => ("pass", None),
        Decision::Allow { rule } => ("allow", Some(rule.to_string())),
        Decision::Drop { rule } => ("drop", Some(rule.to_string())),
        Decision::DryRun { rule } => ("dry-run", Some(rule.to_string())),
    };
    (kind, rule, logged)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_decides_as_the_naive_reference(
        config in config(),
        requests in prop::collection::vec(request(), 8),
    ) {
        let text = config.to_string();
        let engine = Engine::from_json(text.as_bytes())
            .unwrap_or_else(|e| panic!("generator made an invalid config: {e}\n{text}"));
        for req in &requests {
            let want = reference(&config, req);
            let got = engine_says(&engine, req);
            prop_assert_eq!(&got, &want, "config {}\nrequest {:?}", text, req);
        }
    }
}

/// The reference itself is checked on cases worked out by hand from the
/// docs, so a wrong reference cannot agree with a wrong engine unnoticed.
#[test]
fn reference_agrees_with_the_documented_examples() {
    let req = |lines: &[(&str, &[u8])]| Req {
        lines: lines
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect(),
        peer: Some("10.0.0.1:1".into()),
        protocol: Some("HTTP/1.1".into()),
    };
    let config = json!({"rules": [
        {"name": "evil", "header": "x-probe", "exact": "evil"},
        {"name": "admin", "field": "path", "prefix": "/admin"},
    ]});
    let probe = req(&[
        (":authority", b"example.com"),
        ("x-probe", b"fine"),
        ("x-probe", b"evil"),
    ]);
    assert_eq!(reference(&config, &probe).1.as_deref(), Some("evil"));
    let path = req(&[(":authority", b"example.com"), (":path", b"/x/..//%61dmin")]);
    assert_eq!(reference(&config, &path).1.as_deref(), Some("admin"));
    let ip_host = req(&[(":authority", b"127.0.0.1")]);
    assert_eq!(
        reference(&config, &ip_host).1.as_deref(),
        Some("host-ip-literal")
    );
    let fine = req(&[(":authority", b"example.com"), (":path", b"/x/../ok")]);
    assert_eq!(reference(&config, &fine), ("pass", None, vec![]));
    // Every reading (docs table): Envoy routes these under /admin as written.
    for spelled in [
        &b"/administrator/../ok"[..],
        b"/admin/..%2fx",
        b"/admin%5c..%5cx",
        b"/foo/..;/admin",
    ] {
        let r = req(&[(":authority", b"example.com"), (":path", spelled)]);
        assert_eq!(reference(&config, &r).1.as_deref(), Some("admin"));
    }
    // An allow rule holds only on every reading.
    let allow = json!({"rules": [
        {"name": "healthz", "action": "allow", "field": "path", "exact": "/healthz"},
        {"name": "evil", "header": "x-probe", "exact": "evil"},
    ]});
    let exempt = req(&[(":path", b"/healthz"), ("x-probe", b"evil")]);
    assert_eq!(reference(&allow, &exempt).0, "allow");
    let detour = req(&[(":path", b"/admin/..%2fhealthz"), ("x-probe", b"evil")]);
    assert_eq!(
        reference(&allow, &detour).1.as_deref(),
        Some("host-missing")
    );
    assert_eq!(
        path_readings(b"/a/%252e%252e/b;x"),
        [
            &b"/a/%2e%2e/b;x"[..],
            b"/a/%252e%252e/b;x",
            b"/a/%252e%252e/b;x",
            b"/a/%2e%2e/b;x",
            b"/a/%2e%2e/b",
            b"/b;x"
        ]
    );
    let across = req(&[(":authority", b"example.com"), ("x-probe", b"x, a, b, y")]);
    let comma = json!({"rules": [{"name": "ab", "header": "x-probe", "exact": "a, b"}]});
    assert_eq!(reference(&comma, &across).1.as_deref(), Some("ab"));
    assert_eq!(normalise(b"\\admin"), b"/admin");
    assert_eq!(normalise(b"/./admin/"), b"/admin/");
    assert_eq!(normalise(b"/a/%252e"), b"/a/%2e");
    for (config, req) in [
        (&config, &probe),
        (&config, &path),
        (&comma, &across),
        (&config, &fine),
        (&allow, &exempt),
        (&allow, &detour),
    ] {
        let engine = Engine::from_json(config.to_string().as_bytes()).unwrap();
        assert_eq!(engine_says(&engine, req), reference(config, req));
    }
}

// A dense variant: header rules only, over a five-symbol alphabet, so that
// patterns and values collide all the time (list elements, commas, spaces,
// case). Rare shapes of the wide generator are common here.
const DENSE: &[&str] = &["a", "b", "A", ",", " "];

fn dense_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(DENSE), 1..5).prop_map(|t| t.concat())
}

fn dense_rule() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["exact", "prefix", "suffix", "contains", "regex", "in"]),
        dense_text(),
        prop::collection::vec(dense_text(), 1..3),
        any::<bool>(),
        prop::sample::select(vec!["drop", "log", "allow"]),
    )
        .prop_map(|(op, t, items, ci, action)| {
            let value = match op {
                "in" => json!(items),
                "regex" => json!(format!("^{}$|^{}", regex::escape(&t), regex::escape(&t))),
                _ => json!(t),
            };
            json!({"header": "x-p", op: value, "case_insensitive": ci, "action": action})
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn dense_header_rules_decide_as_the_reference(
        rules in prop::collection::vec(dense_rule(), 1..5),
        values in prop::collection::vec(prop::collection::vec(dense_text(), 0..3), 8),
    ) {
        let rules: Vec<Value> = rules.into_iter().enumerate().map(|(i, mut r)| {
            r["name"] = json!(format!("r{i}"));
            r
        }).collect();
        let config = json!({"rules": rules});
        let engine = Engine::from_json(config.to_string().as_bytes()).unwrap();
        for lines in values {
            let mut req = Req { lines: vec![(":authority".into(), b"example.com".to_vec())], peer: None, protocol: None };
            req.lines.extend(lines.into_iter().map(|v| ("x-p".to_string(), v.into_bytes())));
            prop_assert_eq!(engine_says(&engine, &req), reference(&config, &req), "config {}\nrequest {:?}", config, req);
        }
    }
}
