//! S3's limits and the proxy's defaults, named once. Every file that enforces or assumes one of
//! these numbers uses the constant from here, so a reader finds each rule in one place.
//!
//! Values follow the AWS S3 documentation ("Amazon S3 multipart upload limits", "Working with
//! object metadata", `ListObjectsV2`, `DeleteObjects`).

/// The largest object a single PUT (or a copy in one request) may create: 5 GiB.
pub const MAX_PUT_SIZE: u64 = 5 << 30;
/// The smallest part of a multipart upload other than the last: 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The largest part of a multipart upload: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// The highest part number (parts are numbered 1 through this); a format constant too.
pub const MAX_PART_NUMBER: u32 = crate::crypto::manifest::MAX_PART_NUMBER;
/// The most keys (or parts, or uploads) one listing page returns.
pub const MAX_KEYS: i32 = 1000;
/// The most keys one DeleteObjects request may name.
pub const MAX_DELETE_KEYS: usize = 1000;
/// User metadata S3 accepts per object: names and values, in bytes.
pub const MAX_USER_METADATA: usize = 2048;

/// The region answered when none is configured (S3's own default).
pub const DEFAULT_REGION: &str = "us-east-1";
/// The S3 listener's address when none is configured (loopback: a sidecar's or a laptop's).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// The admin listener's default address (loopback).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8444";

// === the HTTP edge (`[server]`), defaults for a sidecar ===

/// A client must send a request's whole header block within this many seconds (HTTP/1.1).
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// A connection with no request in flight and no traffic is closed after this many seconds.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// A request body that makes no progress for this many seconds is abandoned (nothing stored).
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 30;
/// h2 keep-alive pings every this many seconds; a peer that does not answer within as long is
/// dropped.
pub const DEFAULT_H2_KEEPALIVE_SECS: u64 = 30;
/// Concurrent connections; further connections wait in the kernel's backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Concurrent h2 streams per connection.
pub const DEFAULT_H2_MAX_STREAMS: u32 = 128;
/// Largest request header block accepted (HTTP/1.1 read buffer and h2 header list): S3's own
/// limit is 8 KiB for PUT headers; presigned URLs add a few KiB to the request line.
pub const MAX_REQUEST_HEADER_BYTES: usize = 64 << 10;
/// Largest body of a request that is buffered before it is parsed (the XML of DeleteObjects,
/// CompleteMultipartUpload, tagging, bucket configuration): 1,000 escaped 1 KiB keys or 10,000
/// parts fit. Object bodies are streamed and not subject to it.
pub const MAX_XML_BODY: usize = 4 << 20;
/// POST Object (browser-form upload): the largest form field before the `file` part (the
/// `policy` is the largest in practice; S3 allows 20 KiB of form fields before the file).
pub const POST_MAX_FIELD: usize = 20 << 10;
/// POST Object: all form fields before the `file` part together.
pub const POST_MAX_FIELDS_BYTES: usize = 64 << 10;
/// POST Object: the most form fields before the `file` part.
pub const POST_MAX_FIELDS: usize = 64;
/// POST Object: multipart framing (boundaries, part headers, preamble) counted on top of the
/// fields: what an unauthenticated form may make the proxy read is at most
/// `POST_MAX_FIELDS_BYTES + POST_FORM_FRAMING`.
pub const POST_FORM_FRAMING: usize = 16 << 10;
/// POST Object: how much of a file is held before it is written. A file that ends within it is
/// stored by one PutObject (plain MD5 ETag); a longer one by an internal multipart upload with
/// parts of this size (multipart ETag), so a POST never holds more than this of its file.
pub const POST_READ_AHEAD: usize = MIN_PART_SIZE as usize;
/// POST Object: authenticated POSTs holding a file read-ahead at once (each up to
/// [`POST_READ_AHEAD`]: 160 MiB in all); further ones wait for a slot before their file is read.
pub const POST_MAX_BUFFERS: usize = 32;
/// POST Object: form fields after the `file` part are read (and ignored, as S3 does) up to this
/// many bytes; past it the connection is closed after the answer instead.
pub const POST_MAX_TRAILER: usize = 64 << 10;
/// The longest validity of a presigned URL: 7 days (`X-Amz-Expires`).
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;
/// On EMFILE/ENFILE (no file descriptors left) the accept loop pauses this long before
/// accepting again instead of spinning.
pub const ACCEPT_BACKOFF_MS: u64 = 100;

/// After SIGTERM, seconds the S3 listener keeps accepting before it stops (`drain_delay_secs`).
pub const DEFAULT_DRAIN_DELAY_SECS: u64 = 0;
/// Seconds in-flight requests get to finish once the listener stopped (`shutdown_grace_secs`).
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Seconds between checks of the TLS certificate and key files for changes (`tls_reload_secs`).
pub const DEFAULT_TLS_RELOAD_SECS: u64 = 10;

/// Mirror: how long a read waits for a store's first answer before failing over to the other
/// store (and marking the first down until the probe sees it back).
pub const DEFAULT_FIRST_BYTE_TIMEOUT_MS: u64 = 1500;
/// Mirror: how long a GET body from one store may give no bytes (while the client takes them)
/// before the rest is read from the other store, when it holds the same stored version.
pub const MIRROR_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// How long the store-side work of a CompleteMultipartUpload, CopyObject or UploadPartCopy may
/// take before its answer starts: after this the proxy answers `200 OK` and keeps the connection
/// alive with whitespace until the result, or an `<Error>` document, follows in the body, as S3
/// does (`crate::s3::kept_alive`). Faster work gets the ordinary answer, an error its own status.
/// Clients' read timeouts are 60 s and more (botocore, the AWS CLI); composing or copying a large
/// object can take minutes.
pub const KEEP_ALIVE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);
/// Mirror: how often each instance looks for repair records while it knows of none.
pub const DEFAULT_DRAIN_EVERY_SECS: u64 = 5;
