use std::sync::Arc;
use std::time::Duration;

use super::client::MAX_ATTEMPTS;
use super::encoding::url_decode;
use super::*;
use crate::secret::SecretString;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::dto as s3dto;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use tokio::net::TcpListener;

const AK: &str = "test-access-key";
const SK: &str = "test-secret-key-which-must-not-leak";

/// PUTs to `fail-500`, over all test servers (only `failed_put_is_not_retried` makes them).
static FAILED_PUTS: std::sync::LazyLock<Arc<std::sync::atomic::AtomicUsize>> =
    std::sync::LazyLock::new(Default::default);

/// HeadObject and ListObjectsV2 requests in bucket `quirk`, over all test servers (only
/// `a_key_that_is_a_prefix_of_others_is_missing` makes them).
/// The destination `If-Match` of every CopyObject, by key (s3s-fs itself ignores it).
static COPY_IF_MATCH: std::sync::Mutex<Vec<(String, Option<String>)>> = std::sync::Mutex::new(Vec::new());
static QUIRK_HEADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static QUIRK_LISTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// s3s-fs plus what AWS does and s3s-fs 0.14.1 does not: `If-Match` on GET, `NoSuchBucket`
/// on GET and PUT in a missing bucket (s3s-fs creates it on PUT), `BucketNotEmpty` (s3s-fs deletes recursively) and
/// `encoding-type=url` in listings (with `+` for a space, as S3 writes it). It also fails
/// HeadBucket on `broken-bucket` and PUT to `fail-500` with a 500 (counting those PUTs), to test
/// error mapping and retries. It refuses any PUT that is not a plain body with a length.
struct AwsLike(
    s3s_fs::FileSystem,
    std::path::PathBuf,
    Arc<std::sync::atomic::AtomicUsize>,
);

