//! Writing: one path for every encrypted stream a client's bytes become (a PUT's object, an
//! UploadPart's part, a copy that must be sealed again). The body is encrypted as it streams and
//! handed to the store through a short bounded pipe; what the upload produced (its digests) comes
//! back from the [`EncryptBody`] itself once the store has answered.

use std::io;
use std::pin::pin;
use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::body::{Digests, EncryptBody, Expectations};
use super::condition::{WriteCondition, conflict_after_check};
use super::etags::Known;
use super::{ObjectError, Objects, refuse_reserved, sealed};
use crate::backend::{BackendError, Metadata, PutCondition, receiver_stream};
use crate::crypto::envelope::{CustomerKey, ObjectRecord, content_key};
use crate::crypto::format::SINGLE_PART;
use crate::crypto::segment::StreamHeader;
use crate::secret::Key256;

/// Sealed chunks in flight between the encryptor and the store: a few segments.
const PIPE_DEPTH: usize = 4;

/// One stored stream to write.
pub(super) struct NewStream<'a> {
    pub bucket: &'a str,
    /// The store key (the object's, or a multipart part's).
    pub key: &'a str,
    pub dek: &'a Key256,
    /// What the segments are sealed under: the DEK, or an SSE-C object's content key.
    pub content: &'a Key256,
    /// The stream's part number ([`SINGLE_PART`] for a single-part object).
    pub part: u32,
    pub header: StreamHeader,
    /// Empty, or the sealed record when it does not fit the metadata.
    pub extension: Vec<u8>,
    pub metadata: Metadata,
}

impl Objects {
    /// Stores a new single-part object of exactly `plain_len` bytes from `body`, checked against
    /// `expect`, with `record` (its size is set here), SSE-C under `customer` when given. Returns
    /// the plaintext digests; on any refusal nothing is stored.
    #[allow(clippy::too_many_arguments)] // One S3 request's worth of inputs; a struct would only rename them.
    pub async fn put<S, E>(
        &self,
        bucket: &str,
        key: &str,
        record: ObjectRecord,
        body: S,
        plain_len: u64,
        expect: Expectations,
        customer: Option<&CustomerKey>,
    ) -> Result<Digests, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        self.put_if(bucket, key, record, body, plain_len, expect, customer, None)
            .await
    }

    /// [`Objects::put`] only if `condition` holds ([`WriteCondition`]), atomically at the store;
    /// else nothing is stored.
    #[allow(clippy::too_many_arguments)] // put's arguments and the condition
    pub async fn put_if<S, E>(
        &self,
        bucket: &str,
        key: &str,
        mut record: ObjectRecord,
        body: S,
        plain_len: u64,
        expect: Expectations,
        customer: Option<&CustomerKey>,
        condition: Option<&WriteCondition>,
    ) -> Result<Digests, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        refuse_reserved(key)?;
        let store_condition = self.store_condition(bucket, key, condition).await?;
        record.size = plain_len;
        record.stamp(SystemTime::now());
        let (store_etag, digests) = self
            .write_single_if(
                bucket,
                key,
                &record,
                body,
                plain_len,
                expect,
                customer,
                store_condition.clone(),
            )
            .await
            .map_err(|e| conflict_after_check(e, store_condition.as_ref()))?;
        let known = Known {
            etag: hex::encode(digests.md5),
            size: plain_len,
            modified: record.written(),
        };
        self.etags.insert(bucket, key, &store_etag, known);
        Ok(digests)
    }

    /// Stores a single-part object under a fresh data key: the envelope sealed for `record`, the
    /// body (exactly `plain_len` bytes, checked against `expect`) encrypted into the store, its
    /// content bound to `customer` (SSE-C) when given. Returns the store's ETag and the plaintext
    /// digests. The store write carries `condition`, if any.
    #[allow(clippy::too_many_arguments)] // One write's inputs and its store condition.
    pub(super) async fn write_single_if<S, E>(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        body: S,
        plain_len: u64,
        expect: Expectations,
        customer: Option<&CustomerKey>,
        condition: Option<PutCondition>,
    ) -> Result<(String, Digests), ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let dek = Key256::random();
        let mut record = record.clone();
        record.set_customer(&dek, customer);
        let content = content_key(&dek, customer);
        let sealed = sealed::seal(&self.keyring.load(), bucket, key, &dek, &record);
        let new = NewStream {
            bucket,
            key,
            dek: &dek,
            content: &content,
            part: SINGLE_PART,
            header: sealed.header,
            extension: sealed.extension,
            metadata: sealed.metadata,
        };
        self.write_stream_if(new, body, plain_len, expect, condition).await
    }

    /// Encrypts `body` (exactly `plain_len` bytes, checked against `expect`) into the stream
    /// `new` describes and stores it. Returns the store's ETag and the plaintext digests.
    pub(super) async fn write_stream<S, E>(
        &self,
        new: NewStream<'_>,
        body: S,
        plain_len: u64,
        expect: Expectations,
    ) -> Result<(String, Digests), ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        self.write_stream_if(new, body, plain_len, expect, None).await
    }

    /// [`Objects::write_stream`] whose store write carries `condition`.
    async fn write_stream_if<S, E>(
        &self,
        new: NewStream<'_>,
        body: S,
        plain_len: u64,
        expect: Expectations,
        condition: Option<PutCondition>,
    ) -> Result<(String, Digests), ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let mut encrypt = EncryptBody::new(body, new.dek, new.part, new.header, new.extension, plain_len, expect)
            .with_content_key(new.content);
        let stored_len = encrypt.stored_len();
        let (tx, rx) = mpsc::channel(PIPE_DEPTH);
        let stored = {
            let mut put = pin!(self.store.put_object_if(
                new.bucket,
                new.key,
                receiver_stream(rx),
                stored_len,
                new.metadata,
                condition
            ));
            let mut pump = pin!(pump(&mut encrypt, tx));
            tokio::select! {
                () = &mut pump => put.await,
                // The store answered before the body ended: it failed, or gave up on the body.
                stored = &mut put => stored,
            }
        };
        match (stored, encrypt.outcome()) {
            (Ok(etag), Some(Ok(digests))) => Ok((etag, digests)),
            // The body was refused by our checks: that precise reason; nothing was stored.
            (_, Some(Err(failure))) => Err(ObjectError::Body(failure)),
            (Err(e), _) => Err(ObjectError::Store(e)),
            // A store reports success only after the whole body, which fills the outcome when
            // it ends; anything else is the store's fault, not the client's.
            (Ok(_), None) => Err(ObjectError::Store(BackendError::Upstream {
                store: self.store.name().to_string(),
                message: "the store accepted an incomplete body".into(),
                retryable: false,
            })),
        }
    }
}

/// Moves `encrypt`'s output into the store's pipe until it ends, fails, or the store stops
/// listening. A failure is passed on, so the store discards the upload.
async fn pump<S, E>(encrypt: &mut EncryptBody<S>, tx: mpsc::Sender<io::Result<Bytes>>)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    while let Some(item) = encrypt.next().await {
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}
