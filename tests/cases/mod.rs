//! The shared decision table, `tests/cases/decisions.json`: one list of
//! configurations and requests with the expected outcome, run natively
//! through the engine (`tests/decisions.rs`), through the wasmtime host
//! harness (`tests/host/`) and through real Envoy (`tests/e2e/`), so every
//! engine is compared on the same cases.
//!
//! Every case is a request Envoy hands to the filter over HTTP/1.1: a Host
//! line is always sent (Envoy answers a request without one with 400 itself).

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    #[serde(rename = "//", default)]
    _comment: Vec<String>,
    pub groups: Vec<Group>,
}

/// Cases that share one plugin configuration (one Envoy, one VM).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    /// The plugin configuration: a JSON object, or a string taken verbatim
    /// (`""` = built-in rules).
    config: serde_json::Value,
    pub cases: Vec<Case>,
}

impl Group {
    /// The configuration text the host hands the plugin.
    pub fn config(&self) -> String {
        match &self.config {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Pass,
    Drop,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default = "get")]
    pub method: String,
    #[serde(default = "root")]
    pub path: String,
    /// The Host line's value (may be empty).
    pub authority: String,
    /// Further header lines, in order: `[name, value]`. A name may repeat.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    pub expect: Expect,
    /// The rule that drops it (`drop` only).
    #[serde(default)]
    pub rule: Option<String>,
}

fn get() -> String {
    "GET".into()
}

fn root() -> String {
    "/".into()
}

impl Case {
    /// `Some(rule)` for a drop, `None` for a pass.
    pub fn dropped_by(&self) -> Option<&str> {
        match self.expect {
            Expect::Pass => None,
            Expect::Drop => self.rule.as_deref(),
        }
    }

    /// The request as HTTP/1.1 bytes.
    pub fn http1(&self) -> Vec<u8> {
        let mut text = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method, self.path, self.authority
        );
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.into_bytes()
    }
}

pub fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases/decisions.json")
}

/// Reads and checks the table: unique names, and a rule exactly for drops.
pub fn load() -> Table {
    let text = std::fs::read_to_string(path()).expect("read tests/cases/decisions.json");
    let table: Table = serde_json::from_str(&text).expect("parse tests/cases/decisions.json");
    let mut names = std::collections::HashSet::new();
    for group in &table.groups {
        for case in &group.cases {
            let id = format!("{}/{}", group.name, case.name);
            assert!(names.insert(id.clone()), "duplicate case {id}");
            assert_eq!(
                case.rule.is_some(),
                case.expect == Expect::Drop,
                "{id}: a drop names its rule, a pass names none"
            );
        }
    }
    assert!(!names.is_empty(), "empty decision table");
    table
}
