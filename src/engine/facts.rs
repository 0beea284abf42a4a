//! What one decision has learned about its request so far. Every item is
//! fetched or computed at most once, and only when a rule reaches it.

use std::net::IpAddr;

use super::host::HostForm;
use super::request::{self, KeyPart, RateLimit, RequestSource};
use super::rules::{Node, Subject};
use super::Engine;

pub(crate) struct Facts<'e, 's> {
    engine: &'e Engine,
    source: &'s mut dyn RequestSource,
    headers: Vec<Option<Option<Vec<u8>>>>,
    host: Option<HostForm>,
    host_value: Option<Option<Vec<u8>>>,
    path: Option<Vec<u8>>,
    path_and_query: Option<Vec<u8>>,
    query: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    protocol: Option<Option<Vec<u8>>>,
    client_ip: Option<Option<IpAddr>>,
    hits: Vec<Option<Vec<u32>>>,
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
            protocol: None,
            client_ip: None,
            hits: vec![None; engine.indexes.len()],
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

    fn host_form(&mut self) -> &HostForm {
        if self.host.is_none() {
            let form = request::classify_authority(self.slot_value(self.engine.slots.authority));
            self.host = Some(form);
        }
        self.host.get_or_insert(HostForm::Missing)
    }

    fn raw_target(&mut self) -> (Vec<u8>, Option<Vec<u8>>) {
        let target = self.slot_value(self.engine.slots.path).unwrap_or(b"/");
        let (path, query) = request::split_target(target);
        (path.to_vec(), query.map(<[u8]>::to_vec))
    }

    fn prepare(&mut self, subject: Subject) {
        match subject {
            Subject::Header(slot) => {
                self.header(slot);
            }
            Subject::Path if self.path.is_none() => {
                let (path, _) = self.raw_target();
                self.path = Some(request::normalize_path(&path));
            }
            Subject::PathAndQuery if self.path_and_query.is_none() => {
                let (path, query) = self.raw_target();
                let mut value = request::normalize_path(&path);
                if let Some(query) = query {
                    value.push(b'?');
                    value.extend_from_slice(&query);
                }
                self.path_and_query = Some(value);
            }
            Subject::Query(_) if self.query.is_none() => {
                let (_, query) = self.raw_target();
                self.query = Some(query.map(|q| request::parse_query(&q)).unwrap_or_default());
            }
            Subject::Method => {
                self.slot_value(self.engine.slots.method);
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
                let xff = self.slot_value(self.engine.slots.xff).map(<[u8]>::to_vec);
                self.client_ip = Some(request::client_from_xff(xff.as_deref(), hops, peer));
            }
            _ => {}
        }
    }

    /// Calls `check` on each value of the subject (prepared first) and says
    /// whether any passed. Headers have one (joined) value, query parameters
    /// one per occurrence, absent subjects none.
    fn any_value(&mut self, subject: Subject, mut check: impl FnMut(&[u8]) -> bool) -> bool {
        self.prepare(subject);
        let slot = |s: Option<usize>| {
            s.and_then(|s| self.headers.get(s))
                .and_then(|v| v.as_ref())
                .and_then(|v| v.as_deref())
        };
        match subject {
            Subject::Header(s) => slot(Some(s)).is_some_and(check),
            Subject::Method => slot(self.engine.slots.method).is_some_and(check),
            Subject::Scheme => slot(self.engine.slots.scheme).is_some_and(check),
            Subject::Path => self.path.as_deref().is_some_and(check),
            Subject::PathAndQuery => self.path_and_query.as_deref().is_some_and(check),
            Subject::Protocol => self
                .protocol
                .as_ref()
                .and_then(|p| p.as_deref())
                .is_some_and(check),
            Subject::Host => self
                .host_value
                .as_ref()
                .and_then(|h| h.as_deref())
                .is_some_and(check),
            Subject::HostKind => self
                .host
                .as_ref()
                .map(request::host_kind)
                .is_some_and(check),
            Subject::Query(q) => {
                let name = self.engine.query_names.get(q);
                self.query
                    .iter()
                    .flatten()
                    .filter(|(n, _)| Some(n) == name)
                    .any(|(_, v)| check(v))
            }
            Subject::ClientIp => false,
        }
    }

    /// Leaves of the index that match this request (sorted), computed once.
    pub(crate) fn hits(&mut self, index: usize) -> &[u32] {
        if self.hits.get(index).is_some_and(Option::is_none) {
            let mut found = Vec::new();
            if let Some((subject, matcher)) = self.engine.indexes.get(index) {
                let list = subject.is_list();
                self.any_value(*subject, |v| {
                    matcher.search(v, list, &mut found);
                    false
                });
            }
            found.sort_unstable();
            found.dedup();
            if let Some(slot) = self.hits.get_mut(index) {
                *slot = Some(found);
            }
        }
        self.hits
            .get(index)
            .and_then(|h| h.as_deref())
            .unwrap_or_default()
    }

    /// Builds the rule's key for this request and asks the source whether the
    /// key is over the limit (which takes a token when it is not).
    pub(crate) fn over_limit(&mut self, limit: &RateLimit) -> bool {
        let mut key = Vec::new();
        for (i, part) in limit.key.iter().enumerate() {
            if i > 0 {
                key.push(0x1f);
            }
            let subject = match part {
                KeyPart::ClientIp => {
                    self.prepare(Subject::ClientIp);
                    if let Some(ip) = self.client_ip.flatten() {
                        key.extend_from_slice(ip.to_string().as_bytes());
                    }
                    continue;
                }
                KeyPart::Host => Subject::Host,
                KeyPart::Method => Subject::Method,
                KeyPart::Path => Subject::Path,
                KeyPart::Header(slot) => Subject::Header(*slot),
            };
            self.any_value(subject, |v| {
                key.extend_from_slice(v);
                true
            });
        }
        self.source.over_limit(limit, &key)
    }

    pub(crate) fn eval(&mut self, node: &Node) -> bool {
        match node {
            Node::Indexed { index, leaf } => self.hits(*index).binary_search(leaf).is_ok(),
            Node::In { subject, set } => {
                let list = subject.is_list();
                self.any_value(*subject, |v| set.matches(v, list))
            }
            Node::HostIn(allow) => match self.host_form() {
                HostForm::Name(name) => allow.allows_name(name),
                HostForm::IpLiteral(ip) => allow.allows_ip(*ip),
                _ => false,
            },
            Node::IpIn(set) => {
                self.prepare(Subject::ClientIp);
                self.client_ip.flatten().is_some_and(|ip| set.contains(ip))
            }
            Node::Present(subject) => self.any_value(*subject, |_| true),
            Node::Absent(subject) => !self.any_value(*subject, |_| true),
            Node::All(children) => children.iter().all(|c| self.eval(c)),
            Node::Any(children) => children.iter().any(|c| self.eval(c)),
            Node::Not(child) => !self.eval(child),
        }
    }
}
