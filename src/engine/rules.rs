//! Compiling rule specs into condition trees, with every check done here.

use super::config::{Action, Boundary, NodeSpec, Per, RateLimitSpec, Scope};
use super::error::ConfigError;
use super::header::header_name;
use super::host::Allowlist;
use super::limits::{MAX_DEPTH, MAX_PATTERN_BYTES, MAX_PATTERN_LEN, MAX_SLOTS};
use super::matchers::{regex_set, IndexBuilder, IpSet, Kind, StrSet};
use super::presets;
use super::request::{KeyPart, RateLimit};
use crate::limiter::{Rate, NANOS};

/// What a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    /// A header, by slot in `Engine::header_names`.
    Header(usize),
    /// A query parameter, by slot in `Engine::query_names`.
    Query(usize),
    Path,
    PathAndQuery,
    Method,
    Scheme,
    Protocol,
    Host,
    HostKind,
    ClientIp,
}

impl Subject {
    /// Headers are comma-separated lists (repeated lines arrive joined).
    pub(crate) fn is_list(self) -> bool {
        matches!(self, Subject::Header(_))
    }
}

/// A compiled condition.
#[derive(Debug)]
pub(crate) enum Node {
    /// A literal or regex leaf, answered by the subject's index.
    Indexed {
        index: usize,
        leaf: u32,
    },
    In {
        subject: Subject,
        set: StrSet,
    },
    HostIn(Allowlist),
    /// A whole condition that reads nothing but the Host's kind and at most
    /// one allowlist, answered ahead of time (see [`host_table`]).
    HostTable(Box<HostTable>),
    IpIn(IpSet),
    /// `in_list`: a named list, by id (its contents come with the request).
    InList {
        subject: Subject,
        list: u32,
    },
    Present(Subject),
    Absent(Subject),
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub name: String,
    pub action: Action,
    pub scope: Scope,
    pub limit: Option<RateLimit>,
    /// Milliseconds a drop by this rule is held first (`tarpit`).
    pub tarpit_ms: Option<u64>,
    pub node: Node,
    /// The rule as configured (compact JSON), for explanations.
    pub source: String,
    /// The named lists its conditions read (ids), in first-use order.
    pub lists: Vec<u32>,
}

/// Shared state while compiling one configuration.
#[derive(Debug, Default)]
pub(crate) struct Compiler {
    pub header_names: Vec<String>,
    pub query_names: Vec<Vec<u8>>,
    pub index_subjects: Vec<Subject>,
    pub indexes: Vec<IndexBuilder>,
    /// Per leaf id: the rule it belongs to.
    pub leaf_rule: Vec<u32>,
    /// Every subject some condition reads.
    pub used: Vec<Subject>,
    pattern_bytes: usize,
    current_rule: u32,
    /// Declared lists (name, format), by id.
    pub list_decls: Vec<(String, super::lists::Format)>,
    /// Lists read by the rule being compiled.
    rule_lists: Vec<u32>,
}

impl Compiler {
    pub(crate) fn header_slot(&mut self, name: String) -> usize {
        slot(&mut self.header_names, name)
    }

    fn query_slot(&mut self, name: Vec<u8>) -> usize {
        slot(&mut self.query_names, name)
    }

    fn index_for(&mut self, subject: Subject) -> usize {
        match self.index_subjects.iter().position(|s| *s == subject) {
            Some(i) => i,
            None => {
                self.index_subjects.push(subject);
                self.indexes.push(IndexBuilder::default());
                self.index_subjects.len().saturating_sub(1)
            }
        }
    }

    fn new_leaf(&mut self) -> u32 {
        let leaf = u32::try_from(self.leaf_rule.len()).unwrap_or(u32::MAX);
        self.leaf_rule.push(self.current_rule);
        leaf
    }

    fn charge(&mut self, bytes: usize, path: &str) -> Result<(), ConfigError> {
        if bytes > MAX_PATTERN_LEN {
            return Err(ConfigError::new(
                path,
                format!("pattern longer than {MAX_PATTERN_LEN} bytes"),
            ));
        }
        self.pattern_bytes = self.pattern_bytes.saturating_add(bytes);
        if self.pattern_bytes > MAX_PATTERN_BYTES {
            return Err(ConfigError::new(
                path,
                format!("patterns exceed {MAX_PATTERN_BYTES} bytes in total"),
            ));
        }
        Ok(())
    }

