//! Completing a multipart upload: read each chosen part's trailer (authenticated: its plaintext
//! length, MD5 and checksum, which the client's list must match), check S3's rules, then have the
//! store compose the object from the part streams and the sealed manifest (server-side where the
//! store can copy), then delete the upload's objects. A refused completion leaves the upload
//! completable.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::condition::{WriteCondition, conflict_after_check};
use super::upload::StoredPart;
use super::{ChecksumAlgorithm, ObjectError, Objects, sealed};
use crate::backend::{Metadata, PutCondition, Source};
use crate::crypto::format::meta;
use crate::crypto::manifest::{Manifest, PartEntry};
use crate::crypto::segment::Trailer;
use crate::limits::{MAX_PART_NUMBER, MIN_PART_SIZE};

/// One part as a CompleteMultipartUpload request names it.
#[derive(Debug, Clone, Default)]
pub struct PartChoice {
    /// The part number (checked to lie in 1..=10000).
    pub number: Option<i32>,
    /// The ETag the client has for it (quotes allowed).
    pub etag: Option<String>,
    /// Checksums the client has for it, base64, by algorithm.
    pub checksums: Vec<(ChecksumAlgorithm, String)>,
}

/// A completed upload.
#[derive(Debug, Clone)]
pub struct Completed {
    /// The object's client ETag (`md5-of-part-md5s-N`).
    pub etag: String,
    /// Plaintext size.
    pub size: u64,
    /// Whether the object is SSE-C (its upload was created with a customer key).
    pub sse_c: bool,
}

/// A completion that passed every check and waits only for the store to compose the object:
/// the part that can take minutes for a large object. [`Objects::finish_completion`] runs it.
pub struct CheckedCompletion {
    bucket: String,
    key: String,
    id: String,
    sources: Vec<Source>,
    tail: bytes::Bytes,
    metadata: Metadata,
    store_condition: Option<PutCondition>,
    /// Every stored part of the upload (chosen or not): removed once the object exists.
    stored: Vec<StoredPart>,
    completed: Completed,
    written: Option<std::time::SystemTime>,
}

impl CheckedCompletion {
    /// Whether the object will be SSE-C (its upload was created with a customer key).
    pub fn sse_c(&self) -> bool {
        self.completed.sse_c
    }
}

impl Objects {
    /// Checks a completion of upload `id` of `bucket`/`key` from the parts `chosen`, in order:
    /// the upload exists, the parts exist and match the client's ETags and checksums, S3's size
    /// rules hold, and `condition` holds now. Nothing is written.
    pub async fn check_completion(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        chosen: &[PartChoice],
        condition: Option<&WriteCondition>,
    ) -> Result<CheckedCompletion, ObjectError> {
        let upload = self.load_upload(bucket, key, id).await?;
        let numbers = part_numbers(chosen)?;
        let stored = self.stored_parts(bucket, id).await?;
        let by_number: BTreeMap<u32, &StoredPart> = stored.iter().map(|p| (p.number, p)).collect();
        let parts: Vec<&StoredPart> = numbers
            .iter()
            .map(|n| by_number.get(n).copied())
            .collect::<Option<_>>()
            .ok_or(ObjectError::InvalidPart)?;
        let trailers = self.part_trailers(bucket, &upload.dek, &parts).await;
        let mut entries = Vec::with_capacity(parts.len());
        for ((choice, part), trailer) in chosen.iter().zip(&parts).zip(trailers) {
            let trailer = trailer?;
            if !etag_matches(choice, &trailer) || !checksums_match(choice, &trailer) {
                return Err(ObjectError::InvalidPart);
            }
            entries.push(PartEntry {
                number: part.number,
                plain_len: trailer.plain_len,
                md5: trailer.md5,
                header: trailer.header,
            });
        }
        if let Some((_, inner)) = entries.split_last()
            && let Some(small) = inner.iter().find(|e| e.plain_len < MIN_PART_SIZE)
        {
            return Err(ObjectError::EntityTooSmall(small.number));
        }
        let mut record = upload.record;
        record.size = entries.iter().map(|e| e.plain_len).sum();
        record.stamp(std::time::SystemTime::now());
        let manifest = Manifest { parts: entries, record };
        let wrapped = sealed::key_metadata(&self.keyring.load(), bucket, key, &upload.dek);
        let tail = manifest.seal(&upload.dek, &wrapped.binding);
        let mut metadata = wrapped.metadata;
        metadata.insert(meta::PARTS.into(), manifest.parts.len().to_string());
        let sources = parts
            .iter()
            .map(|p| Source {
                bucket: bucket.to_string(),
                key: p.entry.key.clone(),
                range: 0..p.entry.size,
                etag: Some(p.entry.etag.clone()).filter(|e| !e.is_empty()),
            })
            .collect();
        let store_condition = self.store_condition(bucket, key, condition).await?;
        let written = manifest.record.written();
        Ok(CheckedCompletion {
            bucket: bucket.to_string(),
            key: key.to_string(),
            id: id.to_string(),
            sources,
            tail: tail.into(),
            metadata,
            store_condition,
            stored,
            completed: Completed {
                etag: manifest.etag(),
                size: manifest.record.size,
                sse_c: manifest.record.sse_c.is_some(),
            },
            written,
        })
    }

