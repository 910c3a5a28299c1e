//! Fuzzing and property tests of everything that parses bytes an attacker controls: a client
//! (aws-chunked request bodies, through a running proxy) or a hostile store (stream headers,
//! extensions, trailers, segments, manifests, sealed records, wrapped keys, stored metadata),
//! and the files at home (keyring, root key, configuration and environment).
//!
//! proptest on the pinned stable toolchain (`cargo fuzz` needs nightly, which is not available
//! here). Each target runs a CI-sized number of cases by default; `PROPTEST_CASES`,
//! `FUZZ_HTTP_CASES` and `FUZZ_SECONDS` raise and bound them (`fuzz/support.rs`), and
//! `scripts/fuzz.sh` is the long run.
//!
//! Properties: no input panics; lengths read from input are bounded before they size anything;
//! what is sealed opens to exactly the input; any flipped bit, truncation or extension of sealed
//! bytes fails (the must-fail twins); the range arithmetic covers exactly the needed segments.

#[path = "common/mod.rs"]
mod common;

#[path = "fuzz/chunked.rs"]
mod chunked;

#[path = "fuzz/config.rs"]
mod config;
#[path = "fuzz/envelope.rs"]
mod envelope;
#[path = "fuzz/keyring.rs"]
mod keyring;
#[path = "fuzz/manifest.rs"]
mod manifest;
#[path = "fuzz/reader.rs"]
mod reader;
#[path = "fuzz/stream.rs"]
mod stream;
#[path = "fuzz/support.rs"]
mod support;
