//! SigV4 credentials of the proxy's clients (`[[clients]]`). s3s verifies header and presigned
//! signatures (in constant time); this only answers "what is the secret of this access key".
//!
//! An unknown access key gets a random secret (drawn once per process) instead of an error, so
//! s3s computes and compares a signature as for a known key and answers the same
//! `SignatureDoesNotMatch` (403): a stranger cannot tell which access keys exist.

use std::collections::HashMap;

use s3s::S3Result;
use s3s::auth::{S3Auth, SecretKey};

use crate::config::ClientConfig;
use crate::secret::SecretString;

/// The configured client credentials.
pub struct ClientAuth {
    clients: HashMap<String, SecretString>,
    /// What an unknown access key is checked against: matches no signature anyone can make.
    decoy: SecretString,
}

impl ClientAuth {
    /// From the configuration's `[[clients]]`.
    pub fn new(clients: &[ClientConfig]) -> Self {
        Self {
            clients: clients
                .iter()
                .map(|c| (c.access_key.clone(), c.secret_key.clone()))
                .collect(),
            decoy: {
                let mut bytes = [0u8; 32];
                rand::fill(&mut bytes);
                let decoy = SecretString::new(hex::encode(bytes));
                zeroize::Zeroize::zeroize(&mut bytes);
                decoy
            },
        }
    }
}

impl ClientAuth {
    /// The secret of `access_key`, or the decoy for an unknown key (a signature checked
    /// against it fails exactly like a wrong one). Also used by POST Object ([`super::post`]),
    /// which s3s never sees.
    pub(super) fn secret(&self, access_key: &str) -> &SecretString {
        self.clients.get(access_key).unwrap_or(&self.decoy)
    }
}

#[async_trait::async_trait]
impl S3Auth for ClientAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        Ok(SecretKey::from(self.secret(access_key).expose()))
    }
}
