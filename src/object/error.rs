//! What can go wrong in the object layer. The S3 front end maps every variant to an S3 error in
//! one exhaustive `match` (`s3::error::object`).

use crate::backend::BackendError;
use crate::crypto::CryptoError;

use super::body::BodyFailure;

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The store failed or said no.
    #[error(transparent)]
    Store(#[from] BackendError),
    /// The object's metadata is not an escrow-proxy envelope of a known version: it was written
    /// around the proxy, or its metadata was removed. Never served in any form.
    #[error("the object was not written through escrow-proxy (or its metadata was removed)")]
    NotEscrow,
    /// The stored object failed authentication, or its key version is unknown or retired.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The client's upload body was refused by a check (length, digest, checksum, trailer).
    /// Nothing was stored.
    #[error("upload body refused: {0:?}")]
    Body(BodyFailure),
    /// The object changed in the store while it was being read or copied: a retry sees the new
    /// version.
    #[error("the object changed while it was being read")]
    Changed,
    /// The key lies under the prefix where the proxy keeps its own state.
    #[error("the key is under the proxy's reserved prefix")]
    Reserved,
    /// No multipart upload with that id exists for that key.
    #[error("no such upload")]
    NoSuchUpload,
    /// A part named in a completion does not exist, or its ETag or checksum does not match.
    #[error("invalid part")]
    InvalidPart,
    /// The parts of a completion are not in ascending order.
    #[error("parts not in ascending order")]
    InvalidPartOrder,
    /// A part other than the last is smaller than S3's minimum (its number).
    #[error("part {0} is smaller than the minimum part size")]
    EntityTooSmall(u32),
    /// A completion names no parts.
    #[error("a completion must name at least one part")]
    NoParts,
    /// The object (or upload) is SSE-C and the request gave no customer key.
    #[error("the object is encrypted with a customer key and none was given")]
    CustomerKeyRequired,
    /// The request gave a customer key for an object (or upload) that is not SSE-C.
    #[error("a customer key was given for an object that is not encrypted with one")]
    CustomerKeyNotApplicable,
    /// The customer key given does not open the object.
    #[error("the customer key given is not the object's")]
    CustomerKeyMismatch,
    /// A part was uploaded with another customer key than its upload was created with.
    #[error("the customer key given is not the upload's")]
    CustomerKeyDiffers,
}

impl From<BodyFailure> for ObjectError {
    fn from(f: BodyFailure) -> Self {
        Self::Body(f)
    }
}
