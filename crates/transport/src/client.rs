//! The TLS settings of Cairn's HTTP clients.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Plain HTTP, or TLS trusting only the cluster's CA.
#[derive(Clone, Default)]
pub struct ClientTls {
    config: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.config.is_some() {
            "ClientTls(https)"
        } else {
            "ClientTls(http)"
        })
    }
}

impl ClientTls {
    /// Plain HTTP.
    pub fn plain() -> ClientTls {
        ClientTls::default()
    }

    /// TLS, trusting the CA certificates in the PEM file `ca_path` (and no
    /// others: a cluster has its own CA).
    pub fn from_ca_file(ca_path: &Path) -> anyhow::Result<ClientTls> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_path)
            .with_context(|| format!("cannot read the CA file {} (--ca)", ca_path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} (--ca) is not a PEM certificate", ca_path.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots.add(cert).with_context(|| {
                format!(
                    "{} (--ca) holds a certificate rustls cannot use",
                    ca_path.display()
                )
            })?;
        }
        if roots.is_empty() {
            anyhow::bail!(
                "{} (--ca) holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
                ca_path.display()
            );
        }
        let config = rustls::ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Some(Arc::new(config)),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.config.is_some()
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.is_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// `scheme://addr` for a `host:port`.
    pub fn base_url(&self, addr: &str) -> String {
        format!("{}://{addr}", self.scheme())
    }

    /// A builder with these settings. Every HTTP client in Cairn is made
    /// here: reqwest needs a process-wide crypto provider (ring, installed
    /// on first use) even for plain HTTP.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        install_crypto_provider();
        let config = match &self.config {
            Some(config) => config.as_ref().clone(),
            // Plain HTTP needs no roots. Left alone, reqwest would load and
            // parse the system's CA store for every client built: ~30 ms of
            // CPU each in a debug build, several times per `cairn` command.
            None => no_roots().clone(),
        };
        reqwest::Client::builder().tls_backend_preconfigured(config)
    }
}

/// A TLS configuration that trusts nobody, for clients that speak plain HTTP.
fn no_roots() -> &'static rustls::ClientConfig {
    static CONFIG: std::sync::OnceLock<rustls::ClientConfig> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        rustls::ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    })
}

/// Makes ring the process's default rustls provider (once; a provider
/// already installed is kept).
pub fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
