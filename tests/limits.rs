//! Every limit in docs/configuration.md "Limits", through the public API:
//! at the limit a configuration loads; one past it, it is refused with an
//! error that names the offending field.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use drop444::engine::{ConfigError, Engine};
use serde_json::{json, Value};

fn load(config: &Value) -> Result<Engine, ConfigError> {
    Engine::from_json(config.to_string().as_bytes())
}

fn refused(config: &Value) -> ConfigError {
    match load(config) {
        Ok(_) => panic!("accepted a configuration over a limit"),
        Err(e) => e,
    }
}

/// 100,000 rules in all, the four built-in host rules included: 99,996 of
/// yours load, 99,997 do not.
#[test]
fn rule_count() {
    let rules = |n: usize| json!({"rules": vec![json!({"header": "x", "present": true}); n]});
    let engine = load(&rules(99_996)).unwrap();
    // Three host rules are active by default (host-not-allowed needs an allowlist).
    assert_eq!(engine.rules().count(), 99_999);
    let err = refused(&rules(99_997));
    assert_eq!(err.path(), "rules");
    assert!(err.message().contains("more than 100000 rules"), "{err}");
}

/// A preset is one rule, however many entries it has.
#[test]
fn presets_count_as_one_rule() {
    let mut rules = vec![json!({"header": "x", "present": true}); 99_995];
    rules.push(json!({"name": "s", "preset": "scanners"}));
    assert!(load(&json!({"rules": rules})).is_ok());
}

#[test]
fn nesting_depth() {
    let nest = |depth: usize| {
        let mut c = json!({"header": "x", "present": true});
        for _ in 0..depth {
            c = json!({"not": c});
        }
        json!({"rules": [c]})
    };
    assert!(load(&nest(32)).is_ok());
    let err = refused(&nest(33));
    assert_eq!(err.path(), format!("rules[0]{}", ".not".repeat(33)));
    assert!(err.message().contains("deeper than 32"), "{err}");
    // Far deeper than serde_json's own recursion limit (128): an error, no
    // stack overflow (the text is built flat: a deep `Value` would overflow
    // this test's own stack when serialised).
    let deep = format!(
        r#"{{"rules":[{}{{"header":"x","present":true}}{}]}}"#,
        r#"{"not":"#.repeat(100_000),
        "}".repeat(100_000)
    );
    let err = Engine::from_json(deep.as_bytes()).unwrap_err();
    assert!(err.message().contains("recursion limit"), "{err}");
}

#[test]
fn one_pattern() {
    for op in ["exact", "prefix", "suffix", "contains", "regex"] {
        let at = |n: usize| json!({"rules": [{"header": "x", op: "a".repeat(n)}]});
        assert!(load(&at(8192)).is_ok(), "{op} at 8 KiB");
        let err = refused(&at(8193));
        assert_eq!(err.path(), format!("rules[0].{op}"));
        assert!(err.message().contains("longer than 8192"), "{err}");
    }
    let err = refused(&json!({"rules": [{"header": "x", "in": ["a", "b".repeat(8193)]}]}));
    assert_eq!(err.path(), "rules[0].in[1]");
}

/// 16 MiB of patterns in all (the built-in host rules use a few bytes of it).
#[test]
fn all_patterns_together() {
    let rules = |n: usize, last: usize| {
        let rules: Vec<Value> = (0..n)
            .map(|i| {
                let len = if i + 1 == n { last } else { 8192 };
                let pattern = format!("{i:05}{}", "p".repeat(len - 5));
                // `in` sets are hash sets: cheap to build, so the test is fast.
                json!({"field": "method", "in": [pattern]})
            })
            .collect();
        json!({"rules": rules})
    };
    // 2,047 × 8 KiB + 8 KiB − 64 bytes: just under 16 MiB with the host rules.
    if let Err(e) = load(&rules(2048, 8192 - 64)) {
        panic!("just under 16 MiB of patterns refused: {e}");
    }
    let err = refused(&rules(2048, 8192));
    assert_eq!(err.path(), "rules[2047].in[0]");
    assert!(err.message().contains("16777216"), "{err}");
}

