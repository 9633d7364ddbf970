//! A private certificate authority for a local cluster (`cairn dev --tls`):
//! a CA and one server certificate for the loopback names, made once and
//! kept beside the cluster's data.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// Where the files of a private CA are.
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The CA certificate clients trust (`--ca`).
    pub ca_cert: PathBuf,
    /// The certificate and key every server presents.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Makes (unless present) in `dir` a CA and a server certificate for
/// `hosts` (names or IP addresses) signed by it. Keys are written mode 0600.
pub fn ensure_dev_pki(dir: &Path, hosts: &[&str]) -> anyhow::Result<DevPki> {
    let pki = DevPki {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    if pki.ca_cert.exists() && pki.server_cert.exists() && pki.server_key.exists() {
        return Ok(pki);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca_key = KeyPair::generate().context("cannot make the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cairn dev CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let server_key = KeyPair::generate().context("cannot make the server key")?;
    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let mut server_params = CertificateParams::new(names)?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "cairn dev server");
    let server = server_params.signed_by(&server_key, &ca)?;

    write_file(
        &pki.server_key,
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&pki.server_cert, server.pem().as_bytes(), 0o644)?;
    write_file(&pki.ca_cert, ca.pem().as_bytes(), 0o644)?;
    Ok(pki)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
