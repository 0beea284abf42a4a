//! Ships the presets (`presets/*.json`) compact: the build checks that every
//! entry documents itself (a non-empty `reason` and `source`), then writes
//! each file to `$OUT_DIR/presets/` without those two fields and without
//! whitespace. Nothing reads them at run time, and they were two thirds of the
//! presets' bytes in drop444.wasm. The files in `presets/` stay the reference.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a build script stops by panicking

use std::path::Path;

const PRESETS: [&str; 6] = [
    "scanners",
    "exploit-paths",
    "bad-bots",
    "ai-crawlers",
    "verified-crawlers",
    "verified-crawlers-real",
];

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let dir = Path::new(&out).join("presets");
    std::fs::create_dir_all(&dir).expect("create $OUT_DIR/presets");
    for name in PRESETS {
        let path = format!("presets/{name}.json");
        println!("cargo::rerun-if-changed={path}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut doc: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let entries = doc
            .get_mut("entries")
            .and_then(|e| e.as_array_mut())
            .unwrap_or_else(|| panic!("{path}: no `entries` array"));
        for (i, entry) in entries.iter_mut().enumerate() {
            let entry = entry
                .as_object_mut()
                .unwrap_or_else(|| panic!("{path}: entry {i} is not an object"));
            for field in ["reason", "source"] {
                let documented = entry
                    .remove(field)
                    .and_then(|v| v.as_str().map(|s| !s.trim().is_empty()))
                    .unwrap_or(false);
                assert!(documented, "{path}: entry {i} lacks a {field}");
            }
        }
        let compact = serde_json::to_string(&doc).expect("a JSON value serialises");
        std::fs::write(dir.join(format!("{name}.json")), compact)
            .unwrap_or_else(|e| panic!("write {name}.json: {e}"));
    }
}
