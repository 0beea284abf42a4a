//! Named lists that live outside the configuration (`lists` in the config,
//! `in_list` in a condition): their declarations, validated at config time,
//! and the pure parsers that turn a fetched body into an immutable
//! [`ListData`] snapshot.
//!
//! The compiled [`Engine`](super::Engine) never holds list contents: the
//! adapter keeps the current snapshot of each list (a [`ListSet`]) and hands
//! it to a decision through [`RequestSource::list`](super::RequestSource::list).
//! A list that has not loaded yet is `None` there, and the rules that read it
//! behave as its `on_missing` says.
//!
//! Matching costs O(log n): addresses are kept as sorted, merged, disjoint
//! ranges (8 bytes per IPv4 range, 32 per IPv6 range) searched by binary
//! search; strings in a hash set.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::ConfigError;
use super::matchers::{IpSet, StrSet};

/// Most lists in one configuration.
pub const MAX_LISTS: usize = 64;
/// Default and largest body accepted for one list.
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;
pub const MAX_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Most entries one list may hold.
pub const MAX_ENTRIES: usize = 2_000_000;
/// Bounds of `refresh` and `timeout`.
const MIN_REFRESH_MS: u64 = 1_000;
const MAX_REFRESH_MS: u64 = 7 * 24 * 3600 * 1000;
const MAX_TIMEOUT_MS: u64 = 300_000;

/// A list as written in the configuration.
#[derive(Debug, Clone)]
pub(crate) struct ListSpec {
    /// `http://` or `https://` URL; its host becomes `:authority`, its path
    /// and query the request's `:path`. May be left out (with `format`) for
    /// a list a preset names (`googlebot`, `bingbot`, ...).
    pub url: Option<String>,
    /// The Envoy cluster the request goes through (it decides TLS).
    pub cluster: String,
    pub format: Option<Format>,
    pub refresh: Option<String>,
    pub timeout: Option<String>,
    pub max_bytes: Option<u64>,
    /// Hex sha256 the body must have (a pinned list; a changed body is
    /// refused and the last good copy kept).
    pub sha256: Option<String>,
    pub on_missing: OnMissing,
    /// `strings` lists: compare ASCII case-insensitively.
    pub case_insensitive: bool,
}

/// How a list body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One IP address or CIDR per line; `#` and `;` start comments (FireHOL,
    /// Spamhaus DROP; anything after the first word of a line is ignored).
    Cidr,
    /// `{"prefixes": [{"ipv4Prefix": "…"} | {"ipv6Prefix": "…"}]}`: the
    /// format Google, Bing and others publish their crawler ranges in.
    GoogleJson,
    /// One string per line (user agents, hosts); empty lines and lines
    /// starting with `#` are skipped.
    Strings,
}

impl Format {
    /// Lists of addresses (read by `client_ip`) rather than strings.
    pub fn is_ip(self) -> bool {
        !matches!(self, Format::Strings)
    }
}

/// What the rules reading a list do until it has loaded once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// The rule is skipped (matches nothing): fail open, the default.
    #[default]
    Pass,
    /// The rule matches every request that reaches it (a drop rule drops,
    /// an allow rule allows): fail closed.
    Drop,
    /// A drop rule that reaches the missing list answers 503 instead of
    /// dropping (the client may retry; crawlers back off).
    Refuse,
}

impl Format {
    const NAMES: &'static [(&'static str, Format)] = &[
        ("cidr", Format::Cidr),
        ("google-json", Format::GoogleJson),
        ("strings", Format::Strings),
    ];

    pub(crate) fn from_json(v: &Value, at: &str) -> Result<Format, ConfigError> {
        super::json::variant(v, at, Format::NAMES)
    }
}

/// A list declaration at `at` (`lists.<name>`).
pub(crate) fn list_spec(v: &Value, at: &str) -> Result<ListSpec, ConfigError> {
    use super::json;
    const FIELDS: &[&str] = &[
        "url",
        "cluster",
        "format",
        "refresh",
        "timeout",
        "max_bytes",
        "sha256",
        "on_missing",
        "case_insensitive",
    ];
    const ON_MISSING: &[(&str, OnMissing)] = &[
        ("pass", OnMissing::Pass),
        ("drop", OnMissing::Drop),
        ("refuse", OnMissing::Refuse),
    ];
    let mut spec = ListSpec {
        url: None,
        cluster: String::new(),
        format: None,
        refresh: None,
        timeout: None,
        max_bytes: None,
        sha256: None,
        on_missing: OnMissing::default(),
        case_insensitive: false,
    };
    let mut cluster = None;
    json::object(v, at, "struct ListSpec", FIELDS, |name, v, at| {
        let text = |v: &Value| json::opt(v, at, json::string);
        match name {
            "url" => spec.url = text(v)?,
            "cluster" => cluster = Some(json::string(v, at)?),
            "format" => spec.format = json::opt(v, at, Format::from_json)?,
            "refresh" => spec.refresh = text(v)?,
            "timeout" => spec.timeout = text(v)?,
            "max_bytes" => spec.max_bytes = json::opt(v, at, json::u64)?,
            "sha256" => spec.sha256 = text(v)?,
            "on_missing" => spec.on_missing = json::variant(v, at, ON_MISSING)?,
            _ => spec.case_insensitive = json::boolean(v, at)?,
        }
        Ok(())
    })?;
    spec.cluster = cluster.ok_or_else(|| json::missing(at, "cluster"))?;
    Ok(spec)
}

