//! SigV4 query-string signing (presigned URLs), as S3 clients do it, so the load generator spends
//! a few microseconds per request on authentication instead of a full SDK call.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>: only `host` is
//! signed and the payload is `UNSIGNED-PAYLOAD`, so bodies are streamed as they are and a
//! `Range` header may be added freely.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

/// How long a presigned URL stays valid.
const EXPIRES_SECS: u32 = 3600;
/// The service name S3 signs for.
const SERVICE: &str = "s3";

/// Signs requests for one access key.
pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
}

impl Signer {
    pub fn new(access_key: String, secret_key: String, region: String) -> Self {
        Self {
            access_key,
            secret_key,
            region,
        }
    }

    /// A presigned URL for `method` on `path` (`/bucket` or `/bucket/key`, unencoded) at
    /// `endpoint` (`http(s)://host:port`, no trailing slash).
    pub fn presign(&self, method: &str, endpoint: &str, path: &str) -> String {
        let now = OffsetDateTime::now_utc();
        // Invariant: these format descriptions only use fields every UTC date has.
        let date = now
            .format(format_description!("[year][month][day]"))
            .expect("date formats");
        let stamp = now
            .format(format_description!("[year][month][day]T[hour][minute][second]Z"))
            .expect("timestamp formats");
        let host = endpoint.split_once("://").map_or(endpoint, |(_, h)| h);
        let scope = format!("{date}/{}/{SERVICE}/aws4_request", self.region);
        let credential = format!("{}/{scope}", self.access_key);
        // Parameters in byte order of their names, as the canonical query string needs.
        let query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={stamp}&X-Amz-Expires={EXPIRES_SECS}&X-Amz-SignedHeaders=host",
            encode(&credential, true)
        );
        let uri = encode(path, false);
        let canonical = format!("{method}\n{uri}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.secret_key).as_bytes(), date.as_bytes());
        for part in [self.region.as_str(), SERVICE, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        format!("{endpoint}{uri}?{query}&X-Amz-Signature={signature}")
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // Invariant: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4 URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` as `%XX`; `/` too when `slash`.
fn encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
