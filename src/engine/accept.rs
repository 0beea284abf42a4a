//! Decisions made before a request exists: the `tarpit` of a rule, and the
//! rules an L4 adapter can apply when a connection is accepted, on nothing
//! but the peer address ("refuse at accept").
//!
//! A rule is decided at accept when it has `"scope": "connection"`, drops
//! (or logs), has no rate limit and no tarpit, and its condition reads only
//! `client_ip` (inline CIDRs with `in`, or a named list with `in_list`; with
//! `xff_trusted_hops` 0: the peer is the client). Such a rule would close
//! the connection on the first request anyway, whatever the request says; at
//! accept it is closed before a byte is read. The condition is evaluated by
//! the same code as for a request ([`Engine::condition`]), on a request view
//! that has only a peer address and the worker's list snapshots.
//!
//! A named list that has not loaded yet is handled as for a request: with
//! `on_missing: pass` its rule does not match. With `drop` or `refuse`, a
//! drop rule the missing list decides is not applied at accept: the
//! connection passes to the HTTP filter, which applies `on_missing` to its
//! first request (`refuse` is a 503, and there is no HTTP at accept to send
//! it on), and the decision at accept stops there, so that no later rule
//! refuses the connection in that rule's place.
//!
//! `allow` rules come first in a decision. An allow rule that reads only
//! `client_ip` is evaluated at accept too (a match lets the connection in);
//! an allow rule that reads anything else might exempt some request of the
//! connection, so with one in the configuration nothing is refused at accept
//! ([`AcceptRules::disabled_by`] names it) and the HTTP filter decides.

use std::sync::Arc;
use std::time::Duration;

use super::config::{Action, Scope};
use super::facts::Facts;
use super::lists::ListData;
use super::plan::Reading;
use super::rules::{Node, Rule, Subject};
use super::{Decision, Engine, RequestSource, RuleRef, Verdict};

/// The rules of one configuration decided at accept (see the module doc),
/// computed once per configuration by [`Engine::accept_rules`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptRules {
    /// Peer-only allow rules, in rule order.
    allow: Vec<u32>,
    /// Connection-scope, peer-only drop and log rules, in rule order.
    refuse: Vec<u32>,
    /// The allow rule that keeps every refusal in the HTTP filter.
    disabled_by: Option<String>,
}

impl AcceptRules {
    /// True if no connection can be refused at accept.
    pub fn is_empty(&self) -> bool {
        self.refuse.is_empty()
    }

    /// Names of the rules refused at accept.
    pub fn count(&self) -> usize {
        self.refuse.len()
    }

    /// An allow rule reading more than the client address, which keeps
    /// connection-scope `client_ip` rules in the HTTP filter.
    pub fn disabled_by(&self) -> Option<&str> {
        self.disabled_by.as_deref()
    }
}

/// Does this condition read nothing but the client address (inline CIDRs,
/// or a named list on `client_ip`)?
fn peer_only(node: &Node) -> bool {
    match node {
        Node::IpIn(_)
        | Node::InList {
            subject: Subject::ClientIp,
            ..
        } => true,
        Node::All(children) | Node::Any(children) => {
            !children.is_empty() && children.iter().all(peer_only)
        }
        Node::Not(child) => peer_only(child),
        _ => false,
    }
}

/// The snapshot of named list `id` on this worker, `None` until it has
/// loaded (what [`RequestSource::list`] answers for a request).
pub type ListLookup<'a> = &'a dyn Fn(u32) -> Option<Arc<ListData>>;

/// A request view with nothing but the peer address (and the lists).
struct PeerOnly<'a> {
    peer: &'a [u8],
    lists: ListLookup<'a>,
}

impl RequestSource for PeerOnly<'_> {
    fn header(&mut self, _name: &str, _out: &mut Vec<u8>) -> bool {
        false
    }
    fn peer_address(&mut self, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(self.peer);
        true
    }
    fn protocol(&mut self, _out: &mut Vec<u8>) -> bool {
        false
    }
    fn list(&self, id: u32) -> Option<Arc<ListData>> {
        (self.lists)(id)
    }
}

impl Engine {
    /// How long a drop by this rule is held before it is closed (`tarpit`).
    pub fn tarpit_of(&self, rule: RuleRef<'_>) -> Option<Duration> {
        self.rules
            .get(rule.id as usize)
            .and_then(|r| r.tarpit_ms)
            .map(Duration::from_millis)
    }

    /// Most requests one plugin holds at once on one worker (`max_tarpitted`).
    pub fn max_tarpitted(&self) -> u32 {
        self.max_tarpitted
    }

