//! The compiled matchers. Literal and regex conditions on one subject are
//! gathered into one Aho-Corasick automaton (per case mode) and one
//! `RegexSet`, so a single pass over a value decides all of them, however
//! many rules there are. Sets (`in`) are hash sets or sorted ranges.

use std::net::IpAddr;

use ipnet::IpNet;
use regex_automata::nfa::thompson::{self, pikevm, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};

use super::error::ConfigError;
use super::limits::REGEX_SIZE_LIMIT;

/// Hits collected before the first compaction (see `SubjectIndex::search`).
const HITS_COMPACT_MIN: usize = 4096;

/// Bytes leaving a dense automaton's start state from which its skip reads
/// byte by byte (see `DenseDfa::start_dense`).
const DENSE_START_BYTES: usize = 24;

/// How a literal pattern must sit in the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Exact,
    Prefix,
    Suffix,
    Contains,
}

/// Builder for a [`SubjectIndex`].
#[derive(Debug, Default)]
pub(crate) struct IndexBuilder {
    literals: [LiteralBuilder; 2],
    regexes: Vec<(String, u32)>,
}

#[derive(Debug, Default)]
struct LiteralBuilder {
    ids: super::FnvMap<Vec<u8>, usize>,
    patterns: Vec<Vec<u8>>,
    targets: Vec<Vec<Target>>,
}

/// One leaf using a literal pattern: how it must sit, and whether only on
/// path-segment boundaries.
#[derive(Debug, Clone, Copy)]
struct Target {
    kind: Kind,
    segment: bool,
    leaf: u32,
}

impl IndexBuilder {
    /// Registers a literal leaf (`segment`: on path-segment boundaries only).
    pub(crate) fn literal(
        &mut self,
        pattern: &[u8],
        kind: Kind,
        case_insensitive: bool,
        segment: bool,
        leaf: u32,
    ) {
        let [sensitive, insensitive] = &mut self.literals;
        let lit = if case_insensitive {
            insensitive
        } else {
            sensitive
        };
        let key = if case_insensitive {
            pattern.to_ascii_lowercase()
        } else {
            pattern.to_vec()
        };
        let id = match lit.ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = lit.patterns.len();
                lit.ids.insert(key.clone(), id);
                lit.patterns.push(key);
                lit.targets.push(Vec::new());
                id
            }
        };
        if let Some(targets) = lit.targets.get_mut(id) {
            targets.push(Target {
                kind,
                segment,
                leaf,
            });
        }
    }

    /// Registers a regex leaf (already validated on its own).
    pub(crate) fn regex(&mut self, pattern: String, leaf: u32) {
        self.regexes.push((pattern, leaf));
    }

    /// `list`: the subject is a comma-separated list (a header), whose
    /// elements a `prefix` or `exact` may also match, so no automaton on it
    /// is anchored.
    pub(crate) fn build(self, list: bool) -> Result<SubjectIndex, ConfigError> {
        let mut literals = Vec::new();
        for (ci, lit) in self.literals.into_iter().enumerate() {
            if lit.patterns.is_empty() {
                continue;
            }
            // Only `prefix` and `exact` leaves on a value that is not a list:
            // every match starts at 0, so the search is anchored there.
            let anchored = !list
                && lit
                    .targets
                    .iter()
                    .flatten()
                    .all(|t| matches!(t.kind, Kind::Prefix | Kind::Exact));
            let automaton = Searcher::build(&lit.patterns, ci == 1, anchored).map_err(|e| {
                ConfigError::new("rules", format!("patterns too large to compile: {e}"))
            })?;
            literals.push(Literals {
                automaton,
                targets: lit.targets,
            });
        }
        let regexes = if self.regexes.is_empty() {
            None
        } else {
            let set = regex_set(self.regexes.iter().map(|(p, _)| p.as_str())).map_err(|e| {
                ConfigError::new(
                    "rules",
                    format!("regexes too large to compile together: {e}"),
                )
            })?;
            Some((
                set,
                self.regexes.into_iter().map(|(_, leaf)| leaf).collect(),
            ))
        };
        Ok(SubjectIndex { literals, regexes })
    }
}

/// Compiles regexes the one way drop444 uses them: on bytes, without Unicode
/// classes (`\w` is ASCII), size-limited. The errors read as the `regex`
/// crate's (the same parser writes them).
pub(crate) fn regex_set<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
) -> Result<RegexSet, String> {
    let patterns: Vec<&str> = patterns.into_iter().collect();
    // What `regex::bytes::RegexSet` configures, minus its meta engine: the
    // PikeVM alone (the only engine that crate ran here, built without its
    // perf features), on bytes, reporting every pattern that matches.
    let vm = pikevm::Builder::new()
        .configure(pikevm::Config::new().match_kind(MatchKind::All))
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .thompson(
            thompson::Config::new()
                .utf8(false)
                .shrink(false)
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .which_captures(WhichCaptures::None),
        )
        .build_many(&patterns)
        .map_err(|e| match (e.size_limit(), std::error::Error::source(&e)) {
            (Some(limit), _) => format!("Compiled regex exceeds size limit of {limit} bytes."),
            (None, Some(syntax)) => syntax.to_string(),
            (None, None) => e.to_string(),
        })?;
    let len = vm.pattern_len();
    let create = {
        let vm = vm.clone();
        Box::new(move || (vm.create_cache(), PatternSet::new(len))) as CreateScratch
    };
    Ok(RegexSet {
        vm,
        scratch: Pool::new(create),
    })
}

