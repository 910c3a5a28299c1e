//! Operations the proxy cannot serve safely answer `NotImplemented` and never pass through:
//! tagging, bucket policies, S3 Select. (SSE-C is honoured: `sse_c.rs`.)

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CsvInput, CsvOutput, ExpressionType, InputSerialization, OutputSerialization, Tag, Tagging};

use crate::common::{MARKER, StoreKind, assert_s3_error, data_with_marker};
use crate::{BUCKET, harness};

per_store!(unsupported_operations);

async fn unsupported_operations(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(1000);
    h.put(BUCKET, "obj", &data).await;
    let c = &h.client;

    assert_s3_error(
        c.put_object_tagging()
            .bucket(BUCKET)
            .key("obj")
            .tagging(
                Tagging::builder()
                    .tag_set(Tag::builder().key("k").value("v").build().expect("tag"))
                    .build()
                    .expect("tagging"),
            )
            .send()
            .await,
        501,
        "NotImplemented",
        "PutObjectTagging",
    );
    assert_s3_error(
        c.put_bucket_policy()
            .bucket(BUCKET)
            .policy(r#"{"Version":"2012-10-17","Statement":[]}"#)
            .send()
            .await,
        501,
        "NotImplemented",
        "PutBucketPolicy",
    );
    assert_s3_error(
        c.select_object_content()
            .bucket(BUCKET)
            .key("obj")
            .expression("SELECT * FROM S3Object")
            .expression_type(ExpressionType::Sql)
            .input_serialization(InputSerialization::builder().csv(CsvInput::builder().build()).build())
            .output_serialization(OutputSerialization::builder().csv(CsvOutput::builder().build()).build())
            .send()
            .await,
        501,
        "NotImplemented",
        "SelectObjectContent",
    );

    assert_s3_error(
        c.put_object()
            .bucket(BUCKET)
            .key("tagged")
            .tagging("k=v")
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        501,
        "NotImplemented",
        "PutObject with x-amz-tagging",
    );
    assert!(h.get(BUCKET, "obj").await == data, "the object is unchanged");
    h.assert_no_plaintext(MARKER);
}
