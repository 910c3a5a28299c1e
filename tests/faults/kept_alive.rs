//! Store-side work that outlasts the proxy's patience (`KEEP_ALIVE_AFTER`, 5 s): a
//! CompleteMultipartUpload's compose, a CopyObject's copy and an UploadPartCopy's part. As S3
//! does, the proxy answers `200 OK` at once, sends whitespace while the stores work, then the
//! result, or the error, in the body. Both stores sit behind interposers whose gate holds every
//! request of that work (`x-amz-copy-source`, a store-side completion, a part object's write)
//! until the test lets them through or has them refused.
//!
//! The client is `aws-sdk-s3`, which must read the result after the whitespace, or turn an
//! `<Error>` after the 200 into an error. An interceptor shows what it got: the answer's head
//! arrives while the gates still hold every request of the work (without the keep-alive the
//! test would wait out its bound and fail), and the body it read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeDeserializationInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use md5::Digest as _;

use crate::interposer::{self, Gate, Switch};
use crate::procs::{Proxy, ProxyDir, StoreAt};
use crate::{blocking, client, runtime, two_stores, workload};

/// Part size: two parts of this make the stores compose with UploadPartCopy.
const PART: usize = 6 << 20;
/// Bound on every wait of the test.
const BOUND: Duration = Duration::from_secs(120);

/// An upload with its two parts sent: id, the parts as a completion names them, the object.
struct Upload {
    key: &'static str,
    id: String,
    parts: Vec<CompletedPart>,
    body: Vec<u8>,
}

async fn upload(c: &Client, key: &'static str, seed: u64) -> Upload {
    let body = workload::body(seed, 2 * PART);
    let id = c
        .create_multipart_upload()
        .bucket(workload::BUCKET)
        .key(key)
        .send()
        .await
        .expect("create upload")
        .upload_id
        .expect("upload id");
    let mut parts = Vec::new();
    for (i, chunk) in body.chunks(PART).enumerate() {
        let number = i as i32 + 1;
        let etag = c
            .upload_part()
            .bucket(workload::BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .expect("upload part")
            .e_tag
            .expect("part etag");
        parts.push(CompletedPart::builder().part_number(number).e_tag(etag).build());
    }
    Upload { key, id, parts, body }
}

/// What the SDK received: the answer's status once its head arrived, and the body it read.
#[derive(Debug, Default)]
struct Seen {
    status: Mutex<Option<u16>>,
    body: Mutex<Option<Vec<u8>>>,
}

#[derive(Debug, Clone)]
struct Observe(Arc<Seen>);

impl Intercept for Observe {
    fn name(&self) -> &'static str {
        "observe-completion"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.0.status.lock().expect("status lock") = Some(context.response().status().as_u16());
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.0.body.lock().expect("body lock") = context.response().body().bytes().map(<[u8]>::to_vec);
        Ok(())
    }
}

fn set_gates(gates: &[&Arc<Switch>], gate: Gate) {
    for g in gates {
        g.set_gate(gate);
    }
}

fn held(gates: &[&Arc<Switch>]) -> u64 {
    gates
        .iter()
        .map(|g| g.held.load(std::sync::atomic::Ordering::SeqCst))
        .sum()
}

/// The SDK call under test, given the interceptor to attach: the object's ETag, or the error's
/// code.
type Call = Box<dyn FnOnce(Observe) -> futures::future::BoxFuture<'static, Result<String, String>>>;

fn code<E: ProvideErrorMetadata + std::fmt::Debug>(e: E) -> String {
    e.code().map_or_else(|| format!("(no code) {e:?}"), str::to_string)
}

