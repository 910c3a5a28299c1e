//! Conditional writes in the client's terms (`If-None-Match: *`, `If-Match: <etag>`), turned
//! into a condition the store evaluates atomically with the write ([`PutCondition`]).
//!
//! The client's ETag is the plaintext one, which only the sealed envelope knows; the store's is
//! the ciphertext's. So `If-Match` opens the object (authenticated), compares its plaintext ETag,
//! and hands the store `If-Match: <store ETag of that version>`: if anything replaces the object
//! in between, the store refuses, and the client hears 409 `ConditionalRequestConflict`, as S3
//! answers a conflicting concurrent write. Never a check followed by an unconditional write.

use super::{ObjectError, Objects};
use crate::backend::{BackendError, PutCondition};

/// What a conditional write requires of the object it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// No object under the key (`If-None-Match: *`).
    Absent,
    /// Some object under the key (`If-Match: *`).
    Exists,
    /// An object whose (plaintext, client-visible) ETag is this, quotes optional (`If-Match`).
    Matches(String),
}

impl Objects {
    /// The store condition for `condition` on `bucket`/`key` (`None` for none). Fails with
    /// `PreconditionFailed` when an `If-Match` already does not hold (no object, another ETag),
    /// and with `ConditionalUnsupported` when the store cannot write conditionally, before any
    /// body is read.
    pub(super) async fn store_condition(
        &self,
        bucket: &str,
        key: &str,
        condition: Option<&WriteCondition>,
    ) -> Result<Option<PutCondition>, ObjectError> {
        let Some(condition) = condition else {
            return Ok(None);
        };
        if !self.store.conditional_writes() {
            return Err(BackendError::ConditionalUnsupported.into());
        }
        let want = match condition {
            WriteCondition::Absent => return Ok(Some(PutCondition::Absent)),
            WriteCondition::Exists => None,
            WriteCondition::Matches(etag) => Some(etag.trim().trim_matches('"')),
        };
        let opened = match self.open(bucket, key).await {
            Ok(opened) => opened,
            Err(ObjectError::Store(BackendError::NoSuchKey)) => {
                return Err(BackendError::PreconditionFailed.into());
            }
            Err(e) => return Err(e),
        };
        if want.is_some_and(|want| want != opened.etag()) {
            return Err(BackendError::PreconditionFailed.into());
        }
        Ok(Some(PutCondition::Matches(opened.store_etag.clone())))
    }
}

/// A store's refusal of an `If-Match` on the version the condition was checked against means
/// that version was replaced meanwhile: a conflicting concurrent write (409), not a failed
/// condition.
pub(super) fn conflict_after_check(e: ObjectError, condition: Option<&PutCondition>) -> ObjectError {
    match (e, condition) {
        (ObjectError::Store(BackendError::PreconditionFailed), Some(PutCondition::Matches(_))) => {
            BackendError::ConditionalConflict.into()
        }
        (e, _) => e,
    }
}
