//! Structure-aware inputs for the fuzz targets: a configuration generator
//! that reaches compilation (not only JSON errors) and a request generator
//! whose values are built from tokens the rules also use, so matches happen.
//!
//! Everything here is bounded: nesting is cut at `MAX_GEN_DEPTH` (a little
//! over the engine's limit of 32, so the limit itself is exercised), lists
//! at a few dozen items.

use arbitrary::{Arbitrary, Result, Unstructured};
use drop444::engine::{Action, Decision, Engine, HeaderList, Mode, NoLimits, Verdict};
use serde_json::{json, Map, Value};

/// Deeper than the engine accepts (32), so the depth error is reached too.
const MAX_GEN_DEPTH: usize = 36;
const MAX_ITEMS: usize = 24;

/// Header names shared by rules and requests (plus arbitrary ones).
const HEADER_NAMES: &[&str] = &[
    ":authority",
    ":path",
    ":method",
    ":scheme",
    "host",
    "user-agent",
    "x-probe",
    "x-forwarded-for",
    "accept",
    "cookie",
    "X-Mixed-Case",
];

/// Fragments values and patterns are built from: path tricks, list
/// separators, encodings, host and address shapes, case variants.
const TOKENS: &[&str] = &[
    "a",
    "A",
    "b",
    "B",
    "z",
    "0",
    "9",
    "/",
    "//",
    "\\",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2f",
    "%5c",
    "%25",
    "%",
    "%zz",
    ",",
    ", ",
    " ",
    "\t",
    "?",
    "&",
    "=",
    "+",
    "#",
    ":",
    ";",
    "-",
    "_",
    "*",
    "admin",
    "ADMIN",
    "sqlmap",
    "SqlMap",
    "evil",
    "bad-",
    ".php",
    "example.com",
    "EXAMPLE.com",
    ".example.com",
    "localhost",
    "127.0.0.1",
    "127.1",
    "0x7f000001",
    "[::1]",
    "::1",
    ":80",
    ":99999",
    "10.0.0.1",
    "2001:db8::1",
    "GET",
    "get",
    "POST",
    "CONNECT",
    "http",
    "https",
    "HTTP/1.0",
    "HTTP/1.1",
    "HTTP/2",
    "union select",
    "id",
    "é",
    "\u{0}",
];

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> Result<&'a str> {
    u.choose(from).copied()
}

/// A string of 1..=6 tokens (or a few arbitrary chars).
fn text(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(1, 8)? {
        let s: String = u.arbitrary()?;
        return Ok(s.chars().take(64).collect());
    }
    let n = u.int_in_range(1..=6)?;
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(pick(u, TOKENS)?);
    }
    Ok(s)
}

/// A byte value for a request: tokens, with raw bytes (non-UTF-8, NUL,
/// CR/LF) mixed in now and then.
fn bytes(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let n = u.int_in_range(0..=8)?;
    let mut v = Vec::new();
    for _ in 0..n {
        match u.int_in_range(0..=9)? {
            0 => v.push(u.arbitrary::<u8>()?),
            1 => v.extend_from_slice(&[0xff, 0xfe, 0x80]),
            _ => v.extend_from_slice(pick(u, TOKENS)?.as_bytes()),
        }
    }
    Ok(v)
}

fn regex(u: &mut Unstructured<'_>, depth: usize) -> Result<String> {
    const ATOMS: &[&str] = &[
        "a",
        "b",
        ".",
        "\\d",
        "\\w",
        "\\s",
        "[a-c]",
        "[^/]",
        "^",
        "$",
        "/",
        "\\.",
        ",",
        "é",
        "\\x00",
        "\\xff",
        "(?i)",
        "(?-u:\\xff)",
        "\\b",
        "x{2,3}",
    ];
    if depth > 4 {
        return Ok(pick(u, ATOMS)?.to_string());
    }
    Ok(match u.int_in_range(0..=8)? {
        0 => {
            // Raw text: mostly invalid, exercises the error path.
            let s: String = u.arbitrary()?;
            s.chars().take(32).collect()
        }
        1 => format!("({})", regex(u, depth + 1)?),
        2 => format!("{}|{}", regex(u, depth + 1)?, regex(u, depth + 1)?),
        3 => format!("{}*", regex(u, depth + 1)?),
        4 => format!("(?:{})+", regex(u, depth + 1)?),
        5 => format!("{}{}", regex(u, depth + 1)?, regex(u, depth + 1)?),
        6 => regex_escape(&text(u)?),
        7 => "a{1000}{1000}".to_string(), // too large: the size limit must say so
        _ => pick(u, ATOMS)?.to_string(),
    })
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~ ".contains(c) {
            out.push('\\');
        }
        if c == '\u{0}' {
            out.push_str("\\x00");
        } else {
            out.push(c);
        }
    }
    out
}

