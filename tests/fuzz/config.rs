//! Configuration (`config::Config::load`): any TOML text and any `ESCROW_*` environment give a
//! configuration or a `ConfigError`, never a panic, and an error never echoes a secret.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

use escrow_proxy::config::Config;

use super::support::{bytes, cases_from, run};

const CASES: u32 = 256;
/// A secret planted as the client's and the store's `secret_key`; no error may contain it.
const SECRET: &str = "fuzz-secret-9f8e7d";

/// Known names, near misses and numbers (array indices, some huge).
fn segment() -> impl Strategy<Value = String> {
    let known = proptest::sample::select(vec![
        "server",
        "clients",
        "primary",
        "mirror",
        "keys",
        "listen",
        "tls_cert",
        "tls_key",
        "region",
        "access_key",
        "secret_key",
        "secret_key_file",
        "type",
        "path",
        "endpoint",
        "path_style",
        "ca_file",
        "write",
        "read",
        "keyring",
        "root_key_file",
        "",
    ]);
    prop_oneof![
        6 => known.prop_map(str::to_string),
        1 => "[0-9]{1,3}",
        1 => "[0-9]{4,20}",
        1 => "[A-Za-z_]{1,8}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    let known = proptest::sample::select(vec![
        "fs",
        "s3",
        "sync",
        "async",
        "primary",
        "mirror",
        "true",
        "false",
        "127.0.0.1:0",
        "http://127.0.0.1:1",
        "[::1]:9000",
        "data/x",
    ]);
    prop_oneof![known.prop_map(str::to_string), ".{0,20}"]
}

fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        value().prop_map(|v| format!("{v:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        any::<f64>()
            .prop_map(|f| format!("{f:?}"))
            .prop_filter("toml float", |f| !f.contains("inf") && !f.contains("NaN")),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec((segment(), inner), 0..4).prop_map(|kv| {
                let kv: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k:?} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    })
}

/// TOML documents made of known and unknown sections and keys with values of any type.
fn document() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        segment().prop_map(|s| format!("[{s:?}]")),
        segment().prop_map(|s| format!("[[{s:?}]]")),
        (segment(), segment()).prop_map(|(a, b)| format!("[{a:?}.{b:?}]")),
    ];
    let entry = (segment(), toml_value()).prop_map(|(k, v)| format!("{k:?} = {v}"));
    let section =
        (header, proptest::collection::vec(entry, 0..5)).prop_map(|(h, e)| format!("{h}\n{}\n", e.join("\n")));
    proptest::collection::vec(section, 0..6).prop_map(|s| s.concat())
}

fn env() -> impl Strategy<Value = BTreeMap<String, String>> {
    let name =
        proptest::collection::vec(segment(), 0..4).prop_map(|s| format!("ESCROW_{}", s.join("__").to_uppercase()));
    proptest::collection::btree_map(name, value(), 0..6)
}

fn check(dir: &std::path::Path, text: Option<&[u8]>, env: &BTreeMap<String, String>) -> TestCaseResult {
    let mut env = env.clone();
    for name in ["ESCROW_CLIENTS__0__SECRET_KEY", "ESCROW_PRIMARY__SECRET_KEY"] {
        env.insert(name.to_string(), SECRET.to_string());
    }
    let file = text.map(|t| {
        let path = dir.join("config.toml");
        std::fs::write(&path, t).expect("write config");
        path
    });
    if let Err(e) = Config::load(file.as_deref(), &env) {
        prop_assert!(!e.to_string().contains(SECRET), "an error echoes a secret: {}", e);
    }
    Ok(())
}

#[test]
fn load_takes_any_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = prop_oneof![
        bytes(400),
        "[\\[\\]a-z_=\"'. \n0-9{},#]{0,200}".prop_map(String::into_bytes)
    ];
    run(
        "config: arbitrary text",
        cases_from("PROPTEST_CASES", CASES),
        text,
        |t| check(dir.path(), Some(&t), &BTreeMap::new()),
    );
}

#[test]
fn load_takes_any_document_and_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = (proptest::option::of(document()), env());
    run(
        "config: generated TOML + ESCROW_* environment",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(doc, env)| check(dir.path(), doc.as_deref().map(str::as_bytes), &env),
    );
}

/// Regression: an array index in a variable name (`ESCROW_CLIENTS__<i>__ACCESS_KEY`) grew the
/// array to `i + 1` entries before anything was checked, so one variable with a large index
/// took all memory.
#[test]
fn a_huge_environment_array_index_is_an_error_not_an_allocation() {
    for index in ["4294967296", "18446744073709551615", "99999999"] {
        let env = BTreeMap::from([(format!("ESCROW_CLIENTS__{index}__ACCESS_KEY"), "a".to_string())]);
        let err = Config::load(None, &env).expect_err("refused");
        assert!(err.to_string().contains("ESCROW_CLIENTS"), "{err}");
    }
}