    /// Has the store compose a checked completion (atomically with its condition, if any),
    /// then deletes the upload's objects. A refused completion leaves the upload completable.
    pub async fn finish_completion(&self, checked: CheckedCompletion) -> Result<Completed, ObjectError> {
        let CheckedCompletion {
            bucket,
            key,
            id,
            sources,
            tail,
            metadata,
            store_condition,
            stored,
            completed,
            written,
        } = checked;
        let store_etag = self
            .store
            .compose_if(&bucket, &key, sources, tail, metadata, store_condition.clone())
            .await
            .map_err(|e| conflict_after_check(e.into(), store_condition.as_ref()))?;
        let known = super::etags::Known {
            etag: completed.etag.clone(),
            size: completed.size,
            modified: written,
        };
        self.etags.insert(&bucket, &key, &store_etag, known);
        self.remove_upload(&bucket, &id, stored).await;
        Ok(completed)
    }
}

/// The part numbers of a completion: each within 1..=10000, strictly ascending, at least one.
fn part_numbers(chosen: &[PartChoice]) -> Result<Vec<u32>, ObjectError> {
    if chosen.is_empty() {
        return Err(ObjectError::NoParts);
    }
    let mut numbers: Vec<u32> = Vec::with_capacity(chosen.len());
    for choice in chosen {
        let n = choice
            .number
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
            .ok_or(ObjectError::InvalidPart)?;
        if numbers.last().is_some_and(|&last| last >= n) {
            return Err(ObjectError::InvalidPartOrder);
        }
        numbers.push(n);
    }
    Ok(numbers)
}

/// Whether the client's ETag for a part is the MD5 of the part's plaintext.
fn etag_matches(choice: &PartChoice, trailer: &Trailer) -> bool {
    choice.etag.as_ref().is_some_and(|e| {
        e.trim()
            .trim_matches('"')
            .eq_ignore_ascii_case(&hex::encode(trailer.md5))
    })
}

/// Whether every checksum the client gives for a part is the one its upload was checked against.
fn checksums_match(choice: &PartChoice, trailer: &Trailer) -> bool {
    choice.checksums.iter().all(|(algo, value)| match &trailer.checksum {
        Some((a, digest)) if a == algo => B64.decode(value.trim()).is_ok_and(|d| &d == digest),
        // A checksum the part was not uploaded with cannot be vouched for.
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::segment::StreamHeader;

    fn choice(number: i32) -> PartChoice {
        PartChoice {
            number: Some(number),
            ..Default::default()
        }
    }

    #[test]
    fn part_numbers_follow_s3_rules() {
        assert_eq!(part_numbers(&[choice(1), choice(3)]).unwrap(), vec![1, 3]);
        assert!(matches!(part_numbers(&[]), Err(ObjectError::NoParts)));
        assert!(matches!(
            part_numbers(&[choice(2), choice(2)]),
            Err(ObjectError::InvalidPartOrder)
        ));
        assert!(matches!(
            part_numbers(&[choice(3), choice(1)]),
            Err(ObjectError::InvalidPartOrder)
        ));
        for bad in [0, -1, 10_001] {
            assert!(
                matches!(part_numbers(&[choice(bad)]), Err(ObjectError::InvalidPart)),
                "{bad}"
            );
        }
        assert!(matches!(
            part_numbers(&[PartChoice::default()]),
            Err(ObjectError::InvalidPart)
        ));
    }

    #[test]
    fn etags_and_checksums_must_match_the_trailer() {
        let crc = vec![1, 2, 3, 4];
        let trailer = Trailer {
            plain_len: 1,
            md5: [0xab; 16],
            checksum: Some((ChecksumAlgorithm::Crc32, crc.clone())),
            header: StreamHeader::random(16),
        };
        let mut c = choice(1);
        c.etag = Some(format!("\"{}\"", "AB".repeat(16)));
        assert!(etag_matches(&c, &trailer));
        c.checksums = vec![(ChecksumAlgorithm::Crc32, B64.encode(&crc))];
        assert!(checksums_match(&c, &trailer));
        // Must-fail twins: another ETag, no ETag, another digest, another algorithm.
        c.etag = Some("\"00\"".into());
        assert!(!etag_matches(&c, &trailer));
        assert!(!etag_matches(&choice(1), &trailer));
        c.checksums = vec![(ChecksumAlgorithm::Crc32, B64.encode([0u8; 4]))];
        assert!(!checksums_match(&c, &trailer));
        c.checksums = vec![(ChecksumAlgorithm::Crc32c, B64.encode(&crc))];
        assert!(!checksums_match(&c, &trailer));
    }
}
