//! Built-in, versioned pattern lists (`presets/*.json`), compiled into the
//! module. A rule uses one with `{"preset": "scanners"}`; its entries become
//! one `any` condition, so thousands of patterns still cost one automaton pass
//! per subject.

use serde::Deserialize;

use super::config::NodeSpec;

/// (name, JSON) of every preset shipped.
const PRESETS: [(&str, &str); 6] = [
    ("scanners", include_str!("../../presets/scanners.json")),
    (
        "exploit-paths",
        include_str!("../../presets/exploit-paths.json"),
    ),
    ("bad-bots", include_str!("../../presets/bad-bots.json")),
    (
        "ai-crawlers",
        include_str!("../../presets/ai-crawlers.json"),
    ),
    (
        "verified-crawlers",
        include_str!("../../presets/verified-crawlers.json"),
    ),
    (
        "verified-crawlers-real",
        include_str!("../../presets/verified-crawlers-real.json"),
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PresetFile {
    pub preset: String,
    pub version: String,
    pub description: String,
    /// Legitimate traffic the preset may catch: read before enabling it.
    pub may_catch: String,
    /// Named lists the entries read (`in_list`), with their official
    /// source: a declaration of that name may leave out `url` and `format`.
    #[serde(default)]
    pub lists: std::collections::BTreeMap<String, PresetList>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PresetList {
    pub url: String,
    pub format: super::lists::Format,
    #[allow(dead_code)]
    pub source: String,
}

/// The official `(url, format)` of a list a preset reads, by list name.
pub(crate) fn known_list(name: &str) -> Option<(String, super::lists::Format)> {
    PRESETS.iter().find_map(|(preset, _)| {
        let file = load(preset)?.ok()?;
        let list = file.lists.get(name)?;
        Some((list.url.clone(), list.format))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    pub reason: String,
    pub source: String,
    #[serde(rename = "match")]
    pub condition: NodeSpec,
}

/// A summary of one preset, for the CLI and docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetInfo {
    pub name: &'static str,
    pub version: String,
    pub description: String,
    pub may_catch: String,
    pub entries: usize,
}

pub(crate) fn load(name: &str) -> Option<Result<PresetFile, String>> {
    let (_, json) = PRESETS.iter().find(|(n, _)| *n == name)?;
    let parsed: Result<PresetFile, String> =
        serde_json::from_str(json).map_err(|e| format!("preset `{name}` is corrupt: {e}"));
    Some(parsed.and_then(|file| {
        let undocumented = file
            .entries
            .iter()
            .position(|e| e.reason.trim().is_empty() || e.source.trim().is_empty());
        match undocumented {
            _ if file.preset != name => Err(format!(
                "preset file `{name}` names itself `{}`",
                file.preset
            )),
            Some(i) => Err(format!(
                "preset `{name}` entry {i} lacks a reason or source"
            )),
            None => Ok(file),
        }
    }))
}

/// The conditions of a preset; `None` if there is no such preset.
pub(crate) fn conditions(name: &str) -> Option<Result<Vec<NodeSpec>, String>> {
    load(name).map(|file| file.map(|f| f.entries.into_iter().map(|e| e.condition).collect()))
}

/// The error text for an unknown preset name.
pub(crate) fn unknown(name: &str) -> String {
    let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
    format!(
        "unknown preset `{name}`; known presets: {}",
        known.join(", ")
    )
}

/// Every shipped preset.
pub fn catalog() -> Vec<PresetInfo> {
    PRESETS
        .iter()
        .filter_map(|(name, _)| {
            let file = load(name)?.ok()?;
            Some(PresetInfo {
                name,
                version: file.version,
                description: file.description,
                may_catch: file.may_catch,
                entries: file.entries.len(),
            })
        })
        .collect()
}