/// A PikeVM's search state and the set it reports into, reused across
/// searches (one per thread that searches at the same time).
type Scratch = (pikevm::Cache, PatternSet);
type CreateScratch =
    Box<dyn Fn() -> Scratch + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// Several byte regexes searched in one pass; says which of them match.
pub(crate) struct RegexSet {
    vm: pikevm::PikeVM,
    scratch: Pool<Scratch, CreateScratch>,
}

impl std::fmt::Debug for RegexSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegexSet")
    }
}

impl RegexSet {
    /// Calls `each` with the index of every pattern matching `value`.
    fn each_match(&self, value: &[u8], mut each: impl FnMut(usize)) {
        let mut guard = self.scratch.get();
        let (cache, set) = &mut *guard;
        let input = Input::new(value);
        // Most values match nothing, and that answer is cheaper than which.
        if !self.vm.is_match(cache, input.clone()) {
            return;
        }
        set.clear();
        self.vm.which_overlapping_matches(cache, &input, set);
        for id in set.iter() {
            each(id.as_usize());
        }
    }
}

/// A dense DFA is built when its table (states × byte classes) has at most
/// this many entries (4 bytes each); larger sets get a sparse automaton,
/// whose memory grows with the patterns only.
const DENSE_MAX_ENTRIES: usize = 1 << 20;

/// One Aho-Corasick automaton, both kinds drop444's own (the `aho-corasick`
/// crate's builders and search loops were ~17 KB of drop444.wasm for what
/// these ~250 lines do). Small sets get a dense DFA: one table lookup per
/// byte, written for the shipped `opt-level = "z"` build. Large sets get a
/// sparse one: a trie with failure links.
#[derive(Debug)]
enum Searcher {
    Dense(Box<DenseDfa>),
    Sparse(Box<SparseNfa>),
}

impl Searcher {
    /// `anchored`: only matches starting at 0 are wanted (the caller's
    /// targets are all `prefix` / `exact` on a value that is not a list).
    fn build(patterns: &[Vec<u8>], case_insensitive: bool, anchored: bool) -> Result<Self, String> {
        if let Some(dfa) = DenseDfa::build(patterns, case_insensitive, anchored) {
            return Ok(Searcher::Dense(Box::new(dfa)));
        }
        SparseNfa::build(patterns, case_insensitive, anchored)
            .map(|nfa| Searcher::Sparse(Box::new(nfa)))
            .ok_or_else(|| "more than 2^31 automaton states or matches".to_string())
    }

    /// Calls `f(pattern, start, end)` for every match, overlapping ones
    /// included (an anchored searcher: every match starting at 0).
    fn each_match(&self, value: &[u8], f: &mut dyn FnMut(usize, usize, usize)) {
        match self {
            Searcher::Dense(a) => a.each_match(value, f),
            Searcher::Sparse(a) => a.each_match(value, f),
        }
    }
}

/// The byte classes of a pattern set: every byte that occurs in a pattern is
/// a class of its own (ASCII case folded when case-insensitive: `A` is in
/// `a`'s class), all other bytes share class 0. Also the number of classes.
fn byte_classes(patterns: &[Vec<u8>], case_insensitive: bool) -> Option<([u8; 256], usize)> {
    let fold = |b: u8| {
        if case_insensitive {
            b.to_ascii_lowercase()
        } else {
            b
        }
    };
    let mut classes = [0u8; 256];
    let mut count = 1usize;
    for b in patterns.iter().flatten().map(|b| fold(*b)) {
        let slot = classes.get_mut(usize::from(b))?;
        if *slot == 0 {
            *slot = u8::try_from(count).ok()?;
            count = count.checked_add(1)?;
        }
    }
    if case_insensitive {
        for b in b'A'..=b'Z' {
            let lower = *classes.get(usize::from(b.to_ascii_lowercase()))?;
            *classes.get_mut(usize::from(b))? = lower;
        }
    }
    Some((classes, count))
}

/// A dense Aho-Corasick DFA over byte classes (every byte that occurs in a
/// pattern is a class of its own, ASCII case folded when case-insensitive;
/// all other bytes share class 0). A transition holds the target state's
/// row offset, with [`DenseDfa::SPECIAL`] set when that state reports
/// matches or is the start state, so the walk tests one bit a byte.
#[derive(Debug)]
struct DenseDfa {
    classes: [u8; 256],
    /// A trie searched from 0 only (see [`DenseDfa::build`]).
    anchored: bool,
    /// Bytes on which the start state goes anywhere but to itself (1): from
    /// the start state, the search skips to the next of them in a tight loop.
    leaves_start: [u8; 256],
    /// Many bytes leave the start state (large sets): the next one that
    /// does is usually a byte or two away, so the skip reads byte by byte
    /// instead of setting up its eight-byte steps.
    start_dense: bool,
    stride: u32,
    trans: Vec<u32>,
    outputs: Outputs,
}

impl DenseDfa {
    /// Flags a transition to a state that reports matches or to the start
    /// state (row 0, which reports none: patterns are never empty).
    const SPECIAL: u32 = 1 << 31;

