//! What one decision has learned about its request so far. Every item is
//! fetched or computed at most once, and only when a rule reaches it.
//!
//! Some subjects have several *readings*: the path as Envoy forwards it and
//! as backends decode it, the query decoded or raw, the method as sent and
//! upper-cased. A drop or log condition matches when it matches on any
//! reading; an allow condition only when it matches on every reading (`not`
//! swaps the two). Readings that equal another are never kept, so a request
//! with one reading costs one pass and no extra allocation.

use super::host::HostForm;
use super::request::{
    self, ClientAddress, KeyPart, PathReading, QueryReading, RateLimit, RequestSource,
};
use super::rules::{Node, Subject};
use super::Engine;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The distinct readings of the path: the main (decoded, normalised) one,
/// whether the raw one (the request target's bytes before `?`) differs from
/// it, and further ones that differ from both and each other.
#[derive(Debug, Default)]
pub(crate) struct Views {
    main: Vec<u8>,
    raw_differs: bool,
    more: Vec<Vec<u8>>,
}

impl Views {
    fn new(main: Vec<u8>, raw: &[u8]) -> Self {
        Views {
            raw_differs: raw != main.as_slice(),
            main,
            more: Vec::new(),
        }
    }

    fn push_distinct(&mut self, raw: &[u8], view: Vec<u8>) {
        if view != self.main && !(self.raw_differs && view == raw) && !self.more.contains(&view) {
            self.more.push(view);
        }
    }

    fn count(&self) -> usize {
        1usize
            .saturating_add(usize::from(self.raw_differs))
            .saturating_add(self.more.len())
    }

    /// Main first, then raw (when it differs), then the others.
    fn visit(&self, raw: &[u8], f: &mut dyn FnMut(usize, &[u8]) -> bool) {
        if f(0, &self.main) {
            return;
        }
        let mut at = 1usize;
        if self.raw_differs {
            if f(at, raw) {
                return;
            }
            at = at.saturating_add(1);
        }
        for view in &self.more {
            if f(at, view) {
                return;
            }
            at = at.saturating_add(1);
        }
    }
}

/// Every distinct reading of a raw path (without query).
pub(crate) fn path_views(raw: &[u8]) -> Views {
    let mut views = Views::new(request::normalize_path(raw), raw);
    for reading in PathReading::may_differ(raw) {
        views.push_distinct(raw, request::normalize_path_as(raw, reading));
    }
    views
}

/// The readings of path and query: each path reading with the raw query
/// (the raw one is the target itself), and the main path with the query
/// percent-decoded. Only the main one and the decoded-query one are stored;
/// the others are joined when visited, so they cost no memory per reading.
#[derive(Debug, Default)]
pub(crate) struct PqViews {
    main: Vec<u8>,
    raw_differs: bool,
    decoded_query: Option<Vec<u8>>,
}

impl PqViews {
    fn new(path: &Views, target: &[u8], query: Option<&[u8]>) -> Self {
        let main = join(&path.main, query);
        let raw_differs = target != main.as_slice();
        let decoded_query = query.filter(|q| q.contains(&b'%')).and_then(|q| {
            let decoded = request::percent_decode(q, false);
            let view = join(&path.main, Some(&decoded));
            (view != main && view != target).then_some(view)
        });
        PqViews {
            main,
            raw_differs,
            decoded_query,
        }
    }

    fn count(&self, path: &Views) -> usize {
        1usize
            .saturating_add(usize::from(self.raw_differs))
            .saturating_add(path.more.len())
            .saturating_add(usize::from(self.decoded_query.is_some()))
    }

    /// Main, raw (the target), each further path reading with the query,
    /// the decoded query.
    fn visit(&self, path: &Views, target: &[u8], f: &mut dyn FnMut(usize, &[u8]) -> bool) {
        if f(0, &self.main) {
            return;
        }
        let mut at = 1usize;
        if self.raw_differs {
            if f(at, target) {
                return;
            }
            at = at.saturating_add(1);
        }
        let (_, query) = request::split_target(target);
        let mut joined = Vec::new();
        for p in &path.more {
            joined.clear();
            joined.extend_from_slice(p);
            if let Some(q) = query {
                joined.push(b'?');
                joined.extend_from_slice(q);
            }
            if f(at, &joined) {
                return;
            }
            at = at.saturating_add(1);
        }
        if let Some(view) = &self.decoded_query {
            f(at, view);
        }
    }
}

