//! How Cairn's processes talk HTTP: the servers' accept loop (TLS, limits on
//! connections and headers, graceful shutdown) and the TLS settings of the
//! HTTP clients. Shared by the metadata service, the chunk servers and the
//! client library, which must not depend on each other.
//!
//! TLS is all or nothing per cluster: servers started with a certificate
//! speak only TLS, and clients given the cluster's CA (`--ca`) speak only
//! TLS (`https://`) and trust only that CA. A plain-HTTP request that
//! reaches a TLS listener gets a plain-HTTP answer saying to pass `--ca`.

mod client;
pub mod pki;
mod server;

pub use client::{install_crypto_provider, ClientTls};
pub use server::{bind, serve, Limits, ServerTls};

/// The ring crypto provider (DESIGN: ring everywhere; aws-lc builds slowly).
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// Says at start that a listener speaks plain HTTP: fine on loopback for
/// development, a warning anywhere else (passwords, tokens and data cross
/// the network in clear text).
pub fn warn_plain_http(listen_addr: &str) {
    let loopback = listen_addr
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    if loopback {
        tracing::info!(
            listen = listen_addr,
            "plain HTTP on loopback, for local development; give --tls-cert and --tls-key (and --ca) \
             to serve TLS"
        );
    } else {
        tracing::warn!(
            listen = listen_addr,
            "plain HTTP: passwords, tokens and data cross the network in clear text; give --tls-cert \
             and --tls-key (and --ca to every process) to serve TLS"
        );
    }
}

/// Refuses a server given a certificate but no CA, or a CA but no
/// certificate: a cluster speaks TLS everywhere or nowhere.
pub fn check_tls_settings(server: Option<&ServerTls>, client: &ClientTls) -> anyhow::Result<()> {
    if server.is_some() == client.is_tls() {
        return Ok(());
    }
    anyhow::bail!(
        "give --tls-cert and --tls-key together with --ca (the CA that signed every server's \
         certificate), or none of them: a cluster speaks TLS everywhere or nowhere"
    )
}
