//! `cairn dev` as tests run it: started on a block of free ports, read up
//! to its banner, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cairn_bin;
use crate::cluster::{free_port, libc_kill};

/// Starts `cairn dev --dir DIR --port PORT --nodes 3 EXTRA...` and waits
/// for its banner; returns the child and what it printed.
pub fn start_dev_with(dir: &std::path::Path, port: u16, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(cairn_bin())
        .args([
            "dev",
            "--dir",
            dir.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--nodes",
            "3",
        ])
        .args(extra)
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

pub fn stop_dev(mut child: Child) {
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

/// A port whose next `count` ports are free too.
pub fn free_ports_after(count: u16) -> u16 {
    loop {
        let port = free_port();
        if port < 65000
            && (1..=count).all(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)).is_ok())
        {
            return port;
        }
    }
}
