//! "One request, one view" (issue 14) as a property test: random path rules
//! (allow, drop, log; `all` / `any` / `not` trees) on random request targets
//! built from the spellings routers and backends read differently. The
//! invariant and its oracle live in `fuzz/src/views.rs`, shared with the
//! `views` fuzz target: an allow verdict holds on every reading of the path;
//! a drop rule that holds on some reading drops the request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "../fuzz/src/views.rs"]
mod views;

use proptest::prelude::*;
use views::{Cond, Rule};

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = (
        prop::sample::select(vec!["exact", "prefix", "suffix", "contains", "regex"]),
        prop::sample::select(views::PATTERNS),
        prop::sample::select(views::REGEXES),
        any::<bool>(),
    )
        .prop_map(|(op, pattern, regex, ci)| Cond::Leaf {
            op,
            pattern: if op == "regex" { regex } else { pattern }.to_string(),
            case_insensitive: ci,
        });
    leaf.prop_recursive(3, 10, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Cond::All),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Cond::Any),
            inner.prop_map(|c| Cond::Not(Box::new(c))),
        ]
    })
}

fn rules() -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(
        (prop::sample::select(vec!["drop", "allow", "log"]), cond())
            .prop_map(|(action, cond)| Rule { action, cond }),
        1..5,
    )
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(views::PATH_TOKENS), 0..8)
        .prop_map(|t| format!("/{}", t.concat()).into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn allow_holds_on_every_reading_and_a_drop_on_any(rules in rules(), targets in prop::collection::vec(target(), 8)) {
        let checker = views::Checker::new(&rules).unwrap();
        for target in &targets {
            if let Err(violation) = checker.check(target) {
                prop_assert!(false, "{}", violation);
            }
        }
    }
}

/// The issue's cases, by hand: the invariant holds, and the oracle sees what
/// it must (so a broken oracle cannot pass everything).
#[test]
fn the_issue_cases_hold_and_the_oracle_is_not_vacuous() {
    let healthz = Rule {
        action: "allow",
        cond: Cond::Leaf {
            op: "exact",
            pattern: "/healthz".into(),
            case_insensitive: false,
        },
    };
    let admin = Rule {
        action: "drop",
        cond: Cond::Leaf {
            op: "prefix",
            pattern: "/admin".into(),
            case_insensitive: false,
        },
    };
    let rules = [healthz, admin];
    for target in [
        &b"/admin/..%2fhealthz"[..],
        b"/admin%2f%2e%2e%2fx",
        b"/admin/x%2f..%2f..",
        b"/admin%5c..%5cx",
        b"/admin\\..\\x",
        b"/admin/.%2e/x",
        b"/foo/..;/admin",
        b"/healthz",
        b"/x/%252e%252e/healthz",
    ] {
        views::check(&rules, target).unwrap();
    }
    assert!(views::readings(b"/admin/..%2fhealthz").contains(&b"/healthz".to_vec()));
    assert!(views::readings(b"/admin/..%2fhealthz").contains(&b"/admin/..%2fhealthz".to_vec()));
    assert!(views::readings(b"/foo/..;/admin").contains(&b"/admin".to_vec()));
}