#[test]
fn compiled_regex_size() {
    let err = refused(&json!({"rules": [{"header": "x", "regex": "a{1000}{1000}"}]}));
    assert_eq!(err.path(), "rules[0].regex");
    assert!(err.message().contains("size limit"), "{err}");
    // Each regex fits alone; together on one subject they do not. The error
    // names `rules` (the set is per subject, not per rule) and says why.
    let one = "[a-z]{100}[0-9]{100}[a-z]{100}";
    let set: Vec<Value> = (0..200)
        .map(|_| json!({"header": "x", "regex": one}))
        .collect();
    match load(&json!({"rules": set})) {
        Ok(_) => println!("200 such regexes fit in one set"),
        Err(err) => {
            assert_eq!(err.path(), "rules");
            assert!(
                err.message().contains("too large to compile together"),
                "{err}"
            );
        }
    }
}

#[test]
fn names_and_settings() {
    let name =
        |n: usize| json!({"rules": [{"name": "n".repeat(n), "header": "x", "present": true}]});
    assert!(load(&name(64)).is_ok());
    assert_eq!(refused(&name(65)).path(), "rules[0].name");
    assert_eq!(
        refused(&json!({"log": {"max_per_second": 100_001}})).path(),
        "log.max_per_second"
    );
    assert_eq!(
        refused(&json!({"log": {"user_agent_max": 8193}})).path(),
        "log.user_agent_max"
    );
    assert_eq!(
        refused(&json!({"stats": {"prefix": "p".repeat(65)}})).path(),
        "stats.prefix"
    );
}

/// docs/configuration.md "Limits" shows every constant of
/// `drop444::engine::limits` with its value (the table is the docs' mirror
/// of that file: change one, this fails until the other follows).
#[test]
fn docs_table_mirrors_limits() {
    use drop444::engine::limits::*;
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let table = docs
        .split("\n## Limits\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Limits section");
    let row = |label: &str| -> &str {
        table
            .lines()
            .find(|l| l.starts_with(&format!("| {label}")))
            .unwrap_or_else(|| panic!("no row `{label}` in the Limits table"))
    };
    let thousands = |n: usize| {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    let expect = [
        ("rules", thousands(MAX_RULES)),
        ("nesting", MAX_DEPTH.to_string()),
        ("one pattern", format!("{} KiB", MAX_PATTERN_LEN / 1024)),
        (
            "all patterns",
            format!("{} MiB", MAX_PATTERN_BYTES / (1024 * 1024)),
        ),
        (
            "compiled regex",
            format!("{} MiB", REGEX_SIZE_LIMIT / (1024 * 1024)),
        ),
        ("rate-limit buckets", thousands(MAX_SLOTS as usize)),
        ("rule name", format!("{MAX_RULE_NAME} characters")),
        (
            "`log.max_per_second`",
            thousands(MAX_LOG_PER_SECOND as usize),
        ),
        (
            "`log.user_agent_max`",
            thousands(MAX_USER_AGENT_LOGGED as usize),
        ),
        ("host name", format!("{MAX_HOST_NAME} characters")),
    ];
    for (label, value) in expect {
        let line = row(label);
        assert!(line.contains(&value), "`{line}` should say {value}");
    }
}

/// Host names: 253 characters in `host.allow` load, 254 do not.
#[test]
fn host_name_length() {
    let name = |n: usize| format!("{}{}", "a.".repeat(126), "b".repeat(n - 252));
    assert_eq!(name(253).len(), 253);
    assert!(load(&json!({"host": {"allow": [name(253)]}})).is_ok());
    let err = refused(&json!({"host": {"allow": [name(254)]}}));
    assert_eq!(err.path(), "host.allow[0]");
}