#[async_trait]
impl S3 for AwsLike {
    async fn list_buckets(
        &self,
        req: S3Request<s3dto::ListBucketsInput>,
    ) -> S3Result<S3Response<s3dto::ListBucketsOutput>> {
        self.0.list_buckets(req).await
    }
    async fn create_bucket(
        &self,
        req: S3Request<s3dto::CreateBucketInput>,
    ) -> S3Result<S3Response<s3dto::CreateBucketOutput>> {
        self.0.create_bucket(req).await
    }
    async fn head_bucket(
        &self,
        req: S3Request<s3dto::HeadBucketInput>,
    ) -> S3Result<S3Response<s3dto::HeadBucketOutput>> {
        if req.input.bucket == "broken-bucket" {
            return Err(s3_error!(InternalError));
        }
        self.0.head_bucket(req).await
    }
    async fn delete_bucket(
        &self,
        req: S3Request<s3dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<s3dto::DeleteBucketOutput>> {
        let dir = self.1.join(&req.input.bucket);
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(s3_error!(BucketNotEmpty));
        }
        self.0.delete_bucket(req).await
    }
    async fn put_object(&self, req: S3Request<s3dto::PutObjectInput>) -> S3Result<S3Response<s3dto::PutObjectOutput>> {
        // The store must only ever see plain bodies with an exact length (Alibaba OSS).
        let h = &req.headers;
        let chunked = h
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes().starts_with(b"aws-chunked"))
            || ["x-amz-decoded-content-length", "x-amz-trailer", "transfer-encoding"]
                .iter()
                .any(|n| h.contains_key(*n))
            || h.get("x-amz-content-sha256")
                .is_some_and(|v| v.as_bytes().starts_with(b"STREAMING-"));
        if chunked || !h.contains_key("content-length") || req.input.checksum_algorithm.is_some() {
            return Err(s3_error!(InvalidRequest, "not a plain body"));
        }
        if !self.1.join(&req.input.bucket).is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        if req.input.key == "fail-500" {
            self.2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(s3_error!(InternalError));
        }
        self.0.put_object(req).await
    }
    async fn head_object(
        &self,
        req: S3Request<s3dto::HeadObjectInput>,
    ) -> S3Result<S3Response<s3dto::HeadObjectOutput>> {
        if req.input.bucket == "quirk" {
            QUIRK_HEADS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if req.input.key == "fails" {
                return Err(s3_error!(InternalError));
            }
        }
        self.0.head_object(req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<s3dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<s3dto::DeleteObjectOutput>> {
        self.0.delete_object(req).await
    }
    async fn get_object(&self, req: S3Request<s3dto::GetObjectInput>) -> S3Result<S3Response<s3dto::GetObjectOutput>> {
        if !self.1.join(&req.input.bucket).is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        let if_match = req.input.if_match.clone();
        let resp = self.0.get_object(req).await?;
        if let Some(s3dto::ETagCondition::ETag(expected)) = if_match
            && !resp.output.e_tag.as_ref().is_some_and(|t| t.strong_cmp(&expected))
        {
            return Err(s3_error!(PreconditionFailed));
        }
        Ok(resp)
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<s3dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<s3dto::ListObjectsV2Output>> {
        if req.input.bucket == "quirk" {
            QUIRK_LISTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        // Buckets named `raw-…` answer like s3s-fs itself: `EncodingType url` echoed, keys not
        // encoded.
        let url = req
            .input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == s3dto::EncodingType::URL)
            && !req.input.bucket.starts_with("raw-");
        let mut resp = self.0.list_objects_v2(req).await?;
        if url {
            let out = &mut resp.output;
            for o in out.contents.iter_mut().flatten() {
                o.key = o.key.as_deref().map(url_encode);
            }
            for p in out.common_prefixes.iter_mut().flatten() {
                p.prefix = p.prefix.as_deref().map(url_encode);
            }
        }
        Ok(resp)
    }

    async fn copy_object(
        &self,
        req: S3Request<s3dto::CopyObjectInput>,
    ) -> S3Result<S3Response<s3dto::CopyObjectOutput>> {
        let if_match = req
            .headers
            .get("if-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        COPY_IF_MATCH.lock().unwrap().push((req.input.key.clone(), if_match));
        self.0.copy_object(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<s3dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<s3dto::CreateMultipartUploadOutput>> {
        self.0.create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<s3dto::UploadPartInput>,
    ) -> S3Result<S3Response<s3dto::UploadPartOutput>> {
        self.0.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<s3dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<s3dto::UploadPartCopyOutput>> {
        self.0.upload_part_copy(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<s3dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<s3dto::CompleteMultipartUploadOutput>> {
        self.0.complete_multipart_upload(req).await
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b' ' => "+".to_owned(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts an s3s-fs server on 127.0.0.1:0; returns a store pointed at it and the data dir.
async fn server() -> (S3Store, tempfile::TempDir) {
    let (endpoint, dir) = server_endpoint().await;
    (store(&endpoint), dir)
}

async fn server_endpoint() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(AwsLike(fs, dir.path().to_owned(), Arc::clone(&FAILED_PUTS)));
    builder.set_auth(s3s::auth::SimpleAuth::from_single(AK, SK));
    let service = builder.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), dir)
}

fn cfg(endpoint: &str) -> S3StoreConfig {
    S3StoreConfig {
        endpoint: Some(endpoint.to_owned()),
        region: "us-east-1".to_owned(),
        access_key: AK.to_owned(),
        secret_key: SecretString::new(SK.to_owned()),
        path_style: true,
        ca_file: None,
        conditional_writes: true,
    }
}

fn store(endpoint: &str) -> S3Store {
    S3Store::new("primary", &cfg(endpoint)).unwrap()
}

fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(futures::stream::iter(
        chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
    ))
}

async fn put(s: &S3Store, key: &str, data: &[u8], metadata: Metadata) -> String {
    let b: ByteStream = Box::pin(futures::stream::iter([Ok(Bytes::copy_from_slice(data))]));
    s.put_object("bkt", key, b, data.len() as u64, metadata).await.unwrap()
}

async fn read(s: &S3Store, key: &str, range: Option<ByteRange>) -> BackendResult<(ObjectHead, Vec<u8>)> {
    let got = s.get_object("bkt", key, range, None).await?;
    let chunks: Vec<Bytes> = got.body.try_collect().await?;
    Ok((got.head, chunks.concat()))
}

#[tokio::test]
async fn object_round_trip_ranges_and_conditions() {
    let (s, _dir) = server().await;
    s.create_bucket("bkt").await.unwrap();
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let meta: Metadata = [
        ("escrow-v".to_owned(), "1".to_owned()),
        ("wrapped-dek".to_owned(), "AbC+/=".to_owned()),
    ]
    .into();
    let etag = put(&s, "dir/obj one", &data, meta.clone()).await;
    assert_eq!(etag, hex::encode(<md5::Md5 as md5::Digest>::digest(&data)));

    let (head, got) = read(&s, "dir/obj one", None).await.unwrap();
    assert_eq!((head.size, &head.etag, &head.metadata), (300_000, &etag, &meta));
    assert!(head.last_modified.is_some());
    assert_eq!(got, data);
    let head = s.head_object("bkt", "dir/obj one").await.unwrap();
    assert_eq!((head.size, &head.etag, &head.metadata), (300_000, &etag, &meta));

    let (head, got) = read(&s, "dir/obj one", Some(ByteRange::Bounded(1000..70_000)))
        .await
        .unwrap();
    assert_eq!((head.size, got.as_slice()), (300_000, &data[1000..70_000]));
    let (_, got) = read(&s, "dir/obj one", Some(ByteRange::Bounded(299_990..400_000)))
        .await
        .unwrap();
    assert_eq!(got, &data[299_990..], "end clamped");
    let (_, got) = read(&s, "dir/obj one", Some(ByteRange::Suffix(7))).await.unwrap();
    assert_eq!(got, &data[299_993..]);
    for bad in [
        ByteRange::Bounded(300_000..300_001),
        ByteRange::Bounded(5..5),
        ByteRange::Suffix(0),
    ] {
        assert!(matches!(
            read(&s, "dir/obj one", Some(bad)).await,
            Err(BackendError::InvalidRange)
        ));
    }

    assert!(s.get_object("bkt", "dir/obj one", None, Some(&etag)).await.is_ok());
    let r = s
        .get_object("bkt", "dir/obj one", None, Some("00000000000000000000000000000000"))
        .await;
    assert!(matches!(r, Err(BackendError::PreconditionFailed)), "{:?}", r.err());

    s.delete_object("bkt", "dir/obj one").await.unwrap();
    s.delete_object("bkt", "dir/obj one").await.unwrap();
    assert!(matches!(
        s.head_object("bkt", "dir/obj one").await,
        Err(BackendError::NoSuchKey)
    ));
    assert!(matches!(
        read(&s, "dir/obj one", None).await,
        Err(BackendError::NoSuchKey)
    ));
    assert!(matches!(
        s.get_object("nope", "k", None, None).await,
        Err(BackendError::NoSuchBucket)
    ));
    let r = s.put_object("nope", "k", body(vec![b"x"]), 1, Metadata::new()).await;
    assert!(matches!(r, Err(BackendError::NoSuchBucket)), "{r:?}");
}

#[tokio::test]
async fn failing_body_stores_nothing() {
    let (s, dir) = server().await;
    s.create_bucket("bkt").await.unwrap();
    put(&s, "k", b"old", Metadata::new()).await;

    let chunk = Bytes::from(vec![1u8; 100_000]);
    let failing: ByteStream = Box::pin(futures::stream::iter([
        Ok(chunk.clone()),
        Ok(chunk),
        Err(io::Error::other("client went away")),
    ]));
    let r = s.put_object("bkt", "k", failing, 1_000_000, Metadata::new()).await;
    assert!(
        matches!(&r, Err(BackendError::Body(e)) if e.to_string() == "client went away"),
        "{r:?}"
    );
    let r = s.put_object("bkt", "new", body(vec![b"ab"]), 3, Metadata::new()).await;
    assert!(
        matches!(&r, Err(BackendError::Body(e)) if e.kind() == io::ErrorKind::UnexpectedEof),
        "{r:?}"
    );
    let r = s
        .put_object("bkt", "new", body(vec![b"ab", b"cd"]), 3, Metadata::new())
        .await;
    assert!(
        matches!(&r, Err(BackendError::Body(e)) if e.kind() == io::ErrorKind::InvalidData),
        "{r:?}"
    );

    assert_eq!(read(&s, "k", None).await.unwrap().1, b"old");
    assert!(matches!(
        s.head_object("bkt", "new").await,
        Err(BackendError::NoSuchKey)
    ));
    // The server sees the aborted connections when it sees them: poll its files (bounded).
    let bucket_files = || -> Vec<_> {
        std::fs::read_dir(dir.path().join("bkt"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bucket_files() != ["k"] && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bucket_files(), ["k"], "only the old object remains");
}

async fn list_all(s: &S3Store, mut q: ListQuery) -> Vec<(Vec<String>, Vec<String>)> {
    let mut pages = Vec::new();
    loop {
        let page = s.list_objects("bkt", &q).await.unwrap();
        pages.push((
            page.objects.iter().map(|o| o.key.clone()).collect(),
            page.common_prefixes,
        ));
        if !page.is_truncated {
            return pages;
        }
        q.continuation_token = page.next_continuation_token;
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn listing() {
    let (s, _dir) = server().await;
    s.create_bucket("bkt").await.unwrap();
    for key in ["a/1", "a/2", "a/b/3", "a0", "b c+d%41&<x>", "c/1", "c/2", "d"] {
        put(&s, key, key.as_bytes(), Metadata::new()).await;
    }
    let q = |max_keys| ListQuery {
        max_keys,
        ..ListQuery::default()
    };
    let all = strs(&["a/1", "a/2", "a/b/3", "a0", "b c+d%41&<x>", "c/1", "c/2", "d"]);
    let pages = list_all(&s, q(3)).await;
    assert_eq!(pages.len(), 3);
    assert_eq!(pages.into_iter().flat_map(|p| p.0).collect::<Vec<_>>(), all);
    let page = s.list_objects("bkt", &q(1)).await.unwrap();
    // (s3s-fs lists no ETags.)
    assert_eq!((page.objects[0].size, page.objects[0].metadata.is_none()), (3, true));

    let d = ListQuery {
        delimiter: Some("/".into()),
        max_keys: 1000,
        ..ListQuery::default()
    };
    assert_eq!(
        list_all(&s, d.clone()).await,
        [(strs(&["a0", "b c+d%41&<x>", "d"]), strs(&["a/", "c/"]))]
    );
    let paged: Vec<_> = list_all(
        &s,
        ListQuery {
            max_keys: 2,
            ..d.clone()
        },
    )
    .await;
    let keys: Vec<String> = paged.iter().flat_map(|p| p.0.clone()).collect();
    let prefixes: Vec<String> = paged.iter().flat_map(|p| p.1.clone()).collect();
    assert_eq!(
        (keys, prefixes),
        (strs(&["a0", "b c+d%41&<x>", "d"]), strs(&["a/", "c/"]))
    );
    let p = ListQuery {
        prefix: Some("a/".into()),
        ..d.clone()
    };
    assert_eq!(list_all(&s, p).await, [(strs(&["a/1", "a/2"]), strs(&["a/b/"]))]);
    let sa = ListQuery {
        start_after: Some("c/1".into()),
        ..q(1000)
    };
    assert_eq!(list_all(&s, sa).await, [(strs(&["c/2", "d"]), vec![])]);
    // An empty delimiter is no delimiter (s3s-fs would treat `delimiter=` as one).
    let ed = ListQuery {
        delimiter: Some(String::new()),
        ..q(1000)
    };
    assert_eq!(list_all(&s, ed).await[0].0, all);
    assert!(matches!(
        s.list_objects("nope", &q(10)).await,
        Err(BackendError::NoSuchBucket)
    ));
}

/// Keys that a lenient or a strict URL decoder would get wrong come back exact, from a store
/// that encodes listings (AWS) and from one that says it does and does not (s3s-fs).
#[tokio::test]
async fn listing_keys_whatever_the_store_claims_about_encoding() {
    let (s, _dir) = server().await;
    let keys = strs(&["b%ar", "pct%41x", "plus+sign", "sp ace", "tab\tkey", "é/ü"]);
    for bucket in ["enc-bkt", "raw-bkt"] {
        s.create_bucket(bucket).await.unwrap();
        for key in &keys {
            let data = Bytes::copy_from_slice(key.as_bytes());
            let len = data.len() as u64;
            let stream: ByteStream = Box::pin(futures::stream::iter([Ok(data)]));
            let sent = s.put_object(bucket, key, stream, len, Metadata::new()).await;
            sent.unwrap_or_else(|e| panic!("{bucket}: put {key:?}: {e}"));
        }
        let q = ListQuery {
            max_keys: 1000,
            ..ListQuery::default()
        };
        let page = s
            .list_objects(bucket, &q)
            .await
            .unwrap_or_else(|e| panic!("{bucket}: {e}"));
        let mut listed: Vec<String> = page.objects.into_iter().map(|o| o.key).collect();
        listed.sort();
        let mut want = keys.clone();
        want.sort();
        assert_eq!(listed, want, "{bucket}: keys exact, and the probe is gone");
        let d = ListQuery {
            delimiter: Some("/".into()),
            ..q
        };
        let page = s.list_objects(bucket, &d).await.unwrap();
        assert_eq!(page.common_prefixes, strs(&["é/"]), "{bucket}");
    }
    let learned = s.encodings.lock().unwrap().clone();
    assert_eq!(learned.get("enc-bkt"), Some(&ListEncoding::Url));
    assert_eq!(learned.get("raw-bkt"), Some(&ListEncoding::Raw));
}

#[tokio::test]
async fn buckets_and_errors() {
    let (endpoint, _dir) = server_endpoint().await;
    let s = store(&endpoint);
    s.create_bucket("b-two").await.unwrap();
    s.create_bucket("a-one").await.unwrap();
    assert!(matches!(
        s.create_bucket("a-one").await,
        Err(BackendError::BucketAlreadyExists { .. })
    ));
    let names: Vec<_> = s.list_buckets().await.unwrap().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["a-one", "b-two"]);
    s.head_bucket("a-one").await.unwrap();
    assert!(matches!(s.head_bucket("zzz").await, Err(BackendError::NoSuchBucket)));

    let b: ByteStream = Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"x"))]));
    s.put_object("a-one", "k", b, 1, Metadata::new()).await.unwrap();
    assert!(matches!(
        s.delete_bucket("a-one").await,
        Err(BackendError::BucketNotEmpty)
    ));
    s.delete_object("a-one", "k").await.unwrap();
    s.delete_bucket("a-one").await.unwrap();
    assert!(matches!(
        s.delete_bucket("a-one").await,
        Err(BackendError::NoSuchBucket)
    ));

    // 5xx is retryable; nothing secret in any message.
    let r = s.head_bucket("broken-bucket").await;
    assert!(
        matches!(&r, Err(BackendError::Upstream { retryable: true, .. })),
        "{r:?}"
    );
    // Wrong credentials: a 403 is not retryable.
    let cfg = S3StoreConfig {
        secret_key: SecretString::new("wrong-secret".into()),
        ..cfg(&endpoint)
    };
    let r = S3Store::new("primary", &cfg).unwrap().head_bucket("b-two").await;
    assert!(
        matches!(&r, Err(BackendError::Upstream { retryable: false, .. })),
        "{r:?}"
    );
    let msg = format!("{r:?}");
    assert!(
        msg.contains("403") && !msg.contains("wrong-secret") && !msg.contains(SK),
        "{msg}"
    );
}

#[tokio::test]
async fn failed_put_is_not_retried() {
    let (s, _dir) = server().await;
    s.create_bucket("bkt").await.unwrap();
    let r = s
        .put_object("bkt", "fail-500", body(vec![b"abc"]), 3, Metadata::new())
        .await;
    assert!(
        matches!(&r, Err(BackendError::Upstream { retryable: true, .. })),
        "{r:?}"
    );
    assert_eq!(FAILED_PUTS.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Reads are retried by the SDK (3 attempts): HeadBucket on the broken bucket still fails.
    assert!(s.head_bucket("bkt").await.is_ok());
}

#[tokio::test]
async fn unreachable_store_is_retryable() {
    // Bind then drop a listener: the port is (almost certainly) closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = store(&format!("http://127.0.0.1:{port}"));
    let r = s.head_bucket("bkt").await;
    assert!(
        matches!(&r, Err(BackendError::Upstream { retryable: true, .. })),
        "{r:?}"
    );
    let r = s.put_object("bkt", "k", body(vec![b"x"]), 1, Metadata::new()).await;
    assert!(
        matches!(&r, Err(BackendError::Upstream { retryable: true, .. })),
        "{r:?}"
    );
}

/// An https store whose certificate chains to a private CA: trusted only through `ca_file`.
#[tokio::test]
async fn https_with_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::pki_types::PrivateKeyDer;

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let dir = tempfile::tempdir().unwrap();
    let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(AK, SK));
    let service = builder.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (service, acceptor) = (service.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(socket).await else {
                    return;
                };
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let endpoint = format!("https://{addr}");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();

    let trusted = S3Store::new(
        "primary",
        &S3StoreConfig {
            ca_file: Some(ca_path),
            conditional_writes: true,
            ..cfg(&endpoint)
        },
    )
    .unwrap();
    trusted.create_bucket("bkt").await.unwrap();
    let etag = trusted
        .put_object("bkt", "k", body(vec![b"over tls"]), 8, Metadata::new())
        .await
        .unwrap();
    assert_eq!(etag, hex::encode(<md5::Md5 as md5::Digest>::digest(b"over tls")));

    let untrusted = store(&endpoint);
    let r = untrusted.head_bucket("bkt").await;
    assert!(
        matches!(
            &r,
            Err(BackendError::Upstream { retryable: false, message, .. })
                if message.contains("UnknownIssuer")
        ),
        "{r:?}"
    );
}

#[test]
fn bad_ca_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a certificate").unwrap();
    let cfg = S3StoreConfig {
        ca_file: Some(path),
        conditional_writes: true,
        ..cfg("https://127.0.0.1:1")
    };
    assert!(matches!(
        S3Store::new("primary", &cfg),
        Err(BackendError::Upstream { retryable: false, .. })
    ));
}

#[test]
fn helpers() {
    assert_eq!(content_range_total("bytes 0-9/300000"), Some(300_000));
    assert_eq!(content_range_total("bytes */300"), Some(300));
    assert_eq!(content_range_total("bytes 0-9/*"), None);
    assert_eq!(
        url_decode("b+c%2Bd%2541%26%3Cx%3E/%C3%A9").as_deref(),
        Some("b c+d%41&<x>/é")
    );
    assert_eq!(url_decode("%4"), None);
    assert_eq!(url_decode("%FF"), None);
    assert_eq!(strip_quotes("\"abc\""), "abc");
}

fn source(key: &str, range: std::ops::Range<u64>) -> Source {
    Source {
        bucket: "bkt".into(),
        key: key.into(),
        range,
        etag: None,
    }
}

#[test]
fn compose_plans_follow_s3_part_rules() {
    const M: u64 = 1 << 20;
    // Parts of 6 MiB and a small last one: copies, then the small one with the tail.
    let plan = plan_parts(&[source("a", 0..6 * M), source("b", 0..6 * M), source("c", 0..100)], 50).unwrap();
    assert_eq!(
        plan,
        vec![
            PartPlan::Copy(source("a", 0..6 * M)),
            PartPlan::Copy(source("b", 0..6 * M)),
            PartPlan::Last(Some(source("c", 0..100))),
        ]
    );
    // A large last source: the tail is its own (last) part.
    let plan = plan_parts(&[source("a", 0..6 * M), source("b", 0..6 * M)], 50).unwrap();
    assert_eq!(plan.last(), Some(&PartPlan::Last(None)));
    assert_eq!(plan.len(), 3);
    // A source above 5 GiB is copied in ranges.
    let plan = plan_parts(&[source("a", 0..(5 << 30) + 1)], 0).unwrap();
    assert_eq!(
        plan,
        vec![
            PartPlan::Copy(source("a", 0..4 << 30)),
            PartPlan::Copy(source("a", 4 << 30..(5 << 30) + 1)),
        ]
    );
    // Too small overall, or a small source in the middle: streamed instead.
    assert_eq!(plan_parts(&[source("a", 0..M)], 10), None);
    assert_eq!(plan_parts(&[source("a", 0..100), source("b", 0..20 * M)], 0), None);
}

#[tokio::test]
async fn compose_server_side_and_streamed() {
    let (s, _dir) = server().await;
    s.create_bucket("bkt").await.unwrap();
    let big: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
    put(&s, "a", &big, Metadata::new()).await;
    put(&s, "b", b"0123456789", Metadata::new()).await;
    let meta: Metadata = [("k".to_string(), "v".to_string())].into();
    // Multipart copy plus a streamed last part carrying the tail.
    let sources = vec![
        source("a", 0..big.len() as u64),
        source("a", 0..big.len() as u64),
        source("b", 2..7),
    ];
    s.compose("bkt", "out", sources, Bytes::from_static(b"TAIL"), meta.clone())
        .await
        .unwrap();
    let (head, data) = read(&s, "out", None).await.unwrap();
    let mut want = big.clone();
    want.extend_from_slice(&big);
    want.extend_from_slice(b"23456TAIL");
    assert!(data == want, "composed bytes");
    assert_eq!(head.metadata.get("k").map(String::as_str), Some("v"));
    // One whole source: a CopyObject with new metadata.
    s.compose("bkt", "copy", vec![source("b", 0..10)], Bytes::new(), meta.clone())
        .await
        .unwrap();
    let (head, data) = read(&s, "copy", None).await.unwrap();
    assert_eq!(data, b"0123456789");
    assert_eq!(head.metadata.get("k").map(String::as_str), Some("v"));
    // Small: streamed through. A missing source stores nothing.
    s.compose(
        "bkt",
        "small",
        vec![source("b", 0..3)],
        Bytes::from_static(b"!"),
        meta.clone(),
    )
    .await
    .unwrap();
    assert_eq!(read(&s, "small", None).await.unwrap().1, b"012!");
    assert!(matches!(
        s.compose("bkt", "none", vec![source("missing", 0..3)], Bytes::new(), meta)
            .await,
        Err(BackendError::NoSuchKey)
    ));
    assert!(matches!(read(&s, "none", None).await, Err(BackendError::NoSuchKey)));
}

/// s3s-fs answers 500 ("Is a directory") for a read of `a` when `a/b` exists: one listing
/// shows `a` is not an object, and the answer is `NoSuchKey`, not an outage; the SDK's one retry
/// is not multiplied. A store error on a key that exists still stands.
#[tokio::test]
async fn a_key_that_is_a_prefix_of_others_is_missing() {
    use std::sync::atomic::Ordering::SeqCst;
    let (s, _dir) = server().await;
    let put = |key: &'static str, data: &'static [u8]| {
        s.put_object("quirk", key, body(vec![data]), data.len() as u64, Metadata::new())
    };
    s.create_bucket("quirk").await.unwrap();
    put("a/b", b"inner").await.unwrap();
    put("ab", b"sibling").await.unwrap();
    let (heads, lists) = (QUIRK_HEADS.load(SeqCst), QUIRK_LISTS.load(SeqCst));
    let r = s.head_object("quirk", "a").await;
    assert!(matches!(r, Err(BackendError::NoSuchKey)), "{r:?}");
    assert_eq!(
        QUIRK_HEADS.load(SeqCst) - heads,
        MAX_ATTEMPTS as usize,
        "the SDK's attempts only"
    );
    assert_eq!(QUIRK_LISTS.load(SeqCst) - lists, 1, "one listing");
    let r = s.get_object("quirk", "a", None, None).await.map(|g| g.head);
    assert!(matches!(r, Err(BackendError::NoSuchKey)), "{r:?}");
    let r = s
        .get_object("quirk", "a", Some(ByteRange::Bounded(0..2)), None)
        .await
        .map(|g| g.head);
    assert!(matches!(r, Err(BackendError::NoSuchKey)), "{r:?}");
    // The neighbours are untouched, and a real object is still found.
    assert_eq!(s.head_object("quirk", "a/b").await.unwrap().size, 5);
    assert_eq!(s.head_object("quirk", "ab").await.unwrap().size, 7);

    // Must-fail twin: when the key does exist, the store's failure stands (retryable).
    put("fails", b"x").await.unwrap();
    let r = s.head_object("quirk", "fails").await;
    assert!(
        matches!(r, Err(BackendError::Upstream { retryable: true, .. })),
        "{r:?}"
    );
}

/// Conditional writes go to the store as headers; with `conditional_writes = false` they are
/// refused before anything is sent, never done unconditionally.
#[tokio::test]
async fn conditional_writes_reach_the_store_or_are_refused() {
    use crate::backend::PutCondition;
    let (endpoint, _dir) = server_endpoint().await;
    let s = store(&endpoint);
    s.create_bucket("bkt").await.unwrap();
    assert!(s.conditional_writes());
    let etag = s
        .put_object_if(
            "bkt",
            "k",
            body(vec![b"one"]),
            3,
            Metadata::new(),
            Some(PutCondition::Absent),
        )
        .await
        .unwrap();
    let again = s
        .put_object_if(
            "bkt",
            "k",
            body(vec![b"two"]),
            3,
            Metadata::new(),
            Some(PutCondition::Absent),
        )
        .await;
    assert!(matches!(again, Err(BackendError::PreconditionFailed)), "{again:?}");
    let wrong = s
        .put_object_if(
            "bkt",
            "k",
            body(vec![b"two"]),
            3,
            Metadata::new(),
            Some(PutCondition::Matches("0".repeat(32))),
        )
        .await;
    assert!(matches!(wrong, Err(BackendError::PreconditionFailed)), "{wrong:?}");
    s.put_object_if(
        "bkt",
        "k",
        body(vec![b"two"]),
        3,
        Metadata::new(),
        Some(PutCondition::Matches(etag)),
    )
    .await
    .unwrap();
    assert_eq!(read(&s, "k", None).await.unwrap().1, b"two");

    let off = S3Store::new(
        "primary",
        &S3StoreConfig {
            conditional_writes: false,
            ..cfg(&endpoint)
        },
    )
    .unwrap();
    assert!(!off.conditional_writes());
    let refused = off
        .put_object_if(
            "bkt",
            "new",
            body(vec![b"x"]),
            1,
            Metadata::new(),
            Some(PutCondition::Absent),
        )
        .await;
    assert!(
        matches!(refused, Err(BackendError::ConditionalUnsupported)),
        "{refused:?}"
    );
    let source = Source {
        bucket: "bkt".into(),
        key: "k".into(),
        range: 0..3,
        etag: None,
    };
    let refused = off
        .compose_if(
            "bkt",
            "new",
            vec![source],
            Bytes::new(),
            Metadata::new(),
            Some(PutCondition::Absent),
        )
        .await;
    assert!(
        matches!(refused, Err(BackendError::ConditionalUnsupported)),
        "{refused:?}"
    );
    assert!(matches!(
        off.head_object("bkt", "new").await,
        Err(BackendError::NoSuchKey)
    ));
    // Unconditional writes are unaffected.
    off.put_object_if("bkt", "new", body(vec![b"x"]), 1, Metadata::new(), None)
        .await
        .unwrap();
}

/// A rewrap's metadata replacement is one CopyObject onto itself, conditional on the ETag read
/// as the source's and as the destination's (`If-Match`, atomic on AWS S3); refused once the
/// object changed; without the destination condition when conditional writes are off.
#[tokio::test]
async fn metadata_is_replaced_by_a_copy_conditional_on_both_sides() {
    let (endpoint, _dir) = server_endpoint().await;
    let s = store(&endpoint);
    s.create_bucket("bkt").await.unwrap();
    let sent = |key: &str| -> Vec<Option<String>> {
        COPY_IF_MATCH
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, m)| m.clone())
            .collect()
    };
    let old = put(&s, "rewrap-a", b"old body", Metadata::new()).await;
    let meta: Metadata = [("escrow-kek".to_owned(), "2".to_owned())].into();
    s.replace_metadata_if("bkt", "rewrap-a", 8, &old, meta.clone())
        .await
        .unwrap();
    let (head, data) = read(&s, "rewrap-a", None).await.unwrap();
    assert_eq!(
        (head.metadata.get("escrow-kek"), data.as_slice()),
        (Some(&"2".to_owned()), &b"old body"[..])
    );
    assert_eq!(sent("rewrap-a"), vec![Some(format!("\"{old}\""))]);

    put(&s, "rewrap-a", b"a client's newer body", Metadata::new()).await;
    let refused = s.replace_metadata_if("bkt", "rewrap-a", 8, &old, meta.clone()).await;
    assert!(matches!(refused, Err(BackendError::PreconditionFailed)), "{refused:?}");
    let (head, data) = read(&s, "rewrap-a", None).await.unwrap();
    assert_eq!(
        (head.metadata.get("escrow-kek"), data.as_slice()),
        (None, &b"a client's newer body"[..])
    );

    let off = S3Store::new(
        "primary",
        &S3StoreConfig {
            conditional_writes: false,
            ..cfg(&endpoint)
        },
    )
    .unwrap();
    let old = put(&off, "rewrap-b", b"body", Metadata::new()).await;
    off.replace_metadata_if("bkt", "rewrap-b", 4, &old, meta).await.unwrap();
    assert_eq!(
        sent("rewrap-b"),
        vec![None],
        "no destination condition toward a store without them"
    );
}
