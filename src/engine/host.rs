//! Host / `:authority` normalisation and the host allowlist.
//!
//! A Host value is reduced to one of a few forms before any rule looks at it:
//! lower case, port and one trailing dot removed, IPv6 brackets understood.
//! Everything that is not a plain DNS-style name or an IP literal is
//! `Invalid`, so odd spellings cannot slip past the allowlist.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::ConfigError;
use super::limits::MAX_HOST_NAME;
use super::trim_ows;

/// What a Host header value turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostForm {
    /// No Host / `:authority` at all.
    Missing,
    /// Present but empty (or only a port, like `:80`).
    Empty,
    /// An IP literal: IPv4 (also the numeric forms browsers accept, like
    /// `127.1` or `0x7f000001`, which leave `addr` empty) or bracketed IPv6.
    IpLiteral(Option<IpAddr>),
    /// A syntactically valid name, lower case, without port or trailing dot.
    Name(String),
    /// Anything else: bad characters, empty labels, a bad port, too long.
    Invalid,
}

/// Classifies a raw Host / `:authority` value.
pub fn classify(raw: Option<&[u8]>) -> HostForm {
    classify_reusing(raw, String::new())
}

/// [`classify`], writing a name into `buffer` (whose capacity a request
/// reuses from the previous one).
pub(crate) fn classify_reusing(raw: Option<&[u8]>, buffer: String) -> HostForm {
    let Some(raw) = raw else {
        return HostForm::Missing;
    };
    let raw = trim_ows(raw);
    match plain_name(raw, buffer) {
        Ok(form) => form,
        Err(buffer) => classify_general(raw, buffer),
    }
}

/// A Host as one decision keeps it: its form, with a name (lower case) left
/// in the caller's buffer rather than moved into a `String`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    Missing,
    Empty,
    IpLiteral(Option<IpAddr>),
    /// The name is in the buffer [`classify_into`] was given.
    Name,
    Invalid,
}

/// [`classify`], the name (if it is one) written to `name` (cleared
/// first; its capacity is reused from request to request).
pub(crate) fn classify_into(raw: Option<&[u8]>, name: &mut Vec<u8>) -> Seen {
    name.clear();
    let Some(raw) = raw else {
        return Seen::Missing;
    };
    let raw = trim_ows(raw);
    if plain_name_into(raw, name) {
        return Seen::Name;
    }
    name.clear();
    // The general reading, in the same buffer (empty: no UTF-8 to check).
    let buffer = String::from_utf8(std::mem::take(name)).unwrap_or_default();
    match classify_general(raw, buffer) {
        HostForm::Missing => Seen::Missing,
        HostForm::Empty => Seen::Empty,
        HostForm::IpLiteral(ip) => Seen::IpLiteral(ip),
        HostForm::Invalid => Seen::Invalid,
        HostForm::Name(text) => {
            *name = text.into_bytes();
            Seen::Name
        }
    }
}

/// Every Host form (`raw` trimmed).
fn classify_general(raw: &[u8], buffer: String) -> HostForm {
    if raw.is_empty() {
        return HostForm::Empty;
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return HostForm::Invalid;
    };
    if let Some(rest) = text.strip_prefix('[') {
        return classify_bracketed(rest);
    }
    let (name, port) = match text.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (text, None),
    };
    if let Some(port) = port {
        if port.contains(':') {
            // More than one colon and no brackets: a bare IPv6 address, which
            // is not a valid Host but is certainly an IP literal when it parses.
            return match text.parse::<Ipv6Addr>() {
                Ok(addr) => HostForm::IpLiteral(Some(IpAddr::V6(addr))),
                Err(_) => HostForm::Invalid,
            };
        }
        if !valid_port(port) {
            return HostForm::Invalid;
        }
    }
    if name.is_empty() {
        return HostForm::Empty;
    }
    classify_name_into(name, buffer)
}

/// The common Host, read in one pass: labels of letters, digits, `-` and
/// `_`, an optional `:port` of digits, the last label not a number (so not
/// an IPv4 form) and no trailing dot. Lower-cased into `buffer`. Anything
/// else is handed back (`Err`) to the general reading, which classifies
/// these the same way.
fn plain_name(raw: &[u8], buffer: String) -> Result<HostForm, String> {
    let mut bytes = buffer.into_bytes();
    if !plain_name_into(raw, &mut bytes) {
        bytes.clear();
        return Err(String::from_utf8(bytes).unwrap_or_default());
    }
    // ASCII only was written, so this is always text.
    String::from_utf8(bytes)
        .map(HostForm::Name)
        .map_err(|_| String::new())
}

