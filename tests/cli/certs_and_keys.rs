//! `certs generate` and `keys list|rotate`: the files they write, and what a rotation means for
//! objects written before and after it, as seen through restarted `serve` processes and in the
//! stored objects' `escrow-kek` metadata.

use std::fs;
use std::net::SocketAddr;

use crate::common::{SEGMENT, data_with_marker};
use crate::objects::{FsObject, fs_object_path};
use crate::support::{Setup, escrow, mode};

const HOST: &str = "example.internal";
const BUCKET: &str = "rotation";

#[test]
fn certs_generate_writes_a_ca_and_a_server_certificate_for_the_host() {
    // `Setup` runs `certs generate --out <tmp>/certs --host example.internal`.
    let setup = Setup::new(false, &[HOST]);
    for file in ["ca.pem", "server.pem", "server-key.pem"] {
        let text = fs::read_to_string(setup.certs.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.starts_with("-----BEGIN "), "{file} is not PEM");
    }
    assert_eq!(mode(&setup.certs.join("server-key.pem")), 0o600, "server-key.pem");

    // The certificate is what a client trusting ca.pem accepts for that name, and only for
    // the names it was made for.
    let serve = setup.serve("serve");
    let addr: SocketAddr = serve
        .endpoint()
        .strip_prefix("https://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("endpoint {}", serve.endpoint()));
    let ca = fs::read(setup.certs.join("ca.pem")).expect("read ca.pem");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fetch = |name: &str| {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("parse ca.pem"))
            .resolve(name, addr)
            .build()
            .expect("reqwest client");
        let url = format!("https://{name}:{}/", addr.port());
        rt.block_on(async { client.get(url).send().await.map(|r| r.status().as_u16()) })
    };
    // Unsigned, so S3 says 403: what matters is that TLS accepted the certificate.
    assert_eq!(fetch(HOST).expect("TLS to example.internal"), 403);
    let other = fetch("not-in-the-certificate.internal");
    assert!(other.is_err(), "a name the certificate lacks must fail TLS: {other:?}");
}

#[test]
fn keys_rotate_keeps_old_objects_readable_and_new_ones_use_the_new_version() {
    let setup = Setup::new(false, &[]);
    let before = data_with_marker(2 * SEGMENT + 5);
    let after = data_with_marker(SEGMENT + 9);

    let serve = setup.serve("serve-before-rotation");
    let s3 = setup.s3(&serve);
    s3.create_bucket(BUCKET);
    s3.put(BUCKET, "before", &before);
    assert_eq!(keys_list(&setup), [(1, "Active".to_string(), true)]);

    let rotated = escrow(["keys", "rotate"])
        .args(setup.key_args())
        .run()
        .ok("keys rotate");
    assert!(rotated.stdout.contains("key version 2"), "{}", rotated.describe());
    assert_eq!(
        keys_list(&setup),
        [(1, "Decrypt".to_string(), false), (2, "Active".to_string(), true)]
    );
    assert_eq!(mode(&setup.keyring), 0o600, "the rewritten keyring stays private");
    let by_config = escrow(["keys", "list", "--config"])
        .arg(&setup.config)
        .run()
        .ok("keys list --config");
    let by_files = escrow(["keys", "list"]).args(setup.key_args()).run().ok("keys list");
    assert_eq!(by_config.stdout, by_files.stdout, "--config names the same key files");
    let root_hex = fs::read_to_string(&setup.root_key).expect("read root key");
    assert!(
        !by_files.stdout.contains(root_hex.trim()) && !by_files.stderr.contains(root_hex.trim()),
        "keys list must never print key material"
    );
    serve.stop();

    let serve = setup.serve("serve-after-rotation");
    let s3 = setup.s3(&serve);
    assert!(
        s3.get(BUCKET, "before") == before,
        "an object from before the rotation reads"
    );
    s3.put(BUCKET, "after", &after);
    assert!(
        s3.get(BUCKET, "after") == after,
        "an object from after the rotation reads"
    );
    serve.stop();

    for (key, version) in [("before", "1"), ("after", "2")] {
        let stored = FsObject::read(&fs_object_path(&setup.primary, BUCKET, key));
        assert_eq!(stored.metadata("escrow-kek"), version, "escrow-kek of {key}");
    }
}

/// `keys list` as (version, state, active) rows.
fn keys_list(setup: &Setup) -> Vec<(u32, String, bool)> {
    let ran = escrow(["keys", "list"]).args(setup.key_args()).run().ok("keys list");
    ran.stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [version, state, created] = fields[..] else {
                panic!(
                    "keys list line {line:?}: expected version, state, created\n{}",
                    ran.describe()
                );
            };
            let version = version.parse().unwrap_or_else(|_| panic!("version in {line:?}"));
            (version, state.to_string(), created.ends_with("(active)"))
        })
        .collect()
}
