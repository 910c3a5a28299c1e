//! Unit tests of configuration loading: the file, the environment overlay, and the checks.

use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn env_alone_makes_a_config() {
    let cfg = Config::load(
        None,
        &env(&[
            ("ESCROW_SERVER__LISTEN", "127.0.0.1:9000"),
            ("ESCROW_CLIENTS__0__ACCESS_KEY", "app"),
            ("ESCROW_CLIENTS__0__SECRET_KEY", "s3cr3t"),
            ("ESCROW_PRIMARY__TYPE", "s3"),
            ("ESCROW_PRIMARY__ENDPOINT", "http://127.0.0.1:9001"),
            ("ESCROW_PRIMARY__ACCESS_KEY", "a"),
            ("ESCROW_PRIMARY__SECRET_KEY", "b"),
            ("ESCROW_PRIMARY__PATH_STYLE", "true"),
            ("ESCROW_PRIMARY__CONDITIONAL_WRITES", "false"),
            ("ESCROW_KEYS__KEYRING", "k"),
            ("ESCROW_KEYS__ROOT_KEY_FILE", "r"),
        ]),
    )
    .expect("valid");
    assert_eq!(cfg.server.listen.port(), 9000);
    assert_eq!(cfg.clients[0].access_key, "app");
    assert!(matches!(cfg.primary, StoreConfig::S3(ref s) if s.path_style && !s.conditional_writes));
    assert!(cfg.server.tls.is_none());
}

#[test]
fn numeric_env_secrets_stay_strings() {
    let base = [
        ("ESCROW_CLIENTS__0__ACCESS_KEY", "app"),
        ("ESCROW_CLIENTS__0__SECRET_KEY", "83920174"),
        ("ESCROW_PRIMARY__TYPE", "fs"),
        ("ESCROW_PRIMARY__PATH", "p"),
        ("ESCROW_KEYS__KEYRING", "k"),
        ("ESCROW_KEYS__ROOT_KEY_FILE", "r"),
    ];
    let cfg = Config::load(None, &env(&base)).expect("valid");
    assert_eq!(cfg.clients[0].secret_key.expose(), "83920174");
    // A bad boolean is reported by name, without echoing anything secret.
    let mut bad = base.to_vec();
    bad.push(("ESCROW_PRIMARY__PATH_STYLE", "yes"));
    let err = Config::load(None, &env(&bad)).unwrap_err().to_string();
    assert!(
        err.contains("ESCROW_PRIMARY__PATH_STYLE") && !err.contains("83920174"),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(
            &file,
            "[server]\nlisten = \"nope\"\ntls_cert = \"a.pem\"\n[primary]\ntype = \"ftp\"\n[[clients]]\naccess_key = \"x\"\n",
        )
        .expect("write");
    let err = Config::load(Some(&file), &BTreeMap::new()).unwrap_err();
    let text = err.to_string();
    for needle in ["server.listen", "tls_key", "primary.type", "secret_key", "[keys]"] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn server_limits_from_file_and_env_and_plaintext_only_on_loopback() {
    let base = [
        ("ESCROW_CLIENTS__0__ACCESS_KEY", "app"),
        ("ESCROW_CLIENTS__0__SECRET_KEY", "s"),
        ("ESCROW_PRIMARY__TYPE", "fs"),
        ("ESCROW_PRIMARY__PATH", "p"),
        ("ESCROW_KEYS__KEYRING", "k"),
        ("ESCROW_KEYS__ROOT_KEY_FILE", "r"),
    ];
    let cfg = Config::load(None, &env(&base)).expect("valid");
    assert_eq!(
        cfg.server.limits.max_connections,
        crate::limits::DEFAULT_MAX_CONNECTIONS
    );
    let mut set = base.to_vec();
    set.extend([
        ("ESCROW_SERVER__BODY_TIMEOUT_SECS", "7"),
        ("ESCROW_SERVER__H2_MAX_STREAMS", "9"),
    ]);
    let cfg = Config::load(None, &env(&set)).expect("valid");
    assert_eq!(cfg.server.limits.body_timeout, Duration::from_secs(7));
    assert_eq!(cfg.server.limits.h2_max_streams, 9);
    let mut bad = base.to_vec();
    bad.extend([
        ("ESCROW_SERVER__IDLE_TIMEOUT_SECS", "0"),
        ("ESCROW_SERVER__LISTEN", "0.0.0.0:8080"),
    ]);
    let err = Config::load(None, &env(&bad)).unwrap_err().to_string();
    assert!(
        err.contains("idle_timeout_secs") && err.contains("not a loopback"),
        "{err}"
    );
    bad.push(("ESCROW_SERVER__ALLOW_PLAINTEXT_NON_LOOPBACK", "true"));
    bad.retain(|(k, _)| !k.ends_with("IDLE_TIMEOUT_SECS"));
    assert!(Config::load(None, &env(&bad)).is_ok());
}

#[test]
fn unknown_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[server]\nlisten_on = \"127.0.0.1:1\"\n").expect("write");
    assert!(
        Config::load(Some(&file), &BTreeMap::new())
            .unwrap_err()
            .to_string()
            .contains("listen_on")
    );
}

#[test]
fn world_readable_secret_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("s");
    std::fs::write(&secret, "x\n").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let file = dir.path().join("c.toml");
    std::fs::write(
            &file,
            "[[clients]]\naccess_key = \"a\"\nsecret_key_file = \"s\"\n[primary]\ntype = \"fs\"\npath = \"p\"\n[keys]\nkeyring = \"k\"\nroot_key_file = \"r\"\n",
        )
        .expect("write");
    let err = Config::load(Some(&file), &BTreeMap::new()).unwrap_err().to_string();
    assert!(err.contains("readable"), "{err}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg = Config::load(Some(&file), &BTreeMap::new()).expect("valid");
    assert_eq!(cfg.clients[0].secret_key.expose(), "x");
}
