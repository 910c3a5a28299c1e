//! SSE-C in the object layer: which key an object's content opens under, given the customer key
//! a request carries (or not). An SSE-C object's record holds a keyed digest of its customer key
//! (`crypto::envelope::customer_check`); the key itself is never stored.

use super::ObjectError;
use crate::crypto::envelope::{CustomerKey, ObjectRecord, content_key, customer_matches};
use crate::secret::Key256;

/// The content key of an object (or upload) keyed by `dek` whose record is `record`, for a
/// request that gave `customer`: the DEK for an object that is not SSE-C (and no key given), the
/// derived content key for an SSE-C object and its right key. Checked before any content is read.
pub fn unlock(dek: &Key256, record: &ObjectRecord, customer: Option<&CustomerKey>) -> Result<Key256, ObjectError> {
    match (record.customer_check(), customer) {
        (None, None) => Ok(dek.clone()),
        (None, Some(_)) => Err(ObjectError::CustomerKeyNotApplicable),
        (Some(_), None) => Err(ObjectError::CustomerKeyRequired),
        (Some(check), Some(c)) if customer_matches(dek, c, &check) => Ok(content_key(dek, Some(c))),
        (Some(_), Some(_)) => Err(ObjectError::CustomerKeyMismatch),
    }
}

/// Whether a copy whose source content opens under `source_content` (the source unlocked) and
/// whose destination asks for `destination` can keep the source's ciphertext: the same DEK with
/// the same customer key (or none on both sides) gives the same content key. Constant time.
pub fn keeps_content(dek: &Key256, source_content: &Key256, destination: Option<&CustomerKey>) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(content_key(dek, destination).expose().ct_eq(source_content.expose()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_tells_every_case_apart() {
        let dek = Key256::random();
        let key = CustomerKey::from_slice(&[7u8; 32]).expect("32 bytes");
        let other = CustomerKey::from_slice(&[8u8; 32]).expect("32 bytes");
        let plain = ObjectRecord::default();
        let mut ssec = ObjectRecord::default();
        ssec.set_customer(&dek, Some(&key));
        assert_eq!(unlock(&dek, &plain, None).expect("plain").expose(), dek.expose());
        let content = unlock(&dek, &ssec, Some(&key)).expect("right key");
        assert_ne!(content.expose(), dek.expose(), "the content key is not the DEK");
        assert!(matches!(
            unlock(&dek, &ssec, None),
            Err(ObjectError::CustomerKeyRequired)
        ));
        assert!(matches!(
            unlock(&dek, &ssec, Some(&other)),
            Err(ObjectError::CustomerKeyMismatch)
        ));
        assert!(matches!(
            unlock(&dek, &plain, Some(&key)),
            Err(ObjectError::CustomerKeyNotApplicable)
        ));
        // The digest is keyed by the DEK: another object's DEK does not accept the key.
        assert!(matches!(
            unlock(&Key256::random(), &ssec, Some(&key)),
            Err(ObjectError::CustomerKeyMismatch)
        ));
        assert!(!format!("{key:?}").contains('7'), "redacted Debug");
        assert!(keeps_content(&dek, &content, Some(&key.clone())));
        assert!(!keeps_content(&dek, &content, Some(&other)));
        assert!(!keeps_content(&dek, &content, None));
        assert!(keeps_content(&dek, &dek, None));
        assert!(!keeps_content(&dek, &dek, Some(&key)));
    }
}