/// A validated list declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListDecl {
    pub name: String,
    pub url: String,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub format: Format,
    pub refresh_ms: u64,
    pub timeout_ms: u64,
    pub max_bytes: u64,
    pub sha256: Option<[u8; 32]>,
    pub on_missing: OnMissing,
    pub case_insensitive: bool,
}

/// Validates every declaration; the order is the list ids'.
pub(crate) fn compile_decls(specs: &[(String, ListSpec)]) -> Result<Vec<ListDecl>, ConfigError> {
    if specs.len() > MAX_LISTS {
        return Err(ConfigError::new(
            "lists",
            format!("more than {MAX_LISTS} lists"),
        ));
    }
    specs
        .iter()
        .map(|(name, spec)| decl(name, spec, &format!("lists.{name}")))
        .collect()
}

fn decl(name: &str, spec: &ListSpec, path: &str) -> Result<ListDecl, ConfigError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ConfigError::new(
            path,
            "a list name is 1-64 characters of A-Z a-z 0-9 - _ (it appears in stats names)",
        ));
    }
    let known = super::presets::known_list(name);
    let (url, format) = match (&spec.url, spec.format, known) {
        (Some(url), Some(format), _) => (url.clone(), format),
        (None, None, Some(known)) => known,
        (None, _, _) => {
            return Err(ConfigError::new(
                format!("{path}.url"),
                "missing (only lists a preset names, like googlebot or bingbot, may leave out url and format)",
            ))
        }
        (Some(_), None, _) => {
            return Err(ConfigError::new(
                format!("{path}.format"),
                "missing: cidr, google-json or strings",
            ))
        }
    };
    let (authority, url_path) = split_url(&url).ok_or_else(|| {
        ConfigError::new(
            format!("{path}.url"),
            format!("`{url}` is not an http:// or https:// URL with a host"),
        )
    })?;
    if spec.cluster.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.cluster"),
            "name the Envoy cluster that reaches the list's server",
        ));
    }
    let refresh_ms = match &spec.refresh {
        Some(text) => duration_ms(text, &format!("{path}.refresh"))?,
        None => 3_600_000,
    };
    if !(MIN_REFRESH_MS..=MAX_REFRESH_MS).contains(&refresh_ms) {
        return Err(ConfigError::new(
            format!("{path}.refresh"),
            "must be between 1s and 7d",
        ));
    }
    let timeout_ms = match &spec.timeout {
        Some(text) => duration_ms(text, &format!("{path}.timeout"))?,
        None => 5_000,
    };
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(ConfigError::new(
            format!("{path}.timeout"),
            "must be between 1ms and 300s",
        ));
    }
    let max_bytes = spec.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    if max_bytes == 0 || max_bytes > MAX_MAX_BYTES {
        return Err(ConfigError::new(
            format!("{path}.max_bytes"),
            format!("must be between 1 and {MAX_MAX_BYTES}"),
        ));
    }
    let sha256 = match &spec.sha256 {
        Some(hex) => Some(parse_hex32(hex).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.sha256"),
                "expected 64 hex digits (the sha256 of the list body)",
            )
        })?),
        None => None,
    };
    if spec.case_insensitive && format != Format::Strings {
        return Err(ConfigError::new(
            format!("{path}.case_insensitive"),
            "applies only to `strings` lists",
        ));
    }
    Ok(ListDecl {
        name: name.to_string(),
        url,
        cluster: spec.cluster.clone(),
        authority,
        path: url_path,
        format,
        refresh_ms,
        timeout_ms,
        max_bytes,
        sha256,
        on_missing: spec.on_missing,
        case_insensitive: spec.case_insensitive,
    })
}