    /// `anchored`: a trie without failure links, for searches that only
    /// want matches starting at 0 (a missing edge leads back to the start
    /// state, which then ends the search).
    fn build(patterns: &[Vec<u8>], case_insensitive: bool, anchored: bool) -> Option<DenseDfa> {
        let (classes, stride) = byte_classes(patterns, case_insensitive)?;
        // The trie, rows of `stride` entries; `NONE` marks a missing edge.
        const NONE: u32 = u32::MAX;
        let mut trans: Vec<u32> = vec![NONE; stride];
        let mut own: Vec<Vec<u32>> = vec![Vec::new()];
        for (id, pattern) in patterns.iter().enumerate() {
            let mut state = 0usize;
            for &b in pattern {
                let class = usize::from(*classes.get(usize::from(b))?);
                let at = state.checked_mul(stride)?.checked_add(class)?;
                let next = *trans.get(at)?;
                state = if next == NONE {
                    let new = own.len();
                    own.push(Vec::new());
                    // The table as it grows, state by state: patterns
                    // sharing prefixes share states, so this is the real
                    // size, often far below patterns' bytes × classes.
                    let len = trans.len().checked_add(stride)?;
                    if len > DENSE_MAX_ENTRIES {
                        return None;
                    }
                    trans.resize(len, NONE);
                    *trans.get_mut(at)? = u32::try_from(new).ok()?;
                    new
                } else {
                    usize::try_from(next).ok()?
                };
            }
            own.get_mut(state)?.push(u32::try_from(id).ok()?);
        }
        // Failure links in breadth-first order turn the trie into a DFA;
        // each state also reports the patterns of its failure state.
        let states = own.len();
        let mut fail = vec![0usize; states];
        let mut queue = std::collections::VecDeque::new();
        for class in 0..stride {
            let entry = trans.get_mut(class)?;
            if *entry == NONE {
                *entry = 0;
            } else {
                queue.push_back(usize::try_from(*entry).ok()?);
            }
        }
        let mut order = Vec::with_capacity(states);
        if anchored {
            // No failure links: a missing edge goes back to the start state
            // (row 0), where an anchored search ends.
            for entry in &mut trans {
                if *entry == NONE {
                    *entry = 0;
                }
            }
            queue.clear();
        }
        while let Some(state) = queue.pop_front() {
            order.push(state);
            let failed = *fail.get(state)?;
            for class in 0..stride {
                let at = state.checked_mul(stride)?.checked_add(class)?;
                let via_fail = *trans.get(failed.checked_mul(stride)?.checked_add(class)?)?;
                let next = *trans.get(at)?;
                if next == NONE {
                    *trans.get_mut(at)? = via_fail;
                } else {
                    let child = usize::try_from(next).ok()?;
                    *fail.get_mut(child)? = usize::try_from(via_fail).ok()?;
                    queue.push_back(child);
                }
            }
        }
        // Outputs: a state's own patterns, then its failure state's (whose
        // list is complete, being earlier in breadth-first order).
        // (Anchored: a state reports its own patterns only.)
        let mut all: Vec<Vec<u32>> = if anchored {
            std::mem::take(&mut own)
        } else {
            vec![Vec::new(); states]
        };
        for &state in &order {
            let mut list = std::mem::take(own.get_mut(state)?);
            list.extend_from_slice(all.get(*fail.get(state)?)?);
            *all.get_mut(state)? = list;
        }
        let outputs = Outputs::new(&all, patterns)?;
        let mut leaves_start = [0u8; 256];
        for (byte, leaves) in leaves_start.iter_mut().enumerate() {
            let class = usize::from(*classes.get(byte)?);
            *leaves = u8::from(*trans.get(class)? != 0);
        }
        // Premultiplied targets, flagged when the target reports matches
        // or is the start state.
        let stride32 = u32::try_from(stride).ok()?;
        for entry in &mut trans {
            let target = usize::try_from(*entry).ok()?;
            let flag = if target != 0 && all.get(target)?.is_empty() {
                0
            } else {
                Self::SPECIAL
            };
            let offset = entry.checked_mul(stride32)?;
            if offset >= Self::SPECIAL {
                return None;
            }
            *entry = offset | flag;
        }
        let leaving = leaves_start.iter().filter(|l| **l != 0).count();
        Some(DenseDfa {
            anchored,
            classes,
            start_dense: leaving >= DENSE_START_BYTES,
            leaves_start,
            stride: stride32,
            trans,
            outputs,
        })
    }

    fn each_match(&self, value: &[u8], f: &mut dyn FnMut(usize, usize, usize)) {
        if self.anchored {
            return self.each_anchored_match(value, f);
        }
        let leaves = |b: &u8| self.leaves_start.get(usize::from(*b)).copied().unwrap_or(1) != 0;
        let mut at = 0usize;
        // From the start state: skip to a byte that leaves it, then walk
        // the automaton until it is back there on a byte that does not
        // leave it (or the value ends). Positions are read off the
        // iterator only on a match or a stop, not counted per byte.
        while let Some(start) = self.skip(value, at) {
            at = value.len();
            let (mut row, mut pos) = (0u32, start);
            while let Some((next, used)) = self.run(row, value.get(pos..).unwrap_or_default()) {
                pos = pos.saturating_add(used);
                row = next;
                if row != 0 {
                    self.report(row, pos, f);
                } else if !value.get(pos).is_some_and(leaves) {
                    at = pos;
                    break;
                }
            }
        }
    }

    /// Steps from `row` over `bytes` while the transitions are not flagged
    /// ([`DenseDfa::SPECIAL`]): a tight loop over the common byte. The
    /// flagged transition's target row and the bytes read up to and with
    /// it; `None` at the end of `bytes`.
    fn run(&self, mut row: u32, bytes: &[u8]) -> Option<(u32, usize)> {
        for (i, &byte) in bytes.iter().enumerate() {
            let entry = self.step(row, byte);
            if entry & Self::SPECIAL != 0 {
                return Some((entry & !Self::SPECIAL, i.saturating_add(1)));
            }
            row = entry;
        }
        None
    }