/// A configuration, as JSON. Mostly valid-shaped so compilation is reached;
/// now and then deliberately wrong (unknown keys, two operators, bad types).
#[derive(Debug)]
pub struct GenConfig(pub Value);

impl<'a> Arbitrary<'a> for GenConfig {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut doc = Map::new();
        if u.ratio(1, 4)? {
            doc.insert(
                "mode".into(),
                json!(*u.choose(&["enforce", "dry-run", "x"])?),
            );
        }
        if u.ratio(1, 4)? {
            doc.insert(
                "client_ip".into(),
                json!({"xff_trusted_hops": u.int_in_range(0..=3u32)?}),
            );
        }
        if u.ratio(1, 2)? {
            let mut host = Map::new();
            if u.arbitrary()? {
                let n = u.int_in_range(0..=4)?;
                let mut allow = Vec::new();
                for _ in 0..n {
                    allow.push(json!(match u.int_in_range(0..=3)? {
                        0 => text(u)?,
                        1 => format!("*.{}", pick(u, &["example.com", "a.b", "localhost"])?),
                        _ => pick(
                            u,
                            &[
                                "example.com",
                                "localhost",
                                "10.0.0.1",
                                "[::1]",
                                "::1",
                                "a.b"
                            ]
                        )?
                        .to_string(),
                    }));
                }
                host.insert("allow".into(), Value::Array(allow));
            }
            for key in ["drop_missing", "drop_invalid", "drop_ip_literal"] {
                if u.arbitrary()? {
                    host.insert(key.into(), json!(u.arbitrary::<bool>()?));
                }
            }
            if u.ratio(1, 8)? {
                host.insert("scope".into(), json!(*u.choose(&["stream", "connection"])?));
            }
            doc.insert("host".into(), Value::Object(host));
        }
        if u.ratio(1, 8)? {
            doc.insert(
                "log".into(),
                json!({"level": *u.choose(&["info", "off", "debug"])?,
                       "max_per_second": u.int_in_range(0..=200_000u32)?}),
            );
        }
        let n = u.int_in_range(0..=MAX_ITEMS)?;
        let mut rules = Vec::new();
        for i in 0..n {
            let mut rule = condition(u, 0)?;
            if let Value::Object(map) = &mut rule {
                if u.ratio(3, 4)? {
                    let name = if u.ratio(1, 16)? {
                        pick(u, &["host-missing", "r0", "bad name", ""])?.to_string()
                    } else {
                        format!("r{i}")
                    };
                    map.insert("name".into(), json!(name));
                }
                if u.arbitrary()? {
                    map.insert(
                        "action".into(),
                        json!(*u.choose(&["drop", "allow", "log"])?),
                    );
                }
                if u.ratio(1, 8)? {
                    map.insert("scope".into(), json!(*u.choose(&["stream", "connection"])?));
                }
            }
            rules.push(rule);
        }
        doc.insert("rules".into(), Value::Array(rules));
        Ok(GenConfig(Value::Object(doc)))
    }
}

/// One condition: a leaf, a combinator or a preset.
pub fn condition(u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    let kind = if depth >= MAX_GEN_DEPTH {
        0
    } else {
        u.int_in_range(0..=9)?
    };
    Ok(match kind {
        5 | 6 => {
            let n = u.int_in_range(1..=3)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(condition(u, depth + 1)?);
            }
            json!({ *u.choose(&["all", "any"])?: items })
        }
        7 => json!({"not": condition(u, depth + 1)?}),
        8 => json!({"preset": *u.choose(&["scanners", "exploit-paths", "bad-bots", "nope"])?}),
        9 if u.ratio(1, 4)? => {
            // Something malformed: unknown key, two operators, wrong type.
            match u.int_in_range(0..=3)? {
                0 => json!({"header": "a", "contians": "x"}),
                1 => json!({"header": "a", "exact": "x", "prefix": "y"}),
                2 => json!({"field": "path", "present": true}),
                _ => json!({"all": []}),
            }
        }
        _ => leaf(u)?,
    })
}