/// `http(s)://host[:port]/path?query` → (authority, path-and-query).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (rest.get(..at)?, rest.get(at..)?),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let valid = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    if authority.is_empty() || authority.contains('@') || !valid(authority) || !valid(&path) {
        return None;
    }
    Some((authority.to_string(), path))
}

/// `500ms`, `5s`, `10m`, `1h`, `1d` → milliseconds.
pub(crate) fn duration_ms(text: &str, path: &str) -> Result<u64, ConfigError> {
    let err = || {
        ConfigError::new(
            path,
            format!("`{text}` is not a duration like 500ms, 30s, 10m, 1h or 1d"),
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = (
        text.get(..digits).ok_or_else(err)?,
        text.get(digits..).ok_or_else(err)?,
    );
    let n: u64 = number.parse().map_err(|_| err())?;
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err()),
    };
    n.checked_mul(scale).ok_or_else(err)
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// The sha256 of a body.
pub fn sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// One loaded list: immutable, shared by every decision until replaced.
#[derive(Debug)]
pub struct ListData(Contents);

#[derive(Debug)]
enum Contents {
    Ips(IpSet),
    Strings(StrSet),
}

impl ListData {
    /// Entries as loaded (after merging overlapping ranges for IP lists).
    pub fn entries(&self) -> usize {
        match &self.0 {
            Contents::Ips(set) => set.len(),
            Contents::Strings(set) => set.len(),
        }
    }

    /// Is this address in the (address) list?
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        matches!(&self.0, Contents::Ips(set) if set.contains(ip))
    }

    /// Is this value (or, with `elements`, one comma-separated element of
    /// it) in the (string) list?
    pub fn matches_str(&self, value: &[u8], elements: bool) -> bool {
        matches!(&self.0, Contents::Strings(set) if set.matches(value, elements))
    }
}

/// Checks a fetched body against its declaration (size, pinned digest) and
/// parses it. Pure: the CLI, the tests and the filter share it.
pub fn load(decl: &ListDecl, body: &[u8]) -> Result<ListData, String> {
    let max = usize::try_from(decl.max_bytes).unwrap_or(usize::MAX);
    if body.len() > max {
        return Err(format!(
            "body of {} bytes exceeds max_bytes {}",
            body.len(),
            decl.max_bytes
        ));
    }
    if let Some(pin) = decl.sha256 {
        if sha256(body) != pin {
            return Err("body does not match the pinned sha256".into());
        }
    }
    parse(decl.format, decl.case_insensitive, body)
}

/// Parses a list body; an error names the first bad line or field. A body
/// with no entry at all is an error (an empty answer is far more often a
/// broken server than an empty list).
pub fn parse(format: Format, case_insensitive: bool, body: &[u8]) -> Result<ListData, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    let data = match format {
        Format::Cidr => ListData(Contents::Ips(parse_cidr_lines(text)?)),
        Format::GoogleJson => ListData(Contents::Ips(parse_prefix_json(text)?)),
        Format::Strings => {
            let items: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
            if items.len() > MAX_ENTRIES {
                return Err(format!("more than {MAX_ENTRIES} entries"));
            }
            let set =
                StrSet::new(&items, case_insensitive, "").map_err(|e| e.message().to_string())?;
            ListData(Contents::Strings(set))
        }
    };
    if data.entries() == 0 {
        return Err("the list has no entries".into());
    }
    Ok(data)
}

fn parse_net(entry: &str) -> Option<IpNet> {
    match entry.parse::<IpNet>() {
        Ok(net) => Some(net.trunc()),
        Err(_) => entry.parse::<IpAddr>().ok().map(IpNet::from),
    }
}

fn parse_cidr_lines(text: &str) -> Result<IpSet, String> {
    let mut nets = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let Some(word) = line.split_whitespace().next() else {
            continue;
        };
        let net = parse_net(word).ok_or_else(|| {
            format!(
                "line {}: `{word}` is not an IP address or CIDR",
                number.saturating_add(1)
            )
        })?;
        nets.push(net);
        if nets.len() > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
    }
    Ok(IpSet::from_nets(nets))
}

/// `{"prefixes": [{"ipv4Prefix": "…"} | {"ipv6Prefix": "…"}]}`; other
/// fields (`syncToken`, `creationTime`, `service`, ...) are ignored.
struct PrefixDoc {
    prefixes: Vec<Prefix>,
}

struct Prefix {
    v4: Option<String>,
    v6: Option<String>,
}

