//! What one decision has learned about its request so far. Every item is
//! fetched or computed at most once, and only when a rule reaches it.
//!
//! Some subjects have several *readings*: the path as Envoy forwards it and
//! as backends decode it, the query decoded or raw, the method as sent and
//! upper-cased. A drop or log condition matches when it matches on any
//! reading; an allow condition only when it matches on every reading (`not`
//! swaps the two). Readings that equal another are never kept, so a request
//! with one reading costs one pass and no extra allocation.

use super::host::Seen;
use super::request::{
    self, ClientAddress, KeyPart, PathReading, QueryReading, RateLimit, RateLimiter, RequestSource,
};
use super::rules::{HostTable, Node, Subject};
use super::Engine;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The distinct readings of the path: the main (decoded, normalised) one,
/// whether the raw one (the request target's bytes before `?`) differs from
/// it, and further ones that differ from both and each other. When the raw
/// path is already normal (the common case) the main reading *is* the raw
/// path and nothing is copied.
#[derive(Debug, Default)]
pub(crate) struct Views {
    /// The main reading, unless `main_is_raw`.
    main: Vec<u8>,
    main_is_raw: bool,
    raw_differs: bool,
    more: Vec<Vec<u8>>,
}

impl Views {
    /// The main reading (`raw`: the raw path these views were made of).
    fn main<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        if self.main_is_raw {
            raw
        } else {
            &self.main
        }
    }

    fn push_distinct(&mut self, raw: &[u8], view: Vec<u8>) {
        if view != self.main(raw)
            && !(self.raw_differs && view == raw)
            && !self.more.contains(&view)
        {
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
        if f(0, self.main(raw)) {
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
#[cfg(test)]
pub(crate) fn path_views(raw: &[u8]) -> Views {
    let mut views = Views::default();
    fill_path_views(raw, &mut views);
    views
}

/// [`path_views`] in place, reusing the buffers of earlier views.
#[cfg(test)]
fn fill_path_views(raw: &[u8], views: &mut Views) {
    let (normal, semicolon) = request::scan_path(raw);
    fill_scanned_path_views(raw, normal, semicolon, views);
}

/// [`fill_path_views`] with the path already scanned
/// ([`request::scan_path`]'s answers).
fn fill_scanned_path_views(raw: &[u8], normal: bool, semicolon: bool, views: &mut Views) {
    views.more.clear();
    views.main.clear();
    views.main_is_raw = normal;
    if !views.main_is_raw {
        views.main = request::normalize_path(raw);
    }
    views.raw_differs = !views.main_is_raw && raw != views.main.as_slice();
    // A normal path has no `%` and no `\\`: only `;` can make another
    // reading differ.
    if normal && !semicolon {
        return;
    }
    for reading in PathReading::may_differ(raw) {
        views.push_distinct(raw, request::normalize_path_as(raw, reading));
    }
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
    /// `reuse`: the main reading's buffer of an earlier request (no
    /// allocation once it has grown to a typical target).
    fn new(path: &Views, target: &[u8], query: Option<&[u8]>, mut reuse: Vec<u8>) -> Self {
        let (raw, _) = request::split_target(target);
        let path_main = path.main(raw);
        reuse.clear();
        reuse.extend_from_slice(path_main);
        if let Some(q) = query {
            reuse.push(b'?');
            reuse.extend_from_slice(q);
        }
        let main = reuse;
        let raw_differs = target != main.as_slice();
        let decoded_query = query.filter(|q| q.contains(&b'%')).and_then(|q| {
            let decoded = request::percent_decode(q, false);
            let view = join(path_main, Some(&decoded));
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
/// reading (`has_every` false: the same, there being one value). The vectors
/// keep their capacity from request to request.
#[derive(Debug, Default)]
struct Hits {
    done: bool,
    any: Vec<u32>,
    every: Vec<u32>,
    has_every: bool,
}

/// Which of [`request::HOST_KINDS`] a Host is (as `request::host_kind_slot`
/// reads a `HostForm`).
pub(crate) fn kind_slot(seen: Seen) -> usize {
    match seen {
        Seen::Missing | Seen::Empty => 0,
        Seen::Invalid => 1,
        Seen::IpLiteral(_) => 2,
        Seen::Name => 3,
    }
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

/// One header slot: not read yet, absent, or present with its value.
#[derive(Debug, Default)]
struct Header {
    state: Read,
    value: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Read {
    #[default]
    Not,
    Absent,
    Present,
}

/// The buffers of one decision, kept between decisions (one set per thread)
/// so that a typical request allocates nothing: header values are appended
/// to buffers that already have the capacity, hits go to vectors that do too.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    headers: Vec<Header>,
    hits: Vec<Hits>,
    path: Views,
    /// The main `path_and_query` reading of the last request, for its buffer.
    pq_main: Vec<u8>,
    /// The lower-cased host name (when the Host is one), this request's.
    host_name: Vec<u8>,
    peer: Vec<u8>,
    /// Rules that matched only because of a list not loaded yet (rule,
    /// list), this request's.
    missing_hits: Vec<(u32, u32)>,
}

/// Buffers larger than this in all are not kept for the next request (a
/// huge request should not pin its memory).
const SCRATCH_KEEP_MAX: usize = 256 * 1024;

impl Scratch {
    fn retained(&self) -> usize {
        let headers: usize = self.headers.iter().map(|h| h.value.capacity()).sum();
        let hits: usize = self
            .hits
            .iter()
            .map(|h| h.any.capacity().saturating_add(h.every.capacity()))
            .sum();
        headers
            .saturating_add(hits.saturating_mul(4))
            .saturating_add(self.path.main.capacity())
            .saturating_add(self.pq_main.capacity())
            .saturating_add(self.host_name.capacity())
            .saturating_add(self.peer.capacity())
            .saturating_add(self.missing_hits.capacity().saturating_mul(8))
    }

    /// Ready for a request on `engine`: nothing read, nothing computed.
    fn reset(&mut self, engine: &Engine) {
        if self.headers.len() < engine.header_names.len() {
            self.headers
                .resize_with(engine.header_names.len(), Header::default);
        }
        for header in &mut self.headers {
            header.state = Read::Not;
        }
        if self.hits.len() < engine.indexes.len() {
            self.hits.resize_with(engine.indexes.len(), Hits::default);
        }
        for hits in &mut self.hits {
            hits.done = false;
        }
        self.missing_hits.clear();
    }
}

thread_local! {
    /// The scratch buffers of this thread's last decision.
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

pub(crate) struct Facts<'e, 's> {
    engine: &'e Engine,
    source: &'s mut dyn RequestSource,
    limiter: &'s mut dyn RateLimiter,
    /// This thread's buffers (see [`take_scratch`]).
    scratch: &'s mut Scratch,
    host: Option<Seen>,
    host_value: Option<Option<Vec<u8>>>,
    /// The path's readings are in `scratch.path` (this request's).
    path_ready: bool,
    /// Length of the raw path (the target before `?`), once split.
    raw_path_len: Option<usize>,
    path_and_query: Option<PqViews>,
    query: Option<QueryViews>,
    /// The method upper-cased, when that differs from the method as sent.
    method_upper: Option<Option<Vec<u8>>>,
    protocol: Option<Option<Vec<u8>>>,
    client_ip: Option<ClientAddress>,
    /// While a rule that reads a list not loaded yet is evaluated: the value
    /// such a list's condition takes (both are tried).
    missing_as: bool,
}

/// The buffers of this thread's last decision (fresh ones when a decision
/// holds them, or on the first). Boxed: handing them to and from the
/// thread's slot moves a pointer, not the buffers' headers.
pub(crate) fn take_scratch() -> Box<Scratch> {
    SCRATCH
        .try_with(|slot| slot.take())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Hands the buffers back for the next decision on this thread (unless they
/// grew too large to keep). A decision that does not only costs the next
/// one fresh buffers.
pub(crate) fn keep_scratch(scratch: Box<Scratch>) {
    if scratch.retained() <= SCRATCH_KEEP_MAX {
        // A nested decision (none today) would find the slot taken and
        // use fresh buffers; whichever finishes last is kept.
        let _ = SCRATCH.try_with(|slot| slot.set(Some(scratch)));
    }
}

impl<'e, 's> Facts<'e, 's> {
    /// Moves what this request computed into `scratch` for the next one to
    /// reuse (the `path_and_query` buffer).
    pub(crate) fn finish(&mut self) {
        if let Some(pq) = self.path_and_query.take() {
            self.scratch.pq_main = pq.main;
        }
    }

    pub(crate) fn new(
        engine: &'e Engine,
        source: &'s mut dyn RequestSource,
        limiter: &'s mut dyn RateLimiter,
        scratch: &'s mut Scratch,
    ) -> Self {
        scratch.reset(engine);
        Facts {
            engine,
            source,
            limiter,
            scratch,
            host: None,
            host_value: None,
            path_ready: false,
            raw_path_len: None,
            path_and_query: None,
            query: None,
            method_upper: None,
            protocol: None,
            client_ip: None,
            missing_as: false,
        }
    }

    fn header(&mut self, slot: usize) -> Option<&[u8]> {
        let entry = self.scratch.headers.get_mut(slot)?;
        if entry.state == Read::Not {
            let name = self.engine.header_names.get(slot)?;
            entry.value.clear();
            entry.state = if self.source.header(name, &mut entry.value) {
                Read::Present
            } else {
                entry.value.clear();
                Read::Absent
            };
        }
        (entry.state == Read::Present).then_some(entry.value.as_slice())
    }

    fn slot_value(&mut self, slot: Option<usize>) -> Option<&[u8]> {
        slot.and_then(|s| self.header(s))
    }

    /// A header already fetched.
    fn stored(&self, slot: Option<usize>) -> Option<&[u8]> {
        slot.and_then(|s| self.scratch.headers.get(s))
            .filter(|h| h.state == Read::Present)
            .map(|h| h.value.as_slice())
    }

    /// The path's readings, once prepared.
    fn path_views(&self) -> Option<&Views> {
        self.path_ready.then_some(&self.scratch.path)
    }

    /// The request target (fetched), `/` when there is none.
    fn target(&self) -> &[u8] {
        self.stored(self.engine.slots.path).unwrap_or(b"/")
    }

    /// The raw path: the target before `?` (split once).
    fn raw_path(&self) -> &[u8] {
        let target = self.target();
        match self.raw_path_len {
            Some(len) => target.get(..len).unwrap_or(target),
            None => request::split_target(target).0,
        }
    }

    /// The Host's form, classified once; a name is in `scratch.host_name`.
    fn host_seen(&mut self) -> Seen {
        if let Some(seen) = self.host {
            return seen;
        }
        let slot = self.engine.slots.authority;
        if let Some(s) = slot {
            self.header(s);
        }
        let scratch = &mut *self.scratch;
        let raw = slot
            .and_then(|s| scratch.headers.get(s))
            .filter(|h| h.state == Read::Present)
            .map(|h| h.value.as_slice());
        let seen = super::host::classify_into(raw, &mut scratch.host_name);
        self.host = Some(seen);
        seen
    }

    fn prepare(&mut self, subject: Subject) {
        match subject {
            Subject::Header(slot) => {
                self.header(slot);
            }
            Subject::Path | Subject::PathAndQuery | Subject::Query(_) => {
                self.slot_value(self.engine.slots.path);
                if !self.path_ready && !matches!(subject, Subject::Query(_)) {
                    let scratch = &mut *self.scratch;
                    let target = self
                        .engine
                        .slots
                        .path
                        .and_then(|s| scratch.headers.get(s))
                        .filter(|h| h.state == Read::Present)
                        .map_or(&b"/"[..], |h| h.value.as_slice());
                    let (raw_len, normal, semicolon) = request::scan_target(target);
                    let raw = target.get(..raw_len).unwrap_or(target);
                    fill_scanned_path_views(raw, normal, semicolon, &mut scratch.path);
                    self.raw_path_len = Some(raw.len());
                    self.path_ready = true;
                }
                if subject == Subject::PathAndQuery && self.path_and_query.is_none() {
                    let reuse = std::mem::take(&mut self.scratch.pq_main);
                    let target = self.target();
                    let (_, query) = request::split_target(target);
                    let views = self
                        .path_views()
                        .map(|path| PqViews::new(path, target, query, reuse));
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
                self.protocol = Some(self.source.protocol_value());
            }
            Subject::Host if self.host_value.is_none() => {
                let raw = self
                    .slot_value(self.engine.slots.authority)
                    .map(<[u8]>::to_vec);
                // As `request::host_value` reads a `HostForm`.
                let value = match self.host_seen() {
                    Seen::Name => Some(self.scratch.host_name.clone()),
                    Seen::IpLiteral(Some(ip)) => Some(ip.to_string().into_bytes()),
                    Seen::IpLiteral(None) => raw.map(|r| super::trim_ows(&r).to_ascii_lowercase()),
                    Seen::Missing | Seen::Empty | Seen::Invalid => None,
                };
                self.host_value = Some(value);
            }
            Subject::HostKind => {
                self.host_seen();
            }
            Subject::ClientIp if self.client_ip.is_none() => {
                let mut buffer = std::mem::take(&mut self.scratch.peer);
                buffer.clear();
                let peer = self
                    .source
                    .peer_address(&mut buffer)
                    .then(|| request::parse_address(&buffer))
                    .flatten();
                self.scratch.peer = buffer;
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
            Subject::HostKind => one(self
                .host
                .and_then(|seen| request::HOST_KINDS.get(kind_slot(seen)).copied())),
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
                let raw = self.raw_path();
                self.path_views().map_or(0, |views| {
                    views.visit(raw, f);
                    views.count()
                })
            }
            Subject::PathAndQuery => match (&self.path_and_query, self.path_views()) {
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

    /// Prepares the subject; then, has it one reading with at most one value?
    fn prepared_single(&mut self, subject: Subject) -> bool {
        self.prepare(subject);
        self.single(subject)
    }

    /// Has the (prepared) subject one reading with at most one value?
    /// (Then "on any reading" and "on every reading" are the same question.)
    fn single(&self, subject: Subject) -> bool {
        match subject {
            Subject::Path => self.path_views().is_none_or(|v| v.count() == 1),
            Subject::PathAndQuery => match (&self.path_and_query, self.path_views()) {
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
        let engine = self.engine;
        if let Some((at, per_kind)) = &engine.kind_hits {
            if *at == index {
                // One reading, one value: the same hits either way.
                let kind = kind_slot(self.host_seen());
                return per_kind.get(kind).map(Vec::as_slice).unwrap_or_default();
            }
        }
        let pending = self.scratch.hits.get(index).is_some_and(|h| !h.done);
        if pending && !self.search_single(index) {
            let (mut any, mut all) = match self.scratch.hits.get_mut(index) {
                Some(h) => (std::mem::take(&mut h.any), std::mem::take(&mut h.every)),
                None => (Vec::new(), Vec::new()),
            };
            any.clear();
            all.clear();
            let mut has_every = false;
            if let Some((subject, matcher)) = engine.indexes.get(index) {
                let list = subject.is_list();
                if self.prepared_single(*subject) {
                    self.visit(*subject, &mut |_, v| {
                        matcher.search(v, list, &mut any);
                        false
                    });
                } else {
                    has_every = true;
                    let (mut seen, mut first, mut found) = (0u32, true, Vec::new());
                    let readings = self.visit(*subject, &mut |r, v| {
                        seen |= bit(r);
                        found.clear();
                        matcher.search(v, list, &mut found);
                        found.sort_unstable();
                        found.dedup();
                        any.extend_from_slice(&found);
                        if first {
                            all.extend_from_slice(&found);
                            first = false;
                        } else {
                            all.retain(|leaf| found.binary_search(leaf).is_ok());
                        }
                        false
                    });
                    if readings == 0 || seen != all_bits(readings) {
                        all.clear();
                    }
                }
                if any.len() > 1 {
                    any.sort_unstable();
                    any.dedup();
                }
            }
            if let Some(h) = self.scratch.hits.get_mut(index) {
                h.any = any;
                h.every = all;
                h.done = true;
                h.has_every = has_every;
            }
        }
        self.scratch
            .hits
            .get(index)
            .map(|h| {
                if every && h.has_every {
                    h.every.as_slice()
                } else {
                    h.any.as_slice()
                }
            })
            .unwrap_or_default()
    }

    /// The index's hits when its subject is a header or a path with one
    /// reading (the common subjects): its one value searched straight into
    /// the stored hits, without the generic visit. False (nothing done)
    /// for any other subject.
    fn search_single(&mut self, index: usize) -> bool {
        let engine = self.engine;
        let Some((subject, matcher)) = engine.indexes.get(index) else {
            return false;
        };
        match *subject {
            Subject::Header(slot) => {
                self.header(slot);
            }
            Subject::Path => {
                self.prepare(Subject::Path);
                if !self.single(Subject::Path) {
                    return false;
                }
            }
            _ => return false,
        }
        let raw_path_len = self.raw_path_len;
        let path_ready = self.path_ready;
        let scratch = &mut *self.scratch;
        let present = |slot: Option<usize>| {
            slot.and_then(|s| scratch.headers.get(s))
                .filter(|h| h.state == Read::Present)
                .map(|h| h.value.as_slice())
        };
        let value = match *subject {
            Subject::Header(slot) => present(Some(slot)),
            _ if path_ready => {
                // As `raw_path` reads it.
                let target = present(engine.slots.path).unwrap_or(b"/");
                let raw = match raw_path_len {
                    Some(len) => target.get(..len).unwrap_or(target),
                    None => request::split_target(target).0,
                };
                Some(scratch.path.main(raw))
            }
            _ => None,
        };
        if let Some(h) = scratch.hits.get_mut(index) {
            h.any.clear();
            h.every.clear();
            h.has_every = false;
            h.done = true;
            if let Some(value) = value {
                matcher.search(value, subject.is_list(), &mut h.any);
            }
            if h.any.len() > 1 {
                h.any.sort_unstable();
                h.any.dedup();
            }
        }
        true
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
        self.limiter.over_limit(limit, &key)
    }

    /// Notes that `rule` matched only because list `list` has not loaded.
    pub(crate) fn push_missing(&mut self, rule: u32, list: u32) {
        self.scratch.missing_hits.push((rule, list));
    }

    /// Rules that matched only because of a list not loaded yet (rule, list).
    pub(crate) fn missing_hits(&self) -> &[(u32, u32)] {
        &self.scratch.missing_hits
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

    /// A host table's value for this request's Host.
    pub(crate) fn host_table(&mut self, table: &HostTable) -> bool {
        let seen = self.host_seen();
        self.host_table_for(table, seen)
    }

    /// The Host's form, classified once (for [`Facts::host_table_for`]).
    pub(crate) fn host_form(&mut self) -> Seen {
        self.host_seen()
    }

    /// [`Facts::host_table`], the Host already classified as `seen`.
    pub(crate) fn host_table_for(&self, table: &HostTable, seen: Seen) -> bool {
        table.value(kind_slot(seen), || self.host_allowed(table, seen))
    }

    /// Is the Host (classified as `seen`) on the table's allowlist?
    pub(crate) fn host_allowed(&self, table: &HostTable, seen: Seen) -> bool {
        table.allow.as_ref().is_some_and(|allow| match seen {
            Seen::Name => allow.allows_name(&self.scratch.host_name),
            Seen::IpLiteral(ip) => allow.allows_ip(ip),
            _ => false,
        })
    }

    /// Evaluates a condition: on any reading of each subject (`every` false:
    /// drop and log rules), or on every reading (`every`: allow rules).
    /// `not` swaps the two, so a negated condition can never be escaped
    /// through a reading either.
    pub(crate) fn eval(&mut self, node: &Node, every: bool) -> bool {
        match node {
            Node::Indexed { index, leaf } => match &self.engine.kind_hits {
                // `host_kind` (the built-in host rules): answered ahead of
                // time, see `Facts::hits`.
                Some((at, per_kind)) if at == index => {
                    let kind = kind_slot(self.host_seen());
                    per_kind
                        .get(kind)
                        .is_some_and(|hits| hits.binary_search(leaf).is_ok())
                }
                _ => self.hits(*index, every).binary_search(leaf).is_ok(),
            },
            Node::In { subject, set } => {
                let list = subject.is_list();
                self.check(*subject, every, &mut |v| set.matches(v, list))
            }
            Node::HostIn(allow) => match self.host_seen() {
                Seen::Name => allow.allows_name(&self.scratch.host_name),
                Seen::IpLiteral(ip) => allow.allows_ip(ip),
                _ => false,
            },
            Node::HostTable(table) => self.host_table(table),
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
