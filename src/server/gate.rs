//! What the front end refuses before s3s sees a request (and before a byte of its body is
//! read): anything but SigV4 authentication, presigned URLs valid for more than 7 days,
//! browser-form POSTs to anything but a bucket, and oversized bodies of requests whose bodies
//! are buffered. Also which requests are POST Object (browser-form uploads to `/bucket`), which
//! [`super::front`] hands to [`crate::s3::PostObject`] instead of s3s (s3s would buffer the
//! whole file before checking anything). Pure functions of the request head, so each rule is
//! unit-tested here.

use http::{HeaderMap, Method, StatusCode, Uri};

use crate::limits::{MAX_PRESIGNED_EXPIRES_SECS, MAX_XML_BODY};

/// A refusal: the S3 error to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// HTTP status.
    pub status: StatusCode,
    /// S3 error code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: &'static str,
}

const SIGV2: Refusal = Refusal {
    status: StatusCode::BAD_REQUEST,
    code: "InvalidRequest",
    message: "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
};

const EXPIRES_TOO_LONG: Refusal = Refusal {
    status: StatusCode::BAD_REQUEST,
    code: "AuthorizationQueryParametersError",
    message: "X-Amz-Expires must be less than a week (in seconds) that is 604800",
};

const FORM_NOT_TO_BUCKET: Refusal = Refusal {
    status: StatusCode::METHOD_NOT_ALLOWED,
    code: "MethodNotAllowed",
    message: "The specified method is not allowed against this resource.",
};

const BODY_TOO_LARGE: Refusal = Refusal {
    status: StatusCode::BAD_REQUEST,
    code: "MaxMessageLengthExceeded",
    message: "Your request was too big.",
};

/// Query parameters of an object upload whose body is streamed (PutObject, UploadPart), besides
/// the presigned-URL parameters (`X-Amz-*`).
const STREAMED_QUERY: &[&str] = &["partNumber", "uploadId", "x-id"];

