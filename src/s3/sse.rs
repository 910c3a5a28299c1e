//! SSE-C on the S3 wire: the `x-amz-server-side-encryption-customer-*` headers (and their
//! `x-amz-copy-source-` twins) read into a [`CustomerKey`], with S3's checks and errors, and the
//! two headers every answer about an SSE-C object echoes (the algorithm and the key's MD5, never
//! the key).
//!
//! S3 refuses SSE-C over plain HTTP, since the key travels in a header. The proxy follows it,
//! except on a loopback listener (a sidecar: the key never leaves the host): a plain-HTTP
//! listener on another address (`allow_plaintext_non_loopback`) refuses every SSE-C request.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use s3s::{S3Result, s3_error};

use crate::object::{CustomerKey, Opened};

/// The one algorithm SSE-C has.
pub(super) const AES256: &str = "AES256";

/// The three SSE-C headers of a request, as s3s parsed them.
pub(super) struct Headers<'a> {
    pub algorithm: Option<&'a str>,
    pub key: Option<&'a str>,
    pub key_md5: Option<&'a str>,
}

/// The SSE-C [`Headers`] of an input, `sse_customer_*` (or, with `copy_source`, the
/// `copy_source_sse_customer_*` fields).
macro_rules! sse_c_headers {
    ($input:expr) => {
        super::sse::Headers {
            algorithm: $input.sse_customer_algorithm.as_deref(),
            key: $input.sse_customer_key.as_deref(),
            key_md5: $input.sse_customer_key_md5.as_deref(),
        }
    };
    ($input:expr, copy_source) => {
        super::sse::Headers {
            algorithm: $input.copy_source_sse_customer_algorithm.as_deref(),
            key: $input.copy_source_sse_customer_key.as_deref(),
            key_md5: $input.copy_source_sse_customer_key_md5.as_deref(),
        }
    };
}
pub(super) use sse_c_headers;

/// The customer key a request gives (`None`: no SSE-C header at all), checked as S3 does: the
/// algorithm `AES256`, a key of exactly 32 bytes (base64), and the base64 MD5 of those bytes.
/// `secure`: whether the connection may carry a key (TLS, or a loopback listener).
pub(super) fn customer_key(h: &Headers<'_>, secure: bool) -> S3Result<Option<CustomerKey>> {
    if h.algorithm.is_none() && h.key.is_none() && h.key_md5.is_none() {
        return Ok(None);
    }
    if !secure {
        return Err(s3_error!(
            InvalidRequest,
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
        ));
    }
    match h.algorithm {
        Some(AES256) => {}
        Some(_) => {
            return Err(s3_error!(
                InvalidEncryptionAlgorithmError,
                "The Encryption request you specified is not valid. Supported value: AES256."
            ));
        }
        None => {
            return Err(s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
            ));
        }
    }
    let Some(encoded) = h.key else {
        return Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
        ));
    };
    let raw = zeroize::Zeroizing::new(B64.decode(encoded.trim()).unwrap_or_default());
    let Some(key) = CustomerKey::from_slice(&raw) else {
        return Err(s3_error!(
            InvalidArgument,
            "The secret key was invalid for the specified algorithm."
        ));
    };
    let Some(md5) = h.key_md5 else {
        return Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."
        ));
    };
    if md5.trim() != key.md5_base64() {
        return Err(s3_error!(
            InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        ));
    }
    Ok(Some(key))
}

/// Refuses a write that asks for SSE-C and for `x-amz-server-side-encryption` at once, as S3
/// does: the two are different encryption methods.
pub(super) fn exclusive(key: Option<&CustomerKey>, sse: Option<&s3s::dto::ServerSideEncryption>) -> S3Result<()> {
    if key.is_some() && sse.is_some() {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
        ));
    }
    Ok(())
}

/// Whether two requests' customer keys are the same (or both absent); constant time.
pub(super) fn same_key(a: Option<&CustomerKey>, b: Option<&CustomerKey>) -> bool {
    use subtle::ConstantTimeEq as _;
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => bool::from(a.expose().ct_eq(b.expose())),
        _ => false,
    }
}

