//! `escrow-proxy decrypt`, the offline exit path: objects written through a `serve` process
//! (fs primary and fs mirror) decrypt byte-exact from an fs object file, from a configured store
//! (primary or mirror), and from a raw body plus `head-object`-like metadata; each with a
//! must-fail twin (another object's name, a flipped byte, missing or foreign metadata) that exits
//! non-zero without writing wrong plaintext.

use std::fs;
use std::path::{Path, PathBuf};

use crate::client::Ran;
use crate::common::{MARKER, SEGMENT, data_with_marker};
use crate::objects::{FsObject, assert_no_file_contains, fs_object_path};
use crate::support::{Setup, escrow};

const BUCKET: &str = "vault";
const KEY: &str = "reports/q3.bin";
/// A second object, whose metadata is moved onto the first in a must-fail case.
const OTHER_KEY: &str = "reports/q4.bin";
/// Four segments, the last one partial.
const SIZE: usize = 3 * SEGMENT + 4321;
/// Stored stream header length (FORMAT.md §2.3) and segment tag length (§2.4).
const STREAM_HEADER: usize = 32;
const TAG: usize = 16;
/// Stored stream trailer length (FORMAT.md §2.5).
const TRAILER: usize = 124;

/// Two objects written through a proxy that has since been stopped.
struct Fixture {
    setup: Setup,
    data: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let setup = Setup::new(true, &[]);
        let data = data_with_marker(SIZE);
        let serve = setup.serve("serve");
        let s3 = setup.s3(&serve);
        s3.create_bucket(BUCKET);
        s3.put(BUCKET, KEY, &data);
        s3.put(BUCKET, OTHER_KEY, &data_with_marker(1000));
        serve.stop();
        let mirror = setup.mirror.as_ref().expect("a mirror is configured");
        for store in [&setup.primary, mirror] {
            assert!(fs_object_path(store, BUCKET, KEY).is_file(), "{}", store.display());
            assert_no_file_contains(store, MARKER, "store");
        }
        Fixture { setup, data }
    }

    /// The primary's object file of [`KEY`].
    fn object_file(&self) -> PathBuf {
        fs_object_path(&self.setup.primary, BUCKET, KEY)
    }

    fn out(&self, name: &str) -> PathBuf {
        self.setup.work.join(name)
    }

    /// `decrypt --keyring K --root-key R --bucket B --key KEY ARGS… -o OUT`.
    fn decrypt_with_keys(&self, key: &str, args: &[&Path], out: &Path) -> Ran {
        escrow(["decrypt"])
            .args(self.setup.key_args())
            .args(["--bucket", BUCKET, "--key", key])
            .args(args)
            .arg("-o")
            .arg(out)
            .run()
    }

    #[track_caller]
    fn assert_decrypted(&self, ran: Ran, out: &Path, what: &str) {
        let ran = ran.ok(what);
        let got = fs::read(out).unwrap_or_else(|e| panic!("{what}: read {}: {e}", out.display()));
        assert!(
            got == self.data,
            "{what}: output differs ({} bytes, want {})\n{}",
            got.len(),
            self.data.len(),
            ran.describe()
        );
    }
}

/// A refused decryption: non-zero exit, and OUT absent or empty.
#[track_caller]
fn assert_refused_without_output(ran: Ran, out: &Path, what: &str) {
    let ran = ran.failed(what);
    let written = fs::read(out).map(|b| b.len()).unwrap_or(0);
    assert_eq!(written, 0, "{what}: plaintext was written to OUT\n{}", ran.describe());
}

fn object_arg(path: &Path) -> [&Path; 2] {
    [Path::new("--object"), path]
}

