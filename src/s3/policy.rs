//! POST Object (browser-form upload) policies and their SigV4 signatures: parsing the base64
//! JSON policy, evaluating its conditions against the form's fields as S3 does, and computing
//! the signature a client with a given secret would have made. Pure functions (no I/O), each
//! rule unit-tested here; the form itself is read by [`super::post`].
//!
//! S3's rules, as the s3-tests `test_post_object_*` cases pin them: form field names are
//! case-insensitive, and so are condition operators and `$field` names; the policy's own keys
//! (`expiration`, `conditions`) are case-sensitive; a malformed policy is 400
//! `InvalidPolicyDocument`; an expired one, a failed condition, a form field no condition
//! names, or a policy without a `bucket` condition is 403 `AccessDenied`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use s3s::{S3Error, S3ErrorCode, S3Result};
use time::OffsetDateTime;

/// The form's fields (names lowercased) by name.
pub(super) type Fields = BTreeMap<String, String>;

/// A parsed POST policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Policy {
    /// When the policy stops being valid.
    pub expiration: OffsetDateTime,
    /// Its conditions, in order.
    pub conditions: Vec<Condition>,
}

/// One policy condition. Field names are lowercased, without the `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    /// `{"field": "value"}` or `["eq", "$field", "value"]`.
    Eq { field: String, value: String },
    /// `["starts-with", "$field", "prefix"]`.
    StartsWith { field: String, prefix: String },
    /// `["content-length-range", min, max]` (inclusive).
    LengthRange { min: u64, max: u64 },
}

impl Condition {
    /// The form field this condition names, if any.
    fn field(&self) -> Option<&str> {
        match self {
            Condition::Eq { field, .. } | Condition::StartsWith { field, .. } => Some(field),
            Condition::LengthRange { .. } => None,
        }
    }

    /// The condition as S3 quotes it in an error message.
    fn quoted(&self) -> String {
        match self {
            Condition::Eq { field, value } => format!("[\"eq\", \"${field}\", \"{value}\"]"),
            Condition::StartsWith { field, prefix } => format!("[\"starts-with\", \"${field}\", \"{prefix}\"]"),
            Condition::LengthRange { min, max } => format!("[\"content-length-range\", {min}, {max}]"),
        }
    }
}

fn invalid(what: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidPolicyDocument, format!("Invalid Policy: {what}"))
}

fn denied(what: String) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessDenied,
        format!("Invalid according to Policy: {what}"),
    )
}

/// Parses the `policy` form field: base64 of a JSON object with `expiration` (ISO 8601 UTC) and
/// `conditions` (a list).
pub(super) fn parse(encoded: &str) -> S3Result<Policy> {
    let json = B64
        .decode(encoded.trim())
        .map_err(|_| invalid("Invalid Base64 encoding."))?;
    let doc: serde_json::Value = serde_json::from_slice(&json).map_err(|_| invalid("Invalid JSON."))?;
    let doc = doc.as_object().ok_or_else(|| invalid("Invalid JSON."))?;
    let expiration = match doc.get("expiration") {
        None => return Err(invalid("Policy missing expiration.")),
        Some(v) => v
            .as_str()
            .and_then(parse_expiration)
            .ok_or_else(|| invalid("Invalid 'expiration' value."))?,
    };
    let list = match doc.get("conditions") {
        None => return Err(invalid("Policy missing conditions.")),
        Some(v) => v
            .as_array()
            .ok_or_else(|| invalid("Invalid 'conditions' value: must be a list."))?,
    };
    let mut conditions = Vec::with_capacity(list.len());
    for c in list {
        parse_condition(c, &mut conditions)?;
    }
    Ok(Policy { expiration, conditions })
}

