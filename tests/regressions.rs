//! Regression tests for engine bugs found by the hardening work (issue 9:
//! fuzzing, the differential test, the limits review). Each test names the
//! bug it pins; see docs/hardening.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use drop444::engine::{Decision, Engine, HeaderList};

fn decide(config: &str, request: &HeaderList) -> String {
    let engine = Engine::from_json(config.as_bytes()).unwrap();
    let verdict = engine.decide(&mut request.clone());
    match verdict.decision {
        Decision::Drop { rule } => format!("drop {rule}"),
        other => format!("{other:?}"),
    }
}

fn host() -> HeaderList {
    HeaderList::new().with(":authority", "example.com")
}

/// A case-insensitive regex used to be validated only after wrapping it in
/// `(?i:…)`, so `zz)|(` (invalid) compiled as `(?i:zz)|()`, which matches
/// every request: a broken configuration loaded and dropped everything.
#[test]
fn invalid_regex_is_rejected_with_case_insensitive_too() {
    for ci in [false, true] {
        let config = format!(
            r#"{{"rules":[{{"header":"x-p","regex":"zz)|(","case_insensitive":{ci}}}]}}"#
        );
        let err = Engine::from_json(config.as_bytes()).unwrap_err();
        assert_eq!(err.path(), "rules[0].regex", "case_insensitive {ci}");
        assert!(err.message().contains("invalid regex"), "{err}");
    }
    // A valid one still works both ways.
    let ok = r#"{"rules":[{"name":"r","header":"x-p","regex":"^EVIL$","case_insensitive":true}]}"#;
    assert_eq!(decide(ok, &host().with("x-p", "evil")), "drop r");
}
