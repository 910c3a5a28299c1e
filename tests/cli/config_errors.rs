//! `serve` refuses a bad configuration before binding anything: exit code 64, and every problem
//! on stderr (not just the first), unknown keys by name, readable secret files refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::support::{ACCESS_KEY, EXIT_BAD_CONFIG, Serve, assert_exit, escrow, toml_str};

/// A config with three independent problems: a listen address that is not one, a store type
/// that does not exist, and no `[keys]`.
#[test]
fn bad_config_exits_64_and_lists_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    fs::write(
        &config,
        format!(
            "[server]\nlisten = \"not-an-address:99999\"\n\n\
             [[clients]]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"inline-secret\"\n\n\
             [primary]\ntype = \"ftp\"\npath = \"store\"\n"
        ),
    )
    .expect("write config");

    let ran = escrow(["serve", "--config"]).arg(&config).run();
    assert_exit(&ran, EXIT_BAD_CONFIG, "serve with a bad config");
    let problems = [
        ("server.listen", "not-an-address:99999"),
        ("primary.type", "ftp"),
        ("[keys]", "keyring"),
    ];
    for (field, detail) in problems {
        let line = ran.stderr.lines().find(|l| l.contains(field));
        assert!(
            line.is_some_and(|l| l.contains(detail)),
            "stderr must name {field} (with {detail:?}); every problem is listed, not just the first\n{}",
            ran.describe()
        );
    }
    assert!(
        !ran.stdout.contains("endpoint:"),
        "nothing was served\n{}",
        ran.describe()
    );
}

#[test]
fn unknown_key_is_reported_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("typo.toml");
    fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nlisten_backlog_typo = 7\n\n\
             [[clients]]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"inline-secret\"\n\n\
             [primary]\ntype = \"fs\"\npath = \"store\"\n\n\
             [keys]\nkeyring = \"keyring\"\nroot_key_file = \"root.key\"\n"
        ),
    )
    .expect("write config");

    let ran = escrow(["serve", "--config"]).arg(&config).run();
    assert_exit(&ran, EXIT_BAD_CONFIG, "serve with a bad config");
    assert!(
        ran.stderr.contains("listen_backlog_typo"),
        "stderr must name the unknown key\n{}",
        ran.describe()
    );
    assert!(
        !dir.path().join("keyring").exists() && !dir.path().join("root.key").exists(),
        "a refused config creates no key files"
    );
}

/// A `secret_key_file` that others may read is refused; the same file at 0600 is accepted
/// (the twin shows the refusal is about the mode, not the file).
#[test]
fn shared_secret_key_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("client.secret");
    fs::write(&secret, "a-client-secret\n").expect("write secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let config = dir.path().join("escrow.toml");
    fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n\
             [[clients]]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key_file = {secret}\n\n\
             [primary]\ntype = \"fs\"\npath = \"store\"\n\n\
             [keys]\nkeyring = \"keyring\"\nroot_key_file = \"root.key\"\n",
            secret = toml_str(&secret),
        ),
    )
    .expect("write config");

    let ran = escrow(["serve", "--config"]).arg(&config).run();
    assert_exit(&ran, EXIT_BAD_CONFIG, "serve with a bad config");
    assert!(
        ran.stderr.contains("client.secret") && ran.stderr.contains("readable"),
        "stderr must name the secret file and why it is refused\n{}",
        ran.describe()
    );

    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let serve = Serve::start(dir.path(), Some(&config), "serve-0600", &["endpoint"]);
    assert!(
        serve.endpoint().starts_with("http://127.0.0.1:"),
        "plain HTTP without TLS files: {}",
        serve.endpoint()
    );
}
