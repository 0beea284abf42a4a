//! Reading typed configuration out of a parsed JSON document, with the JSON
//! path of every error (`rules[3].all[1].contains`).
//!
//! Written by hand instead of `#[derive(Deserialize)]` + `serde_path_to_error`:
//! those instantiated serde's visitor machinery for every type twice and were
//! a fifth of drop444.wasm. The messages are serde's wording (`unknown field
//! `x`, expected one of ...`, `invalid type: string "x", expected a boolean`,
//! `missing field `x``, `unknown variant ...`), so they read as before.
//! Fields are visited in the document's order (serde_json sorts keys), so
//! the first error reported is the one serde reported.

use serde_json::Value;

use super::error::ConfigError;

/// `path.key` (`key` alone at the top).
pub(crate) fn key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// How serde names a value it did not expect.
fn unexpected(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_string(),
        Value::Object(_) => "map".to_string(),
    }
}

/// `invalid type: <value>, expected <what>`.
pub(crate) fn invalid_type(value: &Value, expected: &str, path: &str) -> ConfigError {
    ConfigError::new(
        path,
        format!("invalid type: {}, expected {expected}", unexpected(value)),
    )
}

/// serde's list of the names it expected: "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            // Written out rather than `.join(", ")` over `String`s: that
            // would be a second `join` instance in the module.
            let mut text = String::from("one of ");
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                text.push('`');
                text.push_str(n);
                text.push('`');
            }
            text
        }
    }
}

/// Visits the fields of a JSON object (`what` names it in errors, e.g.
/// `struct NodeSpec`). A field not in `known` is an error at its own path;
/// with an empty `known`, every field is accepted (and skipped by `each`).
pub(crate) fn object<'v>(
    value: &'v Value,
    path: &str,
    what: &str,
    known: &[&str],
    mut each: impl FnMut(&str, &'v Value, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let Value::Object(map) = value else {
        return Err(invalid_type(value, what, path));
    };
    for (name, field) in map {
        let at = key(path, name);
        if !known.is_empty() && !known.contains(&name.as_str()) {
            return Err(ConfigError::new(
                &at,
                format!("unknown field `{name}`, expected {}", one_of(known)),
            ));
        }
        each(name, field, &at)?;
    }
    Ok(())
}

/// The error for a required field left out of the object at `path`.
pub(crate) fn missing(path: &str, name: &str) -> ConfigError {
    ConfigError::new(path, format!("missing field `{name}`"))
}

/// `Some(read(value))`, or `None` for `null` (serde's `Option`).
pub(crate) fn opt<T>(
    value: &Value,
    path: &str,
    read: impl FnOnce(&Value, &str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match value {
        Value::Null => Ok(None),
        _ => read(value, path).map(Some),
    }
}

pub(crate) fn string(value: &Value, path: &str) -> Result<String, ConfigError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(invalid_type(value, "a string", path)),
    }
}

pub(crate) fn boolean(value: &Value, path: &str) -> Result<bool, ConfigError> {
    match value {
        Value::Bool(b) => Ok(*b),
        _ => Err(invalid_type(value, "a boolean", path)),
    }
}

/// An unsigned integer of at most `max`; `what` is the Rust type's name
/// (`u32`), as serde wrote it.
fn unsigned(value: &Value, path: &str, max: u64, what: &str) -> Result<u64, ConfigError> {
    let Value::Number(n) = value else {
        return Err(invalid_type(value, what, path));
    };
    match n.as_u64() {
        Some(u) if u <= max => Ok(u),
        _ if n.is_f64() => Err(invalid_type(value, what, path)),
        _ => Err(ConfigError::new(
            path,
            format!("invalid value: integer `{n}`, expected {what}"),
        )),
    }
}

pub(crate) fn u64(value: &Value, path: &str) -> Result<u64, ConfigError> {
    unsigned(value, path, u64::MAX, "u64")
}