    /// The rules decided when a connection is accepted (module doc).
    pub fn accept_rules(&self) -> AcceptRules {
        let mut out = AcceptRules::default();
        let peer_is_client = self.xff_trusted_hops == 0;
        for (i, rule) in self.rules.iter().enumerate() {
            let id = u32::try_from(i).unwrap_or(u32::MAX);
            let reads_peer_only = peer_is_client && rule.limit.is_none() && peer_only(&rule.node);
            match rule.action {
                Action::Allow if reads_peer_only => out.allow.push(id),
                Action::Allow => {
                    if out.disabled_by.is_none() {
                        out.disabled_by = Some(rule.name.clone());
                    }
                }
                Action::Drop | Action::Log => {
                    if reads_peer_only
                        && rule.scope == Scope::Connection
                        && rule.tarpit_ms.is_none()
                    {
                        out.refuse.push(id);
                    }
                }
            }
        }
        if out.disabled_by.is_some() {
            out.allow.clear();
            out.refuse.clear();
        }
        out
    }

    /// Decides a new connection from `peer` (`ip` or `ip:port`) on the rules
    /// of [`Engine::accept_rules`], with the lists `lists` has loaded: a
    /// peer-only allow rule lets it in; else the first connection-scope drop
    /// rule that matches refuses it (in `dry-run` mode, reports it), and
    /// `log` rules matching before it are reported. [`Decision::Pass`] when
    /// none matches: the HTTP filter then decides every request as usual.
    ///
    /// A list that has not loaded yet is handled as for a request
    /// ([`Engine::condition`]): with `on_missing: pass` its rule does not
    /// match. With `drop` or `refuse`, a drop rule the missing list decides
    /// ends the decision with [`Decision::Pass`]: the connection is left to
    /// the HTTP filter, which applies `on_missing` to its first request
    /// (`refuse` answers 503, which cannot be sent before HTTP). Stopping
    /// there keeps a later rule from refusing in its place.
    pub fn decide_at_accept<'e>(
        &'e self,
        rules: &AcceptRules,
        peer: &[u8],
        lists: ListLookup<'_>,
    ) -> Verdict<'e> {
        let mut source = PeerOnly { peer, lists };
        let mut limiter = super::NoLimits;
        let mut scratch = super::facts::take_scratch();
        let mut facts = Facts::new(self, &mut source, &mut limiter, &mut scratch);
        let mut eval = |id: u32, every: bool| -> Option<(&'e Rule, RuleRef<'e>, Reading)> {
            let rule = self.rules.get(id as usize)?;
            match self.condition(rule, every, &mut facts) {
                Reading::No => None,
                reading => Some((rule, self.rule(id)?, reading)),
            }
        };
        for &id in &rules.allow {
            if let Some((_, rule, _)) = eval(id, true) {
                return Verdict {
                    decision: Decision::Allow { rule: rule.name },
                    logged: Vec::new(),
                    rule: Some(rule),
                    logged_rules: Vec::new(),
                    missing_list: None,
                };
            }
        }
        let mut logged_rules = Vec::new();
        let mut found = None;
        for &id in &rules.refuse {
            match eval(id, false) {
                Some((r, rule, _)) if r.action == Action::Log => logged_rules.push(rule),
                Some((_, rule, Reading::Yes)) => {
                    found = Some(rule);
                    break;
                }
                // Decided by a missing list: the HTTP filter's to apply.
                Some(_) => break,
                None => {}
            }
        }
        self.drop_phase_verdict(found, logged_rules, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoLimits;

    fn engine(json: &str) -> Engine {
        match Engine::from_json(json.as_bytes()) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    fn error(json: &str) -> String {
        match Engine::from_json(json.as_bytes()) {
            Ok(_) => panic!("accepted: {json}"),
            Err(e) => e.to_string(),
        }
    }

    const NO_LISTS: ListLookup<'static> = &|_| None;

    const DENY: &str = r#"{"name": "deny", "field": "client_ip", "in": ["127.0.0.2/32", "10.0.0.0/8"], "scope": "connection"}"#;

    #[test]
    fn tarpit_durations_are_bounded_and_named_by_path() {
        let e = engine(
            r#"{"rules": [{"name": "slow", "header": "x-a", "present": true, "tarpit": "1500ms"}, {"name": "t10", "header": "x-b", "present": true, "tarpit": "10s"}]}"#,
        );
        let rule = |n: &str| {
            e.rule(
                (0..20)
                    .find(|i| e.rule(*i).is_some_and(|r| r.name == n))
                    .unwrap_or(0),
            )
        };
        assert_eq!(
            e.tarpit_of(rule("slow").unwrap()),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            e.tarpit_of(rule("t10").unwrap()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(e.tarpit_of(rule("host-missing").unwrap()), None);
        for bad in [
            "\"0s\"",
            "\"61s\"",
            "\"999ms\"",
            "\"10\"",
            "\"s\"",
            "\"1.5s\"",
            "\"-1s\"",
            "10",
        ] {
            let msg = error(&format!(
                r#"{{"rules": [{{"header": "x", "present": true, "tarpit": {bad}}}]}}"#
            ));
            assert!(msg.contains("rules[0].tarpit"), "{bad}: {msg}");
        }
        let msg = error(
            r#"{"rules": [{"action": "allow", "header": "x", "present": true, "tarpit": "2s"}]}"#,
        );
        assert!(msg.contains("rules[0].tarpit"), "{msg}");
        let msg =
            error(r#"{"rules": [{"all": [{"header": "x", "present": true, "tarpit": "2s"}]}]}"#);
        assert!(msg.contains("rules[0].all[0].tarpit"), "{msg}");
    }

    #[test]
    fn max_tarpitted_default_and_bounds() {
        assert_eq!(engine("{}").max_tarpitted(), 256);
        assert_eq!(engine(r#"{"max_tarpitted": 3}"#).max_tarpitted(), 3);
        assert!(error(r#"{"max_tarpitted": 0}"#).contains("max_tarpitted"));
        assert!(error(r#"{"max_tarpitted": 100001}"#).contains("max_tarpitted"));
    }

    #[test]
    fn connection_scope_client_ip_rules_refuse_at_accept() {
        let e = engine(&format!(r#"{{"rules": [{DENY}]}}"#));
        let rules = e.accept_rules();
        assert_eq!(rules.count(), 1);
        let v = e.decide_at_accept(&rules, b"127.0.0.2:5555", NO_LISTS);
        assert_eq!(v.decision, Decision::Drop { rule: "deny" });
        assert_eq!(
            e.decide_at_accept(&rules, b"127.0.0.1:5555", NO_LISTS)
                .decision,
            Decision::Pass
        );
        assert_eq!(
            e.decide_at_accept(&rules, b"[::1]:80", NO_LISTS).decision,
            Decision::Pass
        );
        // The same rule on a request from that peer: the same decision.
        let mut req = super::super::HeaderList::new()
            .with(":authority", "a.example")
            .peer("127.0.0.2:1");
        assert_eq!(
            e.decide(&mut req, &mut NoLimits).decision,
            Decision::Drop { rule: "deny" }
        );
    }

    #[test]
    fn only_peer_only_connection_scope_rules_are_decided_at_accept() {
        for rule in [
            // stream scope
            r#"{"field": "client_ip", "in": ["127.0.0.2"]}"#,
            // reads a header too
            r#"{"all": [{"field": "client_ip", "in": ["127.0.0.2"]}, {"header": "x", "present": true}], "scope": "connection"}"#,
            // held first
            r#"{"field": "client_ip", "in": ["127.0.0.2"], "scope": "connection", "tarpit": "2s"}"#,
            // rate limited
            r#"{"field": "client_ip", "in": ["127.0.0.2"], "scope": "connection", "rate_limit": {"key": ["client_ip"], "rate": 1}}"#,
        ] {
            let e = engine(&format!(r#"{{"rules": [{rule}]}}"#));
            assert!(e.accept_rules().is_empty(), "{rule}");
        }
        // Behind trusted proxies the peer is not the client.
        let e = engine(&format!(
            r#"{{"client_ip": {{"xff_trusted_hops": 1}}, "rules": [{DENY}]}}"#
        ));
        assert!(e.accept_rules().is_empty());
        // `not` and `any` of client_ip conditions are peer-only.
        let e = engine(
            r#"{"rules": [{"name": "outside", "not": {"field": "client_ip", "in": ["127.0.0.1"]}, "scope": "connection"}]}"#,
        );
        let rules = e.accept_rules();
        assert_eq!(
            e.decide_at_accept(&rules, b"127.0.0.2:1", NO_LISTS)
                .decision,
            Decision::Drop { rule: "outside" }
        );
        assert_eq!(
            e.decide_at_accept(&rules, b"127.0.0.1:1", NO_LISTS)
                .decision,
            Decision::Pass
        );
    }

    #[test]
    fn allow_rules_take_precedence_or_disable_refusal() {
        let e = engine(&format!(
            r#"{{"rules": [{{"name": "ok", "action": "allow", "field": "client_ip", "in": ["127.0.0.2"]}}, {DENY}]}}"#
        ));
        let rules = e.accept_rules();
        assert_eq!(
            e.decide_at_accept(&rules, b"127.0.0.2:1", NO_LISTS)
                .decision,
            Decision::Allow { rule: "ok" }
        );
        assert_eq!(
            e.decide_at_accept(&rules, b"10.1.2.3:1", NO_LISTS).decision,
            Decision::Drop { rule: "deny" }
        );
        let e = engine(&format!(
            r#"{{"rules": [{{"name": "health", "action": "allow", "field": "path", "exact": "/healthz"}}, {DENY}]}}"#
        ));
        let rules = e.accept_rules();
        assert!(rules.is_empty());
        assert_eq!(rules.disabled_by(), Some("health"));
    }

    #[test]
    fn dry_run_and_log_at_accept() {
        let e = engine(&format!(r#"{{"mode": "dry-run", "rules": [{DENY}]}}"#));
        let rules = e.accept_rules();
        assert_eq!(
            e.decide_at_accept(&rules, b"127.0.0.2:1", NO_LISTS)
                .decision,
            Decision::DryRun { rule: "deny" }
        );
        let e = engine(
            r#"{"rules": [{"name": "watch", "action": "log", "field": "client_ip", "in": ["127.0.0.0/8"], "scope": "connection"}]}"#,
        );
        let rules = e.accept_rules();
        let v = e.decide_at_accept(&rules, b"127.0.0.2:1", NO_LISTS);
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(v.logged, vec!["watch"]);
    }

    const LISTED: &str = r#"{
        "lists": {
            "bad": {"url": "http://lists/bad.txt", "cluster": "lists", "format": "cidr"ON_MISSING}
        },
        "rules": [
            {"name": "listed", "field": "client_ip", "in_list": "bad", "scope": "connection"},
            {"name": "deny", "field": "client_ip", "in": ["127.0.0.0/8"], "scope": "connection"}
        ]
    }"#;

    fn loaded(e: &Engine, body: &[u8]) -> Arc<ListData> {
        match e
            .lists()
            .first()
            .map(|d| super::super::lists::load(d, body))
        {
            Some(Ok(data)) => Arc::new(data),
            _ => panic!("no list"),
        }
    }

    #[test]
    fn client_ip_in_list_is_decided_at_accept_on_the_loaded_list() {
        let e = engine(&LISTED.replace("ON_MISSING", ""));
        let rules = e.accept_rules();
        assert_eq!(rules.count(), 2);
        let data = loaded(&e, b"127.0.0.2/32\n");
        let lists: ListLookup<'_> = &|id| (id == 0).then(|| data.clone());
        assert_eq!(
            e.decide_at_accept(&rules, b"127.0.0.2:1", lists).decision,
            Decision::Drop { rule: "listed" }
        );
        // Not listed: the next rule decides; outside both: passes.
        assert_eq!(
            e.decide_at_accept(&rules, b"127.0.0.3:1", lists).decision,
            Decision::Drop { rule: "deny" }
        );
        assert_eq!(
            e.decide_at_accept(&rules, b"192.0.2.1:1", lists).decision,
            Decision::Pass
        );
        // The same decision as for a request from that peer.
        let mut set = super::super::lists::ListSet::new(1);
        set.set(0, data.clone());
        let mut req = super::super::HeaderList::new()
            .with(":authority", "a.example")
            .peer("127.0.0.2:1")
            .lists(set);
        assert_eq!(
            e.decide(&mut req, &mut NoLimits).decision,
            Decision::Drop { rule: "listed" }
        );
        // A list on another subject is not peer-only.
        let e = engine(
            r#"{"lists": {"ua": {"url": "http://l/ua", "cluster": "l", "format": "strings"}},
                "rules": [{"header": "user-agent", "in_list": "ua", "scope": "connection"}]}"#,
        );
        assert!(e.accept_rules().is_empty());
    }

    #[test]
    fn missing_list_at_accept_follows_on_missing() {
        // pass (the default): the rule matches nothing, later rules decide.
        let e = engine(&LISTED.replace("ON_MISSING", ""));
        let rules = e.accept_rules();
        assert_eq!(
            e.decide_at_accept(&rules, b"127.0.0.2:1", NO_LISTS)
                .decision,
            Decision::Drop { rule: "deny" }
        );
        assert_eq!(
            e.decide_at_accept(&rules, b"192.0.2.1:1", NO_LISTS)
                .decision,
            Decision::Pass
        );
        // drop / refuse: the connection is left to the HTTP filter (which
        // drops or answers 503 its first request); no later rule refuses in
        // the missing list's place.
        for on_missing in ["drop", "refuse"] {
            let e = engine(
                &LISTED.replace("ON_MISSING", &format!(r#", "on_missing": "{on_missing}""#)),
            );
            let rules = e.accept_rules();
            assert_eq!(
                e.decide_at_accept(&rules, b"127.0.0.2:1", NO_LISTS)
                    .decision,
                Decision::Pass,
                "{on_missing}"
            );
            let mut req = super::super::HeaderList::new()
                .with(":authority", "a.example")
                .peer("127.0.0.2:1")
                .lists(super::super::lists::ListSet::new(1));
            let v = e.decide(&mut req, &mut NoLimits);
            assert_eq!(
                v.decision,
                Decision::Drop { rule: "listed" },
                "{on_missing}"
            );
            assert!(v.missing_list.is_some());
        }
    }
}