/// `2026-12-01T12:00:00.000Z` or `2026-12-01T12:00:00Z`: UTC, `T`-separated, as S3 takes it.
fn parse_expiration(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if !s.ends_with('Z') || b.get(10) != Some(&b'T') || b.len() < 20 {
        return None;
    }
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn parse_condition(c: &serde_json::Value, out: &mut Vec<Condition>) -> S3Result<()> {
    use serde_json::Value;
    match c {
        Value::Object(map) => {
            if map.is_empty() {
                return Err(invalid(
                    "Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.",
                ));
            }
            for (k, v) in map {
                let value = v
                    .as_str()
                    .ok_or_else(|| invalid("Invalid Simple-Condition: value must be a string."))?;
                out.push(Condition::Eq {
                    field: k.to_ascii_lowercase(),
                    value: value.to_string(),
                });
            }
            Ok(())
        }
        Value::Array(items) => {
            let op = items
                .first()
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("Invalid Condition: the first element must be an operation name."))?
                .to_ascii_lowercase();
            if items.len() != 3 {
                return Err(invalid(&format!(
                    "Invalid Condition: '{op}' takes exactly two arguments."
                )));
            }
            match op.as_str() {
                "eq" | "starts-with" => {
                    let field = items[1]
                        .as_str()
                        .and_then(|f| f.strip_prefix('$'))
                        .ok_or_else(|| invalid("Invalid Condition: the field name must start with '$'."))?
                        .to_ascii_lowercase();
                    let value = items[2]
                        .as_str()
                        .ok_or_else(|| invalid("Invalid Condition: the value must be a string."))?
                        .to_string();
                    out.push(if op == "eq" {
                        Condition::Eq { field, value }
                    } else {
                        Condition::StartsWith { field, prefix: value }
                    });
                    Ok(())
                }
                "content-length-range" => {
                    let bound = |v: &Value| match v {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.trim().parse::<u64>().ok(),
                        _ => None,
                    };
                    let (min, max) = bound(&items[1])
                        .zip(bound(&items[2]))
                        .filter(|(min, max)| min <= max)
                        .ok_or_else(|| {
                            invalid("Invalid content-length-range: bounds must be integers 0 <= min <= max.")
                        })?;
                    out.push(Condition::LengthRange { min, max });
                    Ok(())
                }
                _ => Err(invalid(&format!("Invalid Condition: unknown operation '{op}'."))),
            }
        }
        _ => Err(invalid("Invalid Condition: must be a list or an object.")),
    }
}

/// Form fields that need no condition: the signature, the file, the policy, `x-ignore-*`, and
/// the object's checksum (`x-amz-checksum-*`, which only constrains the upload).
fn exempt(name: &str) -> bool {
    matches!(
        name,
        "x-amz-signature" | "file" | "policy" | "awsaccesskeyid" | "signature"
    ) || name.starts_with("x-ignore-")
        || name.starts_with("x-amz-checksum-")
}

impl Policy {
    /// Checks the policy at `now` against the form's `fields` (the key already substituted)
    /// and the URL's `bucket`. Returns the content-length range the file must fall in (the
    /// tightest of the policy's, if several).
    pub(super) fn check(&self, fields: &Fields, bucket: &str, now: OffsetDateTime) -> S3Result<Option<(u64, u64)>> {
        if now >= self.expiration {
            return Err(denied("Policy expired.".into()));
        }
        if !self.conditions.iter().any(|c| c.field() == Some("bucket")) {
            return Err(denied(format!(
                "Policy Condition failed: [\"eq\", \"$bucket\", \"{bucket}\"]"
            )));
        }
        let mut range: Option<(u64, u64)> = None;
        for c in &self.conditions {
            let value = |field: &str| -> Option<&str> {
                if field == "bucket" {
                    Some(bucket)
                } else {
                    fields.get(field).map(String::as_str)
                }
            };
            let ok = match c {
                Condition::Eq { field, value: want } => value(field) == Some(want.as_str()),
                // A Content-Type may list several types: each must match.
                Condition::StartsWith { field, prefix } if field == "content-type" => {
                    value(field).is_some_and(|v| v.split(',').all(|t| t.trim_start().starts_with(prefix.as_str())))
                }
                Condition::StartsWith { field, prefix } => value(field).is_some_and(|v| v.starts_with(prefix.as_str())),
                Condition::LengthRange { min, max } => {
                    range = Some(match range {
                        Some((a, b)) => (a.max(*min), b.min(*max)),
                        None => (*min, *max),
                    });
                    true
                }
            };
            if !ok {
                return Err(denied(format!("Policy Condition failed: {}", c.quoted())));
            }
        }
        let extra: Vec<&str> = fields
            .keys()
            .map(String::as_str)
            .filter(|name| !exempt(name) && !self.conditions.iter().any(|c| c.field() == Some(name)))
            .collect();
        if !extra.is_empty() {
            return Err(denied(format!("Extra input fields: {}", extra.join(", "))));
        }
        Ok(range)
    }
}

/// The parts of a SigV4 `x-amz-credential`: `AKID/yyyymmdd/region/s3/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Credential<'a> {
    /// The access key id.
    pub access_key: &'a str,
    /// `yyyymmdd`.
    pub date: &'a str,
    /// The signing region.
    pub region: &'a str,
}

/// Parses `x-amz-credential` (an access key id may not contain `/`).
pub(super) fn parse_credential(value: &str) -> Option<Credential<'_>> {
    let parts: Vec<&str> = value.trim().split('/').collect();
    match parts.as_slice() {
        [access_key, date, region, "s3", "aws4_request"]
            if !access_key.is_empty()
                && date.len() == 8
                && date.bytes().all(|b| b.is_ascii_digit())
                && !region.is_empty() =>
        {
            Some(Credential {
                access_key,
                date,
                region,
            })
        }
        _ => None,
    }
}