/// [`plain_name`] into bytes: true (the name, lower case, in `out`) for a
/// plain name; false (and `out` in any state) for everything else.
fn plain_name_into(raw: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let (mut end, mut label_start, mut underscore) = (raw.len(), 0usize, false);
    let class = |b: u8| NAME_BYTE.get(usize::from(b)).copied().unwrap_or(OTHER);
    // One table lookup a byte. Letters, digits and `-` (nearly every byte)
    // are passed over in a loop of their own; label lengths are checked at
    // the dots.
    let mut i = 0usize;
    loop {
        let rest = raw.get(i..).unwrap_or_default();
        i = i.saturating_add(
            rest.iter()
                .position(|b| class(*b) != NAME)
                .unwrap_or(rest.len()),
        );
        let Some(&b) = raw.get(i) else {
            break;
        };
        match class(b) {
            DOT => {
                let len = i.saturating_sub(label_start);
                if len == 0 || len > 63 {
                    return false;
                }
                label_start = i.saturating_add(1);
            }
            UNDERSCORE => underscore = true,
            COLON => {
                end = i;
                break;
            }
            _ => return false,
        }
        i = i.saturating_add(1);
    }
    // The last label: not empty (no trailing dot), not too long, and not a
    // number (`0x…` is a hex number to a browser), else an IPv4 form: left
    // to the general reading.
    let last = raw.get(label_start..end).unwrap_or_default();
    if last.is_empty() || last.len() > 63 || super::all_digits(last) {
        return false;
    }
    if matches!(last, [b'0', b'x' | b'X', ..]) {
        return false;
    }
    let port = raw.get(end..).unwrap_or_default();
    let port_ok = port.is_empty()
        || port
            .get(1..)
            .is_some_and(|p| p.len() <= 5 && super::all_digits(p));
    if !port_ok || end > MAX_HOST_NAME {
        return false;
    }
    out.extend_from_slice(raw.get(..end).unwrap_or_default());
    if underscore {
        out.make_ascii_lowercase();
    } else {
        lower_name(out);
    }
    true
}

/// Classes of bytes in a plain name ([`NAME_BYTE`]).
const OTHER: u8 = 0;
const NAME: u8 = 1;
const DOT: u8 = 2;
const UNDERSCORE: u8 = 3;
const COLON: u8 = 4;

/// Each byte's class in a plain name: letters, digits and `-` are `NAME`,
/// `.` `DOT`, `_` `UNDERSCORE`, `:` `COLON`, the rest `OTHER`. Built at
/// compile time.
static NAME_BYTE: [u8; 256] = name_byte_table();

// Evaluated at compile time: an index out of bounds fails the build.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn name_byte_table() -> [u8; 256] {
    let mut table = [OTHER; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        table[b] = if c.is_ascii_alphanumeric() || c == b'-' {
            NAME
        } else if c == b'.' {
            DOT
        } else if c == b'_' {
            UNDERSCORE
        } else if c == b':' {
            COLON
        } else {
            OTHER
        };
        b += 1;
    }
    table
}

/// Lower case for a name of letters, digits, `-` and `.` only: each of
/// those is lower case with bit 0x20 set (`_` is not), so eight bytes take
/// one OR.
fn lower_name(name: &mut [u8]) {
    let mut chunks = name.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(bytes) = <[u8; 8]>::try_from(&*chunk) {
            let word = u64::from_le_bytes(bytes) | 0x2020_2020_2020_2020;
            chunk.copy_from_slice(&word.to_le_bytes());
        }
    }
    for b in chunks.into_remainder() {
        *b |= 0x20;
    }
}

fn classify_bracketed(rest: &str) -> HostForm {
    let Some((addr, after)) = rest.split_once(']') else {
        return HostForm::Invalid;
    };
    let port_ok = match after.strip_prefix(':') {
        Some(port) => valid_port(port),
        None => after.is_empty(),
    };
    match (port_ok, addr.parse::<Ipv6Addr>()) {
        (true, Ok(addr)) => HostForm::IpLiteral(Some(IpAddr::V6(addr))),
        _ => HostForm::Invalid,
    }
}

