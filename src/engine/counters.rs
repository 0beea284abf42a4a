//! The counters every adapter keeps, named and chosen in one place: the
//! totals (`<stat_prefix>.<name>`), and which counters a verdict moves. The
//! proxy-wasm adapter and the native module only map a [`Count`] to their
//! host's counter handle; neither names a counter nor decides what counts.

use super::{Decision, Verdict};

/// One total counter of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Total {
    Dropped,
    Passed,
    Allowed,
    DryRun,
    LogHits,
    Suppressed,
    ResetFailed,
    Fallback,
    RateLimited,
    Contention,
    Tarpitted,
    TarpitOverflow,
    RefusedAtAccept,
    /// Last: handed over after every other counter of the same requests, so
    /// a reader that sees it at N sees the rest of those N requests too.
    Seen,
}

impl Total {
    /// Every total, in the order adapters hand them to the host
    /// ([`Total::Seen`] last).
    pub const ALL: [Total; 14] = [
        Total::Dropped,
        Total::Passed,
        Total::Allowed,
        Total::DryRun,
        Total::LogHits,
        Total::Suppressed,
        Total::ResetFailed,
        Total::Fallback,
        Total::RateLimited,
        Total::Contention,
        Total::Tarpitted,
        Total::TarpitOverflow,
        Total::RefusedAtAccept,
        Total::Seen,
    ];

    /// The counter's name after the stat prefix.
    pub fn name(self) -> &'static str {
        match self {
            Total::Seen => "requests_seen",
            Total::Dropped => "requests_dropped",
            Total::Passed => "requests_passed",
            Total::Allowed => "requests_allowed",
            Total::DryRun => "dry_run_drops",
            Total::LogHits => "log_rule_hits",
            Total::Suppressed => "drop_logs_suppressed",
            Total::ResetFailed => "reset_failures",
            Total::Fallback => "fallback_responses",
            Total::RateLimited => "rate_limited",
            Total::Contention => "ratelimit_contention",
            Total::Tarpitted => "tarpitted",
            Total::TarpitOverflow => "tarpit_overflow",
            Total::RefusedAtAccept => "refused_at_accept",
        }
    }

    /// Its position in [`Total::ALL`] (for a table of handles).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One counter a verdict moves by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Total(Total),
    /// The per-rule counter of rule `id` ([`super::RuleRef::id`]).
    Rule(u32),
}

impl Verdict<'_> {
    /// The counters this verdict moves, one [`Count`] per increment:
    /// `requests_seen`; `requests_passed` (pass, allow, dry-run drop) or
    /// `requests_dropped`; `requests_allowed` for an allow, `dry_run_drops`
    /// for a dry-run drop; the deciding rule's counter; and for each `log`
    /// rule matched on the way, `log_rule_hits` and that rule's counter.
    /// Allocates nothing.
    pub fn counts(&self) -> impl Iterator<Item = Count> + '_ {
        let (outcome, extra) = match self.decision {
            Decision::Pass => (Total::Passed, None),
            Decision::Allow { .. } => (Total::Passed, Some(Total::Allowed)),
            Decision::DryRun { .. } => (Total::Passed, Some(Total::DryRun)),
            Decision::Drop { .. } => (Total::Dropped, None),
        };
        let totals = [Some(Total::Seen), Some(outcome), extra]
            .into_iter()
            .flatten()
            .map(Count::Total);
        let rule = self.rule.map(|r| Count::Rule(r.id));
        let logged = self
            .logged_rules
            .iter()
            .flat_map(|r| [Count::Total(Total::LogHits), Count::Rule(r.id)]);
        totals.chain(rule).chain(logged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, HeaderList, NoLimits};

    /// The counts of one decision, as counter names (`rule:<name>` for a
    /// rule's own counter).
    fn counts(config: &str, headers: &[(&str, &str)]) -> Vec<String> {
        let engine = Engine::from_json(config.as_bytes()).expect("valid configuration");
        let mut request = headers
            .iter()
            .fold(HeaderList::new(), |list, (name, value)| {
                list.with(name, value)
            });
        let verdict = engine.decide(&mut request, &mut NoLimits);
        verdict
            .counts()
            .map(|count| match count {
                Count::Total(total) => total.name().to_string(),
                Count::Rule(id) => format!("rule:{}", engine.rule(id).expect("a rule id").name),
            })
            .collect()
    }

    #[test]
    fn every_total_is_listed_once_in_index_order_with_seen_last() {
        for (at, total) in Total::ALL.iter().enumerate() {
            assert_eq!(total.index(), at, "{total:?}");
        }
        assert_eq!(Total::ALL.last(), Some(&Total::Seen));
        let mut names: Vec<&str> = Total::ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Total::ALL.len());
    }

    #[test]
    fn a_verdict_counts_its_outcome_its_rule_and_its_log_rules() {
        let config = r#"{"rules": [
            {"name": "seen-ua", "header": "user-agent", "contains": "bot", "action": "log"},
            {"name": "friend", "header": "x-friend", "exact": "yes", "action": "allow"},
            {"name": "scanner", "header": "user-agent", "contains": "sqlmap"}]}"#;
        let host = (":authority", "example.com");
        assert_eq!(
            counts(config, &[host, ("user-agent", "curl")]),
            ["requests_seen", "requests_passed"]
        );
        assert_eq!(
            counts(config, &[host, ("user-agent", "curl"), ("x-friend", "yes")]),
            [
                "requests_seen",
                "requests_passed",
                "requests_allowed",
                "rule:friend"
            ]
        );
        assert_eq!(
            counts(config, &[host, ("user-agent", "sqlmap bot")]),
            [
                "requests_seen",
                "requests_dropped",
                "rule:scanner",
                "log_rule_hits",
                "rule:seen-ua"
            ]
        );
        let dry = config.replace(r#"{"rules""#, r#"{"mode": "dry-run", "rules""#);
        assert_eq!(
            counts(&dry, &[host, ("user-agent", "sqlmap")]),
            [
                "requests_seen",
                "requests_passed",
                "dry_run_drops",
                "rule:scanner"
            ]
        );
    }
}