    /// Compiles one top-level rule.
    pub(crate) fn rule(
        &mut self,
        spec: &NodeSpec,
        index: usize,
        name: String,
        path: &str,
    ) -> Result<Rule, ConfigError> {
        self.current_rule = u32::try_from(index).unwrap_or(u32::MAX);
        let action = spec.action.unwrap_or_default();
        let scope = spec.scope.unwrap_or_default();
        if scope == Scope::Connection && action == Action::Allow {
            return Err(ConfigError::new(
                format!("{path}.scope"),
                "an allow rule closes nothing; `scope` is for drop and log rules",
            ));
        }
        let limit = match &spec.rate_limit {
            Some(rl) => {
                if action == Action::Allow {
                    return Err(ConfigError::new(
                        format!("{path}.rate_limit"),
                        "an allow rule cannot be rate limited",
                    ));
                }
                Some(self.rate_limit(rl, &name, &format!("{path}.rate_limit"))?)
            }
            None => None,
        };
        let tarpit_ms = match &spec.tarpit {
            Some(_) if action == Action::Allow => {
                return Err(ConfigError::new(
                    format!("{path}.tarpit"),
                    "an allow rule holds nothing; `tarpit` is for drop and log rules",
                ))
            }
            Some(text) => Some(
                super::config::tarpit_ms(text)
                    .map_err(|e| ConfigError::new(format!("{path}.tarpit"), e))?,
            ),
            None => None,
        };
        let unconditional = limit.is_some() && !has_condition(spec);
        self.rule_lists.clear();
        let node = if unconditional {
            Node::All(Vec::new())
        } else {
            self.node(spec, path, 0)?
        };
        Ok(Rule {
            name,
            action,
            scope,
            limit,
            tarpit_ms,
            node,
            source: String::new(),
            lists: std::mem::take(&mut self.rule_lists),
        })
    }

