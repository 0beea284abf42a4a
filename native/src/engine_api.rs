//! Everything the native module uses from the drop444 engine, in one place,
//! so a change to the engine's API (e.g. `Verdict`) touches only this file.
//! The module itself holds no rule logic: every decision is the engine's.

pub use drop444::engine::counters::{Count, Total};
pub use drop444::engine::{
    join_lines, ConfigError, Engine, LogLevel, RateLimit, RateLimiter, RequestSource, Verdict,
};
pub use drop444::limiter::{key_hash, BucketState, TokenBucket};

use drop444::engine::{Decision, Scope};

/// What the module does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let it through (no rule, or an `allow` rule).
    Pass,
    /// Let it through, but report it as a drop (`mode: dry-run`).
    DryRun,
    /// Close the stream without a byte.
    DropStream,
    /// Close the whole downstream connection (`scope: connection`).
    DropConnection,
}

/// The engine's verdict and what the adapter does with it.
#[derive(Debug)]
pub struct Decided<'e> {
    pub outcome: Outcome,
    /// The deciding rule (drop, dry-run or allow).
    pub rule: Option<&'e str>,
    /// The engine's verdict: its counters ([`Verdict::counts`]) and the
    /// `log` rules that matched before the deciding rule.
    pub verdict: Verdict<'e>,
}

/// Parses and compiles a configuration (empty = built-in rules).
pub fn compile(json: &[u8]) -> Result<Engine, ConfigError> {
    Engine::from_json(json)
}

/// Decides one request; rate-limited rules take their tokens from `limiter`.
pub fn decide<'e>(
    engine: &'e Engine,
    source: &mut dyn RequestSource,
    limiter: &mut dyn RateLimiter,
) -> Decided<'e> {
    let verdict = engine.decide(source, limiter);
    let outcome = match (verdict.decision, verdict.rule) {
        (Decision::Pass | Decision::Allow { .. }, _) => Outcome::Pass,
        (Decision::DryRun { .. }, _) => Outcome::DryRun,
        (Decision::Drop { .. }, Some(rule)) if rule.scope == Scope::Connection => {
            Outcome::DropConnection
        }
        (Decision::Drop { .. }, _) => Outcome::DropStream,
    };
    Decided {
        outcome,
        rule: verdict.rule.map(|r| r.name),
        verdict,
    }
}

/// Counter names: the totals' prefix and `(rule, counter name)` per rule.
pub fn stat_names(engine: &Engine) -> (String, Vec<(&str, String)>) {
    engine.stat_names()
}

/// Short description for the "configuration loaded" line.
pub fn summary(engine: &Engine) -> String {
    format!(
        "{} rules, mode {:?}, reads {:?}",
        engine.rules().count(),
        engine.mode(),
        engine.header_names()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use drop444::engine::{HeaderList, NoLimits};

    fn decided(config: &str, request: HeaderList) -> (Outcome, Option<String>, bool) {
        let engine = compile(config.as_bytes()).unwrap();
        let mut request = request;
        let d = decide(&engine, &mut request, &mut NoLimits);
        let allowed = matches!(d.verdict.decision, drop444::engine::Decision::Allow { .. });
        (d.outcome, d.rule.map(str::to_string), allowed)
    }

    #[test]
    fn verdicts_map_to_what_the_adapter_does() {
        let kill = r#"{"rules": [{"name": "kill", "header": "x-kill", "present": true, "scope": "connection"},
                                 {"name": "ok", "action": "allow", "field": "path", "exact": "/ok"}]}"#;
        let host = |h: &str| HeaderList::new().with(":authority", h).with(":path", "/");
        assert_eq!(
            decided(kill, host("localhost")),
            (Outcome::Pass, None, false)
        );
        assert_eq!(
            decided(kill, host("127.0.0.1")),
            (Outcome::DropStream, Some("host-ip-literal".into()), false)
        );
        assert_eq!(
            decided(kill, host("localhost").with("x-kill", "1")),
            (Outcome::DropConnection, Some("kill".into()), false)
        );
        let ok = HeaderList::new()
            .with(":authority", "127.0.0.1")
            .with(":path", "/ok");
        assert_eq!(decided(kill, ok), (Outcome::Pass, Some("ok".into()), true));
        assert_eq!(
            decided(r#"{"mode": "dry-run"}"#, host("127.0.0.1")),
            (Outcome::DryRun, Some("host-ip-literal".into()), false)
        );
    }

    #[test]
    fn a_bad_configuration_names_the_field() {
        let err = compile(br#"{"rules": [{"header": "a", "contians": "b"}]}"#).unwrap_err();
        assert!(err.to_string().starts_with("rules[0].contians"), "{err}");
    }
}