/// `path` `?` `query` (just the path without a query).
fn join(path: &[u8], query: Option<&[u8]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        path.len()
            .saturating_add(query.map_or(0, |q| q.len().saturating_add(1))),
    );
    v.extend_from_slice(path);
    if let Some(q) = query {
        v.push(b'?');
        v.extend_from_slice(q);
    }
    v
}

/// The query's readings: form-decoded (main), then percent-decoded with `+`
/// kept and raw, when they differ.
#[derive(Debug, Default)]
struct QueryViews {
    form: Pairs,
    more: Vec<Pairs>,
}

fn query_views(query: Option<&[u8]>) -> QueryViews {
    let Some(q) = query else {
        return QueryViews::default();
    };
    let mut views = QueryViews {
        form: request::parse_query(q),
        more: Vec::new(),
    };
    let readings = [
        (QueryReading::Percent, q.contains(&b'+')),
        (QueryReading::Raw, q.contains(&b'+') || q.contains(&b'%')),
    ];
    for (reading, may_differ) in readings {
        if may_differ {
            let pairs = request::parse_query_as(q, reading);
            if pairs != views.form && !views.more.contains(&pairs) {
                views.more.push(pairs);
            }
        }
    }
    views
}

/// Leaves of one index hit by this request: on any reading, and on every
/// reading (`None`: the same, there being one value).
#[derive(Debug, Clone)]
struct Hits {
    any: Vec<u32>,
    every: Option<Vec<u32>>,
}

fn bit(reading: usize) -> u32 {
    u32::try_from(reading)
        .ok()
        .and_then(|r| 1u32.checked_shl(r))
        .unwrap_or(0)
}

fn all_bits(readings: usize) -> u32 {
    (0..readings).fold(0, |mask, r| mask | bit(r))
}

pub(crate) struct Facts<'e, 's> {
    engine: &'e Engine,
    source: &'s mut dyn RequestSource,
    headers: Vec<Option<Option<Vec<u8>>>>,
    host: Option<HostForm>,
    host_value: Option<Option<Vec<u8>>>,
    path: Option<Views>,
    path_and_query: Option<PqViews>,
    query: Option<QueryViews>,
    /// The method upper-cased, when that differs from the method as sent.
    method_upper: Option<Option<Vec<u8>>>,
    protocol: Option<Option<Vec<u8>>>,
    client_ip: Option<ClientAddress>,
    hits: Vec<Option<Hits>>,
    /// While a rule that reads a list not loaded yet is evaluated: the value
    /// such a list's condition takes (both are tried).
    missing_as: bool,
    /// Rules that matched only because of a list not loaded yet (rule, list).
    pub(crate) missing_hits: Vec<(u32, u32)>,
}

impl<'e, 's> Facts<'e, 's> {
    pub(crate) fn new(engine: &'e Engine, source: &'s mut dyn RequestSource) -> Self {
        Facts {
            engine,
            source,
            headers: vec![None; engine.header_names.len()],
            host: None,
            host_value: None,
            path: None,
            path_and_query: None,
            query: None,
            method_upper: None,
            protocol: None,
            client_ip: None,
            hits: vec![None; engine.indexes.len()],
            missing_as: false,
            missing_hits: Vec::new(),
        }
    }

    fn header(&mut self, slot: usize) -> Option<&[u8]> {
        let entry = self.headers.get_mut(slot)?;
        if entry.is_none() {
            let name = self.engine.header_names.get(slot)?;
            *entry = Some(self.source.header(name));
        }
        entry.as_ref().and_then(|v| v.as_deref())
    }

    fn slot_value(&mut self, slot: Option<usize>) -> Option<&[u8]> {
        slot.and_then(|s| self.header(s))
    }

    /// A header already fetched.
    fn stored(&self, slot: Option<usize>) -> Option<&[u8]> {
        slot.and_then(|s| self.headers.get(s))
            .and_then(|v| v.as_ref())
            .and_then(|v| v.as_deref())
    }

    /// The request target (fetched), `/` when there is none.
    fn target(&self) -> &[u8] {
        self.stored(self.engine.slots.path).unwrap_or(b"/")
    }