    fn node(&mut self, spec: &NodeSpec, path: &str, depth: usize) -> Result<Node, ConfigError> {
        if depth > MAX_DEPTH {
            return Err(ConfigError::new(
                path,
                format!("conditions nested deeper than {MAX_DEPTH}"),
            ));
        }
        if depth > 0 {
            if spec.name.is_some() {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    "only a rule (top level) has a name",
                ));
            }
            if spec.action.is_some() {
                return Err(ConfigError::new(
                    format!("{path}.action"),
                    "only a rule (top level) has an action",
                ));
            }
            if spec.scope.is_some() {
                return Err(ConfigError::new(
                    format!("{path}.scope"),
                    "only a rule (top level) has a scope",
                ));
            }
            if spec.rate_limit.is_some() {
                return Err(ConfigError::new(
                    format!("{path}.rate_limit"),
                    "only a rule (top level) has a rate limit",
                ));
            }
            if spec.tarpit.is_some() {
                return Err(ConfigError::new(
                    format!("{path}.tarpit"),
                    "only a rule (top level) has a tarpit",
                ));
            }
        }
        let kinds = [
            spec.header.is_some() || spec.query.is_some() || spec.field.is_some(),
            spec.all.is_some(),
            spec.any.is_some(),
            spec.not.is_some(),
            spec.preset.is_some(),
        ];
        let subjects = [
            spec.header.is_some(),
            spec.query.is_some(),
            spec.field.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 || subjects.iter().filter(|k| **k).count() > 1
        {
            return Err(ConfigError::new(
                path,
                "a condition needs exactly one of: `header`, `query` or `field` (with an operator), `all`, `any`, `not`, `preset`",
            ));
        }
        let has_operator = spec.exact.is_some()
            || spec.prefix.is_some()
            || spec.suffix.is_some()
            || spec.contains.is_some()
            || spec.regex.is_some()
            || spec.in_list.is_some()
            || spec.named_list.is_some()
            || spec.present.is_some()
            || spec.absent.is_some()
            || spec.case_insensitive
            || spec.boundary.is_some();
        let combinator = |name: &str| -> Result<(), ConfigError> {
            if has_operator {
                Err(ConfigError::new(
                    path,
                    format!("`{name}` takes no operator; put operators in its conditions"),
                ))
            } else {
                Ok(())
            }
        };
        if let Some(children) = &spec.all {
            combinator("all")?;
            return Ok(Node::All(self.children(
                children,
                &format!("{path}.all"),
                depth,
            )?));
        }
        if let Some(children) = &spec.any {
            combinator("any")?;
            return Ok(Node::Any(self.children(
                children,
                &format!("{path}.any"),
                depth,
            )?));
        }
        if let Some(child) = &spec.not {
            combinator("not")?;
            return Ok(Node::Not(Box::new(self.node(
                child,
                &format!("{path}.not"),
                depth.saturating_add(1),
            )?)));
        }
        if let Some(name) = &spec.preset {
            combinator("preset")?;
            let entries = presets::conditions(name)
                .ok_or_else(|| ConfigError::new(format!("{path}.preset"), presets::unknown(name)))?
                .map_err(|e| ConfigError::new(format!("{path}.preset"), e))?;
            let mut nodes = Vec::with_capacity(entries.len());
            for (i, entry) in entries.iter().enumerate() {
                nodes.push(self.node(
                    entry,
                    &format!("preset {name} entry {i}"),
                    depth.saturating_add(1),
                )?);
            }
            return Ok(Node::Any(nodes));
        }
        let subject = self.subject(spec, path)?;
        if !self.used.contains(&subject) {
            self.used.push(subject);
        }
        self.leaf(spec, subject, path)
    }

    fn children(
        &mut self,
        specs: &[NodeSpec],
        path: &str,
        depth: usize,
    ) -> Result<Vec<Node>, ConfigError> {
        if specs.is_empty() {
            return Err(ConfigError::new(path, "needs at least one condition"));
        }
        specs
            .iter()
            .enumerate()
            .map(|(i, s)| self.node(s, &format!("{path}[{i}]"), depth.saturating_add(1)))
            .collect()
    }

    fn subject(&mut self, spec: &NodeSpec, path: &str) -> Result<Subject, ConfigError> {
        if let Some(header) = &spec.header {
            let name = header_name(header, &format!("{path}.header"))?;
            return Ok(Subject::Header(self.header_slot(name)));
        }
        if let Some(param) = &spec.query {
            if param.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.query"),
                    "query parameter name is empty",
                ));
            }
            return Ok(Subject::Query(self.query_slot(param.clone().into_bytes())));
        }
        let field = spec.field.as_deref().unwrap_or_default();
        Ok(match field {
            "path" => Subject::Path,
            "path_and_query" => Subject::PathAndQuery,
            "method" => Subject::Method,
            "scheme" => Subject::Scheme,
            "protocol" => Subject::Protocol,
            "host" => Subject::Host,
            "host_kind" => Subject::HostKind,
            "client_ip" => Subject::ClientIp,
            other => {
                return Err(ConfigError::new(
                    format!("{path}.field"),
                    format!("unknown field `{other}`; expected one of path, path_and_query, method, scheme, protocol, host, host_kind, client_ip"),
                ))
            }
        })
    }

    fn leaf(&mut self, spec: &NodeSpec, subject: Subject, path: &str) -> Result<Node, ConfigError> {
        let ci = spec.case_insensitive;
        let segment = spec.boundary == Some(Boundary::Segment);
        if segment {
            let at = format!("{path}.boundary");
            if !matches!(subject, Subject::Path | Subject::PathAndQuery) {
                return Err(ConfigError::new(
                    at,
                    "`boundary` applies to the `path` and `path_and_query` fields",
                ));
            }
            if spec.prefix.is_none() && spec.suffix.is_none() && spec.contains.is_none() {
                return Err(ConfigError::new(
                    at,
                    "`boundary` goes with `prefix`, `suffix` or `contains`",
                ));
            }
        }
        let mut ops: Vec<(&str, Node)> = Vec::new();
        let literal_ops = [
            ("exact", &spec.exact, Kind::Exact),
            ("prefix", &spec.prefix, Kind::Prefix),
            ("suffix", &spec.suffix, Kind::Suffix),
            ("contains", &spec.contains, Kind::Contains),
        ];
        for (op, value, kind) in literal_ops {
            if let Some(value) = value {
                let at = format!("{path}.{op}");
                self.operator_allowed(subject, op, &at)?;
                if value.is_empty() {
                    return Err(ConfigError::new(
                        at,
                        "empty pattern would match every request; use `present` for that",
                    ));
                }
                self.charge(value.len(), &at)?;
                let leaf = self.new_leaf();
                let index = self.index_for(subject);
                if let Some(builder) = self.indexes.get_mut(index) {
                    builder.literal(value.as_bytes(), kind, ci, segment, leaf);
                }
                ops.push((op, Node::Indexed { index, leaf }));
            }
        }
        if let Some(pattern) = &spec.regex {
            let at = format!("{path}.regex");
            self.operator_allowed(subject, "regex", &at)?;
            self.charge(pattern.len(), &at)?;
            // Validate the pattern as written: wrapped in `(?i:…)` first, an
            // invalid one such as `x)|(` would become a valid regex that
            // matches everything.
            regex_set([pattern.as_str()]).map_err(|e| {
                ConfigError::new(&at, format!("invalid regex: {}", one_line(&e.to_string())))
            })?;
            let pattern = if ci {
                format!("(?i:{pattern})")
            } else {
                pattern.clone()
            };
            regex_set([pattern.as_str()]).map_err(|e| {
                ConfigError::new(&at, format!("invalid regex: {}", one_line(&e.to_string())))
            })?;
            let leaf = self.new_leaf();
            let index = self.index_for(subject);
            if let Some(builder) = self.indexes.get_mut(index) {
                builder.regex(pattern, leaf);
            }
            ops.push(("regex", Node::Indexed { index, leaf }));
        }
        if let Some(list) = &spec.in_list {
            let at = format!("{path}.in");
            self.operator_allowed(subject, "in", &at)?;
            if list.is_empty() {
                return Err(ConfigError::new(at, "empty list would never match"));
            }
            // Each entry is one pattern (8 KiB at most); all count towards
            // the configuration's total.
            for (i, item) in list.iter().enumerate() {
                self.charge(item.len(), &format!("{at}[{i}]"))?;
            }
            ops.push((
                "in",
                match subject {
                    Subject::Host => Node::HostIn(Allowlist::compile(list, &at)?),
                    Subject::ClientIp => Node::IpIn(IpSet::compile(list, &at)?),
                    _ => Node::In {
                        subject,
                        set: StrSet::new(list, ci, &at)?,
                    },
                },
            ));
        }
        if let Some(name) = &spec.named_list {
            ops.push(("in_list", self.named_list(name, subject, ci, path)?));
        }
        for (op, value, node) in [
            ("present", spec.present, Node::Present(subject)),
            ("absent", spec.absent, Node::Absent(subject)),
        ] {
            if let Some(value) = value {
                let at = format!("{path}.{op}");
                self.operator_allowed(subject, op, &at)?;
                if !value {
                    return Err(ConfigError::new(
                        at,
                        format!("`{op}` must be true (omit it instead of setting false)"),
                    ));
                }
                if ci {
                    return Err(ConfigError::new(
                        format!("{path}.case_insensitive"),
                        "has no meaning with `present` / `absent`",
                    ));
                }
                ops.push((op, node));
            }
        }
        match (ops.pop(), ops.is_empty()) {
            (Some((_, node)), true) => Ok(node),
            (None, _) => Err(ConfigError::new(
                path,
                "a condition needs one operator: exact, prefix, suffix, contains, regex, in, in_list, present or absent",
            )),
            (Some(_), false) => Err(ConfigError::new(
                path,
                "a condition takes exactly one operator (exact, prefix, suffix, contains, regex, in, in_list, present, absent); combine conditions with `all` / `any`",
            )),
        }
    }

    fn operator_allowed(&self, subject: Subject, op: &str, path: &str) -> Result<(), ConfigError> {
        let ok = match subject {
            Subject::Header(_) | Subject::Query(_) => true,
            Subject::ClientIp => op == "in" || op == "in_list",
            _ => !matches!(op, "present" | "absent"),
        };
        if ok {
            Ok(())
        } else if subject == Subject::ClientIp {
            Err(ConfigError::new(
                path,
                "`client_ip` takes only `in` (a list of addresses and CIDRs) or `in_list`",
            ))
        } else {
            Err(ConfigError::new(
                path,
                format!(
                    "`{op}` only applies to `header` and `query`; this field is always present"
                ),
            ))
        }
    }
}

