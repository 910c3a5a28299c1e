//! The wire under S3: TLS 1.2 and 1.3, each with HTTP/1.1 and h2, all reach the S3 service (an
//! unsigned request is answered with S3's 403 XML), and a signed GET over each returns the
//! object's bytes (through a presigned URL, which needs no SDK support for the TLS version).

use crate::common::{StoreKind, data_with_marker};
use crate::{BUCKET, harness};

per_store!(every_tls_version_and_http_version_works);

async fn every_tls_version_and_http_version_works(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(200_000);
    h.put(BUCKET, "wire", &data).await;
    let url = crate::auth::presign_get(&h.client, "wire", std::time::Duration::from_secs(600), None).await;
    let ca = reqwest::Certificate::from_pem(&h.ca_pem).expect("parse ca.pem");
    for tls in [reqwest::tls::Version::TLS_1_2, reqwest::tls::Version::TLS_1_3] {
        for http1 in [true, false] {
            let mut builder = reqwest::Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca.clone())
                .min_tls_version(tls)
                .max_tls_version(tls);
            builder = if http1 { builder.http1_only() } else { builder };
            let client = builder.build().expect("reqwest client");
            let what = format!("{tls:?} http1_only={http1}");

            let unsigned = client
                .get(format!("{}/{BUCKET}/wire", h.endpoint))
                .send()
                .await
                .expect(&what);
            assert_eq!(unsigned.status(), 403, "{what}");
            let want_version = if http1 {
                reqwest::Version::HTTP_11
            } else {
                reqwest::Version::HTTP_2
            };
            assert_eq!(unsigned.version(), want_version, "{what}");
            assert!(
                unsigned
                    .text()
                    .await
                    .expect(&what)
                    .contains("<Code>AccessDenied</Code>"),
                "{what}"
            );

            let signed = client.get(&url).send().await.expect(&what);
            assert_eq!(signed.status(), 200, "{what}");
            assert_eq!(signed.bytes().await.expect(&what).as_ref(), &data[..], "{what}");
        }
    }
}
