//! Built-in, versioned pattern lists (`presets/*.json`), compiled into the
//! module (compact, without the entries' `reason` and `source`: build.rs
//! checks that each entry has them, then leaves them out, and packs the
//! texts' repeated JSON fragments; see there). A rule uses one with `{"preset": "scanners"}`; its entries become
//! one `any` condition, so thousands of patterns still cost one automaton pass
//! per subject.

use serde_json::Value;

use super::config::NodeSpec;
use super::error::ConfigError;
use super::json;

// `FRAGMENTS` and `PRESETS`: (name, packed JSON) of every preset shipped.
include!(concat!(env!("OUT_DIR"), "/presets.rs"));

/// A preset's JSON text: each control byte `i` in the packed text (build.rs
/// put them there; compact JSON has none) stands for `FRAGMENTS[i - 1]`.
fn unpack(packed: &str) -> String {
    let mut out = String::with_capacity(packed.len().saturating_mul(3));
    for c in packed.chars() {
        match (c as usize).checked_sub(1).and_then(|i| FRAGMENTS.get(i)) {
            Some(fragment) if (c as u32) < 0x20 => out.push_str(fragment),
            _ => out.push(c),
        }
    }
    out
}

#[derive(Debug)]
pub(crate) struct PresetFile {
    pub preset: String,
    pub version: String,
    pub description: String,
    /// Legitimate traffic the preset may catch: read before enabling it.
    pub may_catch: String,
    /// Named lists the entries read (`in_list`), with their official
    /// source: a declaration of that name may leave out `url` and `format`.
    /// (name, list), sorted by name.
    pub lists: Vec<(String, PresetList)>,
    pub entries: Vec<Entry>,
}

#[derive(Debug)]
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
        let (_, list) = file.lists.iter().find(|(n, _)| n == name)?;
        Some((list.url.clone(), list.format))
    })
}

#[derive(Debug)]
pub(crate) struct Entry {
    /// Its `match`.
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
    let (_, packed) = PRESETS.iter().find(|(n, _)| *n == name)?;
    // `from_slice`, not `from_str`: one serde_json reader in the module.
    let parsed = serde_json::from_slice(unpack(packed).as_bytes())
        .map_err(|e| e.to_string())
        .and_then(|v| preset_file(&v).map_err(|e| e.to_string()))
        .map_err(|e| format!("preset `{name}` is corrupt: {e}"));
    Some(parsed.and_then(|file| {
        if file.preset != name {
            return Err(format!(
                "preset file `{name}` names itself `{}`",
                file.preset
            ));
        }
        Ok(file)
    }))
}

fn preset_file(v: &Value) -> Result<PresetFile, ConfigError> {
    const FIELDS: &[&str] = &[
        "preset",
        "version",
        "description",
        "may_catch",
        "lists",
        "entries",
    ];
    let mut text: [Option<String>; 4] = Default::default();
    let (mut lists, mut entries) = (Vec::new(), None);
    json::object(v, "", "struct PresetFile", FIELDS, |name, v, at| {
        match name {
            "lists" => lists = json::map(v, at, preset_list)?,
            "entries" => entries = Some(json::seq(v, at, entry)?),
            _ => {
                let i = FIELDS.iter().position(|f| *f == name).unwrap_or(0);
                if let Some(slot) = text.get_mut(i) {
                    *slot = Some(json::string(v, at)?);
                }
            }
        }
        Ok(())
    })?;
    let [preset, version, description, may_catch] = text;
    Ok(PresetFile {
        preset: preset.ok_or_else(|| json::missing("", "preset"))?,
        version: version.ok_or_else(|| json::missing("", "version"))?,
        description: description.ok_or_else(|| json::missing("", "description"))?,
        may_catch: may_catch.ok_or_else(|| json::missing("", "may_catch"))?,
        lists,
        entries: entries.ok_or_else(|| json::missing("", "entries"))?,
    })
}

fn preset_list(v: &Value, at: &str) -> Result<PresetList, ConfigError> {
    let (mut url, mut format, mut source) = (None, None, None);
    json::object(
        v,
        at,
        "struct PresetList",
        &["url", "format", "source"],
        |name, v, at| {
            match name {
                "url" => url = Some(json::string(v, at)?),
                "format" => format = Some(super::lists::Format::from_json(v, at)?),
                _ => source = Some(json::string(v, at)?),
            }
            Ok(())
        },
    )?;
    Ok(PresetList {
        url: url.ok_or_else(|| json::missing(at, "url"))?,
        format: format.ok_or_else(|| json::missing(at, "format"))?,
        source: source.ok_or_else(|| json::missing(at, "source"))?,
    })
}

fn entry(v: &Value, at: &str) -> Result<Entry, ConfigError> {
    let mut condition = None;
    json::object(v, at, "struct Entry", &["match"], |_, v, at| {
        condition = Some(super::config::node(v, at)?);
        Ok(())
    })?;
    Ok(Entry {
        condition: condition.ok_or_else(|| json::missing(at, "match"))?,
    })
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