fn leaf(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut map = Map::new();
    let field = match u.int_in_range(0..=3)? {
        0 | 1 => {
            let name = if u.ratio(1, 10)? {
                text(u)?
            } else {
                pick(u, HEADER_NAMES)?.to_string()
            };
            map.insert("header".into(), json!(name));
            None
        }
        2 => {
            map.insert(
                "query".into(),
                json!(pick(u, &["id", "q", "a b", "é", "x"])?),
            );
            None
        }
        _ => {
            let f = pick(
                u,
                &[
                    "path",
                    "path_and_query",
                    "method",
                    "scheme",
                    "protocol",
                    "host",
                    "host_kind",
                    "client_ip",
                ],
            )?;
            map.insert("field".into(), json!(f));
            Some(f)
        }
    };
    let op = u.int_in_range(0..=7)?;
    let value = match (field, op) {
        (Some("client_ip"), _) => {
            let n = u.int_in_range(1..=3)?;
            let mut nets = Vec::new();
            for _ in 0..n {
                nets.push(json!(pick(
                    u,
                    &[
                        "10.0.0.0/8",
                        "127.0.0.1",
                        "::1",
                        "2001:db8::/32",
                        "0.0.0.0/0",
                        "::/0",
                        "10.0.0.1/8",
                        "x"
                    ]
                )?));
            }
            map.insert("in".into(), Value::Array(nets));
            return Ok(Value::Object(map));
        }
        (_, 0) => ("exact", json!(text(u)?)),
        (_, 1) => ("prefix", json!(text(u)?)),
        (_, 2) => ("suffix", json!(text(u)?)),
        (_, 3) => ("contains", json!(text(u)?)),
        (_, 4) => ("regex", json!(regex(u, 0)?)),
        (_, 5) => {
            let n = u.int_in_range(1..=4)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(json!(text(u)?));
            }
            ("in", Value::Array(items))
        }
        (_, 6) => ("present", json!(true)),
        _ => ("absent", json!(true)),
    };
    map.insert(value.0.into(), value.1);
    if !matches!(value.0, "present" | "absent") && u.arbitrary()? {
        map.insert("case_insensitive".into(), json!(true));
    }
    Ok(Value::Object(map))
}

/// A request as the filter would see it: header lines (repeated, pseudo,
/// non-UTF-8), an optional peer address and protocol.
#[derive(Debug, Clone)]
pub struct GenRequest(pub HeaderList);

impl<'a> Arbitrary<'a> for GenRequest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut req = HeaderList::new();
        let n = u.int_in_range(0..=MAX_ITEMS)?;
        for _ in 0..n {
            let name = if u.ratio(1, 10)? {
                text(u)?
            } else {
                pick(u, HEADER_NAMES)?.to_string()
            };
            req = req.with(&name, bytes(u)?);
        }
        if u.ratio(3, 4)? {
            let peer = match u.int_in_range(0..=5)? {
                0 => "127.0.0.1:5555".to_string(),
                1 => "[::1]:80".to_string(),
                2 => "10.1.2.3".to_string(),
                3 => "[::ffff:10.0.0.1]:1".to_string(),
                4 => "2001:db8::7".to_string(),
                _ => text(u)?,
            };
            req = req.peer(&peer);
        }
        if u.ratio(3, 4)? {
            let protocol = match u.int_in_range(0..=4)? {
                0 => "HTTP/1.0".to_string(),
                1 => "HTTP/1.1".to_string(),
                2 => "HTTP/2".to_string(),
                3 => "HTTP/3".to_string(),
                _ => text(u)?,
            };
            req = req.protocol(&protocol);
        }
        Ok(GenRequest(req))
    }
}