impl Compiler {
    /// `in_list`: a declared list of the right kind for the subject.
    fn named_list(
        &mut self,
        name: &str,
        subject: Subject,
        case_insensitive: bool,
        path: &str,
    ) -> Result<Node, ConfigError> {
        let at = format!("{path}.in_list");
        self.operator_allowed(subject, "in_list", &at)?;
        let Some(id) = self.list_decls.iter().position(|(n, _)| n == name) else {
            let known: Vec<&str> = self.list_decls.iter().map(|(n, _)| n.as_str()).collect();
            return Err(ConfigError::new(
                at,
                format!(
                    "no list `{name}` in `lists` (declared: {})",
                    known.join(", ")
                ),
            ));
        };
        let is_ip = self
            .list_decls
            .get(id)
            .is_some_and(|(_, format)| format.is_ip());
        if is_ip != (subject == Subject::ClientIp) {
            return Err(ConfigError::new(
                at,
                if is_ip {
                    format!("`{name}` is a list of addresses; only `client_ip` reads it")
                } else {
                    format!("`{name}` is a list of strings; `client_ip` needs an address list (cidr or google-json)")
                },
            ));
        }
        if case_insensitive {
            return Err(ConfigError::new(
                format!("{path}.case_insensitive"),
                "set `case_insensitive` on the list declaration instead",
            ));
        }
        if matches!(subject, Subject::HostKind) {
            return Err(ConfigError::new(at, "`host_kind` takes no list"));
        }
        let list = u32::try_from(id).unwrap_or(u32::MAX);
        if !self.rule_lists.contains(&list) {
            self.rule_lists.push(list);
        }
        Ok(Node::InList { subject, list })
    }
}

