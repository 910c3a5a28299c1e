//! Conditional writes raced through two `serve` processes sharing one fs store: the store, not
//! either process, decides, so exactly one writer wins.

use std::fs;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

use crate::common::{self, Checksums};
use crate::support::{ACCESS_KEY, SECRET_KEY, Setup};

/// Concurrent writers per round (half through each process).
const WRITERS: usize = 24;
const BUCKET: &str = "race";
const KEY: &str = "lock";

/// Writer `i`'s body: distinct per writer, large enough that uploads overlap.
fn body(round: u8, i: usize) -> Vec<u8> {
    let mut b = format!("round {round} writer {i:03} ").into_bytes();
    b.resize(256 << 10, b'a' + (i % 26) as u8);
    b
}

/// Sends one PUT per writer at once, alternating between `clients`, each with `condition`
/// applied; returns each writer's HTTP status.
async fn race(
    clients: &[Client; 2],
    round: u8,
    condition: impl Fn(
        aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
) -> Vec<(u16, Option<String>)> {
    let puts = (0..WRITERS).map(|i| {
        let req = clients[i % 2]
            .put_object()
            .bucket(BUCKET)
            .key(KEY)
            .body(ByteStream::from(body(round, i)));
        let req = condition(req);
        async move {
            match req.send().await {
                Ok(_) => (200, None),
                Err(e) => {
                    let status = e.raw_response().map_or(0, |r| r.status().as_u16());
                    (status, e.code().map(str::to_string))
                }
            }
        }
    });
    futures::future::join_all(puts).await
}

#[test]
fn conditional_writers_race_through_two_processes() {
    let setup = Setup::new(false, &[]);
    let (a, b) = (setup.serve("serve-a"), setup.serve("serve-b"));
    let ca = fs::read(setup.certs.join("ca.pem")).expect("read ca.pem");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let clients = [
        common::sdk_client(a.endpoint(), &ca, ACCESS_KEY, SECRET_KEY, Checksums::WhenRequired),
        common::sdk_client(b.endpoint(), &ca, ACCESS_KEY, SECRET_KEY, Checksums::WhenRequired),
    ];
    rt.block_on(common::create_bucket(&clients[0], BUCKET));

    // Round 1: If-None-Match: * on an absent key. Exactly one creates it; the rest see it exist.
    let outcomes = rt.block_on(race(&clients, 1, |r| r.if_none_match("*")));
    let winners: Vec<usize> = (0..WRITERS).filter(|i| outcomes[*i].0 == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one If-None-Match: * writer wins: {outcomes:?}"
    );
    for (i, (status, code)) in outcomes.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(
                (*status, code.as_deref()),
                (412, Some("PreconditionFailed")),
                "writer {i}: {outcomes:?}"
            );
        }
    }
    let stored = rt.block_on(common::get_object(&clients[1], BUCKET, KEY));
    assert!(stored == body(1, winners[0]), "the stored object is the winner's");

    // Round 2: If-Match on the winner's ETag, a compare-and-swap. Exactly one swaps; the rest
    // see another ETag (412) or a conflicting write during theirs (409), as S3 answers.
    let etag = common::etag_of(&stored);
    let outcomes = rt.block_on(race(&clients, 2, |r| r.if_match(&etag)));
    let winners: Vec<usize> = (0..WRITERS).filter(|i| outcomes[*i].0 == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one If-Match writer wins: {outcomes:?}");
    for (i, (status, code)) in outcomes.iter().enumerate() {
        if i != winners[0] {
            assert!(
                matches!(
                    (*status, code.as_deref()),
                    (412, Some("PreconditionFailed")) | (409, Some("ConditionalRequestConflict"))
                ),
                "writer {i}: {outcomes:?}"
            );
        }
    }
    let stored = rt.block_on(common::get_object(&clients[0], BUCKET, KEY));
    assert!(
        stored == body(2, winners[0]),
        "the stored object is the second winner's"
    );

    // No lock file is left behind.
    let leftovers: Vec<_> = fs::read_dir(setup.primary.join(".tmp"))
        .expect("read .tmp")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "left in .tmp: {leftovers:?}");
    drop((a, b));
    let log = fs::read_to_string(setup.root().join("serve-a.stderr")).expect("serve stderr");
    assert!(
        log.contains("conditional writes (If-None-Match: *, If-Match): evaluated atomically by the primary store"),
        "the start-up log says how conditional writes are handled"
    );
}
