//! `cairn dev`: starts a healthy local cluster, stops cleanly on SIGTERM,
//! and brings the same data back when started again on the same directory.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Starts `cairn dev` and waits for its "is up" line; returns the child and its output so far.
fn start_dev(dir: &std::path::Path, port: u16) -> (Child, String) {
    let mut child = Command::new(CAIRN)
        .args([
            "dev",
            "--dir",
            dir.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--nodes",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains("Press Ctrl-C to stop.") {
        assert!(
            Instant::now() < deadline,
            "cairn dev did not come up: {seen}"
        );
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("cairn dev exited early: {seen}");
        }
        seen.push_str(&line);
    }
    (child, seen)
}

fn stop(mut child: Child) {
    unsafe { libc_kill(child.id() as i32, 15) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "cairn dev exits 0 on SIGTERM: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "cairn dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// A port whose next three ports are free too (cairn dev uses them).
fn free_port_run() -> u16 {
    loop {
        let port = free_port();
        if port < 65000
            && (1..=3).all(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)).is_ok())
        {
            return port;
        }
    }
}

#[test]
fn dev_cluster_starts_stops_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_run();
    let meta = format!("127.0.0.1:{port}");
    let (child, banner) = start_dev(dir.path(), port);
    assert!(
        banner.contains(&meta) && banner.contains("chunk server 3"),
        "{banner}"
    );
    assert_eq!(
        banner.matches(&format!("cairn --meta {meta}")).count(),
        3,
        "three example commands"
    );
    let data = random_bytes(300_000, 9);
    let out = run_cairn(&meta, &["put", "-", "/kept"], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run_cairn(&meta, &["status"], &[]).status.success());
    stop(child);
    assert!(
        !run_cairn(&meta, &["status"], &[]).status.success(),
        "everything stopped"
    );

    let (child, _) = start_dev(dir.path(), port);
    let out = run_cairn(&meta, &["cat", "/kept"], &[]);
    assert!(
        out.status.success() && out.stdout == data,
        "same data after a restart"
    );
    stop(child);
}