impl Rule {
    /// Decided by index hits alone? (Not if rate limited: the limit is asked
    /// only when the rule is reached in order.)
    pub(crate) fn is_flat(&self) -> bool {
        self.limit.is_none() && is_flat(&self.node)
    }
}

/// Does the spec name a condition at all? (A rate-limited rule may not: it
/// then limits every request.)
fn has_condition(spec: &NodeSpec) -> bool {
    spec.header.is_some()
        || spec.query.is_some()
        || spec.field.is_some()
        || spec.all.is_some()
        || spec.any.is_some()
        || spec.not.is_some()
        || spec.preset.is_some()
}

impl Compiler {
    fn rate_limit(
        &mut self,
        spec: &RateLimitSpec,
        rule: &str,
        path: &str,
    ) -> Result<RateLimit, ConfigError> {
        if spec.key.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.key"),
                "name at least one key part: client_ip, host, method, path or header:<name>",
            ));
        }
        let mut key = Vec::with_capacity(spec.key.len());
        for (i, part) in spec.key.iter().enumerate() {
            key.push(match part.as_str() {
                "client_ip" => KeyPart::ClientIp,
                "host" => KeyPart::Host,
                "method" => KeyPart::Method,
                "path" => KeyPart::Path,
                other => match other.strip_prefix("header:") {
                    Some(name) => {
                        let name = header_name(name, &format!("{path}.key[{i}]"))?;
                        KeyPart::Header(self.header_slot(name))
                    }
                    None => {
                        return Err(ConfigError::new(
                            format!("{path}.key[{i}]"),
                            format!("unknown key part `{other}`; expected client_ip, host, method, path or header:<name>"),
                        ))
                    }
                },
            });
            let subject = match key.last() {
                Some(KeyPart::ClientIp) => Some(Subject::ClientIp),
                Some(KeyPart::Host) => Some(Subject::Host),
                Some(KeyPart::Method) => Some(Subject::Method),
                Some(KeyPart::Path) => Some(Subject::Path),
                _ => None,
            };
            if let Some(subject) = subject {
                if !self.used.contains(&subject) {
                    self.used.push(subject);
                }
            }
        }
        if spec.rate == 0 {
            return Err(ConfigError::new(
                format!("{path}.rate"),
                "must be at least 1 (to drop everything, leave out rate_limit)",
            ));
        }
        let burst = spec.burst.unwrap_or(spec.rate);
        if burst == 0 {
            return Err(ConfigError::new(
                format!("{path}.burst"),
                "must be at least 1",
            ));
        }
        let slots = spec.slots.unwrap_or(65_536);
        if slots == 0 || slots > MAX_SLOTS {
            return Err(ConfigError::new(
                format!("{path}.slots"),
                format!("must be 1 to {MAX_SLOTS}"),
            ));
        }
        let period_ns = match spec.per {
            Per::Second => NANOS,
            Per::Minute => NANOS.saturating_mul(60),
            Per::Hour => NANOS.saturating_mul(3600),
        };
        Ok(RateLimit {
            rule: rule.to_string(),
            rate: Rate {
                tokens: spec.rate,
                period_ns,
                burst,
            },
            slots,
            key,
        })
    }
}

/// Can this rule's matches be read straight off the subject indexes? True
/// for a literal/regex leaf or an `any` of such leaves (presets), which is what
/// lets thousands of them cost one pass per subject.
pub(crate) fn is_flat(node: &Node) -> bool {
    match node {
        Node::Indexed { .. } => true,
        Node::Any(children) => children.iter().all(is_flat),
        _ => false,
    }
}