#[test]
fn decrypt_fs_object_files_of_both_stores() {
    let f = Fixture::new();
    let out = f.out("from-primary-file.bin");
    let file = f.object_file();
    f.assert_decrypted(f.decrypt_with_keys(KEY, &object_arg(&file), &out), &out, "primary file");

    let mirror = fs_object_path(f.setup.mirror.as_ref().expect("mirror"), BUCKET, KEY);
    let out = f.out("from-mirror-file.bin");
    f.assert_decrypted(
        f.decrypt_with_keys(KEY, &object_arg(&mirror), &out),
        &out,
        "mirror file",
    );
}

#[test]
fn decrypt_fetches_from_the_configured_primary_and_mirror() {
    let f = Fixture::new();
    let fetch = |store: &str, key: &str, out: &Path| {
        escrow(["decrypt", "--config"])
            .arg(&f.setup.config)
            .args(["--bucket", BUCKET, "--key", key, "--store", store, "-o"])
            .arg(out)
            .run()
    };
    let out = f.out("primary.bin");
    f.assert_decrypted(fetch("primary", KEY, &out), &out, "decrypt --config");
    let out = f.out("mirror.bin");
    f.assert_decrypted(fetch("mirror", KEY, &out), &out, "decrypt --config --store mirror");

    // Only the mirror has it now: --store mirror reads the mirror, not the primary.
    fs::remove_file(f.object_file()).expect("remove the primary's copy");
    let out = f.out("primary-gone.bin");
    assert_refused_without_output(fetch("primary", KEY, &out), &out, "primary without the object");
    let out = f.out("mirror-only.bin");
    f.assert_decrypted(
        fetch("mirror", KEY, &out),
        &out,
        "--store mirror with the primary's copy gone",
    );

    let out = f.out("missing.bin");
    assert_refused_without_output(fetch("primary", "reports/missing.bin", &out), &out, "missing key");
}

/// The wrapped data key is bound to the bucket and key: the right file under another name does
/// not decrypt.
#[test]
fn decrypt_under_another_name_fails_without_output() {
    let f = Fixture::new();
    let file = f.object_file();
    let out = f.out("wrong-key.bin");
    let ran = f.decrypt_with_keys(OTHER_KEY, &object_arg(&file), &out);
    assert_refused_without_output(ran, &out, "--key of another object");

    let out = f.out("wrong-bucket.bin");
    let ran = escrow(["decrypt"])
        .args(f.setup.key_args())
        .args(["--bucket", "other-bucket", "--key", KEY, "--object"])
        .arg(&file)
        .arg("-o")
        .arg(&out)
        .run();
    assert_refused_without_output(ran, &out, "--bucket of another object");
}

/// A flipped byte anywhere in the stored stream is an error, never wrong bytes: whatever was
/// written before the failure is a prefix of the plaintext.
#[test]
fn decrypt_refuses_a_flipped_byte() {
    let f = Fixture::new();
    let stored = FsObject::read(&f.object_file());
    let body_len = stored.body.len();
    let places = [
        ("stream header (salt)", 8),
        ("segment 0", STREAM_HEADER + 1000),
        ("segment 2", STREAM_HEADER + 2 * (SEGMENT + TAG) + 17),
        ("last segment's tag", body_len - TRAILER - 1),
        ("trailer", body_len - TRAILER / 2),
    ];
    let original = fs::read(f.object_file()).expect("read object file");
    for (i, (place, at)) in places.into_iter().enumerate() {
        let mut tampered = original.clone();
        tampered[stored.body_offset + at] ^= 0x01;
        let file = f.out(&format!("tampered-{i}"));
        fs::write(&file, &tampered).expect("write tampered file");
        let out = f.out(&format!("tampered-{i}.out"));
        let ran = f.decrypt_with_keys(KEY, &object_arg(&file), &out).failed(place);
        let written = fs::read(&out).unwrap_or_default();
        assert!(
            f.data.starts_with(&written),
            "{place}: {} bytes written that are not the plaintext's prefix\n{}",
            written.len(),
            ran.describe()
        );
        assert!(written.len() < f.data.len(), "{place}: the whole plaintext was written");
    }
}