/// Whether SSE-C keys may travel on a listener: with TLS, or on a loopback address.
pub(crate) fn keys_may_travel(tls: bool, listen: std::net::IpAddr) -> bool {
    tls || listen.is_loopback()
}

/// What an answer echoes for `key`: `x-amz-server-side-encryption-customer-algorithm` and
/// `-key-MD5` (both absent without a key).
pub(super) fn echo(key: Option<&CustomerKey>) -> (Option<String>, Option<String>) {
    match key {
        Some(k) => (Some(AES256.to_string()), Some(k.md5_base64())),
        None => (None, None),
    }
}

/// Opens `opened` for a request that gave `key`: S3's errors when an SSE-C object gets no key or
/// the wrong one, or a plain object gets one.
pub(super) fn unlock(opened: &mut Opened, key: Option<&CustomerKey>) -> S3Result<()> {
    opened.unlock(key).map_err(super::error::object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: s3s::S3Error) -> String {
        e.code().as_str().to_string()
    }

    fn md5_b64(bytes: &[u8]) -> String {
        use md5::Digest as _;
        B64.encode(md5::Md5::digest(bytes))
    }

    #[test]
    fn headers_are_checked_as_s3_does() {
        let raw = [9u8; 32];
        let (key, md5) = (B64.encode(raw), md5_b64(&raw));
        let h = |a: Option<&'static str>, k: Option<String>, m: Option<String>| (a, k, m);
        let check = |(a, k, m): (Option<&str>, Option<String>, Option<String>), secure: bool| {
            customer_key(
                &Headers {
                    algorithm: a,
                    key: k.as_deref(),
                    key_md5: m.as_deref(),
                },
                secure,
            )
        };
        assert!(check(h(None, None, None), false).expect("none").is_none());
        let got = check(h(Some("AES256"), Some(key.clone()), Some(md5.clone())), true)
            .expect("valid")
            .expect("a key");
        assert_eq!(got.expose(), &raw);
        assert_eq!(echo(Some(&got)), (Some("AES256".into()), Some(md5.clone())));
        let short = [1u8; 16];
        for (case, want) in [
            (
                h(Some("AES256"), Some(key.clone()), Some(md5_b64(b"x"))),
                "InvalidArgument",
            ),
            (
                h(Some("AES256"), Some(B64.encode(short)), Some(md5_b64(&short))),
                "InvalidArgument",
            ),
            (
                h(Some("AES256"), Some("%%%".into()), Some(md5.clone())),
                "InvalidArgument",
            ),
            (h(Some("AES256"), None, Some(md5.clone())), "InvalidArgument"),
            (h(Some("AES256"), Some(key.clone()), None), "InvalidArgument"),
            (h(None, Some(key.clone()), Some(md5.clone())), "InvalidArgument"),
            (
                h(Some("aws:kms"), Some(key.clone()), Some(md5.clone())),
                "InvalidEncryptionAlgorithmError",
            ),
        ] {
            assert_eq!(code(check(case, true).unwrap_err()), want);
        }
        let sse = s3s::dto::ServerSideEncryption::from_static(s3s::dto::ServerSideEncryption::AES256);
        assert_eq!(code(exclusive(Some(&got), Some(&sse)).unwrap_err()), "InvalidArgument");
        assert!(exclusive(Some(&got), None).is_ok() && exclusive(None, Some(&sse)).is_ok());
        assert!(same_key(Some(&got), Some(&got.clone())) && same_key(None, None));
        assert!(!same_key(Some(&got), None));
        // Where keys may travel: TLS anywhere, plain HTTP on loopback only.
        let (lo, lan): (std::net::IpAddr, std::net::IpAddr) =
            ("127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap());
        assert!(keys_may_travel(true, lan) && keys_may_travel(false, lo) && keys_may_travel(true, lo));
        assert!(!keys_may_travel(false, lan));
        assert!(keys_may_travel(false, "::1".parse().unwrap()));
        // Plain HTTP off loopback: refused before the key is even looked at.
        assert_eq!(
            code(check(h(Some("AES256"), Some(key), Some(md5)), false).unwrap_err()),
            "InvalidRequest"
        );
    }
}