/// The subject indexes a node reads.
pub(crate) fn indexes_of(node: &Node, out: &mut Vec<usize>) {
    match node {
        Node::Indexed { index, .. } if !out.contains(index) => out.push(*index),
        Node::All(children) | Node::Any(children) => {
            children.iter().for_each(|c| indexes_of(c, out))
        }
        Node::Not(child) => indexes_of(child, out),
        _ => {}
    }
}

fn slot<T: PartialEq>(names: &mut Vec<T>, name: T) -> usize {
    match names.iter().position(|n| *n == name) {
        Some(i) => i,
        None => {
            names.push(name);
            names.len().saturating_sub(1)
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A condition reading only `host_kind` and (at most) one host allowlist,
/// answered ahead of time for each of the four host kinds
/// ([`super::request::HOST_KINDS`]): its value when the Host is on the
/// allowlist and when it is not. A decision then costs a table lookup and at
/// most one allowlist lookup, not a walk of the condition tree. (These reads
/// have one reading with one value, so "any reading" and "every reading"
/// agree and one table serves both.)
#[derive(Debug)]
pub(crate) struct HostTable {
    /// Per host kind: (value when allowed, value when not allowed).
    pub kinds: [(bool, bool); 4],
    /// The allowlist the condition reads (`None`: it reads none, and both
    /// values are the same).
    pub allow: Option<Allowlist>,
}

impl HostTable {
    /// The condition's value for a Host of kind slot `kind`; `allowed` (is
    /// the Host on [`HostTable::allow`]?) is asked only where the answer
    /// depends on it.
    pub(crate) fn value(&self, kind: usize, allowed: impl FnOnce() -> bool) -> bool {
        match self.kinds.get(kind) {
            Some(&(yes, no)) if yes == no => yes,
            Some(&(yes, no)) => {
                if allowed() {
                    yes
                } else {
                    no
                }
            }
            None => false,
        }
    }
}

/// Rewrites a condition into a [`HostTable`] when it reads nothing but the
/// `host_kind` index (`kind_index`, whose hits per kind are `per_kind`) and
/// at most one `host` allowlist; any other condition is left as it is.
pub(crate) fn host_table(node: &mut Node, kind_index: Option<(usize, &[Vec<u32>; 4])>) {
    let mut allow: Option<*const Allowlist> = None;
    let mut kinds = [(false, false); 4];
    for (kind, entry) in kinds.iter_mut().enumerate() {
        // Only a name or an IP literal can be on an allowlist.
        let can_allow = kind >= 2;
        let yes = static_host(node, kind_index, kind, can_allow, &mut allow);
        let no = static_host(node, kind_index, kind, false, &mut allow);
        match (yes, no) {
            (Some(yes), Some(no)) => *entry = (yes, no),
            _ => return,
        }
    }
    let allow = allow.and_then(|_| take_allowlist(node));
    *node = Node::HostTable(Box::new(HostTable { kinds, allow }));
}

/// The value of `node` for a Host of this kind, on the allowlist or not;
/// `None` when it reads anything else (or a second allowlist).
fn static_host(
    node: &Node,
    kind_index: Option<(usize, &[Vec<u32>; 4])>,
    kind: usize,
    allowed: bool,
    allow: &mut Option<*const Allowlist>,
) -> Option<bool> {
    match node {
        Node::Indexed { index, leaf } => {
            let (at, per_kind) = kind_index?;
            if at != *index {
                return None;
            }
            Some(per_kind.get(kind)?.binary_search(leaf).is_ok())
        }
        Node::HostIn(list) => {
            let this: *const Allowlist = list;
            if allow.is_some_and(|seen| !std::ptr::eq(seen, this)) {
                return None;
            }
            *allow = Some(this);
            Some(allowed)
        }
        Node::All(children) => children.iter().try_fold(true, |acc, c| {
            static_host(c, kind_index, kind, allowed, allow).map(|v| acc && v)
        }),
        Node::Any(children) => children.iter().try_fold(false, |acc, c| {
            static_host(c, kind_index, kind, allowed, allow).map(|v| acc || v)
        }),
        Node::Not(child) => static_host(child, kind_index, kind, allowed, allow).map(|v| !v),
        _ => None,
    }
}

/// Moves the (one) allowlist out of a condition.
fn take_allowlist(node: &mut Node) -> Option<Allowlist> {
    match node {
        Node::HostIn(list) => Some(std::mem::take(list)),
        Node::All(children) | Node::Any(children) => children.iter_mut().find_map(take_allowlist),
        Node::Not(child) => take_allowlist(child),
        _ => None,
    }
}