fn prefix_doc(v: &Value) -> Result<PrefixDoc, ConfigError> {
    use super::json;
    let mut prefixes = None;
    json::object(v, "", "struct PrefixDoc", &[], |name, v, at| {
        if name == "prefixes" {
            prefixes = Some(json::seq(v, at, |v, at| {
                let mut p = Prefix { v4: None, v6: None };
                json::object(v, at, "struct Prefix", &[], |name, v, at| {
                    match name {
                        "ipv4Prefix" => p.v4 = json::opt(v, at, json::string)?,
                        "ipv6Prefix" => p.v6 = json::opt(v, at, json::string)?,
                        _ => {}
                    }
                    Ok(())
                })?;
                Ok(p)
            })?);
        }
        Ok(())
    })?;
    Ok(PrefixDoc {
        prefixes: prefixes.ok_or_else(|| json::missing("", "prefixes"))?,
    })
}

fn parse_prefix_json(text: &str) -> Result<IpSet, String> {
    // `from_slice`, as every JSON read in the crate: one serde_json reader
    // instance in drop444.wasm (a `from_str` one is ~5 KB more).
    let doc: Value =
        serde_json::from_slice(text.as_bytes()).map_err(|e| format!("invalid JSON: {e}"))?;
    let doc = prefix_doc(&doc).map_err(|e| match e.path() {
        "" => format!("invalid JSON: {}", e.message()),
        at => format!("invalid JSON: {at}: {}", e.message()),
    })?;
    if doc.prefixes.len() > MAX_ENTRIES {
        return Err(format!("more than {MAX_ENTRIES} entries"));
    }
    let mut nets = Vec::with_capacity(doc.prefixes.len());
    for (i, prefix) in doc.prefixes.iter().enumerate() {
        for entry in [&prefix.v4, &prefix.v6].into_iter().flatten() {
            let net = parse_net(entry)
                .ok_or_else(|| format!("prefixes[{i}]: `{entry}` is not a CIDR"))?;
            nets.push(net);
        }
    }
    Ok(IpSet::from_nets(nets))
}

/// The current snapshot of every declared list, by list id (`None`: not
/// loaded yet). Cloning is cheap (one `Arc` per list).
#[derive(Debug, Clone, Default)]
pub struct ListSet {
    lists: Vec<Option<Arc<ListData>>>,
}

impl ListSet {
    /// Room for `count` lists, none loaded.
    pub fn new(count: usize) -> Self {
        ListSet {
            lists: vec![None; count],
        }
    }

    pub fn get(&self, id: u32) -> Option<&Arc<ListData>> {
        self.lists.get(id as usize).and_then(Option::as_ref)
    }