/// RFC 3986 `port = *DIGIT`; we also bound it to what fits in 16 bits.
fn valid_port(port: &str) -> bool {
    port.is_empty() || (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
}

fn classify_name(name: &str) -> HostForm {
    classify_name_into(name, String::new())
}

fn classify_name_into(name: &str, mut lower: String) -> HostForm {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_NAME {
        return HostForm::Invalid;
    }
    lower.clear();
    lower.push_str(name);
    lower.make_ascii_lowercase();
    let Some(last_label) = valid_name(&lower) else {
        return HostForm::Invalid;
    };
    if ends_in_number(lower.get(last_label..).unwrap_or_default()) {
        return HostForm::IpLiteral(lower.parse::<Ipv4Addr>().ok().map(IpAddr::V4));
    }
    HostForm::Name(lower)
}

/// Letters, digits, `-` and `_` in non-empty dot-separated labels of at most
/// 63 bytes. Anything else (percent-encoding, `@`, `,`, spaces, non-ASCII) is
/// not a host a browser sends, so it is treated as invalid rather than
/// guessed at. One pass; returns where the last label starts.
fn valid_name(lower: &str) -> Option<usize> {
    let (mut label_start, mut len) = (0usize, 0usize);
    for (i, b) in lower.bytes().enumerate() {
        if b == b'.' {
            if len == 0 {
                return None;
            }
            len = 0;
            label_start = i.saturating_add(1);
        } else if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
            len = len.saturating_add(1);
            if len > 63 {
                return None;
            }
        } else {
            return None;
        }
    }
    (len > 0).then_some(label_start)
}