/// The body as any S3 store returns it, plus its metadata as `aws s3api head-object` prints it.
#[test]
fn decrypt_raw_body_with_head_object_metadata() {
    let f = Fixture::new();
    let stored = FsObject::read(&f.object_file());
    let raw = f.out("raw-body");
    fs::write(&raw, &stored.body).expect("write raw body");
    let meta = f.out("head-object.json");
    let head = serde_json::json!({ "Metadata": stored.header["metadata"] });
    fs::write(&meta, head.to_string()).expect("write metadata");

    let out = f.out("raw.out");
    let args = [
        Path::new("--object"),
        raw.as_path(),
        Path::new("--metadata"),
        meta.as_path(),
    ];
    f.assert_decrypted(f.decrypt_with_keys(KEY, &args, &out), &out, "--object raw --metadata");

    let out = f.out("raw-no-metadata.out");
    let ran = f.decrypt_with_keys(KEY, &object_arg(&raw), &out);
    assert_refused_without_output(ran, &out, "a raw body without --metadata");

    // Metadata moved over from another object.
    let other = FsObject::read(&fs_object_path(&f.setup.primary, BUCKET, OTHER_KEY));
    let foreign = f.out("foreign-head-object.json");
    let head = serde_json::json!({ "Metadata": other.header["metadata"] });
    fs::write(&foreign, head.to_string()).expect("write metadata");
    let out = f.out("raw-foreign-metadata.out");
    let args = [
        Path::new("--object"),
        raw.as_path(),
        Path::new("--metadata"),
        foreign.as_path(),
    ];
    assert_refused_without_output(f.decrypt_with_keys(KEY, &args, &out), &out, "another object's metadata");
}

/// An SSE-C object decrypts offline only with its customer key, given in a private file: not
/// without it, not with another key, not from a file others may read; a plain object refuses a
/// key. The keyring and root key alone are not enough.
#[test]
fn decrypt_sse_c_needs_the_customer_key_from_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new(true, &[]);
    let data = data_with_marker(SIZE);
    let raw = [0x3au8; 32];
    let serve = setup.serve("serve");
    let s3 = setup.s3(&serve);
    s3.create_bucket(BUCKET);
    s3.put_sse_c(BUCKET, KEY, &data, &raw);
    s3.put(BUCKET, OTHER_KEY, &data);
    serve.stop();
    let f = Fixture { setup, data };
    let key_file = |name: &str, bytes: &[u8], mode: u32| {
        let path = f.out(name);
        fs::write(&path, format!("{}\n", crate::common::b64(bytes))).expect("key file");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    };
    let right = key_file("right.key", &raw, 0o600);
    let wrong = key_file("wrong.key", &[0x3bu8; 32], 0o600);
    let open = key_file("open.key", &raw, 0o644);
    let short = key_file("short.key", &[0x3au8; 16], 0o600);
    let file = f.object_file();
    let with = |key: &str, key_file: Option<&Path>, out: &Path| {
        let object = fs_object_path(&f.setup.primary, BUCKET, key);
        let mut args: Vec<&Path> = object_arg(&object).to_vec();
        if let Some(k) = key_file {
            args.push(Path::new("--sse-c-key-file"));
            args.push(k);
        }
        f.decrypt_with_keys(key, &args, out)
    };
    assert!(file.is_file());

    let out = f.out("with-key.bin");
    f.assert_decrypted(with(KEY, Some(&right), &out), &out, "SSE-C object with its key");
    for (name, key_file) in [
        ("no key", None),
        ("another key", Some(wrong.as_path())),
        ("a key file others may read", Some(open.as_path())),
        ("a 16-byte key", Some(short.as_path())),
    ] {
        let out = f.out(&format!("refused-{}.bin", name.replace(' ', "-")));
        assert_refused_without_output(with(KEY, key_file, &out), &out, name);
    }
    let out = f.out("plain-with-key.bin");
    assert_refused_without_output(with(OTHER_KEY, Some(&right), &out), &out, "a plain object with a key");
}