    fn host_form(&mut self) -> &HostForm {
        if self.host.is_none() {
            let form = request::classify_authority(self.slot_value(self.engine.slots.authority));
            self.host = Some(form);
        }
        self.host.get_or_insert(HostForm::Missing)
    }

    fn prepare(&mut self, subject: Subject) {
        match subject {
            Subject::Header(slot) => {
                self.header(slot);
            }
            Subject::Path | Subject::PathAndQuery | Subject::Query(_) => {
                self.slot_value(self.engine.slots.path);
                if self.path.is_none() && !matches!(subject, Subject::Query(_)) {
                    let (raw, _) = request::split_target(self.target());
                    let views = path_views(raw);
                    self.path = Some(views);
                }
                if subject == Subject::PathAndQuery && self.path_and_query.is_none() {
                    let target = self.target();
                    let (_, query) = request::split_target(target);
                    let views = self
                        .path
                        .as_ref()
                        .map(|path| PqViews::new(path, target, query));
                    self.path_and_query = views;
                }
                if matches!(subject, Subject::Query(_)) && self.query.is_none() {
                    let (_, query) = request::split_target(self.target());
                    let views = query_views(query);
                    self.query = Some(views);
                }
            }
            Subject::Method if self.method_upper.is_none() => {
                let method = self.slot_value(self.engine.slots.method);
                let upper = method
                    .filter(|m| m.iter().any(u8::is_ascii_lowercase))
                    .map(<[u8]>::to_ascii_uppercase);
                self.method_upper = Some(upper);
            }
            Subject::Scheme => {
                self.slot_value(self.engine.slots.scheme);
            }
            Subject::Protocol if self.protocol.is_none() => {
                self.protocol = Some(self.source.protocol());
            }
            Subject::Host if self.host_value.is_none() => {
                let raw = self
                    .slot_value(self.engine.slots.authority)
                    .map(<[u8]>::to_vec);
                let form = self.host_form().clone();
                self.host_value = Some(request::host_value(&form, raw.as_deref()));
            }
            Subject::HostKind => {
                self.host_form();
            }
            Subject::ClientIp if self.client_ip.is_none() => {
                let peer = self
                    .source
                    .peer_address()
                    .and_then(|p| request::parse_address(&p));
                let hops = self.engine.xff_trusted_hops;
                let xff = self.slot_value(self.engine.slots.xff);
                self.client_ip = Some(request::client_address(xff, hops, peer));
            }
            _ => {}
        }
    }

