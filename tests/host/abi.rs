//! The ABI surface of the built module — every import and export with its
//! signature — against the table in `docs/abi.md`, which is the one list a
//! host author reads. The table's "used" column is checked too: it must be
//! exactly what the wasmtime host saw the module call (imports) and what it
//! had to call or read (exports) while running the whole decision table.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use wasmparser::{ExternalKind, FuncType, Parser, Payload, TypeRef};

use crate::decisions::observed_surface;
use crate::harness::{wasm_bytes, ABI_VERSION};

/// One row of the surface: (kind, module, name, signature).
type Entry = (String, String, String, String);

fn signature(ty: &FuncType) -> String {
    let list = |types: &[wasmparser::ValType]| {
        types
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match ty.results() {
        [] => format!("({})", list(ty.params())),
        results => format!("({}) -> {}", list(ty.params()), list(results)),
    }
}

/// Imports and exports of the module, read with wasmparser.
fn module_surface(wasm: &[u8]) -> BTreeSet<Entry> {
    let mut types: Vec<FuncType> = Vec::new();
    let mut functions: Vec<u32> = Vec::new();
    let mut surface = BTreeSet::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.expect("parse drop444.wasm") {
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    types.push(ty.expect("function type"));
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.expect("import");
                    let sig = match import.ty {
                        TypeRef::Func(index) | TypeRef::FuncExact(index) => {
                            functions.push(index);
                            signature(&types[index as usize])
                        }
                        other => format!("{other:?}"),
                    };
                    surface.insert((
                        "import".into(),
                        import.module.into(),
                        import.name.into(),
                        sig,
                    ));
                }
            }
            Payload::FunctionSection(reader) => {
                for index in reader {
                    functions.push(index.expect("function"));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.expect("export");
                    let sig = match export.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => {
                            signature(&types[functions[export.index as usize] as usize])
                        }
                        ExternalKind::Memory => "memory".into(),
                        other => format!("{other:?}").to_lowercase(),
                    };
                    surface.insert(("export".into(), String::new(), export.name.into(), sig));
                }
            }
            _ => {}
        }
    }
    surface
}

fn abi_doc() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/abi.md")
}

/// The rows of the table between the `abi-surface` markers in docs/abi.md:
/// `| kind | module | name | signature | used | notes |`.
fn documented() -> Vec<(Entry, bool)> {
    let text = std::fs::read_to_string(abi_doc()).expect("read docs/abi.md");
    let start = text
        .find("<!-- abi-surface:begin -->")
        .expect("docs/abi.md: no <!-- abi-surface:begin --> marker");
    let end = text
        .find("<!-- abi-surface:end -->")
        .expect("docs/abi.md: no <!-- abi-surface:end --> marker");
    let mut rows = Vec::new();
    for line in text[start..end].lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        if !matches!(cells.first(), Some(&"import") | Some(&"export")) {
            continue;
        }
        assert!(cells.len() >= 5, "docs/abi.md: short row {line:?}");
        let used = match cells[4] {
            "yes" => true,
            "no" => false,
            other => panic!("docs/abi.md: used must be yes or no, got {other:?} in {line:?}"),
        };
        rows.push((
            (
                cells[0].into(),
                cells[1].into(),
                cells[2].into(),
                cells[3].into(),
            ),
            used,
        ));
    }
    rows
}

fn row(entry: &Entry) -> String {
    let (kind, module, name, sig) = entry;
    format!("| {kind} | {module} | `{name}` | `{sig}` |")
}

#[test]
fn imports_and_exports_match_docs_abi_md() {
    let actual = module_surface(wasm_bytes());
    let documented: Vec<Entry> = documented().into_iter().map(|(e, _)| e).collect();
    let listed: BTreeSet<Entry> = documented.iter().cloned().collect();
    assert_eq!(
        listed.len(),
        documented.len(),
        "docs/abi.md lists a row twice"
    );
    let mut report = String::new();
    for entry in actual.difference(&listed) {
        writeln!(report, "in the module, not in docs/abi.md: {}", row(entry)).unwrap();
    }
    for entry in listed.difference(&actual) {
        writeln!(report, "in docs/abi.md, not in the module: {}", row(entry)).unwrap();
    }
    assert!(report.is_empty(), "ABI surface changed:\n{report}");
}

#[test]
fn module_declares_proxy_wasm_abi_0_2_1() {
    let actual = module_surface(wasm_bytes());
    let versions: Vec<&Entry> = actual
        .iter()
        .filter(|(kind, _, name, _)| kind == "export" && name.starts_with("proxy_abi_version_"))
        .collect();
    assert_eq!(
        versions,
        [&(
            "export".to_string(),
            String::new(),
            ABI_VERSION.to_string(),
            "()".to_string()
        )],
        "exactly one ABI version export, a function () -> ()"
    );
}

#[test]
fn used_column_is_what_the_host_saw() {
    let (imports, exports) = observed_surface();
    let mut report = String::new();
    for ((kind, _, name, _), used) in documented() {
        let seen = if kind == "import" {
            imports.contains(&name)
        } else {
            exports.contains(&name)
        };
        if seen != used {
            writeln!(
                report,
                "{kind} {name}: docs/abi.md says used={}, the wasmtime host saw it {}",
                if used { "yes" } else { "no" },
                if seen { "used" } else { "unused" }
            )
            .unwrap();
        }
    }
    assert!(report.is_empty(), "{report}");
}
