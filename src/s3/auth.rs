//! SigV4 credentials of the proxy's clients (`[[clients]]`). s3s verifies header and presigned
//! signatures (in constant time); this only answers "what is the secret of this access key".

use std::collections::HashMap;

use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Result, s3_error};

use crate::config::ClientConfig;
use crate::secret::SecretString;

/// The configured client credentials.
pub struct ClientAuth {
    clients: HashMap<String, SecretString>,
}

impl ClientAuth {
    /// From the configuration's `[[clients]]`.
    pub fn new(clients: &[ClientConfig]) -> Self {
        Self {
            clients: clients
                .iter()
                .map(|c| (c.access_key.clone(), c.secret_key.clone()))
                .collect(),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for ClientAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.clients.get(access_key) {
            Some(secret) => Ok(SecretKey::from(secret.expose())),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}