/// Runs `call` while the gates hold every compose and copy; once the answer's head has arrived
/// (while they still hold), turns them to `then`. Returns the SDK's result and the body it read.
async fn while_held(gates: &[&Arc<Switch>], then: Gate, call: Call) -> (Result<String, String>, String) {
    set_gates(gates, Gate::Hold);
    let before = held(gates);
    let seen = Arc::new(Seen::default());
    let call = tokio::spawn(call(Observe(Arc::clone(&seen))));
    let deadline = Instant::now() + BOUND;
    while held(gates) < before + 2 || seen.status.lock().expect("status lock").is_none() {
        assert!(
            Instant::now() < deadline,
            "no answer while the stores work (held {} of their requests): the proxy kept the client waiting",
            held(gates) - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*seen.status.lock().expect("status lock"), Some(200), "the early answer");
    set_gates(gates, then);
    let result = tokio::time::timeout(BOUND, call)
        .await
        .expect("the call ended")
        .expect("call task");
    set_gates(gates, Gate::Open);
    let body = seen.body.lock().expect("body lock").take().unwrap_or_default();
    let body = String::from_utf8_lossy(&body).to_string();
    let xml = body.find("?>").map_or("", |end| &body[end + 2..]);
    assert!(
        body.starts_with("<?xml"),
        "the answer starts with the XML declaration: {body:?}"
    );
    assert!(xml.starts_with(' '), "whitespace while the stores worked: {body:?}");
    assert_eq!(body.matches("<?xml").count(), 1, "one XML declaration: {body:?}");
    (result, body)
}

fn complete(c: &Client, u: &Upload) -> Call {
    let c = c.clone();
    let (key, id, parts) = (u.key, u.id.clone(), u.parts.clone());
    Box::new(move |observe| {
        Box::pin(async move {
            c.complete_multipart_upload()
                .bucket(workload::BUCKET)
                .key(key)
                .upload_id(id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .customize()
                .interceptor(observe)
                .send()
                .await
                .map(|out| out.e_tag.unwrap_or_default())
                .map_err(code)
        })
    })
}

fn copy_part(c: &Client, from: &'static str, to: &Upload) -> Call {
    let c = c.clone();
    let (key, id) = (to.key, to.id.clone());
    Box::new(move |observe| {
        Box::pin(async move {
            c.upload_part_copy()
                .bucket(workload::BUCKET)
                .key(key)
                .upload_id(id)
                .part_number(1)
                .copy_source(format!("{}/{from}", workload::BUCKET))
                .customize()
                .interceptor(observe)
                .send()
                .await
                .map(|out| out.copy_part_result.and_then(|r| r.e_tag).unwrap_or_default())
                .map_err(code)
        })
    })
}

fn copy(c: &Client, from: &'static str, to: &'static str) -> Call {
    let c = c.clone();
    Box::new(move |observe| {
        Box::pin(async move {
            c.copy_object()
                .bucket(workload::BUCKET)
                .key(to)
                .copy_source(format!("{}/{from}", workload::BUCKET))
                .customize()
                .interceptor(observe)
                .send()
                .await
                .map(|out| out.copy_object_result.and_then(|r| r.e_tag).unwrap_or_default())
                .map_err(code)
        })
    })
}

async fn get(c: &Client, key: &str) -> Option<Vec<u8>> {
    match c.get_object().bucket(workload::BUCKET).key(key).send().await {
        Ok(out) => Some(out.body.collect().await.expect("read body").to_vec()),
        Err(e) if e.code() == Some("NoSuchKey") => None,
        Err(e) => panic!("get {key}: {e:?}"),
    }
}

#[test]
fn long_store_work_is_answered_at_once_and_its_result_or_error_follows() {
    runtime(2).block_on(async move {
        let (tmp, logs, primary, mirror) = two_stores("escrow-keepalive-");
        let root = tmp.path();
        let (p_addr, p_gate) = interposer::start(SocketAddr::from(([127, 0, 0, 1], primary.port))).await;
        let (m_addr, m_gate) = interposer::start(SocketAddr::from(([127, 0, 0, 1], mirror.port))).await;
        let gates = [&p_gate, &m_gate];
        let dir = blocking(|| {
            ProxyDir::create(
                &root.join("proxy"),
                &StoreAt {
                    endpoint: format!("http://{p_addr}"),
                },
                &StoreAt {
                    endpoint: format!("http://{m_addr}"),
                },
            )
        });
        let proxy = blocking(|| Proxy::start(&dir, &logs, "proxy"));
        let c = client(&proxy, &dir);
        workload::create_bucket(&c).await;

        // The stores compose, slowly: the client gets the object's ETag.
        let u = upload(&c, "slow", 1).await;
        let (result, body) = while_held(&gates, Gate::Open, complete(&c, &u)).await;
        let etag = result.expect("the completion");
        assert!(etag.ends_with("-2\""), "a multipart ETag: {etag}");
        assert!(
            body.contains("<CompleteMultipartUploadResult"),
            "the result follows: {body}"
        );
        assert!(get(&c, u.key).await == Some(u.body.clone()), "reads back byte-exact");

        // The stores copy, slowly: the copy's ETag is the source's.
        let (result, body) = while_held(&gates, Gate::Open, copy(&c, "slow", "slow-copy")).await;
        assert_eq!(result.expect("the copy"), etag, "the copy's ETag");
        assert!(body.contains("<CopyObjectResult>"), "the result follows: {body}");
        assert!(
            get(&c, "slow-copy").await == Some(u.body.clone()),
            "the copy reads back byte-exact"
        );

        // The stores take a copied part's object slowly: its ETag is the MD5 of the copied bytes.
        let target = Upload {
            key: "assembled",
            id: c
                .create_multipart_upload()
                .bucket(workload::BUCKET)
                .key("assembled")
                .send()
                .await
                .expect("create upload")
                .upload_id
                .expect("upload id"),
            parts: Vec::new(),
            body: u.body.clone(),
        };
        let md5 = format!("\"{}\"", hex::encode(md5::Md5::digest(&u.body)));
        let (result, body) = while_held(&gates, Gate::Refuse, copy_part(&c, "slow", &target)).await;
        let part_code = result.expect_err("the SDK sees the part copy's error after the 200");
        assert!(
            body.contains("<Error>") && !body.contains("<CopyPartResult"),
            "the error follows: {body}"
        );
        let (result, body) = while_held(&gates, Gate::Open, copy_part(&c, "slow", &target)).await;
        assert_eq!(result.expect("the part copy"), md5, "the part's ETag");
        assert!(body.contains("<CopyPartResult>"), "the result follows: {body}");
        let target = Upload {
            parts: vec![CompletedPart::builder().part_number(1).e_tag(md5).build()],
            ..target
        };
        complete(&c, &target)(Observe(Arc::default()))
            .await
            .expect("complete the copied part");
        assert!(
            get(&c, target.key).await == Some(u.body.clone()),
            "the copied part reads back byte-exact"
        );

        // The stores refuse: the error follows the 200, nothing is written, and the work can be
        // done again.
        let (result, body) = while_held(&gates, Gate::Refuse, copy(&c, "slow", "refused-copy")).await;
        let copy_code = result.expect_err("the SDK sees the copy's error after the 200");
        assert!(
            !copy_code.starts_with("(no code)"),
            "the SDK read the error's code: {copy_code}"
        );
        assert!(
            body.contains("<Error>") && !body.contains("<CopyObjectResult"),
            "the error follows: {body}"
        );
        assert_eq!(get(&c, "refused-copy").await, None, "no copy written");

        let u = upload(&c, "refused", 2).await;
        let (result, body) = while_held(&gates, Gate::Refuse, complete(&c, &u)).await;
        let code = result.expect_err("the SDK sees the completion's error after the 200");
        assert!(!code.starts_with("(no code)"), "the SDK read the error's code: {code}");
        assert!(
            body.contains("<Error>") && body.contains("<Code>"),
            "the error follows: {body}"
        );
        assert!(
            !body.contains("<CompleteMultipartUploadResult"),
            "and no result: {body}"
        );
        assert_eq!(get(&c, u.key).await, None, "nothing written");
        let etag = complete(&c, &u)(Observe(Arc::default()))
            .await
            .expect("completing again");
        assert!(etag.ends_with("-2\""), "a multipart ETag: {etag}");
        assert!(get(&c, u.key).await == Some(u.body.clone()), "reads back byte-exact");
        println!(
            "KEEPALIVE refused work reached the SDK as {part_code} (part copy), {copy_code} (copy) and {code} (completion): {}",
            body.trim()
        );
    });
}
