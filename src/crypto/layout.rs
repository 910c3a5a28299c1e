//! Where the format puts things in a store, besides each object's own stream: the reserved key
//! prefix holding multipart upload state, the key layout under it, and the budget for the
//! envelope's metadata. Frozen like the rest of the format (FORMAT.md §6): proxies of different
//! versions share one store.

/// Where the proxy keeps multipart uploads in each bucket; hidden from listings, refused as a
/// client key.
pub const RESERVED_PREFIX: &str = ".escrow-mpu/";

/// The shared keyring, when it is kept in the mirror store (`[keys] mirror_bucket`): hidden from
/// listings and refused as a client key like everything under the reserved prefix.
pub const KEYRING_KEY: &str = ".escrow-mpu/keyring";

/// Where the markers of uploads in progress live: `<this><upload id>`.
pub const UPLOAD_MARKERS: &str = ".escrow-mpu/u/";

/// An empty object an S3 store writes and lists once per bucket, to learn how the store really
/// writes keys in listings that ask for `encoding-type=url` (some claim to encode and do not).
/// Its name holds what encodings tell apart: an escape-like `%41`, a `+` and a space.
pub const LIST_ENCODING_PROBE: &str = ".escrow-mpu/probe/list-encoding %41+x";

/// Where the mirror keeps its repair records in each bucket, in the store that has the change:
/// `<this><object key hash>/<record id>`. One object per missed write, never overwritten.
pub const REPAIR_RECORDS: &str = ".escrow-mpu/r/";

/// Largest repair record body a reader accepts.
pub const MAX_REPAIR_RECORD_LEN: usize = 8 << 10;

/// Upload ids: this many random bytes, as lowercase hex.
pub const UPLOAD_ID_BYTES: usize = 16;

/// Largest upload marker body a reader accepts (the marker holds a key and a sealed record).
pub const MAX_MARKER_LEN: usize = 64 << 10;

/// User metadata a store is assumed to accept per object, counted as S3 does (bytes of names
/// and values), with the `x-amz-meta-` prefix counted too, for margin. AWS S3 allows 2 KB.
pub const METADATA_BUDGET: usize = 2048;

/// Bytes the `x-amz-meta-` prefix adds to each metadata name, counted in the budget.
pub const META_PREFIX_LEN: usize = "x-amz-meta-".len();

/// Bytes of a large object's end read before its body: the whole trailer of a single-part
/// object, and the manifest of a multipart one of up to about 200 parts.
pub const TAIL_HINT: u64 = 16 << 10;

/// Up to this stored size, a whole-object read is one store request: the object is read into
/// memory and its trailer taken from its end. Bounds memory per request to this much.
pub const ONE_REQUEST_MAX: u64 = 1 << 20;

/// The marker of upload `id`.
pub fn upload_marker_key(id: &str) -> String {
    format!("{UPLOAD_MARKERS}{id}")
}

/// The prefix of every part object of upload `id`.
pub fn upload_parts_prefix(id: &str) -> String {
    format!("{RESERVED_PREFIX}p/{id}/")
}

/// The object holding part `number` of upload `id` (five digits: listings sort by number).
pub fn upload_part_key(id: &str, number: u32) -> String {
    format!("{}{number:05}", upload_parts_prefix(id))
}

/// The prefix of every repair record of object `key`: the first 16 bytes of the key's SHA-256 in
/// hex (object keys may be up to 1024 bytes; record keys must stay below that).
pub fn repair_records_of(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    format!("{REPAIR_RECORDS}{}/", hex::encode(&digest[..16]))
}

/// Whether `id` has the form of an upload id: 32 lowercase hex digits.
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 2 * UPLOAD_ID_BYTES && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a client key falls under the reserved prefix.
pub fn is_reserved(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_keys_live_under_the_reserved_prefix() {
        let id = "0123456789abcdef0123456789abcdef";
        assert!(valid_upload_id(id));
        assert_eq!(upload_marker_key(id), format!(".escrow-mpu/u/{id}"));
        assert_eq!(upload_part_key(id, 7), format!(".escrow-mpu/p/{id}/00007"));
        for key in [
            upload_marker_key(id),
            upload_part_key(id, 10_000),
            LIST_ENCODING_PROBE.into(),
        ] {
            assert!(is_reserved(&key));
        }
        // Must-fail twins: ids of the wrong length or alphabet; keys that merely look alike.
        for bad in [
            "",
            "0123",
            &id.to_uppercase(),
            &format!("{id}0"),
            "../../../../../../etc/passwd000",
        ] {
            assert!(!valid_upload_id(bad), "{bad}");
        }
        assert!(!is_reserved(".escrow-mpu"));
        assert!(!is_reserved("a/.escrow-mpu/u/x"));
    }
}