/// The refusal for this request head, if any.
pub(super) fn check(method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Refusal> {
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| url_pairs(q).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    let has = |name: &str| query.iter().any(|(k, _)| k == name);
    // SigV2 header auth is `AWS <key>:<sig>` (SigV4 is `AWS4-HMAC-SHA256 …`).
    if let Some(auth) = headers.get(http::header::AUTHORIZATION)
        && auth.as_bytes().starts_with(b"AWS ")
    {
        return Some(SIGV2);
    }
    // SigV2 query auth: `AWSAccessKeyId`, `Signature`, `Expires`.
    if has("AWSAccessKeyId") || has("Signature") {
        return Some(SIGV2);
    }
    if let Some((_, expires)) = query.iter().find(|(k, _)| k == "X-Amz-Expires") {
        match expires.parse::<u64>() {
            Ok(secs) if secs <= MAX_PRESIGNED_EXPIRES_SECS => {}
            _ => return Some(EXPIRES_TOO_LONG),
        }
    }
    // Browser-form POST: to a bucket it is POST Object ([`post_object_bucket`]); to an object
    // or the root S3 has no such operation (and s3s would buffer the form).
    if *method == Method::POST && is_form(headers) {
        return match bucket_path(uri.path()) {
            Some(_) => None,
            None => Some(FORM_NOT_TO_BUCKET),
        };
    }
    // A body that is buffered (XML) and declared too large is refused before it is read; one
    // without a length is capped by s3s as it is read (`xml_max_body_size`).
    let streamed = *method == Method::PUT
        && object_path(uri.path())
        && query
            .iter()
            .all(|(k, _)| STREAMED_QUERY.contains(&k.as_str()) || k.starts_with("X-Amz-") || k.starts_with("x-amz-"));
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if !streamed && length.is_some_and(|n| n > MAX_XML_BODY as u64) {
        return Some(BODY_TOO_LARGE);
    }
    None
}

/// Whether the request's body is `multipart/form-data`.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// The bucket of a POST Object (a browser-form `POST /bucket`, path-style: the proxy serves no
/// virtual-host names), percent-decoded; `None` for any other request.
pub(super) fn post_object_bucket(method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<String> {
    if *method != Method::POST || !is_form(headers) {
        return None;
    }
    bucket_path(uri.path()).map(|b| percent_decode(b).into_owned())
}

/// The bucket of a path naming a bucket alone (`/bucket` or `/bucket/`).
fn bucket_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let bucket = rest.strip_suffix('/').unwrap_or(rest);
    (!bucket.is_empty() && !bucket.contains('/')).then_some(bucket)
}

/// Whether a path-style path names an object (`/bucket/key…`), not the root or a bucket.
fn object_path(path: &str) -> bool {
    path.trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
}

/// `application/x-www-form-urlencoded`-style pairs of a query string (percent-decoded; `+` is
/// kept, as S3 signs it).
fn url_pairs(query: &str) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return s.into();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Invariant: two hex digits make at most 255.
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str, headers: &[(&str, &str)]) -> Option<Refusal> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        check(&method, &uri.parse().expect("uri"), &map)
    }

    #[test]
    fn only_sigv4_gets_through() {
        let v4 = "AWS4-HMAC-SHA256 Credential=AK/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(req(Method::GET, "/b/k", &[("authorization", v4)]), None);
        assert_eq!(
            req(Method::GET, "/b/k", &[("authorization", "AWS AK:c2ln")]),
            Some(SIGV2)
        );
        assert_eq!(
            req(Method::GET, "/b/k?AWSAccessKeyId=AK&Expires=1&Signature=x", &[]),
            Some(SIGV2)
        );
        assert_eq!(req(Method::GET, "/b/k?Signature=x", &[]), Some(SIGV2));
        assert_eq!(
            req(Method::GET, "/b/k", &[]),
            None,
            "anonymous requests are s3s's to refuse"
        );
    }

    #[test]
    fn presigned_urls_last_at_most_a_week() {
        let url = |secs: &str| format!("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={secs}&X-Amz-Signature=0");
        assert_eq!(req(Method::GET, &url("604800"), &[]), None);
        assert_eq!(req(Method::GET, &url("604801"), &[]), Some(EXPIRES_TOO_LONG));
        assert_eq!(req(Method::GET, &url("315360000"), &[]), Some(EXPIRES_TOO_LONG));
        assert_eq!(req(Method::GET, &url("-1"), &[]), Some(EXPIRES_TOO_LONG));
        assert_eq!(req(Method::GET, &url("1e9"), &[]), Some(EXPIRES_TOO_LONG));
    }

    #[test]
    fn browser_form_posts_go_to_post_object_only_for_a_bucket() {
        let form = [("content-type", "multipart/form-data; boundary=x")];
        let big = (MAX_XML_BODY as u64 * 4).to_string();
        let big_form = [
            ("content-type", "Multipart/Form-Data; boundary=x"),
            ("content-length", big.as_str()),
        ];
        assert_eq!(req(Method::POST, "/bucket", &form), None);
        assert_eq!(req(Method::POST, "/bucket/", &big_form), None, "a form's file streams");
        let post = |uri: &str, h: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in h {
                map.insert(
                    http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    v.parse().expect("value"),
                );
            }
            post_object_bucket(&Method::POST, &uri.parse().expect("uri"), &map)
        };
        assert_eq!(post("/bucket", &form).as_deref(), Some("bucket"));
        assert_eq!(post("/bucket/", &big_form).as_deref(), Some("bucket"));
        // Must-fail twins: a form to an object or the root; not a form; not a POST.
        assert_eq!(req(Method::POST, "/bucket/key", &form), Some(FORM_NOT_TO_BUCKET));
        assert_eq!(req(Method::POST, "/", &form), Some(FORM_NOT_TO_BUCKET));
        assert_eq!(post("/bucket/key", &form), None);
        assert_eq!(post("/bucket", &[("content-type", "application/xml")]), None);
        assert_eq!(
            post_object_bucket(&Method::PUT, &"/bucket".parse().expect("uri"), &HeaderMap::new()),
            None
        );
        assert_eq!(
            req(Method::POST, "/bucket?delete", &[("content-type", "application/xml")]),
            None
        );
    }

    #[test]
    fn buffered_bodies_are_capped_by_their_declared_length() {
        let big = (MAX_XML_BODY + 1).to_string();
        let len = [("content-length", big.as_str())];
        assert_eq!(req(Method::POST, "/b?delete", &len), Some(BODY_TOO_LARGE));
        assert_eq!(req(Method::POST, "/b/k?uploadId=1", &len), Some(BODY_TOO_LARGE));
        assert_eq!(req(Method::PUT, "/b", &len), Some(BODY_TOO_LARGE));
        assert_eq!(req(Method::PUT, "/b/k?tagging", &len), Some(BODY_TOO_LARGE));
        assert_eq!(req(Method::PUT, "/b/k", &len), None, "object bodies stream");
        assert_eq!(req(Method::PUT, "/b/k?partNumber=1&uploadId=x", &len), None);
        assert_eq!(req(Method::PUT, "/b/k?x-id=PutObject&X-Amz-Expires=60", &len), None);
    }

    #[test]
    fn queries_decode() {
        let pairs: Vec<_> = url_pairs("a=%41b&X-Amz-Expires=1&flag&bad=%4").collect();
        assert_eq!(pairs[0], ("a".into(), "Ab".into()));
        assert_eq!(pairs[2], ("flag".into(), "".into()));
        assert_eq!(pairs[3], ("bad".into(), "%4".into()));
    }
}