    /// The transition entry from `row` on `byte`.
    fn step(&self, row: u32, byte: u8) -> u32 {
        let class = u32::from(self.classes.get(usize::from(byte)).copied().unwrap_or(0));
        self.trans
            .get(row.wrapping_add(class) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Matches starting at 0 only (a trie without failure links): the walk
    /// ends where it falls back to the start state.
    fn each_anchored_match(&self, value: &[u8], f: &mut dyn FnMut(usize, usize, usize)) {
        let mut row = 0u32;
        for (at, &byte) in value.iter().enumerate() {
            let entry = self.step(row, byte);
            if entry & Self::SPECIAL == 0 {
                row = entry;
                continue;
            }
            row = entry & !Self::SPECIAL;
            if row == 0 {
                return;
            }
            self.report(row, at.saturating_add(1), f);
        }
    }

    /// From `at`, the first position whose byte leaves the start state
    /// (eight bytes a step while none does).
    fn skip(&self, value: &[u8], at: usize) -> Option<usize> {
        let leaves = |b: u8| self.leaves_start.get(usize::from(b)).copied().unwrap_or(1);
        let rest = value.get(at..)?;
        // Often the very next byte leaves (large sets): no 8-byte step then.
        if leaves(*rest.first()?) != 0 {
            return Some(at);
        }
        if self.start_dense {
            let skipped = rest.iter().position(|b| leaves(*b) != 0)?;
            return Some(at.saturating_add(skipped));
        }
        let mut from = at;
        for chunk in rest.chunks_exact(8) {
            let Ok(bytes) = <&[u8; 8]>::try_from(chunk) else {
                break;
            };
            let word = u64::from_le_bytes(*bytes);
            let any = leaves(word as u8)
                | leaves((word >> 8) as u8)
                | leaves((word >> 16) as u8)
                | leaves((word >> 24) as u8)
                | leaves((word >> 32) as u8)
                | leaves((word >> 40) as u8)
                | leaves((word >> 48) as u8)
                | leaves((word >> 56) as u8);
            if any != 0 {
                break;
            }
            from = from.saturating_add(8);
        }
        let skipped = value.get(from..)?.iter().position(|b| leaves(*b) != 0)?;
        Some(from.saturating_add(skipped))
    }

    /// The matches of the state at `row` that end at `end`.
    fn report(&self, row: u32, end: usize, f: &mut dyn FnMut(usize, usize, usize)) {
        let state = row.checked_div(self.stride).unwrap_or(0) as usize;
        self.outputs.report(state, end, f);
    }
}

/// A sparse Aho-Corasick automaton, for sets whose dense table would be too
/// large: the trie's edges per state (sorted by byte), failure links
/// followed at search time, and a dense row for the start state, where a
/// search spends most bytes. Edge targets carry [`SparseNfa::MATCH`] when
/// the target reports matches.
#[derive(Debug)]
struct SparseNfa {
    /// The byte an input byte stands for (ASCII-lowercased when
    /// case-insensitive).
    classes: [u8; 256],
    /// A trie searched from 0 only: no failure links are followed.
    anchored: bool,
    /// The start state's target per byte (0: stays at the start).
    start: Vec<u32>,
    /// Per state: its edges are `edge_class/edge_next[edge_start[s]..edge_start[s + 1]]`.
    edge_start: Vec<u32>,
    edge_class: Vec<u8>,
    edge_next: Vec<u32>,
    fail: Vec<u32>,
    outputs: Outputs,
}

impl SparseNfa {
    const MATCH: u32 = 1 << 31;

    fn build(patterns: &[Vec<u8>], case_insensitive: bool, anchored: bool) -> Option<SparseNfa> {
        // Edges are labelled by the byte itself (ASCII-lowercased when
        // case-insensitive): a large set may use all 256 bytes, more than
        // the dense DFA's classes can number.
        let mut classes = [0u8; 256];
        for (b, class) in (0..=255u8).zip(classes.iter_mut()) {
            *class = if case_insensitive {
                b.to_ascii_lowercase()
            } else {
                b
            };
        }
        let class_of = |b: u8| classes.get(usize::from(b)).copied();
        // The trie: per state, (byte, child) edges sorted by byte.
        let mut edges: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        let mut own: Vec<Vec<u32>> = vec![Vec::new()];
        for (id, pattern) in patterns.iter().enumerate() {
            let mut state = 0usize;
            for &b in pattern {
                let class = class_of(b)?;
                let out = edges.get(state)?;
                state = match out.binary_search_by_key(&class, |(c, _)| *c) {
                    Ok(i) => usize::try_from(out.get(i)?.1).ok()?,
                    Err(i) => {
                        let new = edges.len();
                        let new32 = u32::try_from(new).ok().filter(|n| *n < Self::MATCH)?;
                        edges.get_mut(state)?.insert(i, (class, new32));
                        edges.push(Vec::new());
                        own.push(Vec::new());
                        new
                    }
                };
            }
            own.get_mut(state)?.push(u32::try_from(id).ok()?);
        }
        let next = |edges: &[Vec<(u8, u32)>], state: usize, class: u8| -> Option<usize> {
            let out = edges.get(state)?;
            let i = out.binary_search_by_key(&class, |(c, _)| *c).ok()?;
            usize::try_from(out.get(i)?.1).ok()
        };
        // Failure links in breadth-first order; a state also reports the
        // patterns of its failure state (whose list is complete by then).
        let states = edges.len();
        let mut fail = vec![0u32; states];
        let mut all: Vec<Vec<u32>> = vec![Vec::new(); states];
        let mut queue = std::collections::VecDeque::new();
        queue.push_back(0usize);
        while let Some(state) = queue.pop_front() {
            let mut list = std::mem::take(own.get_mut(state)?);
            if !anchored && state != 0 {
                list.extend_from_slice(all.get(usize::try_from(*fail.get(state)?).ok()?)?);
            }
            *all.get_mut(state)? = list;
            for &(class, child) in edges.get(state)? {
                let child = usize::try_from(child).ok()?;
                // The longest proper suffix of the child's text that is in
                // the trie: from the parent's failure state, the first one
                // with an edge on this class (the start state's children
                // fail to the start state).
                let mut target = 0usize;
                if state != 0 {
                    let mut f = usize::try_from(*fail.get(state)?).ok()?;
                    target = loop {
                        if let Some(n) = next(&edges, f, class) {
                            break n;
                        }
                        if f == 0 {
                            break 0;
                        }
                        f = usize::try_from(*fail.get(f)?).ok()?;
                    };
                }
                *fail.get_mut(child)? = u32::try_from(target).ok()?;
                queue.push_back(child);
            }
        }
        let flagged = |target: u32| -> Option<u32> {
            let matches = !all.get(usize::try_from(target).ok()?)?.is_empty();
            Some(if matches {
                target | Self::MATCH
            } else {
                target
            })
        };
        let mut start = vec![0u32; 256];
        for &(class, child) in edges.first()? {
            *start.get_mut(usize::from(class))? = flagged(child)?;
        }
        let (mut edge_start, mut edge_class, mut edge_next) = (Vec::new(), Vec::new(), Vec::new());
        for out in &edges {
            edge_start.push(u32::try_from(edge_class.len()).ok()?);
            for &(class, child) in out {
                edge_class.push(class);
                edge_next.push(flagged(child)?);
            }
        }
        edge_start.push(u32::try_from(edge_class.len()).ok()?);
        let outputs = Outputs::new(&all, patterns)?;
        Some(SparseNfa {
            classes,
            anchored,
            start,
            edge_start,
            edge_class,
            edge_next,
            fail,
            outputs,
        })
    }

    /// The edge from `state` on `class` (a byte; its target, flagged), if any.
    fn edge(&self, state: u32, class: u8) -> Option<u32> {
        let s = state as usize;
        let from = self.edge_start.get(s).copied().unwrap_or(0) as usize;
        let to = self
            .edge_start
            .get(s.saturating_add(1))
            .copied()
            .unwrap_or(0) as usize;
        let classes = self.edge_class.get(from..to)?;
        let i = classes.binary_search(&class).ok()?;
        self.edge_next.get(from.saturating_add(i)).copied()
    }

    fn each_match(&self, value: &[u8], f: &mut dyn FnMut(usize, usize, usize)) {
        let mut state = 0u32;
        for (at, &byte) in value.iter().enumerate() {
            let class = self.classes.get(usize::from(byte)).copied().unwrap_or(0);
            // Follow failure links until a state has an edge on this byte
            // (at most the depth of the state: each byte deepens by one).
            let entry = loop {
                if state == 0 {
                    break self.start.get(usize::from(class)).copied().unwrap_or(0);
                }
                if let Some(entry) = self.edge(state, class) {
                    break entry;
                }
                if self.anchored {
                    return;
                }
                state = self.fail.get(state as usize).copied().unwrap_or(0);
            };
            if self.anchored && entry == 0 {
                return;
            }
            state = entry & !Self::MATCH;
            if entry & Self::MATCH != 0 {
                self.outputs.report(state as usize, at.saturating_add(1), f);
            }
        }
    }
}

/// The patterns each state of an automaton reports (its own, and those of
/// its failure states), and each pattern's length: one table for both kinds
/// of automaton.
#[derive(Debug)]
struct Outputs {
    /// Per state: its patterns are `patterns[start[s]..start[s + 1]]`.
    start: Vec<u32>,
    patterns: Vec<u32>,
    len: Vec<u32>,
}

impl Outputs {
    /// From each state's list of pattern ids (`per_state`, in state order).
    fn new(per_state: &[Vec<u32>], patterns: &[Vec<u8>]) -> Option<Outputs> {
        let mut start = Vec::with_capacity(per_state.len().checked_add(1)?);
        let mut ids = Vec::new();
        for list in per_state {
            start.push(u32::try_from(ids.len()).ok()?);
            ids.extend_from_slice(list);
        }
        start.push(u32::try_from(ids.len()).ok()?);
        Some(Outputs {
            start,
            patterns: ids,
            len: patterns
                .iter()
                .map(|p| u32::try_from(p.len()).unwrap_or(u32::MAX))
                .collect(),
        })
    }

    /// Calls `f(pattern, start, end)` for each pattern `state` reports, the
    /// match ending at `end`. Off the search loops' common path.
    #[inline(never)]
    fn report(&self, state: usize, end: usize, f: &mut dyn FnMut(usize, usize, usize)) {
        let from = self.start.get(state).copied().unwrap_or(0) as usize;
        let to = self
            .start
            .get(state.saturating_add(1))
            .copied()
            .unwrap_or(0) as usize;
        for &pattern in self.patterns.get(from..to).unwrap_or_default() {
            let len = self.len.get(pattern as usize).copied().unwrap_or(0) as usize;
            f(pattern as usize, end.saturating_sub(len), end);
        }
    }
}

#[derive(Debug)]
struct Literals {
    automaton: Searcher,
    /// Per pattern id: the leaves that use it, and how.
    targets: Vec<Vec<Target>>,
}

/// All literal and regex leaves on one subject.
#[derive(Debug)]
pub(crate) struct SubjectIndex {
    literals: Vec<Literals>,
    regexes: Option<(RegexSet, Vec<u32>)>,
}

impl SubjectIndex {
    /// Adds to `hits` every leaf matching `value`. With `elements`, the value
    /// is a comma-separated list (a header): exact / prefix / suffix also
    /// match at element boundaries, and regexes also run on each element.
    pub(crate) fn search(&self, value: &[u8], elements: bool, hits: &mut Vec<u32>) {
        // Overlapping matches can be many (value length × patterns ending at
        // each byte), while distinct leaves are few: compact the hits when
        // they double, so memory stays bounded by the leaves, not the value.
        let mut compact_at = hits.len().saturating_mul(2).max(HITS_COMPACT_MIN);
        for lit in &self.literals {
            lit.automaton.each_match(value, &mut |pattern, start, end| {
                let Some(targets) = lit.targets.get(pattern) else {
                    return;
                };
                // Boundaries only when a target needs them (they scan OWS).
                let starts = || starts_element(value, start, elements);
                let ends = || ends_element(value, end, elements);
                for target in targets {
                    let ok = match target.kind {
                        Kind::Contains => true,
                        Kind::Prefix => starts(),
                        Kind::Suffix => ends(),
                        Kind::Exact => starts() && ends(),
                    };
                    let bounded =
                        !target.segment || (segment_start(value, start) && segment_end(value, end));
                    if ok && bounded {
                        hits.push(target.leaf);
                    }
                }
                if hits.len() >= compact_at {
                    hits.sort_unstable();
                    hits.dedup();
                    compact_at = hits.len().saturating_mul(2).max(HITS_COMPACT_MIN);
                }
            });
        }
        if let Some((set, leaves)) = &self.regexes {
            let mut run = |v: &[u8]| {
                set.each_match(v, |i| {
                    if let Some(leaf) = leaves.get(i) {
                        hits.push(*leaf);
                    }
                });
            };
            run(value);
            // Elements are trimmed, so a single element with whitespace
            // around it is an element different from the whole value too.
            let padded = super::trim_ows(value).len() != value.len();
            if elements && (value.contains(&b',') || padded) {
                for element in value.split(|b| *b == b',') {
                    run(super::trim_ows(element));
                }
            }
        }
    }
}

/// Does a match starting at `at` start a path segment (start of the value,
/// after `/`, or on the `/` itself)?
fn segment_start(value: &[u8], at: usize) -> bool {
    at == 0
        || value.get(at) == Some(&b'/')
        || at
            .checked_sub(1)
            .and_then(|i| value.get(i))
            .is_some_and(|b| *b == b'/')
}

/// Does a match ending at `at` end a path segment (end of the value, before
/// `/`, `;` or `?`, or after a `/` it ends with)?
fn segment_end(value: &[u8], at: usize) -> bool {
    at >= value.len()
        || matches!(value.get(at), Some(b'/' | b';' | b'?'))
        || at
            .checked_sub(1)
            .and_then(|i| value.get(i))
            .is_some_and(|b| *b == b'/')
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Is `at` the start of the value, or of a list element (after `,` and OWS)?
fn starts_element(value: &[u8], at: usize, elements: bool) -> bool {
    let before = value.get(..at).unwrap_or_default();
    match before.iter().rposition(|b| !is_ows(*b)) {
        None => before.is_empty() || elements,
        Some(i) => elements && before.get(i) == Some(&b','),
    }
}

/// Is `at` the end of the value, or of a list element (before OWS and `,`)?
fn ends_element(value: &[u8], at: usize, elements: bool) -> bool {
    let after = value.get(at..).unwrap_or_default();
    match after.iter().position(|b| !is_ows(*b)) {
        None => after.is_empty() || elements,
        Some(i) => elements && after.get(i) == Some(&b','),
    }
}

/// An exact-match set (`in`), optionally ASCII case-insensitive.
#[derive(Debug)]
pub(crate) struct StrSet {
    items: super::host::FnvSet<Vec<u8>>,
    /// The items that contain a comma or end in whitespace: on a list they
    /// are matched by position, exactly as an `exact` with that text is.
    spanning: Option<Searcher>,
    case_insensitive: bool,
}

impl StrSet {
    pub(crate) fn new(
        items: &[String],
        case_insensitive: bool,
        path: &str,
    ) -> Result<Self, ConfigError> {
        let fold = |s: &String| {
            if case_insensitive {
                s.to_ascii_lowercase()
            } else {
                s.clone()
            }
        };
        // An element is compared trimmed, so items with a comma or with
        // whitespace at either end are found by position instead, with the
        // element-boundary rule `exact` uses: `in` is an `any` of `exact`.
        let ows = [' ', '\t'];
        let with_comma: Vec<Vec<u8>> = items
            .iter()
            .filter(|s| s.contains(',') || s.starts_with(ows) || s.ends_with(ows))
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let spanning = if with_comma.is_empty() {
            None
        } else {
            let automaton = Searcher::build(&with_comma, case_insensitive, false)
                .map_err(|e| ConfigError::new(path, format!("list too large to compile: {e}")))?;
            Some(automaton)
        };
        Ok(StrSet {
            items: items.iter().map(|s| fold(s).into_bytes()).collect(),
            spanning,
            case_insensitive,
        })
    }

    /// Distinct items.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whole value, or (with `elements`) any trimmed comma-separated element.
    pub(crate) fn matches(&self, value: &[u8], elements: bool) -> bool {
        let hit = |v: &[u8]| {
            if self.case_insensitive {
                self.items.contains(&v.to_ascii_lowercase())
            } else {
                self.items.contains(v)
            }
        };
        let spans = |v: &[u8]| {
            self.spanning.as_ref().is_some_and(|automaton| {
                let mut found = false;
                automaton.each_match(v, &mut |_, start, end| {
                    found = found || (starts_element(v, start, true) && ends_element(v, end, true));
                });
                found
            })
        };
        hit(value)
            || (elements
                && (value.split(|b| *b == b',').any(|e| hit(super::trim_ows(e))) || spans(value)))
    }
}

/// A set of IP networks: sorted, merged ranges searched by bisection, so
/// thousands of CIDRs cost a few comparisons.
#[derive(Debug, Default)]
pub(crate) struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSet {
    pub(crate) fn compile(entries: &[String], path: &str) -> Result<Self, ConfigError> {
        let mut nets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(ConfigError::new(
                            format!("{path}[{i}]"),
                            format!("`{entry}` is not an IP address or CIDR (like 10.0.0.0/8 or 2001:db8::/32)"),
                        ))
                    }
                },
            };
            if net.addr() != net.network() {
                return Err(ConfigError::new(
                    format!("{path}[{i}]"),
                    format!("`{entry}` has host bits set; did you mean {}?", net.trunc()),
                ));
            }
            nets.push(net);
        }
        Ok(IpSet::from_nets(nets))
    }

    /// A set of these networks (host bits already cleared by the caller).
    pub(crate) fn from_nets(nets: impl IntoIterator<Item = IpNet>) -> Self {
        // Both families are sorted and merged as u128 ranges: one sort
        // instance in the module instead of two.
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((
                    u128::from(u32::from(n.network())),
                    u128::from(u32::from(n.broadcast())),
                )),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        let narrow = |x: u128| u32::try_from(x).unwrap_or(u32::MAX);
        IpSet {
            v4: merge(v4)
                .into_iter()
                .map(|(start, end)| (narrow(start), narrow(end)))
                .collect(),
            v6: merge(v6),
        }
    }

    /// Disjoint ranges kept (after merging).
    pub(crate) fn len(&self) -> usize {
        self.v4.len().saturating_add(self.v6.len())
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => within(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => within(&self.v6, u128::from(v6)),
        }
    }
}

