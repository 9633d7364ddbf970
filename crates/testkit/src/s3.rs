//! A `cairn s3` gateway beside a test [`Cluster`], and S3 access keys for
//! its users. Dropping the gateway kills its process.

use std::path::Path;
use std::process::Child;

use serde_json::Value;

use crate::cluster::{free_port, run_cairn, Cluster};

pub struct S3Gateway {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub addr: String,
    child: Child,
}

/// An access key as `cairn key create --json` prints it.
#[derive(Debug, Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl Cluster {
    /// Starts an S3 gateway on a free port, and waits until it listens.
    pub fn start_s3(&self, args: &[&str]) -> S3Gateway {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut all: Vec<String> = vec![
            "s3".into(),
            "--meta".into(),
            self.meta_addr.clone(),
            "--listen".into(),
            addr.clone(),
            "--cluster-secret-file".into(),
            self.secret_file(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let child = self.spawn_listening("s3", &all, &addr);
        S3Gateway {
            endpoint: format!("http://{addr}"),
            addr,
            child,
        }
    }

    /// A new access key for the user whose session is in `config`.
    pub fn create_key(&self, config: &Path) -> AccessKey {
        let out = run_cairn(&self.meta_addr, config, &["key", "create", "--json"], &[]);
        assert!(
            out.status.success(),
            "cairn key create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key: Value = serde_json::from_slice(&out.stdout).unwrap();
        AccessKey {
            id: key["access_key_id"].as_str().unwrap().to_string(),
            secret: key["secret_access_key"].as_str().unwrap().to_string(),
        }
    }
}

impl Drop for S3Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