/// The WHATWG URL rule: a host whose last label is a number (decimal or
/// `0x` hex) is parsed as IPv4 by browsers, so `127.1` and `2130706433`
/// are IP literals too.
fn ends_in_number(last: &str) -> bool {
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match last.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// FNV-1a: the allowlist and `in` sets are fixed at configuration time and
/// only looked up per request, so a keyed hash buys nothing there; this one
/// costs a few instructions per byte instead of SipHash's set-up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A hash set keyed with [`Fnv`].
pub(crate) type FnvSet<T> = HashSet<T, std::hash::BuildHasherDefault<Fnv>>;

/// A hash map keyed with [`Fnv`]. The crate's maps all use it (keys come
/// from the configuration or the host, never from a request), so the module
/// links no SipHash and no random seeding.
pub(crate) type FnvMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// A fixed set of names for exact lookups: open addressing over a hash of
/// the length and the first, middle and last eight bytes (a few
/// instructions, whatever the length). Only the configuration puts names in,
/// so probe runs are as long as its own collisions make them, whatever a
/// request asks.
#[derive(Debug, Default)]
pub(crate) struct NameSet {
    names: Vec<Box<str>>,
    /// Index into `names` plus one (0: free); a power of two long.
    slots: Vec<u32>,
}

impl NameSet {
    fn hash(name: &[u8]) -> u64 {
        let word = |at: usize| -> u64 {
            match name.get(at..at.saturating_add(8)).map(<[u8; 8]>::try_from) {
                Some(Ok(bytes)) => u64::from_le_bytes(bytes),
                _ => name
                    .get(at..)
                    .unwrap_or_default()
                    .iter()
                    .fold(0u64, |w, b| (w << 8) | u64::from(*b)),
            }
        };
        let len = name.len();
        let (head, middle, tail) = (
            word(0),
            word(len.saturating_sub(8) / 2),
            word(len.saturating_sub(8)),
        );
        let mixed = (head ^ middle.rotate_left(21) ^ tail.rotate_left(43) ^ len as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        mixed ^ (mixed >> 29)
    }

    fn insert(&mut self, name: String) {
        if self.contains(name.as_bytes()) {
            return;
        }
        self.names.push(name.into_boxed_str());
        let want = self
            .names
            .len()
            .saturating_mul(2)
            .next_power_of_two()
            .max(8);
        let mut slots = std::mem::take(&mut self.slots);
        if slots.len() < want {
            slots = vec![0; want];
            for i in 0..self.names.len() {
                self.place(&mut slots, i);
            }
        } else {
            self.place(&mut slots, self.names.len().saturating_sub(1));
        }
        self.slots = slots;
    }

    fn place(&self, slots: &mut [u32], i: usize) {
        let Some(name) = self.names.get(i) else {
            return;
        };
        let mask = slots.len().saturating_sub(1);
        let mut at = Self::hash(name.as_bytes()) as usize & mask;
        for _ in 0..slots.len() {
            if let Some(slot) = slots.get_mut(at) {
                if *slot == 0 {
                    *slot = u32::try_from(i.saturating_add(1)).unwrap_or(0);
                    return;
                }
            }
            at = at.wrapping_add(1) & mask;
        }
    }

    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        let mask = self.slots.len().saturating_sub(1);
        let mut at = Self::hash(name) as usize & mask;
        for _ in 0..self.slots.len() {
            match self.slots.get(at) {
                Some(&slot) if slot != 0 => {
                    let i = (slot as usize).saturating_sub(1);
                    if self.names.get(i).is_some_and(|n| n.as_bytes() == name) {
                        return true;
                    }
                }
                _ => return false,
            }
            at = at.wrapping_add(1) & mask;
        }
        false
    }

    fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The compiled allowlist: exact names, `*.suffix` wildcards and IP literals.
#[derive(Debug, Default)]
pub(crate) struct Allowlist {
    exact: NameSet,
    /// Suffixes of `*.suffix` entries, without the `*.`.
    wildcard: NameSet,
    ips: FnvSet<IpAddr>,
}

impl Allowlist {
    pub(crate) fn compile(entries: &[String], path: &str) -> Result<Self, ConfigError> {
        let mut list = Allowlist::default();
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("{path}[{i}]");
            if let Some(suffix) = entry.strip_prefix("*.") {
                match classify_name(suffix) {
                    HostForm::Name(name) => list.wildcard.insert(name),
                    _ => {
                        return Err(ConfigError::new(
                            at,
                            format!("`{entry}` is not a valid wildcard; write `*.example.com`"),
                        ))
                    }
                };
                continue;
            }
            if entry.contains('*') {
                return Err(ConfigError::new(
                    at,
                    format!("`{entry}`: `*` is only allowed as a whole first label, as in `*.example.com`"),
                ));
            }
            if entry.contains(':') && !entry.starts_with('[') && entry.parse::<Ipv6Addr>().is_err()
            {
                return Err(ConfigError::new(
                    at,
                    format!("`{entry}`: write host names without a port"),
                ));
            }
            let bare = entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .unwrap_or(entry);
            if let Ok(ip) = bare.parse::<IpAddr>() {
                list.ips.insert(ip);
                continue;
            }
            match classify_name(entry) {
                HostForm::Name(name) => {
                    list.exact.insert(name);
                }
                HostForm::IpLiteral(_) => {
                    return Err(ConfigError::new(
                        at,
                        format!(
                        "`{entry}` looks like a numeric IPv4 form; write the address as a.b.c.d"
                    ),
                    ))
                }
                _ => {
                    return Err(ConfigError::new(
                        at,
                        format!("`{entry}` is not a valid host name"),
                    ))
                }
            }
        }
        Ok(list)
    }

    /// `*.example.com` matches `a.example.com` and `a.b.example.com`, not
    /// `example.com` itself (as in nginx `server_name`).
    pub(crate) fn allows_name(&self, name: &[u8]) -> bool {
        if self.exact.contains(name) {
            return true;
        }
        if self.wildcard.is_empty() {
            return false;
        }
        name.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'.')
            .filter_map(|(dot, _)| name.get(dot.saturating_add(1)..))
            .any(|suffix| self.wildcard.contains(suffix))
    }

    pub(crate) fn allows_ip(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| self.ips.contains(&ip))
    }
}

#[cfg(test)]
mod plain_tests {
    use super::*;

    #[test]
    fn name_byte_table_is_its_definition() {
        for b in 0..=255u8 {
            let want = if b.is_ascii_alphanumeric() || b == b'-' {
                NAME
            } else if b == b'.' {
                DOT
            } else if b == b'_' {
                UNDERSCORE
            } else if b == b':' {
                COLON
            } else {
                OTHER
            };
            assert_eq!(NAME_BYTE[usize::from(b)], want, "byte {b}");
        }
    }