/// The ranges sorted, overlapping ones merged.
fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

fn within<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let after = ranges.partition_point(|(start, _)| *start <= x);
    after
        .checked_sub(1)
        .and_then(|i| ranges.get(i))
        .is_some_and(|(_, end)| x <= *end)
}

#[cfg(test)]
mod search_tests {
    use super::*;

    fn matches(searcher: &Searcher, value: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        searcher.each_match(value, &mut |p, s, e| out.push((p, s, e)));
        out.sort_unstable();
        out
    }

    /// Every (pattern, start, end) where a pattern occurs in `value`, by
    /// trying each pattern at each position.
    #[allow(clippy::arithmetic_side_effects)]
    fn naive(patterns: &[Vec<u8>], ci: bool, value: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut want = Vec::new();
        for (p, pattern) in patterns.iter().enumerate() {
            for start in 0..value.len() {
                let end = start + pattern.len();
                let hit = value.get(start..end).is_some_and(|w| {
                    if ci {
                        w.eq_ignore_ascii_case(pattern)
                    } else {
                        w == &pattern[..]
                    }
                });
                if hit {
                    want.push((p, start, end));
                }
            }
        }
        want.sort_unstable();
        want
    }

    /// A dense automaton with many bytes leaving its start state (the skip
    /// reads byte by byte) and one with few (eight-byte steps) report every
    /// occurrence a naive search finds.
    #[test]
    fn dense_skips_agree_with_a_naive_search() {
        let many: Vec<Vec<u8>> = (b'a'..=b'z')
            .map(|b| vec![b, b'x'])
            .chain([b"bot".to_vec(), b"a b".to_vec(), b"zz".to_vec()])
            .collect();
        let few: Vec<Vec<u8>> = vec![b"bot".to_vec(), b"zgrab".to_vec(), b"q".to_vec()];
        let values: [&[u8]; 6] = [
            b"Mozilla/5.0 (X11; Linux x86_64) zgrab/1 bot axbx zz",
            b"   ...   ax",
            b"12345678901234567890 qbot",
            b"",
            b"a b ax BOT ZGRAB",
            b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ];
        for (patterns, dense) in [(&many, true), (&few, false)] {
            for ci in [false, true] {
                let searcher = Searcher::build(patterns, ci, false).unwrap();
                let Searcher::Dense(dfa) = &searcher else {
                    panic!("not dense");
                };
                assert_eq!(dfa.start_dense, dense);
                for value in values {
                    assert_eq!(
                        matches(&searcher, value),
                        naive(patterns, ci, value),
                        "{ci} {:?}",
                        String::from_utf8_lossy(value)
                    );
                }
            }
        }
    }

