//! The invariant of issue 14, "one request, one view", shared by the `views`
//! fuzz target (`fuzz/fuzz_targets/views.rs`) and the property test
//! `tests/views.rs` (which includes this file): for path rules and a raw
//! request target,
//!
//! - an **allow** verdict means the allow rule's condition holds on **every**
//!   reading of the path;
//! - a **drop** rule whose condition holds on **some** reading means the
//!   request is dropped, by that rule or an earlier one (or exempted by an
//!   allow rule); a **log** rule in that case is logged, or an earlier drop
//!   decided first.
//!
//! "Holds on a reading" is asked of the engine itself, independently of the
//! readings machinery: the same condition moved onto a plain header that
//! carries that one reading. The readings are listed from the documented
//! table (docs/configuration.md), through the public normalisation
//! functions. Header and path matching differ on `,`, space and tab (header
//! values are lists), so the oracle is not asked about a reading containing
//! one (they come from decoding `%2c`, `%20`, `%09`; targets are built
//! without them).

use drop444::engine::request::{normalize_path_as, split_target, PathReading, PATH_READINGS};
use drop444::engine::{Decision, Engine, HeaderList, NoLimits};
use serde_json::{json, Map, Value};

/// Fragments of request targets: every trick a router or backend reads
/// differently (also the fuzz dictionary's entries).
pub const PATH_TOKENS: &[&str] = &[
    "/", "//", "\\", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", ";", "..;", "%252e",
    "%252f", "%25", "%", "%3b", "%3f", "?", "=", "~", "%7e", "%41", "a", "A", "b", "x", "admin",
    "healthz", ".env",
];

/// Literal patterns rules use.
pub const PATTERNS: &[&str] = &[
    "/admin",
    "/healthz",
    "admin",
    "healthz",
    "/a",
    "/a/",
    "a",
    "/",
    ";",
    "..",
    "%2f",
    "/x",
    "\\",
    "/.env",
    "/admin/",
    "/healthz;",
];

/// Regexes rules use.
pub const REGEXES: &[&str] = &[
    "^/admin",
    "^/healthz$",
    "\\.\\.",
    "%2[fF]",
    "^/a/b$",
    ";",
    "^/$",
    "\\\\",
    "admin$",
];

/// A generated condition on the path.
#[derive(Debug, Clone)]
pub enum Cond {
    Leaf {
        op: &'static str,
        pattern: String,
        case_insensitive: bool,
    },
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    /// The condition as JSON, on the path field or (`header`) on `x-view`.
    pub fn json(&self, header: bool) -> Value {
        match self {
            Cond::Leaf {
                op,
                pattern,
                case_insensitive,
            } => {
                let mut m = Map::new();
                if header {
                    m.insert("header".into(), json!("x-view"));
                } else {
                    m.insert("field".into(), json!("path"));
                }
                m.insert((*op).into(), json!(pattern));
                if *case_insensitive {
                    m.insert("case_insensitive".into(), json!(true));
                }
                Value::Object(m)
            }
            Cond::All(c) => json!({"all": c.iter().map(|c| c.json(header)).collect::<Vec<_>>()}),
            Cond::Any(c) => json!({"any": c.iter().map(|c| c.json(header)).collect::<Vec<_>>()}),
            Cond::Not(c) => json!({"not": c.json(header)}),
        }
    }
}

/// A generated rule: `drop`, `allow` or `log`, and its condition.
#[derive(Debug, Clone)]
pub struct Rule {
    pub action: &'static str,
    pub cond: Cond,
}

fn host_off() -> Value {
    json!({"drop_missing": false, "drop_invalid": false, "drop_ip_literal": false})
}

/// Every reading of the target's path, as the docs' table lists them
/// (duplicates included: they change nothing).
pub fn readings(target: &[u8]) -> Vec<Vec<u8>> {
    let (raw, _) = split_target(target);
    let mut out = vec![raw.to_vec(), normalize_path_as(raw, PathReading::Decoded)];
    out.extend(PATH_READINGS.iter().map(|r| normalize_path_as(raw, *r)));
    out
}

/// The engine for a rule set, and one oracle per rule: the rule's
/// condition on header `x-view`.
pub struct Checker {
    config: Value,
    engine: Engine,
    rules: Vec<(&'static str, Engine)>,
}

impl Checker {
    /// Compiles the rules (and their oracles); an error names what was refused
    /// (no generated configuration is expected to be).
    pub fn new(rules: &[Rule]) -> Result<Self, String> {
        let named: Vec<Value> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut c = r.cond.json(false);
                c["name"] = json!(format!("r{i}"));
                c["action"] = json!(r.action);
                c
            })
            .collect();
        let config = json!({"host": host_off(), "rules": named});
        let engine = Engine::from_json(config.to_string().as_bytes())
            .map_err(|e| format!("generated configuration refused: {e}\n{config}"))?;
        let mut oracles = Vec::new();
        for rule in rules {
            let oracle_config = json!({"host": host_off(), "rules": [{"name": "o", "all": [rule.cond.json(true)]}]});
            let oracle = Engine::from_json(oracle_config.to_string().as_bytes())
                .map_err(|e| format!("oracle refused: {e}\n{oracle_config}"))?;
            oracles.push((rule.action, oracle));
        }
        Ok(Checker {
            config,
            engine,
            rules: oracles,
        })
    }

    /// Checks the invariant on one request target.
    pub fn check(&self, target: &[u8]) -> Result<(), String> {
        let config = &self.config;
        let verdict = self
            .engine
            .decide(&mut HeaderList::new().with(":path", target), &mut NoLimits);
        let index = |name: &str| name.trim_start_matches('r').parse::<usize>().ok();
        let views: Vec<Vec<u8>> = readings(target)
            .into_iter()
            .filter(|v| !v.iter().any(|b| matches!(b, b',' | b' ' | b'\t')))
            .collect();
        let shown = String::from_utf8_lossy(target);
        for (i, (action, oracle)) in self.rules.iter().enumerate() {
            let name = format!("r{i}");
            let holds = |v: &[u8]| {
                oracle
                    .decide(&mut HeaderList::new().with("x-view", v), &mut NoLimits)
                    .drop_rule()
                    .is_some()
            };
            if *action == "allow" {
                if verdict.decision == (Decision::Allow { rule: &name }) {
                    if let Some(v) = views.iter().find(|v| !holds(v)) {
                        return Err(format!(
                            "{shown:?} allowed by {name}, whose condition fails on the reading {:?}\n{config}",
                            String::from_utf8_lossy(v)
                        ));
                    }
                }
                continue;
            }
            let Some(v) = views.iter().find(|v| holds(v)) else {
                continue;
            };
            let logged = verdict.logged.contains(&name.as_str());
            let ok = match verdict.decision {
                Decision::Allow { .. } => true,
                Decision::Drop { rule } => {
                    index(rule).is_some_and(|j| j <= i || (*action == "log" && logged))
                }
                Decision::Pass | Decision::DryRun { .. } => *action == "log" && logged,
            };
            if !ok {
                return Err(format!(
                    "{shown:?}: {action} rule {name} holds on the reading {:?}, but the verdict is {verdict:?}\n{config}",
                    String::from_utf8_lossy(v)
                ));
            }
        }
        Ok(())
    }
}

/// [`Checker::check`] for one target.
pub fn check(rules: &[Rule], target: &[u8]) -> Result<(), String> {
    Checker::new(rules)?.check(target)
}