    /// The one-pass reading agrees with the general one wherever it answers.
    #[test]
    fn plain_name_agrees_with_the_general_reading() {
        let alphabet = [
            b'a', b'Z', b'0', b'x', b'.', b':', b'-', b'_', b'7', b'[', b' ', b'f',
        ];
        let mut checked = 0;
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(raw) = stack.pop() {
            if let Ok(fast) = plain_name(&raw, String::new()) {
                checked += 1;
                let general = classify_reusing_general(&raw);
                assert_eq!(fast, general, "{:?}", String::from_utf8_lossy(&raw));
            }
            if raw.len() < 5 {
                for b in alphabet {
                    let mut next = raw.clone();
                    next.push(b);
                    stack.push(next);
                }
            }
        }
        assert!(checked > 100, "{checked}");
        for long in [
            format!("{}.com", "a".repeat(63)),
            format!("{}.com", "a".repeat(64)),
            format!("www.{}", "a".repeat(63)),
            format!("www.{}", "a".repeat(64)),
            format!("www.{}:8080", "a".repeat(64)),
            format!("{}.com", vec!["a".repeat(60); 4].join(".")),
            format!("{}.com", vec!["a".repeat(63); 4].join(".")),
        ] {
            let fast = plain_name(long.as_bytes(), String::new()).ok();
            if let Some(fast) = fast {
                assert_eq!(fast, classify_reusing_general(long.as_bytes()));
            }
        }
    }

    fn classify_reusing_general(raw: &[u8]) -> HostForm {
        classify_general(trim_ows(raw), String::new())
    }
}

#[cfg(test)]
mod name_set_tests {
    use super::*;

    /// Members are found and nothing else is, for short and long names,
    /// names differing only in the middle, and sets of every size.
    #[test]
    fn name_set_agrees_with_a_hash_set() {
        let mut names: Vec<String> = Vec::new();
        for i in 0..600 {
            names.push(format!("svc{i}.example.com"));
            names.push(format!("a{i}"));
            names.push(format!("long-prefix-{i:04}-x-long-suffix.example.org"));
        }
        names.push(String::new());
        for size in [0, 1, 2, 7, 8, 9, 100, names.len()] {
            let mut set = NameSet::default();
            let mut want = std::collections::HashSet::new();
            for name in names.iter().take(size) {
                set.insert(name.clone());
                set.insert(name.clone());
                want.insert(name.clone());
            }
            assert_eq!(set.names.len(), want.len());
            for probe in names.iter().chain(
                ["svc1.example.co", "", "b1", "svc1.example.comm"]
                    .map(String::from)
                    .iter(),
            ) {
                assert_eq!(
                    set.contains(probe.as_bytes()),
                    want.contains(probe),
                    "{probe:?} in {size}"
                );
            }
        }
    }
}

#[cfg(test)]
mod seen_tests {
    use super::*;

    /// A decision's classification (name in a reused buffer) is
    /// [`classify`]'s, for every short value over an alphabet of the
    /// interesting bytes, with a buffer left dirty by the previous value.
    #[test]
    fn classify_into_agrees_with_classify() {
        let alphabet = [
            b'a', b'Z', b'0', b'x', b'.', b':', b'-', b'[', b']', b' ', b'1', b'f',
        ];
        let mut name = b"left-over.example".to_vec();
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        let mut names = 0;
        while let Some(raw) = stack.pop() {
            let want = classify(Some(&raw));
            let seen = classify_into(Some(&raw), &mut name);
            let got = match seen {
                Seen::Missing => HostForm::Missing,
                Seen::Empty => HostForm::Empty,
                Seen::IpLiteral(ip) => HostForm::IpLiteral(ip),
                Seen::Invalid => HostForm::Invalid,
                Seen::Name => {
                    names += 1;
                    HostForm::Name(String::from_utf8(name.clone()).unwrap())
                }
            };
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&raw));
            if raw.len() < 5 {
                for b in alphabet {
                    let mut next = raw.clone();
                    next.push(b);
                    stack.push(next);
                }
            }
        }
        assert!(names > 1000, "{names}");
        assert_eq!(classify_into(None, &mut name), Seen::Missing);
    }
}

#[cfg(test)]
mod lower_tests {
    use super::*;

    /// Long names (eight bytes a step) come out in lower case, with and
    /// without `_`, as the general reading has them.
    #[test]
    fn long_names_are_lower_cased() {
        for raw in [
            "WWW.Example-Host.COM",
            "svc12.API.example.COM:8443",
            "A_B.Example.COM",
            "abcdefgH",
            "abcdefgHI",
            "Z-0.y",
        ] {
            let want = classify_general(raw.as_bytes(), String::new());
            let mut name = Vec::new();
            assert_eq!(classify_into(Some(raw.as_bytes()), &mut name), Seen::Name);
            assert_eq!(
                HostForm::Name(String::from_utf8(name).unwrap()),
                want,
                "{raw}"
            );
        }
    }
}