    /// Calls `f(reading, value)` on every value of every reading of the
    /// (prepared) subject, in order (the main reading first), until `f`
    /// returns true. Returns the number of readings. Headers have one reading
    /// with one (joined) value, query parameters one value per occurrence,
    /// absent subjects none.
    fn visit(&self, subject: Subject, f: &mut dyn FnMut(usize, &[u8]) -> bool) -> usize {
        let mut one = |value: Option<&[u8]>| {
            if let Some(v) = value {
                f(0, v);
            }
            1
        };
        match subject {
            Subject::Header(s) => one(self.stored(Some(s))),
            Subject::Scheme => one(self.stored(self.engine.slots.scheme)),
            Subject::Protocol => one(self.protocol.as_ref().and_then(|p| p.as_deref())),
            Subject::Host => one(self.host_value.as_ref().and_then(|h| h.as_deref())),
            Subject::HostKind => one(self.host.as_ref().map(request::host_kind)),
            Subject::ClientIp => 1,
            Subject::Method => {
                let upper = self.method_upper.as_ref().and_then(|u| u.as_deref());
                if let Some(method) = self.stored(self.engine.slots.method) {
                    if !f(0, method) {
                        if let Some(upper) = upper {
                            f(1, upper);
                        }
                    }
                }
                1usize.saturating_add(usize::from(upper.is_some()))
            }
            Subject::Path => {
                let (raw, _) = request::split_target(self.target());
                self.path.as_ref().map_or(0, |views| {
                    views.visit(raw, f);
                    views.count()
                })
            }
            Subject::PathAndQuery => match (&self.path_and_query, &self.path) {
                (Some(views), Some(path)) => {
                    views.visit(path, self.target(), f);
                    views.count(path)
                }
                _ => 0,
            },
            Subject::Query(q) => {
                let Some(views) = &self.query else {
                    return 0;
                };
                let name = self.engine.query_names.get(q);
                let readings = std::iter::once(&views.form).chain(&views.more);
                'readings: for (r, pairs) in readings.enumerate() {
                    for (n, v) in pairs {
                        if Some(n) == name && f(r, v) {
                            break 'readings;
                        }
                    }
                }
                1usize.saturating_add(views.more.len())
            }
        }
    }

    /// Has the (prepared) subject one reading with at most one value?
    /// (Then "on any reading" and "on every reading" are the same question.)
    fn single(&self, subject: Subject) -> bool {
        match subject {
            Subject::Path => self.path.as_ref().is_none_or(|v| v.count() == 1),
            Subject::PathAndQuery => match (&self.path_and_query, &self.path) {
                (Some(pq), Some(path)) => pq.count(path) == 1,
                _ => true,
            },
            Subject::Method => self.method_upper.as_ref().is_none_or(Option::is_none),
            Subject::Query(q) => self.query.as_ref().is_none_or(|views| {
                let name = self.engine.query_names.get(q);
                views.more.is_empty()
                    && views
                        .form
                        .iter()
                        .filter(|(n, _)| Some(n) == name)
                        .nth(1)
                        .is_none()
            }),
            _ => true,
        }
    }

    /// Does `check` pass on some value of some reading (`every` false), or
    /// on every value of every reading, each reading having one (`every`)?
    fn check(
        &mut self,
        subject: Subject,
        every: bool,
        check: &mut dyn FnMut(&[u8]) -> bool,
    ) -> bool {
        self.prepare(subject);
        if !every || self.single(subject) {
            let mut found = false;
            self.visit(subject, &mut |_, v| {
                found = check(v);
                found
            });
            return found;
        }
        let (mut seen, mut failed) = (0u32, false);
        let readings = self.visit(subject, &mut |r, v| {
            seen |= bit(r);
            failed = !check(v);
            failed
        });
        readings > 0 && !failed && seen == all_bits(readings)
    }

    /// `present` (or `absent`) on some reading, or on every reading.
    fn presence(&mut self, subject: Subject, every: bool, present: bool) -> bool {
        self.prepare(subject);
        let mut seen = 0u32;
        let readings = self.visit(subject, &mut |r, _| {
            seen |= bit(r);
            false
        });
        let all = all_bits(readings);
        let matching = if present { seen } else { all & !seen };
        if every {
            readings > 0 && matching == all
        } else {
            matching != 0
        }
    }

    /// Leaves of the index that match this request (sorted), on any reading
    /// or (`every`) on every reading. Each distinct reading is searched once,
    /// and both answers come from that one pass.
    pub(crate) fn hits(&mut self, index: usize, every: bool) -> &[u32] {
        if self.hits.get(index).is_some_and(Option::is_none) {
            let engine = self.engine;
            let computed = match engine.indexes.get(index) {
                Some((subject, matcher)) => {
                    self.prepare(*subject);
                    let list = subject.is_list();
                    let mut any = Vec::new();
                    let every = if self.single(*subject) {
                        self.visit(*subject, &mut |_, v| {
                            matcher.search(v, list, &mut any);
                            false
                        });
                        any.sort_unstable();
                        any.dedup();
                        None
                    } else {
                        let (mut seen, mut all, mut found) = (0u32, None::<Vec<u32>>, Vec::new());
                        let readings = self.visit(*subject, &mut |r, v| {
                            seen |= bit(r);
                            found.clear();
                            matcher.search(v, list, &mut found);
                            found.sort_unstable();
                            found.dedup();
                            any.extend_from_slice(&found);
                            all = Some(match all.take() {
                                None => found.clone(),
                                Some(mut both) => {
                                    both.retain(|leaf| found.binary_search(leaf).is_ok());
                                    both
                                }
                            });
                            false
                        });
                        any.sort_unstable();
                        any.dedup();
                        Some(if readings > 0 && seen == all_bits(readings) {
                            all.unwrap_or_default()
                        } else {
                            Vec::new()
                        })
                    };
                    Hits { any, every }
                }
                None => Hits {
                    any: Vec::new(),
                    every: None,
                },
            };
            if let Some(slot) = self.hits.get_mut(index) {
                *slot = Some(computed);
            }
        }
        self.hits
            .get(index)
            .and_then(Option::as_ref)
            .map(|h| match (every, &h.every) {
                (true, Some(all)) => all.as_slice(),
                _ => h.any.as_slice(),
            })
            .unwrap_or_default()
    }

    /// Builds the rule's key for this request (the main reading of each
    /// part) and asks the source whether the key is over the limit (which
    /// takes a token when it is not).
    pub(crate) fn over_limit(&mut self, limit: &RateLimit) -> bool {
        let mut key = Vec::new();
        for (i, part) in limit.key.iter().enumerate() {
            if i > 0 {
                key.push(0x1f);
            }
            let subject = match part {
                KeyPart::ClientIp => {
                    self.prepare(Subject::ClientIp);
                    if let Some(ClientAddress::Known(ip)) = self.client_ip {
                        key.extend_from_slice(ip.to_string().as_bytes());
                    }
                    continue;
                }
                KeyPart::Host => Subject::Host,
                KeyPart::Method => Subject::Method,
                KeyPart::Path => Subject::Path,
                KeyPart::Header(slot) => Subject::Header(*slot),
            };
            self.prepare(subject);
            self.visit(subject, &mut |_, v| {
                key.extend_from_slice(v);
                true
            });
        }
        self.source.over_limit(limit, &key)
    }

    /// The first of `lists` that has not loaded yet, if any.
    pub(crate) fn missing_list(&self, lists: &[u32]) -> Option<u32> {
        lists
            .iter()
            .copied()
            .find(|id| self.source.list(*id).is_none())
    }

    /// Evaluates a condition reading lists that have not loaded, with their
    /// conditions true and then false: `Some(result)` when both agree (the
    /// lists do not decide this request), `None` when they differ.
    pub(crate) fn eval_assuming(&mut self, node: &Node, every: bool) -> Option<bool> {
        self.missing_as = true;
        let when_true = self.eval(node, every);
        self.missing_as = false;
        let when_false = self.eval(node, every);
        (when_true == when_false).then_some(when_true)
    }

    /// Evaluates a condition: on any reading of each subject (`every` false:
    /// drop and log rules), or on every reading (`every`: allow rules).
    /// `not` swaps the two, so a negated condition can never be escaped
    /// through a reading either.
    pub(crate) fn eval(&mut self, node: &Node, every: bool) -> bool {
        match node {
            Node::Indexed { index, leaf } => self.hits(*index, every).binary_search(leaf).is_ok(),
            Node::In { subject, set } => {
                let list = subject.is_list();
                self.check(*subject, every, &mut |v| set.matches(v, list))
            }
            Node::HostIn(allow) => match self.host_form() {
                HostForm::Name(name) => allow.allows_name(name),
                HostForm::IpLiteral(ip) => allow.allows_ip(*ip),
                _ => false,
            },
            Node::IpIn(set) => {
                self.prepare(Subject::ClientIp);
                match self.client_ip {
                    Some(ClientAddress::Known(ip)) => set.contains(ip),
                    Some(ClientAddress::Unknown) => !every,
                    Some(ClientAddress::None) | None => false,
                }
            }
            Node::InList { subject, list } => {
                // A list not loaded yet: the value being tried (see
                // `eval_assuming`).
                let Some(data) = self.source.list(*list) else {
                    return self.missing_as;
                };
                if *subject == Subject::ClientIp {
                    self.prepare(Subject::ClientIp);
                    return match self.client_ip {
                        Some(ClientAddress::Known(ip)) => data.contains_ip(ip),
                        Some(ClientAddress::Unknown) => !every,
                        Some(ClientAddress::None) | None => false,
                    };
                }
                let elements = subject.is_list();
                self.check(*subject, every, &mut |v| data.matches_str(v, elements))
            }
            Node::Present(subject) => self.presence(*subject, every, true),
            Node::Absent(subject) => self.presence(*subject, every, false),
            Node::All(children) => children.iter().all(|c| self.eval(c, every)),
            Node::Any(children) => children.iter().any(|c| self.eval(c, every)),
            Node::Not(child) => !self.eval(child, !every),
        }
    }
}

#[cfg(test)]
impl Views {
    /// Every reading, in visiting order (tests).
    pub(crate) fn all(&self, raw: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.visit(raw, &mut |_, v| {
            out.push(v.to_vec());
            false
        });
        out
    }

    /// Readings beyond the main and raw ones (each one is an allocation).
    pub(crate) fn extra(&self) -> usize {
        self.more.len()
    }
}
