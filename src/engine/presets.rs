//! Built-in, versioned pattern lists (`presets/*.json`), compiled into the
//! module. A rule uses one with `{"preset": "scanners"}`; its entries become
//! one `any` condition, so thousands of patterns still cost one automaton pass
//! per subject.

use serde::Deserialize;

use super::config::NodeSpec;

/// (name, JSON) of every preset shipped.
const PRESETS: [(&str, &str); 3] = [
    ("scanners", include_str!("../../presets/scanners.json")),
    (
        "exploit-paths",
        include_str!("../../presets/exploit-paths.json"),
    ),
    ("bad-bots", include_str!("../../presets/bad-bots.json")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PresetFile {
    pub preset: String,
    pub version: String,
    pub description: String,
    /// Legitimate traffic the preset may catch: read before enabling it.
    pub may_catch: String,
    pub entries: Vec<Entry>,
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