fn hmac(key: &[u8], data: &[u8]) -> ring::hmac::Tag {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data)
}

/// The SigV4 POST signature of `policy` (the base64 text as sent) by the holder of `secret`:
/// hex HMAC-SHA256 under the key derived from the secret, the credential's date and region,
/// and the service `s3`.
pub(super) fn sigv4_signature(secret: &str, credential: &Credential<'_>, policy: &str) -> String {
    let mut first = zeroize::Zeroizing::new(format!("AWS4{secret}"));
    let k_date = hmac(first.as_bytes(), credential.date.as_bytes());
    zeroize::Zeroize::zeroize(&mut *first);
    let k_region = hmac(k_date.as_ref(), credential.region.as_bytes());
    let k_service = hmac(k_region.as_ref(), b"s3");
    let k_signing = hmac(k_service.as_ref(), b"aws4_request");
    hex::encode(hmac(k_signing.as_ref(), policy.as_bytes()).as_ref())
}

/// The SigV2 POST signature of `policy`: base64 HMAC-SHA1 under the secret.
pub(super) fn sigv2_signature(secret: &str, policy: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    B64.encode(ring::hmac::sign(&key, policy.as_bytes()).as_ref())
}

/// Whether `given` is `expected` (a SigV4 signature in lowercase hex, which `given` may write in
/// any case, or a SigV2 one in base64, exactly), in constant time.
pub(super) fn signature_matches(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let given = given.trim();
    let hex = expected.bytes().all(|b| b.is_ascii_hexdigit());
    let given = if hex { given.to_ascii_lowercase() } else { given.to_string() };
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        B64.encode(json)
    }

    fn code(e: S3Error) -> String {
        e.code().as_str().to_string()
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const GOOD: &str = r#"{"expiration":"2030-01-01T00:00:00.000Z","conditions":[{"bucket":"b"},["starts-with","$key","foo"],{"acl":"private"},["starts-with","$Content-Type","text/"],["content-length-range",0,1024]]}"#;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-11-30 00:00 UTC)
    }

    #[test]
    fn a_policy_parses_and_admits_its_form() {
        let p = parse(&b64(GOOD)).unwrap();
        assert_eq!(p.conditions.len(), 5);
        let f = fields(&[("key", "foo.txt"), ("acl", "private"), ("content-type", "text/plain")]);
        assert_eq!(p.check(&f, "b", now()).unwrap(), Some((0, 1024)));
    }

    #[test]
    fn expiration_formats_are_s3s() {
        for ok in [
            "2030-01-01T00:00:00Z",
            "2030-01-01T00:00:00.000Z",
            "2030-01-01T00:00:00.123456Z",
        ] {
            assert!(parse_expiration(ok).is_some(), "{ok}");
        }
        // Must-fail twins: Python's str(datetime), an offset, no zone, a date alone, garbage.
        for bad in [
            "2030-01-01 00:00:00.123456+00:00",
            "2030-01-01T00:00:00+00:00",
            "2030-01-01T00:00:00",
            "2030-01-01",
            "tomorrow",
            "",
        ] {
            assert!(parse_expiration(bad).is_none(), "{bad}");
            let doc = format!(r#"{{"expiration":"{bad}","conditions":[{{"bucket":"b"}}]}}"#);
            assert_eq!(code(parse(&b64(&doc)).unwrap_err()), "InvalidPolicyDocument", "{bad}");
        }
    }

    #[test]
    fn malformed_policies_are_400() {
        for bad in [
            r#"{"conditions":[{"bucket":"b"}]}"#,
            r#"{"EXPIRATION":"2030-01-01T00:00:00Z","conditions":[{"bucket":"b"}]}"#,
            r#"{"expiration":"2030-01-01T00:00:00Z"}"#,
            r#"{"expiration":"2030-01-01T00:00:00Z","CONDITIONS":[{"bucket":"b"}]}"#,
            r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[{}]}"#,
            r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[["content-length-range",0]]}"#,
            r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[["content-length-range",-1,0]]}"#,
            r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[["content-length-range",5,1]]}"#,
            r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[["eq","key","x"]]}"#,
            r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[["matches","$key","x"]]}"#,
            r#"{"expiration":"2030-01-01T00:00:00Z","conditions":"none"}"#,
            r#"[1,2]"#,
            "not json",
        ] {
            assert_eq!(code(parse(&b64(bad)).unwrap_err()), "InvalidPolicyDocument", "{bad}");
        }
        assert_eq!(code(parse("!!!not base64").unwrap_err()), "InvalidPolicyDocument");
    }

    #[test]
    fn operators_and_field_names_are_case_insensitive() {
        let doc = r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[{"bUcKeT":"b"},["StArTs-WiTh","$KeY","foo"],{"AcL":"private"},["EQ","$X-Amz-Meta-A","v"]]}"#;
        let p = parse(&b64(doc)).unwrap();
        let f = fields(&[("key", "foo.txt"), ("acl", "private"), ("x-amz-meta-a", "v")]);
        assert_eq!(p.check(&f, "b", now()).unwrap(), None);
        // Values are not: "Private" is not "private".
        let f = fields(&[("key", "foo.txt"), ("acl", "Private"), ("x-amz-meta-a", "v")]);
        assert_eq!(code(p.check(&f, "b", now()).unwrap_err()), "AccessDenied");
    }

    #[test]
    fn every_check_has_its_refusal() {
        let p = parse(&b64(GOOD)).unwrap();
        let base = [("key", "foo.txt"), ("acl", "private"), ("content-type", "text/plain")];
        let denied = |f: Fields, bucket: &str, at: OffsetDateTime| {
            let e = p.check(&f, bucket, at).unwrap_err();
            assert_eq!(e.code().as_str(), "AccessDenied");
            e.message().unwrap_or_default().to_string()
        };
        // Expired.
        let late = time::macros::datetime!(2030-01-01 00:00 UTC);
        assert!(denied(fields(&base), "b", late).contains("expired"));
        // The URL's bucket is what `$bucket` means.
        assert!(denied(fields(&base), "other", now()).contains("$bucket"));
        // A prefix that does not match; an eq that does not match; an absent field.
        let mut f = fields(&base);
        f.insert("key".into(), "bar.txt".into());
        assert!(denied(f, "b", now()).contains("$key"));
        let mut f = fields(&base);
        f.insert("acl".into(), "public-read".into());
        assert!(denied(f, "b", now()).contains("$acl"));
        let mut f = fields(&base);
        f.remove("acl");
        assert!(denied(f, "b", now()).contains("$acl"));
        // Every listed Content-Type must match the prefix.
        let mut f = fields(&base);
        f.insert("content-type".into(), "text/plain, image/png".into());
        assert!(denied(f, "b", now()).contains("$content-type"));
        // A field no condition names.
        let mut f = fields(&base);
        f.insert("x-amz-meta-foo".into(), "bar".into());
        assert!(denied(f, "b", now()).contains("Extra input fields: x-amz-meta-foo"));
        // Exempt fields need no condition.
        let mut f = fields(&base);
        for name in ["x-amz-signature", "policy", "x-ignore-me", "x-amz-checksum-sha256"] {
            f.insert(name.into(), "x".into());
        }
        assert!(p.check(&f, "b", now()).is_ok());
    }

    #[test]
    fn a_policy_without_a_bucket_condition_is_refused() {
        let doc = r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[["starts-with","$key",""]]}"#;
        let p = parse(&b64(doc)).unwrap();
        let e = p.check(&fields(&[("key", "k")]), "b", now()).unwrap_err();
        assert_eq!(code(e), "AccessDenied");
    }

    #[test]
    fn length_ranges_intersect() {
        let doc = r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[{"bucket":"b"},["content-length-range",10,100],["content-length-range","20","200"]]}"#;
        let p = parse(&b64(doc)).unwrap();
        assert_eq!(p.check(&Fields::new(), "b", now()).unwrap(), Some((20, 100)));
    }

    #[test]
    fn credentials_parse_strictly() {
        let c = parse_credential("AKID/20261130/us-east-1/s3/aws4_request").unwrap();
        assert_eq!((c.access_key, c.date, c.region), ("AKID", "20261130", "us-east-1"));
        for bad in [
            "AKID/20261130/us-east-1/s3",
            "AKID/20261130/us-east-1/ec2/aws4_request",
            "AKID/2026113/us-east-1/s3/aws4_request",
            "/20261130/us-east-1/s3/aws4_request",
            "AKID/20261130//s3/aws4_request",
            "AKID/20261130/us-east-1/s3/aws4_request/x",
            "",
        ] {
            assert!(parse_credential(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn sigv4_signature_matches_aws_example() {
        // AWS's documented POST example (sigv4-post-example): secret, credential and policy
        // from "Example: Browser-Based Upload using HTTP POST (Using AWS Signature Version 4)".
        let policy = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
        let cred = parse_credential("AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request").unwrap();
        let sig = sigv4_signature("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &cred, policy);
        assert_eq!(sig, "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e");
        assert!(signature_matches(&sig, &sig.to_uppercase()));
        // Must-fail twins: one digit changed, truncated, empty.
        let mut wrong = sig.clone().into_bytes();
        wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
        assert!(!signature_matches(&sig, std::str::from_utf8(&wrong).unwrap()));
        assert!(!signature_matches(&sig, &sig[..63]));
        assert!(!signature_matches(&sig, ""));
        // The whole example policy parses, and its date is in the past.
        let p = parse(policy).unwrap();
        assert!(p.expiration < now());
    }
}
