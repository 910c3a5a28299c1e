//! The `ESCROW_*` environment overlay: each variable sets one path of the TOML table before it
//! is deserialized (`ESCROW_<SECTION>__<KEY>`, array indexes as path segments).

use std::collections::BTreeMap;

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "ESCROW_";
/// Settings whose environment values are booleans; every other value is a string.
const BOOL_KEYS: &[&str] = &[
    "path_style",
    "conditional_writes",
    "allow_plaintext_non_loopback",
    "refuse_sse_kms",
    "shutdown_endpoint",
];
/// Separator of path segments in environment variable names.
const ENV_SEPARATOR: &str = "__";
/// Largest array index an environment variable may name (`ESCROW_CLIENTS__<i>__…`).
const MAX_ENV_INDEX: usize = 999;

/// Applies `ESCROW_*` variables to the TOML table.
pub(super) fn overlay_env(table: &mut toml::Table, env: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let segments: Vec<String> = path.split(ENV_SEPARATOR).map(str::to_lowercase).collect();
        // Values stay strings (a numeric secret must not become an integer), except for the
        // settings that are booleans.
        let is_bool = segments.last().is_some_and(|k| BOOL_KEYS.contains(&k.as_str()));
        let parsed = match (is_bool, value.as_str()) {
            (true, "true") => toml::Value::Boolean(true),
            (true, "false") => toml::Value::Boolean(false),
            (true, _) => {
                problems.push(format!("{name}: expected true or false"));
                continue;
            }
            (false, _) => toml::Value::String(value.clone()),
        };
        if let Err(e) = set_path(table, &segments, parsed) {
            problems.push(format!("{name}: {e}"));
        }
    }
}

fn set_path(table: &mut toml::Table, segments: &[String], value: toml::Value) -> Result<(), String> {
    let (first, rest) = segments.split_first().ok_or("empty variable name")?;
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let entry = table.entry(first.clone());
    if let Ok(index) = rest[0].parse::<usize>() {
        // The array grows to `index + 1` entries: bound it before allocating.
        if index > MAX_ENV_INDEX {
            return Err(format!("array index {index} is above {MAX_ENV_INDEX}"));
        }
        let array = entry.or_insert_with(|| toml::Value::Array(Vec::new()));
        let toml::Value::Array(items) = array else {
            return Err(format!("{first} is not an array"));
        };
        while items.len() <= index {
            items.push(toml::Value::Table(toml::Table::new()));
        }
        let toml::Value::Table(inner) = &mut items[index] else {
            return Err(format!("{first}[{index}] is not a table"));
        };
        return set_path(inner, &rest[1..], value);
    }
    let inner = entry.or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(inner) = inner else {
        return Err(format!("{first} is not a table"));
    };
    set_path(inner, rest, value)
}

/// Whether any configuration variable is set.
pub fn env_has_config(env: &BTreeMap<String, String>) -> bool {
    env.keys()
        .any(|k| k.starts_with(ENV_PREFIX) && k.contains(ENV_SEPARATOR))
}
