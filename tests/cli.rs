//! The `escrow-proxy` binary's command line, end to end: real processes of the binary under
//! test (`serve`, `certs generate`, `keys list|rotate`, `decrypt`), real clients (the AWS CLI v1
//! for the embedded default, `aws-sdk-s3` elsewhere), and the files the binary writes.
//!
//! Each test has its own tempdir and its own `serve` processes on `127.0.0.1:0`, except
//! [`embedded::embedded_default_serves_and_keeps_its_data`], the only test that uses the
//! embedded default's fixed `127.0.0.1:8443` (one test, so it never runs twice at once). Every
//! child is bounded in time and killed by its pid when its guard drops, also on panic.

#[path = "interop/client.rs"]
#[allow(dead_code)] // The interop tests use more of it.
mod client;
#[path = "common/mod.rs"]
mod common;
#[path = "cli/objects.rs"]
mod objects;
#[path = "cli/support.rs"]
mod support;

#[path = "cli/admin.rs"]
mod admin;
#[path = "cli/certs_and_keys.rs"]
mod certs_and_keys;
#[path = "cli/conditional_race.rs"]
mod conditional_race;
#[path = "cli/config_errors.rs"]
mod config_errors;
#[path = "cli/decrypt.rs"]
mod decrypt;
#[path = "cli/embedded.rs"]
mod embedded;
#[path = "cli/keys_admin.rs"]
mod keys_admin;
#[path = "cli/mirror.rs"]
mod mirror;
