//! The accept loop of every Cairn server.
//!
//! One task per connection; HTTP/1.1, so a connection carries one request
//! at a time (per-connection concurrency is 1) and the connection limit
//! bounds the requests in progress. Headers are bounded in size and in the
//! time a client may take to send them; a TLS handshake is bounded in time.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at once; more are closed at once (and logged).
    pub max_connections: usize,
    /// Bytes of request line and headers. hyper checks between reads, so a
    /// client may get up to twice this read before it is refused (431).
    pub max_header_bytes: usize,
    /// Time a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Time a client may take to finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// Time open connections get to finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    /// 1024 connections (each a task of a few KiB, and at most one request
    /// in flight); 64 KiB of headers (ours are under 1 KiB); 10 s to send
    /// them or to finish a handshake.
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A server's certificate and key, ready to accept TLS connections.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(<certificate and key>)")
    }
}

impl ServerTls {
    /// Loads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1).
    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<ServerTls> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
            .with_context(|| format!("cannot read the certificate file {}", cert_path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} is not a PEM certificate chain", cert_path.display()))?;
        if certs.is_empty() {
            anyhow::bail!(
                "{} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
                cert_path.display()
            );
        }
        let key = PrivateKeyDer::from_pem_file(key_path).with_context(|| {
            format!(
                "cannot read a PEM private key from {} (PKCS#8, PKCS#1 or SEC1)",
                key_path.display()
            )
        })?;
        let config = rustls::ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .with_context(|| {
                format!(
                    "the key in {} does not fit the certificate in {}",
                    key_path.display(),
                    cert_path.display()
                )
            })?;
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Binds `listen`, with an error that says what to do.
pub async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen}; is another process using it? choose one with --listen")
    })
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open
/// connections finish for `limits.shutdown_grace`. Every request carries
/// the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<ServerTls>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, source) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tracing::warn!(%e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                %source,
                limit = limits.max_connections,
                "refused a connection: too many open connections"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(source));
                    let mut app = app.clone();
                    async move { app.call(request).await }
                });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                // Not max_buf_size: it also caps the buffers of bodies.
                .max_header_size(limits.max_header_bytes)
                .max_headers(MAX_HEADERS);
            let Some(tls) = tls else {
                let connection = http.serve_connection(TokioIo::new(stream), service);
                let _ = watcher.watch(connection).await;
                return;
            };
            let Some(stream) = handshake(stream, source, &tls, limits.handshake_timeout).await
            else {
                return;
            };
            let connection = http.serve_connection(TokioIo::new(stream), service);
            let _ = watcher.watch(connection).await;
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("connections still open after the shutdown grace period; closing them");
        }
    }
    Ok(())
}

/// Headers per request (ours send fewer than 10).
const MAX_HEADERS: usize = 64;

/// A TLS ClientHello starts with this byte (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Completes the TLS handshake, or answers a plain-HTTP request with what
/// to do. `None` when the connection is done with.
async fn handshake(
    stream: TcpStream,
    source: SocketAddr,
    tls: &ServerTls,
    limit: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(limit, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        tracing::warn!(%source, reason = "plain HTTP on a TLS listener", "refused a request");
        refuse_plain_http(stream).await;
        return None;
    }
    match tokio::time::timeout(limit, tls.acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::warn!(%source, reason = %e, "refused a TLS handshake");
            None
        }
        Err(_) => {
            tracing::warn!(%source, reason = "handshake took too long", "refused a TLS handshake");
            None
        }
    }
}

/// The answer to plain HTTP on a TLS port, in plain HTTP, as the JSON error
/// every API answers with.
async fn refuse_plain_http(mut stream: TcpStream) {
    let error = cairn_proto::ApiError::new(
        cairn_proto::ErrorCode::InvalidArgument,
        "this server speaks only TLS (https): give the client the cluster's CA certificate with --ca FILE \
         (cairn dev --tls writes DIR/tls/ca.pem)",
    );
    let body = serde_json::to_string(&error).expect("errors serialize to JSON");
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
