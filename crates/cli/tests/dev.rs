//! `cairn dev`: starts a healthy local cluster, stops cleanly on SIGTERM,
//! and brings the same data back when started again on the same directory;
//! with `--meta 3` it survives the loss of a metadata member.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cairn_testkit::*;

fn start_dev(dir: &std::path::Path, port: u16) -> (Child, String) {
    start_dev_with(dir, port, &[])
}

fn stop(child: Child) {
    stop_dev(child)
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// Process ids whose command line mentions `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some(pid)
        })
        .collect()
}

#[test]
fn dev_with_three_metadata_members_survives_losing_one() {
    let dir = tempfile::tempdir().unwrap();
    // 3 members, 3 chunk servers, the S3 gateway and the web page.
    let port = free_ports_after(7);
    let (child, banner) = start_dev_with(dir.path(), port, &["--meta", "3"]);
    let members: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", port + i)).collect();
    let meta = members.join(",");
    let config = dir.path().join("client.json");
    assert!(banner.contains("metadata member 3"), "{banner}");
    let status = run_cairn(&meta, &config, &["status", "--json"], &[]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");
    let data = random_bytes(100_000, 10);
    assert!(run_cairn(&meta, &config, &["put", "-", "/a"], &data)
        .status
        .success());

    // Kill the leader's process: dev keeps the rest running, and the
    // cluster keeps working.
    let leader = status["leader"].as_u64().unwrap();
    let member_dir = dir.path().join(format!("meta-{leader}"));
    let pids = pids_with(member_dir.to_str().unwrap());
    assert_eq!(pids.len(), 1, "one process for member {leader}: {pids:?}");
    unsafe { libc_kill(pids[0], 9) };
    let out = run_cairn(&meta, &config, &["put", "-", "/b"], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_cairn(&meta, &config, &["cat", "/a"], &[]);
    assert!(out.status.success() && out.stdout == data);
    stop(child);
}

#[test]
fn dev_cluster_starts_stops_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports_after(5);
    let meta = format!("127.0.0.1:{port}");
    let (child, banner) = start_dev(dir.path(), port);
    // The web page after the gateway: its URL printed, its login page served.
    let web_addr = format!("127.0.0.1:{}", port + 5);
    assert!(
        banner.contains(&format!("web page          http://{web_addr}")),
        "{banner}"
    );
    let (code, page) = http_request(&web_addr, "GET", "/login");
    assert!(
        code == 200 && String::from_utf8_lossy(&page).contains("Log in to Cairn"),
        "{code}"
    );
    // An S3 gateway after the chunk servers, with a key for admin whose
    // settings are printed ready to paste; unsigned requests are refused.
    let s3_addr = format!("127.0.0.1:{}", port + 4);
    assert!(
        banner.contains(&format!("S3 gateway        http://{s3_addr}")),
        "{banner}"
    );
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("s3.key")).unwrap()).unwrap();
    let key_id = key["access_key_id"].as_str().unwrap().to_string();
    for setting in [
        format!("AWS_ACCESS_KEY_ID={key_id}"),
        format!("RCLONE_CONFIG_CAIRN_ACCESS_KEY_ID={key_id}"),
        format!("aws_access_key_id=\"{key_id}\""),
    ] {
        assert!(banner.contains(&setting), "{setting} in {banner}");
    }
    let (code, answer) = http_request(&s3_addr, "GET", "/");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        code == 403 && answer.contains("AccessDenied"),
        "{code} {answer}"
    );
    assert!(
        banner.contains(&meta) && banner.contains("chunk server 3"),
        "{banner}"
    );
    // It prints the first admin's password once, and the config to use.
    let config = dir.path().join("client.json");
    let password = std::fs::read_to_string(dir.path().join("admin.password")).unwrap();
    assert!(
        banner.contains(&format!(
            "Created user admin with the password {}",
            password.trim()
        )),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("export CAIRN_CONFIG={}", config.display())),
        "{banner}"
    );
    let data = random_bytes(300_000, 9);
    // The printed commands work as printed: the config names the cluster.
    let out = Command::new(cairn_bin())
        .args(["put", "-", "/kept"])
        .env("CAIRN_CONFIG", &config)
        .env_remove("CAIRN_META")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&data)?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run_cairn(&meta, &config, &["status"], &[]).status.success());
    // A client that talks TLS to this plain cluster is told so.
    let foreign =
        cairn_transport::pki::ensure_dev_pki(&dir.path().join("foreign-ca"), &["127.0.0.1"])
            .unwrap();
    let out = run_cairn(
        &meta,
        &config,
        &["--ca", foreign.ca_cert.to_str().unwrap(), "status"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not speak TLS"),
        "{err}"
    );
    // Its servers share a cluster secret, and the password and the session
    // are kept, each readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    for file in ["cluster.secret", "admin.password", "client.json", "s3.key"] {
        let metadata = std::fs::metadata(dir.path().join(file)).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600, "{file}");
    }
    stop(child);
    assert!(
        !run_cairn(&meta, &config, &["status"], &[]).status.success(),
        "everything stopped"
    );

    let (child, banner) = start_dev(dir.path(), port);
    assert!(!banner.contains("Created user"), "printed once: {banner}");
    assert!(banner.contains(&key_id), "the S3 key is kept: {banner}");
    let out = run_cairn(&meta, &config, &["cat", "/kept"], &[]);
    assert!(
        out.status.success() && out.stdout == data,
        "same data after a restart"
    );
    stop(child);
}

