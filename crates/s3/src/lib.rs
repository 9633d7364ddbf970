//! `cairn s3`: an S3-compatible gateway over the file API. Stateless: run
//! any number, each a cluster process (it holds the cluster secret) that
//! acts, for each request, as the user of the access key that signed it.
//!
//! - `gateway.rs`: [`Gateway`], the `S3` trait: which module does what
//! - `buckets.rs`: buckets are directories `/buckets/NAME`
//! - `objects.rs`: put, get, head, delete, copy; conditions; pruning
//! - `listing.rs`: ListObjects v1/v2 in S3's byte order
//! - `multipart.rs`: uploads staged as part files, joined without copying
//! - `attrs.rs`: S3's headers, metadata, ETags and checksums in xattrs
//! - `names.rs`: bucket and key rules, keys as paths
//! - `auth.rs`: secrets for SigV4 checks, fetched from the metadata service
//! - `body.rs`: request bodies hashed as they stream into chunks, and
//!   checked against the checksums, trailers and Content-MD5 they promised
//! - `errors.rs`: Cairn's errors as S3 error codes

#[macro_use]
mod attrs;
mod auth;
mod body;
mod buckets;
mod errors;
mod gateway;
mod listing;
mod multipart;
mod names;
mod objects;

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::Router;
use cairn_client::{Files, MetaClient};

pub use gateway::{Gateway, GatewayLimits};
pub use names::{BUCKETS_DIR, UPLOADS_DIR};

/// How a gateway runs.
pub struct S3Config {
    pub listen: String,
    /// The metadata service, reached with the cluster token.
    pub meta: MetaClient,
    pub tls: Option<cairn_transport::ServerTls>,
    pub limits: GatewayLimits,
    /// How often abandoned multipart uploads are looked for.
    pub sweep_interval: Duration,
}

/// Serves S3 on `config.listen` until `shutdown` resolves.
pub async fn run(
    config: S3Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    cairn_transport::install_crypto_provider();
    let listener = cairn_transport::bind(&config.listen).await?;
    let addr = listener.local_addr()?;
    let system = Files::new(config.meta.clone());
    let gateway = Gateway::new(system, config.limits.clone());
    gateway
        .ensure_layout()
        .await
        .map_err(|e| anyhow::anyhow!("cannot make {BUCKETS_DIR}: {e}"))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(gateway.clone());
    builder.set_auth(auth::KeyAuth::new(config.meta.clone()));
    let service = builder.build();
    let app = cairn_telemetry::instrument(Router::new().fallback(move |request: Request| {
        let mut service = service.clone();
        async move {
            match tower_service::Service::call(&mut service, request).await {
                Ok(response) => response.map(Body::new).into_response(),
                Err(e) => {
                    tracing::warn!(error = ?e, "the S3 service failed a request");
                    (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error",
                    )
                        .into_response()
                }
            }
        }
    }));
    let sweeper = tokio::spawn(sweep_loop(gateway, config.sweep_interval));
    if config.tls.is_none() {
        cairn_transport::warn_plain_http(&addr.to_string());
    }
    tracing::info!(%addr, tls = config.tls.is_some(), "S3 gateway listening");
    let served = cairn_transport::serve(listener, app, config.tls, s3_limits(), shutdown).await;
    sweeper.abort();
    served
}

/// Listener limits: those of every server, with room for S3's headers
/// (user metadata alone may take 2 KiB; presigned and SigV4 headers more).
fn s3_limits() -> cairn_transport::Limits {
    cairn_transport::Limits::default()
}

async fn sweep_loop(gateway: Gateway, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match gateway.sweep_uploads().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed abandoned multipart uploads"),
            Err(e) => tracing::warn!(error = %e, "cannot sweep abandoned multipart uploads"),
        }
    }
}
