//! The blank-key workaround: S3 allows a key of only whitespace, which the SDK refuses; such a
//! key goes to the SDK as a stand-in ([`sdk_key`]) and is written back into the request path
//! before signing ([`restore_key`]).

use aws_sdk_s3::config::http::HttpRequest;

/// What the SDK is given as an object key. S3 allows a key of only whitespace (`" "`), but the
/// SDK drops blank strings from its endpoint parameters and then refuses the request ("key was
/// missing"); such a key goes out as [`BLANK_KEY_STANDIN`], and [`restore_key`] writes the real
/// one into the request path before the request is signed.
pub fn sdk_key(key: &str) -> &str {
    if key.trim().is_empty() { BLANK_KEY_STANDIN } else { key }
}

/// Stands in for a blank key in the SDK ([`sdk_key`]); never sent.
const BLANK_KEY_STANDIN: &str = "escrow-blank-key-standin";

/// The request mutation that puts a blank `key` back where [`sdk_key`] put its stand-in (the
/// last path segment; nothing for other keys).
pub fn restore_key(key: &str) -> impl Fn(&mut HttpRequest) + Send + Sync + 'static {
    let encoded = key
        .trim()
        .is_empty()
        .then(|| key.bytes().map(|b| format!("%{b:02X}")).collect::<String>());
    move |req: &mut HttpRequest| {
        let Some(encoded) = &encoded else { return };
        let uri = req.uri().to_string();
        let path_end = uri.find('?').unwrap_or(uri.len());
        let standin = format!("/{BLANK_KEY_STANDIN}");
        if let Some(at) = uri[..path_end].rfind(&standin)
            && at + standin.len() == path_end
        {
            let fixed = format!("{}/{encoded}{}", &uri[..at], &uri[path_end..]);
            if let Err(e) = req.set_uri(fixed) {
                tracing::warn!(error = %e, "could not restore a blank key in the request path");
            }
        }
    }
}