/// Invariants every verdict must satisfy. Panics (a fuzz finding) if not.
pub fn check_verdict(engine: &Engine, request: &HeaderList) {
    let mut first = request.clone();
    let verdict = engine.decide(&mut first, &mut NoLimits);
    let rules: Vec<(&str, Action)> = engine.rules().collect();
    let position = |name: &str| {
        rules
            .iter()
            .position(|(n, _)| *n == name)
            .unwrap_or_else(|| {
                panic!("verdict names rule {name:?}, which the engine does not have")
            })
    };
    let action = |name: &str| rules[position(name)].1;
    match verdict.decision {
        Decision::Pass => {}
        Decision::Allow { rule } => {
            assert_eq!(
                action(rule),
                Action::Allow,
                "allowed by non-allow rule {rule}"
            );
            assert!(verdict.logged.is_empty(), "allow must not report log rules");
        }
        Decision::Drop { rule } | Decision::DryRun { rule } => {
            assert_eq!(
                action(rule),
                Action::Drop,
                "dropped by non-drop rule {rule}"
            );
            let dry = matches!(verdict.decision, Decision::DryRun { .. });
            assert_eq!(dry, engine.mode() == Mode::DryRun, "drop kind vs mode");
        }
    }
    // Logged rules: log actions, strictly increasing, all before the decider.
    let mut last = None;
    for name in &verdict.logged {
        let at = position(name);
        assert_eq!(action(name), Action::Log, "logged a non-log rule {name}");
        assert!(
            last.is_none_or(|l| at > l),
            "logged out of order: {:?}",
            verdict.logged
        );
        last = Some(at);
    }
    if let (Some(l), Decision::Drop { rule } | Decision::DryRun { rule }) = (last, verdict.decision)
    {
        assert!(l < position(rule), "logged a rule after the deciding one");
    }
    // Every item is read at most once, and only headers the engine declared.
    let mut seen = std::collections::HashSet::new();
    for item in &first.fetched {
        assert!(
            seen.insert(item.clone()),
            "{item} read twice: {:?}",
            first.fetched
        );
        if !item.starts_with('<') {
            assert!(
                engine.header_names().iter().any(|h| h == item),
                "read undeclared header {item}"
            );
        }
    }
    // Deterministic: the same request decides the same way.
    let mut again = request.clone();
    let second: Verdict<'_> = engine.decide(&mut again, &mut NoLimits);
    assert_eq!(verdict, second, "decide is not deterministic");
    // Rules the engine knows about resolve.
    for (name, _) in &rules {
        assert!(engine.rule_source(name).is_some(), "no source for {name}");
    }
}

pub mod views;

/// A generated path condition for the `views` target (depth at most 3).
pub fn path_cond(u: &mut Unstructured<'_>, depth: usize) -> Result<views::Cond> {
    use views::Cond;
    let kind = if depth >= 3 {
        0
    } else {
        u.int_in_range(0..=5)?
    };
    Ok(match kind {
        3 | 4 => {
            let n = u.int_in_range(1..=3)?;
            let mut c = Vec::new();
            for _ in 0..n {
                c.push(path_cond(u, depth + 1)?);
            }
            if kind == 3 {
                Cond::All(c)
            } else {
                Cond::Any(c)
            }
        }
        5 => Cond::Not(Box::new(path_cond(u, depth + 1)?)),
        _ => {
            let op = *u.choose(&["exact", "prefix", "suffix", "contains", "regex"])?;
            let pattern = if op == "regex" {
                (*u.choose(views::REGEXES)?).to_string()
            } else {
                (*u.choose(views::PATTERNS)?).to_string()
            };
            Cond::Leaf {
                op,
                pattern,
                case_insensitive: u.arbitrary()?,
            }
        }
    })
}

/// Input of the `views` target: a few path rules, then the request target
/// verbatim (the rest of the input, so dictionary entries land in it as is).
#[derive(Debug)]
pub struct ViewsInput {
    pub rules: Vec<views::Rule>,
    pub target: Vec<u8>,
}

impl ViewsInput {
    /// Rules from the front of the input, the target from the rest.
    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        let mut u = Unstructured::new(data);
        let n = u.int_in_range(1..=4)?;
        let mut rules = Vec::new();
        for _ in 0..n {
            rules.push(views::Rule {
                action: *u.choose(&["drop", "allow", "log"])?,
                cond: path_cond(&mut u, 0)?,
            });
        }
        let mut target = b"/".to_vec();
        target.extend(
            u.take_rest()
                .iter()
                .filter(|b| !matches!(b, b',' | b' ' | b'\t')),
        );
        Ok(ViewsInput { rules, target })
    }
}