    /// Replaces list `id`'s snapshot.
    pub fn set(&mut self, id: u32, data: Arc<ListData>) {
        if let Some(slot) = self.lists.get_mut(id as usize) {
            *slot = Some(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS 180-2 test vectors (one block, empty, two blocks): the wasm
    /// build uses sha2's compact implementation, the native one the
    /// unrolled one; both must give the standard digests.
    #[test]
    fn sha256_gives_the_standard_digests() {
        let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        for (input, want) in [
            (
                &b"abc"[..],
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
        ] {
            assert_eq!(hex(sha256(input)), want);
        }
    }

    fn decl(json: &str) -> Result<Vec<ListDecl>, ConfigError> {
        let specs: Vec<(String, ListSpec)> =
            crate::engine::json::map(&serde_json::from_str(json).unwrap(), "lists", list_spec)
                .unwrap();
        compile_decls(&specs)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_text_with_comments_firehol_and_spamhaus_style() {
        let body = b"# FireHOL level1\n; Spamhaus DROP\n1.10.16.0/20 ; SBL256894\n\n  2.56.192.0/22 # x\n203.0.113.7\n2001:db8::/32\n10.1.2.3/8\n";
        let data = parse(Format::Cidr, false, body).unwrap();
        assert_eq!(data.entries(), 5);
        assert!(data.contains_ip(ip("1.10.31.255")));
        assert!(!data.contains_ip(ip("1.10.32.0")));
        assert!(data.contains_ip(ip("2.56.195.1")));
        assert!(data.contains_ip(ip("203.0.113.7")));
        assert!(!data.contains_ip(ip("203.0.113.8")));
        assert!(data.contains_ip(ip("2001:db8::1")));
        assert!(data.contains_ip(ip("::ffff:203.0.113.7")));
        // host bits are truncated in fetched lists (published lists have them)
        assert!(data.contains_ip(ip("10.200.0.1")));
    }

    #[test]
    fn cidr_text_errors_name_the_line() {
        let err = parse(Format::Cidr, false, b"1.2.3.0/24\nnot-an-ip\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse(Format::Cidr, false, b"# only comments\n").is_err());
        assert!(parse(Format::Cidr, false, b"\xff\xfe").is_err());
    }

    #[test]
    fn google_json_prefixes() {
        let body = br#"{"creationTime":"2026-01-01T00:00:00","prefixes":[{"ipv6Prefix":"2001:4860:4801:10::/64"},{"ipv4Prefix":"66.249.64.0/27"}]}"#;
        let data = parse(Format::GoogleJson, false, body).unwrap();
        assert_eq!(data.entries(), 2);
        assert!(data.contains_ip(ip("66.249.64.31")));
        assert!(!data.contains_ip(ip("66.249.64.32")));
        assert!(data.contains_ip(ip("2001:4860:4801:10::5")));
        assert!(parse(
            Format::GoogleJson,
            false,
            br#"{"prefixes":[{"ipv4Prefix":"x"}]}"#
        )
        .is_err());
        assert!(parse(Format::GoogleJson, false, b"<html>").is_err());
        assert!(parse(Format::GoogleJson, false, br#"{"prefixes":[]}"#).is_err());
    }

    #[test]
    fn strings_lists() {
        let data = parse(Format::Strings, true, b"# bots\nEvilBot/1.0\n\n  other  \n").unwrap();
        assert_eq!(data.entries(), 2);
        assert!(data.matches_str(b"evilbot/1.0", false));
        assert!(!data.matches_str(b"evilbot/1.1", false));
        let exact = parse(Format::Strings, false, b"EvilBot/1.0\n").unwrap();
        assert!(!exact.matches_str(b"evilbot/1.0", false));
        assert!(!exact.contains_ip(ip("1.2.3.4")));
    }

    #[test]
    fn hundred_thousand_ranges_load_and_match() {
        let mut body = String::new();
        for i in 0..50_000u32 {
            let a = (i >> 8) & 0xff;
            let b = i & 0xff;
            body.push_str(&format!("{}.{a}.{b}.0/25\n", 11 + (i >> 16)));
            body.push_str(&format!("2001:db8:{i:x}::/48\n"));
        }
        let data = parse(Format::Cidr, false, body.as_bytes()).unwrap();
        assert_eq!(data.entries(), 100_000);
        assert!(data.contains_ip(ip("11.3.4.127")));
        assert!(!data.contains_ip(ip("11.3.4.128")));
        assert!(data.contains_ip(ip("2001:db8:beef:1::1")));
        assert!(!data.contains_ip(ip("2001:db9::1")));
    }

    #[test]
    fn load_checks_size_and_pin() {
        let mut d = decl(r#"{"x":{"url":"http://lists.example/x.txt","cluster":"c","format":"cidr","max_bytes":20}}"#).unwrap().remove(0);
        assert!(load(&d, b"192.0.2.0/24\n").is_ok());
        assert!(load(&d, b"192.0.2.0/24\n198.51.100.0/24\n")
            .unwrap_err()
            .contains("max_bytes"));
        d.sha256 = Some(sha256(b"192.0.2.0/24\n"));
        assert!(load(&d, b"192.0.2.0/24\n").is_ok());
        assert!(load(&d, b"192.0.2.0/25\n").unwrap_err().contains("sha256"));
    }

    #[test]
    fn declarations_are_validated_with_paths() {
        let d = decl(r#"{"g":{"url":"https://developers.google.com/static/search/apis/ipranges/googlebot.json","cluster":"google","format":"google-json","refresh":"6h","timeout":"2s"}}"#).unwrap();
        assert_eq!(d[0].authority, "developers.google.com");
        assert_eq!(d[0].path, "/static/search/apis/ipranges/googlebot.json");
        assert_eq!(d[0].refresh_ms, 6 * 3_600_000);
        assert_eq!(d[0].timeout_ms, 2_000);
        assert_eq!(d[0].on_missing, OnMissing::Pass);
        let d = decl(r#"{"g":{"url":"http://127.0.0.1:8080?x=1","cluster":"c","format":"cidr"}}"#)
            .unwrap();
        assert_eq!(d[0].path, "/?x=1");
        for (json, path) in [
            (
                r#"{"a b":{"url":"http://h/","cluster":"c","format":"cidr"}}"#,
                "lists.a b",
            ),
            (
                r#"{"g":{"url":"ftp://h/","cluster":"c","format":"cidr"}}"#,
                "lists.g.url",
            ),
            (
                r#"{"g":{"url":"http:///x","cluster":"c","format":"cidr"}}"#,
                "lists.g.url",
            ),
            (
                r#"{"g":{"url":"http://h/","cluster":"","format":"cidr"}}"#,
                "lists.g.cluster",
            ),
            (
                r#"{"g":{"url":"http://h/","cluster":"c","format":"cidr","refresh":"1x"}}"#,
                "lists.g.refresh",
            ),
            (
                r#"{"g":{"url":"http://h/","cluster":"c","format":"cidr","refresh":"10ms"}}"#,
                "lists.g.refresh",
            ),
            (
                r#"{"g":{"url":"http://h/","cluster":"c","format":"cidr","timeout":"0s"}}"#,
                "lists.g.timeout",
            ),
            (
                r#"{"g":{"url":"http://h/","cluster":"c","format":"cidr","max_bytes":0}}"#,
                "lists.g.max_bytes",
            ),
            (
                r#"{"g":{"url":"http://h/","cluster":"c","format":"cidr","sha256":"abc"}}"#,
                "lists.g.sha256",
            ),
            (
                r#"{"g":{"url":"http://h/","cluster":"c","format":"cidr","case_insensitive":true}}"#,
                "lists.g.case_insensitive",
            ),
        ] {
            assert_eq!(decl(json).unwrap_err().path(), path, "{json}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms("500ms", "").unwrap(), 500);
        assert_eq!(duration_ms("1d", "").unwrap(), 86_400_000);
        assert!(duration_ms("h", "").is_err());
        assert!(duration_ms("99999999999999999999h", "").is_err());
    }
}

#[cfg(test)]
mod decision_tests {
    use std::sync::Arc;

    use super::super::{Decision, Engine, HeaderList, NoLimits};
    use super::*;

    const CONFIG: &str = r#"{
        "lists": {
            "blocked": {"url": "http://lists/blocked.txt", "cluster": "lists", "format": "cidr"},
            "googlebot": {"url": "http://lists/googlebot.json", "cluster": "lists", "format": "google-json", "on_missing": "drop"},
            "agents": {"url": "http://lists/agents.txt", "cluster": "lists", "format": "strings", "case_insensitive": true}
        },
        "rules": [
            {"name": "blocked-ip", "field": "client_ip", "in_list": "blocked"},
            {"name": "fake-googlebot", "all": [
                {"header": "user-agent", "contains": "Googlebot", "case_insensitive": true},
                {"not": {"field": "client_ip", "in_list": "googlebot"}}
            ]},
            {"name": "bad-agent", "header": "user-agent", "in_list": "agents"}
        ]
    }"#;

    fn engine() -> Engine {
        Engine::from_json(CONFIG.as_bytes()).unwrap()
    }

    fn id(engine: &Engine, name: &str) -> u32 {
        engine.lists().iter().position(|d| d.name == name).unwrap() as u32
    }

    fn loaded(engine: &Engine, which: &[(&str, &[u8])]) -> ListSet {
        let mut set = ListSet::new(engine.lists().len());
        for (name, body) in which {
            let decl = &engine.lists()[id(engine, name) as usize];
            set.set(id(engine, name), Arc::new(load(decl, body).unwrap()));
        }
        set
    }

    fn decide(engine: &Engine, lists: &ListSet, peer: &str, ua: &str) -> Option<String> {
        let mut req = HeaderList::new()
            .with(":authority", "example.com")
            .with(":path", "/")
            .with("user-agent", ua)
            .peer(peer)
            .lists(lists.clone());
        match engine.decide(&mut req, &mut NoLimits).decision {
            Decision::Drop { rule } => Some(rule.to_string()),
            _ => None,
        }
    }

    #[test]
    fn loaded_lists_decide() {
        let e = engine();
        let lists = loaded(
            &e,
            &[
                ("blocked", b"203.0.113.0/24\n"),
                (
                    "googlebot",
                    br#"{"prefixes":[{"ipv4Prefix":"66.249.64.0/19"}]}"#,
                ),
                ("agents", b"EvilScraper/2.0\n"),
            ],
        );
        assert_eq!(
            decide(&e, &lists, "203.0.113.9:1", "curl/8").as_deref(),
            Some("blocked-ip")
        );
        assert_eq!(decide(&e, &lists, "198.51.100.1:1", "curl/8"), None);
        let gb = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        assert_eq!(
            decide(&e, &lists, "198.51.100.1:1", gb).as_deref(),
            Some("fake-googlebot")
        );
        assert_eq!(decide(&e, &lists, "66.249.66.1:1", gb), None);
        assert_eq!(
            decide(&e, &lists, "198.51.100.1:1", "evilscraper/2.0").as_deref(),
            Some("bad-agent")
        );
    }

    #[test]
    fn on_missing_pass_skips_and_drop_matches() {
        let e = engine();
        let none = ListSet::new(e.lists().len());
        // blocked (pass): skipped; googlebot (drop): its rule matches the
        // requests whose fate the list decides (a Googlebot UA), and only
        // those; agents (pass): skipped.
        assert_eq!(decide(&e, &none, "203.0.113.9:1", "curl/8"), None);
        assert_eq!(
            decide(&e, &none, "203.0.113.9:1", "Googlebot/2.1").as_deref(),
            Some("fake-googlebot")
        );
        let only_google = loaded(
            &e,
            &[(
                "googlebot",
                br#"{"prefixes":[{"ipv4Prefix":"66.249.64.0/19"}]}"#,
            )],
        );
        assert_eq!(decide(&e, &only_google, "203.0.113.9:1", "curl/8"), None);
        assert_eq!(
            decide(&e, &only_google, "203.0.113.9:1", "EvilScraper/2.0"),
            None
        );
        let mut req = HeaderList::new()
            .with(":authority", "example.com")
            .with("user-agent", "Googlebot/2.1")
            .peer("203.0.113.9:1")
            .lists(none.clone());
        let verdict = e.decide(&mut req, &mut NoLimits);
        assert_eq!(verdict.drop_rule(), Some("fake-googlebot"));
        assert_eq!(
            verdict.missing_list.map(|d| d.name.as_str()),
            Some("googlebot")
        );
        let blocked: Vec<&str> = e.rules_reading_list(id(&e, "blocked")).collect();
        assert_eq!(blocked, ["blocked-ip"]);
    }

    #[test]
    fn in_list_errors_name_the_path() {
        let cases = [
            (
                r#"{"rules":[{"field":"client_ip","in_list":"nope"}]}"#,
                "rules[0].in_list",
            ),
            (
                r#"{"lists":{"s":{"url":"http://h/","cluster":"c","format":"strings"}},"rules":[{"field":"client_ip","in_list":"s"}]}"#,
                "rules[0].in_list",
            ),
            (
                r#"{"lists":{"s":{"url":"http://h/","cluster":"c","format":"cidr"}},"rules":[{"header":"user-agent","in_list":"s"}]}"#,
                "rules[0].in_list",
            ),
            (
                r#"{"lists":{"s":{"url":"http://h/","cluster":"c","format":"strings"}},"rules":[{"header":"user-agent","in_list":"s","case_insensitive":true}]}"#,
                "rules[0].case_insensitive",
            ),
            (
                r#"{"lists":{"s":{"url":"http://h/","cluster":"c","format":"strings"}},"rules":[{"header":"user-agent","in_list":"s","exact":"x"}]}"#,
                "rules[0]",
            ),
            (
                r#"{"lists":{"s":{"url":"http://h/","cluster":"c","format":"cidr","bogus":1}}}"#,
                "lists.s.bogus",
            ),
            (r#"{"lists":{"s":[1]}}"#, "lists.s"),
        ];
        for (json, path) in cases {
            let err = Engine::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(err.path(), path, "{json}: {err}");
        }
    }
}

#[cfg(test)]
mod crawler_tests {
    use std::sync::Arc;

    use super::super::{Decision, Engine, HeaderList, NoLimits};
    use super::*;

    /// The four lists the verified-crawlers presets read, with the cluster
    /// only: url and format come from the preset.
    const LISTS: &str = r#""lists": {
        "googlebot": {"cluster": "google"}, "bingbot": {"cluster": "bing"},
        "applebot": {"cluster": "apple"}, "duckduckbot": {"cluster": "ddg"}}"#;

    fn fixtures(engine: &Engine) -> ListSet {
        let body = |v4: &str, v6: &str| {
            format!(
                r#"{{"creationTime":"2026-11-01T00:00:00.000000","prefixes":[{{"ipv4Prefix":"{v4}"}},{{"ipv6Prefix":"{v6}"}}]}}"#
            )
        };
        let mut set = ListSet::new(engine.lists().len());
        for (id, decl) in engine.lists().iter().enumerate() {
            let text = match decl.name.as_str() {
                "googlebot" => body("66.249.64.0/27", "2001:4860:4801:10::/64"),
                "bingbot" => body("157.55.39.0/24", "2a01:111:f100::/48"),
                "applebot" => body("17.241.208.0/24", "2a01:b740:a42::/48"),
                _ => body("20.191.45.212/32", "2603:1030::/48"),
            };
            set.set(id as u32, Arc::new(load(decl, text.as_bytes()).unwrap()));
        }
        set
    }

    fn fate(engine: &Engine, lists: &ListSet, ip: &str, ua: &str) -> Decision<'static> {
        let mut req = HeaderList::new()
            .with(":authority", "example.com")
            .with(":path", "/products/1")
            .with("user-agent", ua)
            .peer(ip)
            .lists(lists.clone());
        match engine.decide(&mut req, &mut NoLimits).decision {
            Decision::Drop {
                rule: "fake-crawlers",
            } => Decision::Drop {
                rule: "fake-crawlers",
            },
            Decision::Drop { .. } => Decision::Drop { rule: "other" },
            Decision::Allow { .. } => Decision::Allow { rule: "real" },
            _ => Decision::Pass,
        }
    }

    const CRAWLERS: [(&str, &str, &str); 4] = [
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "66.249.64.5:1", "[2001:4860:4801:10::9]:1"),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "157.55.39.1:1", "[2a01:111:f100::1]:1"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)", "17.241.208.7:1", "[2a01:b740:a42::1]:1"),
        ("DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)", "20.191.45.212:1", "[2603:1030::2]:1"),
    ];

    #[test]
    fn preset_names_the_official_lists() {
        let e = Engine::from_json(format!(r#"{{{LISTS}, "rules": [{{"name": "fake-crawlers", "preset": "verified-crawlers"}}]}}"#).as_bytes()).unwrap();
        let google = e.lists().iter().find(|d| d.name == "googlebot").unwrap();
        assert_eq!(
            google.url,
            "https://developers.google.com/static/search/apis/ipranges/googlebot.json"
        );
        assert_eq!(google.format, Format::GoogleJson);
        assert_eq!(google.cluster, "google");
        let bing = e.lists().iter().find(|d| d.name == "bingbot").unwrap();
        assert_eq!(bing.authority, "www.bing.com");
        // Without the lists the preset names what is missing.
        let err =
            Engine::from_json(br#"{"rules": [{"preset": "verified-crawlers"}]}"#).unwrap_err();
        assert!(err.message().contains("no list `googlebot`"), "{err}");
        // Another list name still needs url and format.
        let err = Engine::from_json(br#"{"lists": {"mine": {"cluster": "c"}}}"#).unwrap_err();
        assert_eq!(err.path(), "lists.mine.url");
    }

    #[test]
    fn fakes_dropped_real_ones_pass_and_opt_in_allow_exempts_them() {
        let config = format!(
            r#"{{{LISTS}, "rules": [
                {{"name": "real", "action": "allow", "preset": "verified-crawlers-real"}},
                {{"name": "fake-crawlers", "preset": "verified-crawlers"}},
                {{"name": "no-products", "field": "path", "prefix": "/products"}}]}}"#
        );
        let e = Engine::from_json(config.as_bytes()).unwrap();
        let lists = fixtures(&e);
        let stranger = "198.51.100.23:1";
        for (ua, v4, v6) in CRAWLERS {
            assert_eq!(
                fate(&e, &lists, stranger, ua),
                Decision::Drop {
                    rule: "fake-crawlers"
                },
                "{ua}"
            );
            assert_eq!(
                fate(&e, &lists, "[2001:db8::1]:1", ua),
                Decision::Drop {
                    rule: "fake-crawlers"
                },
                "{ua}"
            );
            // Real: exempt from the other drop rule because the allow preset is on.
            assert_eq!(
                fate(&e, &lists, v4, ua),
                Decision::Allow { rule: "real" },
                "{ua}"
            );
            assert_eq!(
                fate(&e, &lists, v6, ua),
                Decision::Allow { rule: "real" },
                "{ua}"
            );
        }
        // One crawler's address does not vouch for another crawler's UA.
        assert_eq!(
            fate(&e, &lists, "157.55.39.1:1", CRAWLERS[0].0),
            Decision::Drop {
                rule: "fake-crawlers"
            }
        );
        // Browsers never touch it.
        let browser = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        assert_eq!(
            fate(&e, &lists, stranger, browser),
            Decision::Drop { rule: "other" }
        );

        // Without the opt-in allow, a real crawler passes the preset but not
        // the other drop rules.
        let e = Engine::from_json(
            format!(
                r#"{{{LISTS}, "rules": [
                {{"name": "fake-crawlers", "preset": "verified-crawlers"}},
                {{"name": "no-products", "field": "path", "prefix": "/products"}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let lists = fixtures(&e);
        assert_eq!(
            fate(&e, &lists, CRAWLERS[0].1, CRAWLERS[0].0),
            Decision::Drop { rule: "other" }
        );

        // Lists not loaded (on_missing pass): the preset drops nobody.
        let e = Engine::from_json(format!(r#"{{{LISTS}, "rules": [{{"name": "fake-crawlers", "preset": "verified-crawlers"}}]}}"#).as_bytes()).unwrap();
        let none = ListSet::new(e.lists().len());
        assert_eq!(fate(&e, &none, stranger, CRAWLERS[0].0), Decision::Pass);
    }
}
