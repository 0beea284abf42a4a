//! The evaluation plan: the order in which one decision runs the subject
//! indexes and the rules that are not flat, and the walk that finds the first
//! matching rule.

use super::config::Action;
use super::facts::{self, Facts};
use super::lists;
use super::rules::{self, Node, Rule};
use super::{Engine, RuleRef};

/// One step of a decision: run a subject index (deciding every flat rule on
/// it at once) or evaluate one other rule. Steps are sorted by the first rule
/// they can decide, so evaluation stops as soon as no later step can beat the
/// rule already found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unit {
    Index {
        index: usize,
        first_rule: u32,
    },
    Rule(u32),
    /// Consecutive rules whose conditions are host tables
    /// ([`rules::HostTable`]: the built-in host rules), decided together
    /// from one classification of the Host: `Engine::host_group[start..][..len]`,
    /// in rule order.
    Host {
        first_rule: u32,
        start: u32,
        len: u32,
    },
}

impl Unit {
    pub(crate) fn first_rule(self) -> u32 {
        match self {
            Unit::Index { first_rule, .. } | Unit::Host { first_rule, .. } => first_rule,
            Unit::Rule(rule) => rule,
        }
    }
}

/// Builds the evaluation plan for the rules whose action passes `phase`;
/// the members of its [`Unit::Host`] groups are appended to `host_group`.
/// Rules are walked in order and an index becomes a unit at the first flat
/// rule that uses it, so the units come out sorted by the first rule each
/// can decide without a sort (a rule is either flat, giving index units, or
/// a rule unit itself, so no two kinds of unit share a first rule).
pub(crate) fn plan(
    rules: &[Rule],
    phase: impl Fn(Action) -> bool,
    host_group: &mut Vec<u32>,
) -> Vec<Unit> {
    let mut planned: Vec<bool> = Vec::new();
    let mut units = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if !phase(rule.action) {
            continue;
        }
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        if rule.is_flat() {
            let mut used = Vec::new();
            rules::indexes_of(&rule.node, &mut used);
            for index in used {
                if planned.len() <= index {
                    planned.resize(index.saturating_add(1), false);
                }
                if let Some(seen @ false) = planned.get_mut(index) {
                    *seen = true;
                    units.push(Unit::Index {
                        index,
                        first_rule: i,
                    });
                }
            }
        } else {
            units.push(Unit::Rule(i));
        }
    }
    group_host_rules(rules, units, host_group)
}

/// Is this rule decided by a host table alone (no rate limit, no list)?
fn host_only(rule: &Rule) -> bool {
    rule.limit.is_none() && rule.lists.is_empty() && matches!(rule.node, Node::HostTable(_))
}

/// Replaces each run of two or more consecutive `Unit::Rule`s of host-only
/// rules by one `Unit::Host`.
fn group_host_rules(rules: &[Rule], units: Vec<Unit>, host_group: &mut Vec<u32>) -> Vec<Unit> {
    let is_host = |u: &Unit| match u {
        Unit::Rule(r) => rules.get(*r as usize).is_some_and(host_only),
        _ => false,
    };
    let mut out = Vec::with_capacity(units.len());
    let mut at = 0usize;
    while let Some(unit) = units.get(at) {
        let run = units
            .get(at..)
            .unwrap_or_default()
            .iter()
            .take_while(|u| is_host(u))
            .count();
        if run < 2 {
            out.push(*unit);
            at = at.saturating_add(1);
            continue;
        }
        let start = u32::try_from(host_group.len()).unwrap_or(u32::MAX);
        for u in units.get(at..at.saturating_add(run)).unwrap_or_default() {
            host_group.push(u.first_rule());
        }
        out.push(Unit::Host {
            first_rule: unit.first_rule(),
            start,
            len: u32::try_from(run).unwrap_or(0),
        });
        at = at.saturating_add(run);
    }
    out
}

/// What a rule's condition says on one request (see [`Engine::condition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// It does not match (or only a missing list with `on_missing: pass`
    /// would make it match).
    No,
    /// It matches (the rule's rate limit is not checked here).
    Yes,
    /// A list that has not loaded yet decides it, and that list's
    /// `on_missing` is `drop` or `refuse`: the rule matches because the list
    /// is missing. The list's id.
    Missing(u32),
}

