//! Real Cairn clusters for any crate's tests (a dev-dependency): start
//! `cairn meta` and `cairn chunk` processes on loopback with free ports and
//! temporary data directories, run client commands as users, pause, kill
//! and restart processes, damage their files, and check what users see.
//!
//! - `cluster.rs`: [`Cluster`] and the helpers the end-to-end tests share
//! - `dev.rs`: `cairn dev` started on free ports and stopped
//! - `s3.rs`: an S3 gateway beside a cluster, and access keys
//! - `mount.rs`: `cairn mount` beside a cluster, unmounted when dropped
//! - `web.rs`: `cairn web` beside a cluster, and raw HTTP exchanges
//! - `lincheck.rs`: a linearizability checker for register histories
//!
//! The `cairn` binary is the one cargo built beside the test (the
//! `CAIRN_BIN` variable names another); a crate whose tests do not build it
//! gets it built once, on first use.

pub mod cluster;
pub mod dev;
pub mod lincheck;
pub mod mount;
pub mod s3;
pub mod web;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use cluster::*;
pub use dev::{free_ports_after, start_dev_with, stop_dev};
pub use mount::{cannot_mount, is_mounted, Mounted};
pub use s3::{AccessKey, S3Gateway};
pub use web::{http_exchange, Answer, WebServer};

/// The path of the `cairn` binary the tests run.
pub fn cairn_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CAIRN_BIN") {
            return bin.to_string_lossy().into_owned();
        }
        // A test runs from target/PROFILE/deps/; the binary is in target/PROFILE.
        let exe = std::env::current_exe().expect("the test knows its own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/PROFILE/deps");
        let bin = profile_dir.join("cairn");
        if !bin.exists() {
            build_cairn(profile_dir);
        }
        bin.to_string_lossy().into_owned()
    })
}

/// Builds the `cairn` binary into `profile_dir` (target/debug or
/// target/release), as `cargo test` in the cli crate would.
fn build_cairn(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "-p", "cairn-cli", "--bin", "cairn"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        command.arg("--target-dir").arg(PathBuf::from(target));
    }
    let status = command
        .status()
        .expect("cargo runs to build the cairn binary");
    assert!(status.success(), "building the cairn binary failed");
}