#[test]
fn dev_with_tls_serves_only_tls_and_tells_a_client_without_the_ca_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports_after(7);
    // Three members: Raft and group formation go over TLS too.
    let meta = (0..3)
        .map(|i| format!("127.0.0.1:{}", port + i))
        .collect::<Vec<_>>()
        .join(",");
    let (child, banner) = start_dev_with(dir.path(), port, &["--tls", "--meta", "3"]);
    let ca = dir.path().join("tls").join("ca.pem");
    assert!(
        banner.contains("speaks TLS") && banner.contains(ca.to_str().unwrap()),
        "{banner}"
    );
    // The config cairn dev wrote carries the CA: puts and gets go over TLS.
    let config = dir.path().join("client.json");
    let data = random_bytes(300_000, 11);
    let out = run_cairn(&meta, &config, &["put", "-", "/home/admin/f"], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_cairn(&meta, &config, &["cat", "/home/admin/f"], &[]);
    assert!(out.status.success() && out.stdout == data);
    let report = run_cairn(&meta, &config, &["fsck", "--json"], &[]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["missing"], 0, "{report}");

    // A client without the CA is told to pass --ca, by the metadata
    // service and by a chunk server alike.
    let bare = dir.path().join("bare.json");
    let out = run_cairn(&meta, &bare, &["ls", "/"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--ca"), "{err}");
    let chunk_addr = format!("127.0.0.1:{}", port + 3);
    // A loaded machine may be slow to answer; a few tries, 15 s each.
    let (code, body) = (0..3)
        .find_map(|_| {
            try_http_within(
                &chunk_addr,
                "GET",
                "/v1/health",
                &[],
                Duration::from_secs(15),
            )
        })
        .expect("the chunk server answers plain HTTP on its TLS port");
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("--ca"));
    // With the CA but no login, the refusal is the login one.
    let out = run_cairn(
        &meta,
        &bare,
        &["--ca", ca.to_str().unwrap(), "ls", "/"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cairn login"), "{err}");
    // A server given a certificate but no CA refuses to start, saying so.
    let tls_dir = dir.path().join("tls");
    let out = Command::new(cairn_bin())
        .args(["chunk", "--meta", &meta, "--listen", "127.0.0.1:0"])
        .args(["--data-dir", dir.path().join("lonely").to_str().unwrap()])
        .args(["--tls-cert", tls_dir.join("server.pem").to_str().unwrap()])
        .args(["--tls-key", tls_dir.join("server.key").to_str().unwrap()])
        .env_remove("CAIRN_CA")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--ca"), "{err}");
    let logs: String = (1..=3)
        .map(|i| std::fs::read_to_string(dir.path().join(format!("meta-{i}.log"))).unwrap())
        .collect();
    assert!(
        logs.contains("plain HTTP on a TLS listener"),
        "refusals are logged"
    );
    stop(child);
}

#[test]
fn dev_says_why_a_server_did_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports_after(5);
    // The web page's port taken (bound, not listening, as an outgoing
    // connection's source port would be).
    let web_port = port + 5;
    let taken = bound_not_listening(web_port);
    let out = Command::new(cairn_bin())
        .args(["dev", "--dir", dir.path().to_str().unwrap()])
        .args(["--port", &port.to_string(), "--nodes", "3"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    drop(taken);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("web exited while starting")
            && stderr.contains(&format!("cannot listen on 127.0.0.1:{web_port}"))
            && stderr.contains("Address already in use"),
        "{stderr}"
    );
    assert!(
        pids_with(dir.path().to_str().unwrap()).is_empty(),
        "the servers it started are stopped"
    );
}

/// A TCP socket bound to `port` on 127.0.0.1 that does not listen (std
/// binds only listeners); closed when dropped.
fn bound_not_listening(port: u16) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::bind(
            fd,
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "bind 127.0.0.1:{port}");
        owned
    }
}
