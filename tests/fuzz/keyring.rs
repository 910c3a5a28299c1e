//! The keyring file (`crypto::keyring::Keyring::open`) and the key-file loaders (`keys.rs`):
//! files at home, but read from disk, where anything can end up.

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use proptest::prelude::*;

use escrow_proxy::crypto::keyring::{KekState, Keyring};
use escrow_proxy::files::write_private_file;
use escrow_proxy::keys::{load_keyring, load_root_key};
use escrow_proxy::secret::Key256;

use super::support::{bytes, cases_from, run};

const CASES: u32 = 128;
const NOW: &str = "2026-11-28T00:00:00Z";

fn key() -> impl Strategy<Value = Key256> {
    any::<[u8; 32]>().prop_map(Key256::from_bytes)
}

/// Keyring documents of the right shape with arbitrary field values.
fn document() -> impl Strategy<Value = String> {
    let state = proptest::sample::select(vec!["active", "decrypt", "retired", "other"]);
    let sealed = proptest::option::of(prop_oneof![
        bytes(80).prop_map(|b| B64.encode(b)),
        "[A-Za-z0-9+/=]{0,70}",
    ]);
    let kek = (any::<u32>(), state, sealed).prop_map(|(version, state, sealed)| {
        let sealed = sealed.map_or(String::new(), |s| format!(r#", "sealed": "{s}""#));
        format!(r#"{{"version": {version}, "state": "{state}", "created": "{NOW}"{sealed}}}"#)
    });
    (0u32..3, any::<u32>(), proptest::collection::vec(kek, 0..4)).prop_map(|(format, active, keks)| {
        format!(
            r#"{{"format": {format}, "active": {active}, "keks": [{}]}}"#,
            keks.join(", ")
        )
    })
}

#[test]
fn open_takes_any_text() {
    let text = prop_oneof![
        bytes(300).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        document()
    ];
    run(
        "keyring open (arbitrary text)",
        cases_from("PROPTEST_CASES", CASES * 2),
        (key(), text),
        |(root, text)| {
            // Without the root key nothing opens: every usable version's key is sealed under it.
            prop_assert!(Keyring::open(&root, &text).is_err());
            Ok(())
        },
    );
}

#[test]
fn sealed_keyring_round_trips_and_edits_never_swap_keys() {
    let s = (key(), 0usize..4, any::<usize>(), 0u8..8);
    run(
        "keyring seal/open + byte edits",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(root, rotations, at, bit)| {
            let mut ring = Keyring::generate(NOW);
            for _ in 0..rotations {
                ring.rotate(NOW).expect("a next version");
            }
            let sealed = ring.seal(&root);
            let back = Keyring::open(&root, &sealed).expect("opens");
            prop_assert_eq!(back.active().0, ring.active().0);
            for v in ring.versions() {
                prop_assert_eq!(
                    back.kek(v.version).expect("kek").expose(),
                    ring.kek(v.version).expect("kek").expose()
                );
            }
            // Any one-bit edit of the text: refused, or (an edit of layout or of the unsealed
            // structure) opened with the same key material under every version number.
            let mut edited = sealed.clone().into_bytes();
            let at = at % edited.len();
            edited[at] ^= 1 << bit;
            if let Ok(text) = String::from_utf8(edited)
                && let Ok(opened) = Keyring::open(&root, &text)
            {
                for v in opened.versions() {
                    if let (Ok(got), Ok(want)) = (opened.kek(v.version), ring.kek(v.version)) {
                        prop_assert_eq!(got.expose(), want.expose(), "version {} key swapped", v.version);
                    } else {
                        prop_assert!(v.state == KekState::Destroyed || ring.kek(v.version).is_ok());
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn key_file_loaders_take_any_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root_path = dir.path().join("root.key");
    let ring_path = dir.path().join("keyring");
    let contents = prop_oneof![bytes(200), "[0-9a-fA-F \n]{0,70}".prop_map(String::into_bytes),];
    run(
        "key files: load_root_key / load_keyring (arbitrary contents)",
        cases_from("PROPTEST_CASES", CASES),
        (contents, key()),
        |(c, root)| {
            write_private_file(&root_path, &c).expect("write");
            match load_root_key(&root_path) {
                Ok(k) => {
                    let text = String::from_utf8(c.clone()).expect("a loaded key file is text");
                    prop_assert_eq!(hex::encode(k.expose()), text.trim().to_lowercase());
                }
                Err(e) => {
                    // The error never echoes the (secret) contents.
                    let text = String::from_utf8_lossy(&c);
                    let text = text.trim();
                    prop_assert!(
                        text.len() < 8 || !e.to_string().contains(text),
                        "error echoes the file: {}",
                        e
                    );
                }
            }
            std::fs::set_permissions(&root_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            prop_assert!(
                load_root_key(&root_path).is_err(),
                "a readable root key file is refused"
            );
            write_private_file(&ring_path, &c).expect("write");
            prop_assert!(load_keyring(&ring_path, &root).is_err());
            Ok(())
        },
    );
}
