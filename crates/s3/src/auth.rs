//! Checking request signatures: s3s verifies SigV4 (headers, presigned
//! URLs, aws-chunked bodies, clock skew) with the secret this module
//! fetches from the metadata service, which opens it for cluster processes
//! only and logs each time.
//!
//! Secrets are cached for [`SECRET_CACHE_TTL`] so that a burst of requests
//! costs one fetch; a removed key still fails at once, because every
//! namespace call made for it names the key and the metadata service
//! checks that it exists.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_client::MetaClient;
use cairn_proto::ErrorCode;
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

/// How long a fetched secret is used before it is fetched again.
pub const SECRET_CACHE_TTL: Duration = Duration::from_secs(10);
/// Most secrets cached; past it the cache starts over.
pub const MAX_CACHED_SECRETS: usize = 10_000;

pub struct KeyAuth {
    /// The gateway's own client: the cluster token, acting for no user.
    meta: MetaClient,
    cache: Mutex<HashMap<String, (Instant, String)>>,
}

impl KeyAuth {
    pub fn new(meta: MetaClient) -> KeyAuth {
        KeyAuth {
            meta,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if cairn_proto::api::validate_access_key_id(access_key).is_err() {
            return Err(s3_error!(
                InvalidAccessKeyId,
                "access key {:?} is not a Cairn access key; make one with `cairn key create`",
                access_key.chars().take(40).collect::<String>()
            ));
        }
        if let Some((at, secret)) = self.cache.lock().expect("secret cache").get(access_key) {
            if at.elapsed() < SECRET_CACHE_TTL {
                return Ok(SecretKey::from(secret.clone()));
            }
        }
        match self.meta.key_secret(access_key).await {
            Ok(found) => {
                let mut cache = self.cache.lock().expect("secret cache");
                if cache.len() >= MAX_CACHED_SECRETS {
                    cache.clear();
                }
                cache.insert(
                    access_key.to_string(),
                    (Instant::now(), found.secret_access_key.clone()),
                );
                Ok(SecretKey::from(found.secret_access_key))
            }
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                self.cache.lock().expect("secret cache").remove(access_key);
                Err(s3_error!(
                    InvalidAccessKeyId,
                    "access key {access_key} does not exist (it was removed, or never made); see `cairn key list`"
                ))
            }
            Err(e) => {
                tracing::warn!(access_key, error = %e, "cannot fetch the secret of an access key");
                Err(s3_error!(
                    ServiceUnavailable,
                    "cannot check access key {access_key} with the metadata service: {e}"
                ))
            }
        }
    }
}
