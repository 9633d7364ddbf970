//! Only processes holding the cluster secret may join: a chunk server
//! without it or with another one is refused and logged, Raft messages
//! from outside are refused, and nothing changes.

use std::time::{Duration, Instant};

use cairn_testkit::*;

fn wait_for_log(path: &std::path::Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if needles.iter().all(|n| log.contains(n)) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{} never said {needles:?}:\n{log}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn processes_without_the_cluster_secret_are_refused_and_logged() {
    let mut cluster = Cluster::start(3);
    let before = cluster.status().unwrap();
    let term = cluster.member_health(0).unwrap()["term"].clone();

    // Storage nodes with no secret, and with another cluster's.
    let none = cluster.add_chunk(&[("--cluster-secret-file", "")]);
    let other = cluster.dir.path().join("other.secret");
    write_secret(&other, "some other cluster's secret");
    let wrong = cluster.add_chunk(&[("--cluster-secret-file", other.to_str().unwrap())]);
    let meta_log = cluster.member_log(0);
    wait_for_log(
        &meta_log,
        &[
            "refused a request that needs the cluster secret",
            "no cluster token",
            "wrong cluster token",
            "source=127.0.0.1:",
        ],
    );
    for node in [none, wrong] {
        let log = cluster.dir.path().join(format!("chunk-{node}.log"));
        wait_for_log(&log, &["refuses this node", "--cluster-secret-file"]);
    }
    let after = cluster.status().unwrap();
    assert_eq!(after["epoch"], before["epoch"], "the map changed");
    assert_eq!(after["nodes"].as_array().unwrap().len(), 3);

    // Raft and group formation from outside.
    let addr = cluster.metas[0].addr.clone();
    for (method, route) in [
        ("POST", "/v1/raft/vote"),
        ("POST", "/v1/raft/append"),
        ("GET", "/v1/meta/hello"),
    ] {
        let (code, body) = try_http(&addr, method, route, b"{}").unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(code, 401, "{route}: {body}");
        assert!(body.contains("--cluster-secret-file"), "{body}");
    }
    assert_eq!(cluster.member_health(0).unwrap()["term"], term);

    // A secret too short to be one is refused at start, saying why.
    let short = cluster.dir.path().join("short.secret");
    write_secret(&short, "abc");
    let out = std::process::Command::new(cairn_bin())
        .args(["chunk", "--meta", &addr, "--data-dir"])
        .arg(cluster.dir.path().join("never"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--cluster-secret-file", short.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16"), "{err}");
}
