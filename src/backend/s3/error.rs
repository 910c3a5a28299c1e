//! SDK errors → [`BackendError`]: the S3 error codes the proxy understands, and for every other
//! failure who failed and whether a retry is safe. Messages carry only `Display` text (never the
//! SDK's `Debug`, which holds whole responses).

use std::error::Error as StdError;
use std::io;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::S3Store;
use crate::backend::BackendError;

/// Which resource a bare 404 (no error code, as for HEAD) refers to.
#[derive(Clone, Copy)]
pub(super) enum Missing {
    Bucket,
    Key,
}

impl S3Store {
    /// Maps an SDK error to a [`BackendError`]; `op` names the operation in messages.
    pub(super) fn error<E>(&self, op: &str, missing: Missing, err: SdkError<E, HttpResponse>) -> BackendError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let upstream = |message: String, retryable: bool| BackendError::Upstream {
            store: self.name.clone(),
            message: format!("{op}: {message}"),
            retryable,
        };
        let (code, status) = match &err {
            SdkError::ServiceError(e) => (e.err().code().map(str::to_owned), e.raw().status().as_u16()),
            // An answer we could not read: cut off or garbled in transit unless the store
            // refused the request (4xx), whose code we then map below.
            SdkError::ResponseError(e) if !e.raw().status().is_client_error() => {
                return upstream(describe(&err), true);
            }
            SdkError::ResponseError(e) => (None, e.raw().status().as_u16()),
            // Timeouts and connection failures: the store may be back later. (A streamed PUT is
            // never retried by us nor the SDK; the caller decides.)
            SdkError::TimeoutError(_) => return upstream(describe(&err), true),
            // A dispatch failure caused by the request itself, or a TLS handshake the store
            // failed (untrusted certificate, wrong name), will fail the same way again.
            SdkError::DispatchFailure(e) => {
                let retryable = !e.is_user() && !has_tls_error(&err);
                return upstream(describe(&err), retryable);
            }
            _ => return upstream(describe(&err), false),
        };
        match (code.as_deref(), status) {
            (Some("NoSuchBucket"), _) => BackendError::NoSuchBucket,
            (Some("NoSuchKey"), _) => BackendError::NoSuchKey,
            (Some("BucketAlreadyExists"), _) => BackendError::BucketAlreadyExists { owned: false },
            (Some("BucketAlreadyOwnedByYou"), _) => BackendError::BucketAlreadyExists { owned: true },
            (Some("BucketNotEmpty"), _) => BackendError::BucketNotEmpty,
            (Some("PreconditionFailed"), _) | (_, 412) => BackendError::PreconditionFailed,
            (Some("ConditionalRequestConflict"), _) => BackendError::ConditionalConflict,
            (Some("InvalidRange"), _) | (_, 416) => BackendError::InvalidRange,
            // The client's own argument, passed through (a continuation token, a bucket name).
            (Some("InvalidArgument"), 400) => BackendError::InvalidArgument("refused by the store"),
            (Some("InvalidBucketName"), 400) => BackendError::InvalidArgument("invalid bucket name"),
            (Some("NotFound") | None, 404) => match missing {
                Missing::Bucket => BackendError::NoSuchBucket,
                Missing::Key => BackendError::NoSuchKey,
            },
            (code, status) => {
                let code = code.unwrap_or("no error code");
                let retryable = status >= 500
                    || status == 429
                    || matches!(
                        code,
                        "RequestTimeout" | "SlowDown" | "Throttling" | "ThrottlingException"
                    );
                upstream(format!("{code} (HTTP {status})"), retryable)
            }
        }
    }

    /// The error of a failed HEAD or GET of `key`. A store that answers 5xx (after the SDK's
    /// own retry) is asked once whether the key exists, by a one-key listing from it: some stores
    /// fail a read of a key that is only a prefix of others (s3s-fs answers 500 "Is a directory"
    /// for `a` when `a/b` exists), which is a missing key, not an outage. Without an object of
    /// exactly that name the answer is `NoSuchKey`; otherwise, or if the listing fails too, the
    /// store's error stands. One extra request, only after a 5xx, never a retry.
    pub(super) async fn read_failed<E>(
        &self,
        op: &str,
        bucket: &str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> BackendError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let answered_5xx = match &err {
            SdkError::ServiceError(e) => e.raw().status().is_server_error(),
            SdkError::ResponseError(e) => e.raw().status().is_server_error(),
            _ => false,
        };
        let mapped = self.error(op, Missing::Key, err);
        if !answered_5xx || key.is_empty() {
            return mapped;
        }
        let listed = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(key)
            .max_keys(1)
            .send()
            .await;
        match listed {
            Ok(out) if out.contents().first().and_then(|o| o.key()) != Some(key) => {
                tracing::debug!(store = %self.name, bucket, "a read failed with 5xx on a key that does not exist: answered as missing");
                BackendError::NoSuchKey
            }
            _ => mapped,
        }
    }

    pub(super) fn protocol_error(&self, message: &str) -> BackendError {
        BackendError::Upstream {
            store: self.name.clone(),
            message: message.to_owned(),
            retryable: false,
        }
    }
}

/// The error and its causes, `Display` only: `Debug` output of SDK errors would carry whole
/// responses.
fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// Whether a `rustls::Error` is somewhere in the error's cause chain, including in `io::Error`
/// payloads (whose `source()` skips the payload itself).
fn has_tls_error(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(payload) = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref)
            && has_tls_error(payload)
        {
            return true;
        }
        next = e.source();
    }
    false
}
