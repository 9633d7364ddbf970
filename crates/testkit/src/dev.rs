//! `cairn dev` as tests run it: started on a block of free ports, read up
//! to its banner, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cairn_bin;
use crate::cluster::libc_kill;

/// Starts `cairn dev --dir DIR --port PORT --nodes 3 EXTRA...` and waits
/// for its banner; returns the child and what it printed. Its errors go to
/// `DIR/dev-stderr.log`, shown if it exits early.
pub fn start_dev_with(dir: &std::path::Path, port: u16, extra: &[&str]) -> (Child, String) {
    let stderr_path = dir.join("dev-stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
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
        .stderr(stderr)
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
            let errors = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("cairn dev exited early: {seen}\n--- its stderr\n{errors}");
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

/// A port whose next `count` ports are free too (see
/// [`crate::cluster::free_port_block`]).
pub fn free_ports_after(count: u16) -> u16 {
    crate::cluster::free_port_block(count)
}