impl Engine {
    /// Evaluates a rule's condition on `facts`, lists that have not loaded
    /// yet included: if a missing list decides this request (the condition
    /// differs with the list's conditions true and false), that list's
    /// `on_missing` says what the rule does. The one place of these
    /// semantics, for a request ([`Engine::first_match`]) and at accept.
    pub(crate) fn condition(&self, rule: &Rule, every: bool, facts: &mut Facts<'_, '_>) -> Reading {
        let Some(id) = facts.missing_list(&rule.lists) else {
            return if facts.eval(&rule.node, every) {
                Reading::Yes
            } else {
                Reading::No
            };
        };
        match facts.eval_assuming(&rule.node, every) {
            Some(true) => Reading::Yes,
            Some(false) => Reading::No,
            None => {
                let hit = self
                    .lists
                    .get(id as usize)
                    .is_some_and(|d| d.on_missing != lists::OnMissing::Pass);
                if hit {
                    Reading::Missing(id)
                } else {
                    Reading::No
                }
            }
        }
    }

    /// The first (lowest-index) rule of the plan that matches and is not a
    /// `log` rule; `log` rules matching before it are pushed to `logged`.
    pub(crate) fn first_match<'e>(
        &'e self,
        plan: &[Unit],
        allow_phase: bool,
        facts: &mut Facts<'_, '_>,
        logged: &mut Vec<RuleRef<'e>>,
    ) -> Option<RuleRef<'e>> {
        if plan.is_empty() {
            return None;
        }
        let mut best: Option<u32> = None;
        let mut log_hits: Vec<u32> = Vec::new();
        for unit in plan {
            if best.is_some_and(|b| unit.first_rule() > b) {
                break;
            }
            let mut consider = |rule: u32, best: &mut Option<u32>| {
                if best.is_some_and(|b| rule >= b) {
                    return;
                }
                match self.rules.get(rule as usize).map(|r| r.action) {
                    Some(Action::Log) => log_hits.push(rule),
                    Some(_) => *best = Some(rule),
                    None => {}
                }
            };
            match *unit {
                Unit::Index { index, .. } => {
                    for &leaf in facts.hits(index, allow_phase) {
                        if let Some(&rule) = self.leaf_rule.get(leaf as usize) {
                            if self.flat_in_phase(rule, allow_phase) {
                                consider(rule, &mut best);
                            }
                        }
                    }
                }
                Unit::Host { start, len, .. } => {
                    let from = start as usize;
                    let group = self
                        .host_group
                        .get(from..from.saturating_add(len as usize))
                        .unwrap_or_default();
                    // One classification for the group; a table lookup per
                    // rule, the allowlist only where it decides.
                    let seen = facts.host_form();
                    let kind = facts::kind_slot(seen);
                    for &rule in group {
                        if best.is_some_and(|b| rule >= b) {
                            break;
                        }
                        let matched = match self.rules.get(rule as usize).map(|r| &r.node) {
                            Some(Node::HostTable(table)) => {
                                table.value(kind, || facts.host_allowed(table, seen))
                            }
                            _ => false,
                        };
                        if matched {
                            consider(rule, &mut best);
                        }
                    }
                }
                Unit::Rule(rule) => {
                    let matched = self.rules.get(rule as usize).is_some_and(|r| {
                        match self.condition(r, allow_phase, facts) {
                            Reading::No => false,
                            Reading::Missing(id) => {
                                facts.push_missing(rule, id);
                                true
                            }
                            Reading::Yes => {
                                r.limit.as_ref().is_none_or(|limit| facts.over_limit(limit))
                            }
                        }
                    });
                    if matched {
                        consider(rule, &mut best);
                    }
                }
            }
        }
        if !log_hits.is_empty() {
            log_hits.sort_unstable();
            log_hits.dedup();
            for rule in log_hits {
                if best.is_none_or(|b| rule < b) {
                    logged.extend(self.rule(rule));
                }
            }
        }
        best.and_then(|b| self.rule(b))
    }

    /// Is this a flat rule (decided by index hits alone) of the given phase?
    /// Index hits also report leaves of other rules, which are skipped here.
    fn flat_in_phase(&self, rule: u32, allow_phase: bool) -> bool {
        self.flat.get(rule as usize).is_some_and(|flat| *flat)
            && self
                .rules
                .get(rule as usize)
                .is_some_and(|r| (r.action == Action::Allow) == allow_phase)
    }
}
