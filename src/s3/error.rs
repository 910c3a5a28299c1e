//! How every internal failure becomes an S3 error. Each mapping is an exhaustive `match`, so a
//! new variant does not compile until it is mapped. 5xx answers carry only a code and a generic
//! message; the details go to the log (never secrets or plaintext).

use s3s::{S3Error, S3ErrorCode, s3_error};

use crate::object::{BackendError, BodyFailure, CryptoError, ObjectError};

/// A store failure as the client sees it.
fn backend(e: BackendError) -> S3Error {
    match e {
        BackendError::NoSuchBucket => s3_error!(NoSuchBucket),
        BackendError::NoSuchKey => s3_error!(NoSuchKey),
        // As the store answered: its namespace, its word for whose the bucket is.
        BackendError::BucketAlreadyExists { owned: true } => s3_error!(BucketAlreadyOwnedByYou),
        BackendError::BucketAlreadyExists { owned: false } => s3_error!(BucketAlreadyExists),
        BackendError::BucketNotEmpty => s3_error!(BucketNotEmpty),
        BackendError::PreconditionFailed => s3_error!(PreconditionFailed),
        BackendError::ConditionalConflict => s3_error!(
            ConditionalRequestConflict,
            "A conflicting operation occurred during the conditional request; retry."
        ),
        BackendError::ConditionalUnsupported => s3_error!(
            NotImplemented,
            "Conditional writes are not available: the backing store cannot write conditionally (see the proxy's start-up log)."
        ),
        BackendError::InvalidRange => s3_error!(InvalidRange),
        BackendError::InvalidArgument(what) => S3Error::with_message(S3ErrorCode::InvalidArgument, what),
        // The client's body failed; the caller normally maps the precise cause first.
        BackendError::Body(_) => s3_error!(IncompleteBody),
        // The store is down or refused: 503 tells clients a retry may work; the rest is ours.
        BackendError::Upstream {
            store,
            message,
            retryable,
        } => {
            tracing::warn!(%store, %message, retryable, "store request failed");
            if retryable {
                s3_error!(ServiceUnavailable, "A backing store is unavailable; retry later.")
            } else {
                let mut err = S3Error::with_message(S3ErrorCode::InternalError, "A backing store refused the request.");
                err.set_status_code(http::StatusCode::BAD_GATEWAY);
                err
            }
        }
        BackendError::Io(e) => {
            tracing::error!(error = %e, "local store i/o failed");
            s3_error!(InternalError, "Internal error.")
        }
    }
}

/// An object-layer failure as the client sees it.
pub fn object(e: ObjectError) -> S3Error {
    match e {
        ObjectError::Store(e) => backend(e),
        // Foreign objects (written around the proxy) are never served in any form.
        ObjectError::NotEscrow => s3_error!(
            InvalidObjectState,
            "The object's escrow metadata is missing or unknown; it is not served."
        ),
        ObjectError::Crypto(e) => crypto(e),
        ObjectError::Body(f) => body(f),
        // The store holds a newer version than the one opened: a retry reads that one.
        ObjectError::Changed => s3_error!(
            ServiceUnavailable,
            "The object changed while it was being read or copied; retry."
        ),
        ObjectError::Reserved => s3_error!(
            InvalidArgument,
            "Object keys under {} are reserved by escrow-proxy.",
            crate::object::RESERVED_PREFIX
        ),
        ObjectError::NoSuchUpload => s3_error!(
            NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        ),
        ObjectError::InvalidPart => s3_error!(
            InvalidPart,
            "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
        ),
        ObjectError::InvalidPartOrder => s3_error!(
            InvalidPartOrder,
            "The list of parts was not in ascending order. Parts must be ordered by part number."
        ),
        ObjectError::EntityTooSmall(part) => s3_error!(
            EntityTooSmall,
            "Your proposed upload (part {part}) is smaller than the minimum allowed size."
        ),
        ObjectError::NoParts => s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema."
        ),
        ObjectError::CustomerKeyRequired => s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        ),
        ObjectError::CustomerKeyNotApplicable => s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object."
        ),
        ObjectError::CustomerKeyMismatch => s3_error!(
            AccessDenied,
            "The provided customer encryption key does not match the key the object was stored with."
        ),
        ObjectError::CustomerKeyDiffers => s3_error!(
            InvalidRequest,
            "The provided encryption parameters did not match the ones used originally."
        ),
    }
}

/// A stored object that failed authentication, or whose key is missing or retired.
fn crypto(e: CryptoError) -> S3Error {
    match e {
        // Opaque on purpose: which byte failed helps nobody but an attacker.
        CryptoError::Decrypt | CryptoError::Format(_) => {
            tracing::error!(error = %e, "stored object failed authentication");
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("ObjectIntegrityError".into()),
                "The stored object failed authentication and was not returned.",
            );
            err.set_status_code(http::StatusCode::INTERNAL_SERVER_ERROR);
            err
        }
        // The keyring lacks the version: a clear error naming only the version number.
        CryptoError::UnknownKeyVersion(v) => {
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("UnknownKeyVersion".into()),
                format!("The object is encrypted under key version {v}, which this keyring does not have."),
            );
            err.set_status_code(http::StatusCode::INTERNAL_SERVER_ERROR);
            err
        }
        // Crypto-shredded: the object is gone for good, and the client should know why.
        CryptoError::DestroyedKeyVersion(v) => {
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("KeyDestroyed".into()),
                format!("The object is encrypted under destroyed key version {v} and can no longer be read."),
            );
            err.set_status_code(http::StatusCode::FORBIDDEN);
            err
        }
        // Disabled by an operator: reversible, so the client is told it may work again later.
        CryptoError::DisabledKeyVersion(v) => {
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("KeyDisabled".into()),
                format!(
                    "The object is encrypted under key version {v}, which is disabled; an operator can enable it again."
                ),
            );
            err.set_status_code(http::StatusCode::FORBIDDEN);
            err
        }
    }
}

/// How s3s 0.14's aws-chunked decoder names a chunk whose signature does not verify.
const CHUNK_SIGNATURE_MISMATCH: &str = "SignatureMismatch";

/// Why an upload body was refused.
fn body(f: BodyFailure) -> S3Error {
    match f {
        BodyFailure::Incomplete => s3_error!(IncompleteBody, "The request body is shorter than its declared length."),
        BodyFailure::TooLong => s3_error!(IncompleteBody, "The request body is longer than its declared length."),
        BodyFailure::BadDigest => s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ),
        BodyFailure::ChecksumMismatch(a) => S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!(
                "The {} you specified did not match the calculated checksum.",
                a.s3_name()
            ),
        ),
        BodyFailure::MissingTrailer(a) => S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            format!(
                "The declared trailing checksum x-amz-checksum-{} was not received.",
                a.s3_name().to_lowercase()
            ),
        ),
        // The aws-chunked decoder or the connection failed; s3s's message names the cause.
        // A chunk signature that does not verify is a signature error, as on AWS. s3s does not
        // export its aws-chunked error type, so its message is the only way to tell; anything
        // unrecognised stays a 400.
        BodyFailure::Client(message) if message.contains(CHUNK_SIGNATURE_MISMATCH) => {
            s3_error!(
                SignatureDoesNotMatch,
                "A chunk signature of the request body does not match."
            )
        }
        BodyFailure::Client(message) => {
            tracing::info!(%message, "client body failed");
            s3_error!(IncompleteBody, "The request body could not be read.")
        }
    }
}