pub(crate) fn u32(value: &Value, path: &str) -> Result<u32, ConfigError> {
    let n = unsigned(value, path, u32::MAX.into(), "u32")?;
    u32::try_from(n).map_err(|_| invalid_type(value, "u32", path))
}

pub(crate) fn u16(value: &Value, path: &str) -> Result<u16, ConfigError> {
    let n = unsigned(value, path, u16::MAX.into(), "u16")?;
    u16::try_from(n).map_err(|_| invalid_type(value, "u16", path))
}

/// A JSON array, each item read at `path[i]`.
pub(crate) fn seq<T>(
    value: &Value,
    path: &str,
    mut read: impl FnMut(&Value, &str) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(invalid_type(value, "a sequence", path));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| read(item, &format!("{path}[{i}]")))
        .collect()
}

/// A JSON object as (name, value) pairs, each value read at `path.name`;
/// sorted by name, each name once (serde_json's map is a sorted map).
pub(crate) fn map<T>(
    value: &Value,
    path: &str,
    mut read: impl FnMut(&Value, &str) -> Result<T, ConfigError>,
) -> Result<Vec<(String, T)>, ConfigError> {
    let mut out = Vec::new();
    object(value, path, "a map", &[], |name, item, at| {
        out.push((name.to_string(), read(item, at)?));
        Ok(())
    })?;
    Ok(out)
}

/// One of the named unit variants of an enum: `"dry-run"` (or serde_json's
/// other spelling of a unit variant, `{"dry-run": null}`).
pub(crate) fn variant<T: Copy>(
    value: &Value,
    path: &str,
    variants: &[(&str, T)],
) -> Result<T, ConfigError> {
    let name = match value {
        Value::String(s) => s.as_str(),
        Value::Object(map) if map.len() == 1 => match map.iter().next() {
            Some((name, Value::Null)) => name.as_str(),
            Some((_, other)) => return Err(invalid_type(other, "unit variant", path)),
            None => return Err(invalid_type(value, "string or map", path)),
        },
        _ => return Err(invalid_type(value, "string or map", path)),
    };
    match variants.iter().find(|(n, _)| *n == name) {
        Some((_, v)) => Ok(*v),
        None => {
            let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
            Err(ConfigError::new(
                path,
                format!("unknown variant `{name}`, expected {}", one_of(&names)),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_read_as_serde_wrote_them() {
        let err = |r: Result<u32, ConfigError>| r.unwrap_err().to_string();
        assert_eq!(
            err(u32(&json!(-1), "a")),
            "a: invalid value: integer `-1`, expected u32"
        );
        assert_eq!(
            err(u32(&json!(4_294_967_296_u64), "a")),
            "a: invalid value: integer `4294967296`, expected u32"
        );
        assert_eq!(
            err(u32(&json!(1.5), "a")),
            "a: invalid type: floating point `1.5`, expected u32"
        );
        assert_eq!(
            err(u32(&json!("7"), "a")),
            "a: invalid type: string \"7\", expected u32"
        );
        assert_eq!(u32(&json!(7), "a").unwrap(), 7);
        let e = object(
            &json!({"b": 1, "zz": 2}),
            "x",
            "struct X",
            &["b", "c", "d"],
            |_, _, _| Ok(()),
        )
        .unwrap_err();
        assert_eq!(e.path(), "x.zz");
        assert_eq!(
            e.message(),
            "unknown field `zz`, expected one of `b`, `c`, `d`"
        );
        let e = variant(&json!("x"), "m", &[("a", 1), ("b", 2)]).unwrap_err();
        assert_eq!(e.message(), "unknown variant `x`, expected `a` or `b`");
        assert_eq!(
            variant(&json!({"b": null}), "m", &[("a", 1), ("b", 2)]).unwrap(),
            2
        );
        assert_eq!(
            seq(&json!([true, 1]), "r", boolean)
                .unwrap_err()
                .to_string(),
            "r[1]: invalid type: integer `1`, expected a boolean"
        );
        assert_eq!(opt(&json!(null), "o", string).unwrap(), None);
    }
}