    /// An anchored searcher (dense or NFA) reports exactly the matches of
    /// the unanchored one that start at 0.
    #[test]
    fn anchored_search_is_the_unanchored_one_from_zero() {
        let patterns: Vec<Vec<u8>> = ["/a", "/ab", "b", "/ab/c", "ab", "/b/", "/"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let values: [&[u8]; 7] = [b"/ab/c/d", b"/b/ab", b"ab/ab", b"", b"/", b"x/ab", b"/AB/c"];
        for ci in [false, true] {
            let dense = Searcher::build(&patterns, ci, true).unwrap();
            assert!(matches!(dense, Searcher::Dense(_)));
            let nfa = Searcher::Sparse(Box::new(SparseNfa::build(&patterns, ci, true).unwrap()));
            let full = Searcher::build(&patterns, ci, false).unwrap();
            for value in values {
                let want: Vec<_> = matches(&full, value)
                    .into_iter()
                    .filter(|(_, s, _)| *s == 0)
                    .collect();
                assert_eq!(matches(&dense, value), want, "{value:?} ci={ci}");
                assert_eq!(matches(&nfa, value), want, "{value:?} ci={ci}");
            }
        }
    }

    /// IPv4 and IPv6 ranges are merged (nested, overlapping and adjacent
    /// ones) and searched per family, at both ends of each space.
    #[test]
    fn ip_sets_merge_ranges_per_family() {
        let nets = [
            "10.1.0.0/16",
            "10.0.0.0/8",
            "192.0.2.0/25",
            "192.0.2.64/26",
            "255.255.255.255/32",
            "0.0.0.0/32",
            "2001:db8::/32",
            "2001:db8:1::/48",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
        ];
        let set = IpSet::from_nets(nets.iter().map(|n| n.parse::<IpNet>().unwrap()));
        // 10/8, 192.0.2.0/25, 255.255.255.255, 0.0.0.0; 2001:db8::/32, ffff...
        assert_eq!(set.len(), 6);
        for (ip, want) in [
            ("10.200.3.4", true),
            ("10.1.2.3", true),
            ("11.0.0.0", false),
            ("192.0.2.127", true),
            ("192.0.2.128", false),
            ("255.255.255.255", true),
            ("255.255.255.254", false),
            ("0.0.0.0", true),
            ("0.0.0.1", false),
            ("2001:db8:ffff::1", true),
            ("2001:db9::", false),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("::ffff:10.9.9.9", true),
        ] {
            assert_eq!(set.contains(ip.parse().unwrap()), want, "{ip}");
        }
    }

    /// Both automata, anchored or not, report exactly the matches a naive
    /// search finds (pseudo-random sets over a small alphabet, so patterns
    /// share prefixes and suffixes and overlap).
    #[test]
    fn dense_and_sparse_report_every_match() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as usize
        };
        let alphabet = b"abAB/";
        for round in 0..300 {
            let ci = round % 2 == 1;
            let mut patterns: Vec<Vec<u8>> = (0..1 + next(12))
                .map(|_| (0..1 + next(4)).map(|_| alphabet[next(5)]).collect())
                .collect();
            patterns.sort();
            patterns.dedup_by(|a, b| a.eq_ignore_ascii_case(b) && ci || a == b);
            for _ in 0..10 {
                let value: Vec<u8> = (0..next(16)).map(|_| alphabet[next(5)]).collect();
                let want = naive(&patterns, ci, &value);
                for anchored in [false, true] {
                    let want: Vec<_> = want
                        .iter()
                        .copied()
                        .filter(|(_, s, _)| !anchored || *s == 0)
                        .collect();
                    let dense = Searcher::Dense(Box::new(
                        DenseDfa::build(&patterns, ci, anchored).unwrap(),
                    ));
                    let sparse = Searcher::Sparse(Box::new(
                        SparseNfa::build(&patterns, ci, anchored).unwrap(),
                    ));
                    let what = format!("{patterns:?} on {value:?} ci={ci} anchored={anchored}");
                    assert_eq!(matches(&dense, &value), want, "dense: {what}");
                    assert_eq!(matches(&sparse, &value), want, "sparse: {what}");
                }
            }
        }
    }

    /// The dense table's size is its real trie (shared prefixes counted
    /// once), not the patterns' bytes: thousands of tokens sharing a stem
    /// still get the dense DFA.
    #[test]
    // Native only: under Node's WASI (make test-wasm32) the two 20,000-pattern
    // builds grow the debug module's memory so far that Node 20 segfaults at
    // exit after every test has passed (seen 2026-11-28 in every run after
    // 01:00 UTC, not in the CI run before; with this test left out, none).
    // The sizing it checks is target-independent and runs natively.
    #[cfg_attr(target_arch = "wasm32", ignore)]
    fn dense_size_counts_trie_states() {
        let patterns: Vec<Vec<u8>> = (0..20_000)
            .map(|i| format!("some-long-shared-stem/{i}").into_bytes())
            .collect();
        // 20,000 × 26 bytes × 14 classes would be 7 Mi entries; the trie
        // has about 22,000 states × 14.
        assert!(matches!(
            Searcher::build(&patterns, true, false).unwrap(),
            Searcher::Dense(_)
        ));
        let distinct: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| {
                let b = i.to_le_bytes();
                vec![
                    b'a' + (b[0] % 26),
                    b[0],
                    b[1],
                    b'x',
                    b[0] ^ b[1],
                    b'y',
                    b[1] | 1,
                ]
            })
            .collect();
        assert!(matches!(
            Searcher::build(&distinct, false, false).unwrap(),
            Searcher::Sparse(..)
        ));
    }
}
