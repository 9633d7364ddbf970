//! Fault injection, end to end: real processes on 127.0.0.1 are killed,
//! stopped, corrupted, filled and added, and the cluster must heal itself
//! with nobody running a command. Every wait is bounded.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cairn_testkit::*;
use serde_json::Value;

/// The longest any test waits for the cluster to heal.
const HEAL_LIMIT: Duration = Duration::from_secs(90);

/// Runs `each` on every file, from `threads` threads at once.
fn in_parallel(files: &[(String, Vec<u8>)], threads: usize, each: impl Fn(&str, &[u8]) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some((path, data)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    each(path, data);
                }
            });
        }
    });
}

/// Puts `files` concurrently from `threads` threads.
fn put_all(cluster: &Cluster, files: &[(String, Vec<u8>)], threads: usize) {
    in_parallel(files, threads, |path, data| {
        put_bytes(cluster, data, path);
    });
}

/// Reads every file back (concurrently) and compares it byte for byte.
fn check_all(cluster: &Cluster, files: &[(String, Vec<u8>)], threads: usize) {
    in_parallel(files, threads, |path, data| {
        assert!(get_bytes(cluster, path) == data, "{path} changed");
    });
}

/// Waits until every node serving data has checked the current map and
/// none reports an under-replicated chunk.
fn wait_healed(cluster: &Cluster, what: &str) -> Value {
    cluster.wait_for_within(HEAL_LIMIT, what, |s| {
        s["repair_settled"] == true && s["under_replicated_chunks"] == 0
    })
}

/// `cairn fsck --json`, which must exit 0.
fn fsck(cluster: &Cluster) -> Value {
    cluster.json(&["fsck", "--json"])
}

/// Polls fsck until every chunk is healthy (repairs may still be landing
/// when status first looks settled).
fn wait_fsck_clean(cluster: &Cluster) -> Value {
    let deadline = Instant::now() + HEAL_LIMIT;
    loop {
        let report = fsck(cluster);
        if report["healthy"] == report["chunks"] && report["chunks"].as_u64() > Some(0) {
            assert_eq!(report["missing"], 0);
            assert_eq!(report["corrupt"], 0);
            assert_eq!(report["under_replicated"], 0);
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "fsck not clean in time: {report}; logs in {}",
            cluster.dir.path().display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn node_status<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("node {id} not in status"))
}

fn report_sum(status: &Value, field: &[&str]) -> u64 {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let mut v = &n["report"];
            for f in field {
                v = &v[*f];
            }
            v.as_u64().unwrap_or(0)
        })
        .sum()
}

/// A mix of small files and files of several chunks (chunk size 64 KiB).
fn mixed_files(count: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let len = if i % 3 == 0 {
                100 * 1024 + i * 1013 // 2-3 chunks
            } else {
                1 + i * 37 % 9000
            };
            (format!("/f{i:03}"), random_bytes(len, seed + i as u64))
        })
        .collect()
}

/// Four chunk servers (64 KiB chunks, down after 2 s, repair every 1 s)
/// holding `count` mixed files, fully placed.
fn four_loaded_nodes(count: usize, seed: u64) -> (Cluster, Vec<(String, Vec<u8>)>) {
    let cluster = Cluster::start_full(
        4,
        &["--chunk-size", "64KiB", "--down-after", "2s"],
        &[("--repair-interval", "1s")],
    );
    let files = mixed_files(count, seed);
    put_all(&cluster, &files, 8);
    wait_healed(&cluster, "initial placement");
    (cluster, files)
}

#[test]
fn killed_node_is_re_replicated_to_full_strength() {
    let (mut cluster, files) = four_loaded_nodes(200, 1);
    let victim = cluster.node_id(0);
    let killed_at = Instant::now();
    cluster.kill_chunk(0);
    cluster.wait_for("the killed node to be down", |s| {
        node_status(s, &victim)["state"] == "down"
    });
    let status = wait_healed(&cluster, "re-replication after the kill");
    eprintln!(
        "re-replicated {} bytes in {:.1}s after the kill",
        status["moved_bytes_total"],
        killed_at.elapsed().as_secs_f64()
    );
    let report = wait_fsck_clean(&cluster);
    assert!(report["chunks"].as_u64().unwrap() > 200);
    // Every chunk on 3 live nodes: fsck counts healthy only with a good
    // copy on each of its 3 targets, and the dead node is no target.
    for (path, _) in files.iter().step_by(17) {
        for (targets, holders) in locations(&cluster, path) {
            assert_eq!(targets.len(), 3);
            assert!(!targets.contains(&victim));
            assert!(targets.iter().all(|t| holders.contains(t)), "{path}");
        }
    }
    check_all(&cluster, &files, 8);
}

#[test]
fn killing_a_node_mid_upload_loses_no_acknowledged_file() {
    let mut cluster =
        Cluster::start_full(4, &["--chunk-size", "256KiB", "--down-after", "2s"], &[]);
    let meta_addr = cluster.meta_addr.clone();
    let config = cluster.config.clone();
    let outcomes: Vec<(String, Vec<u8>, bool)> = std::thread::scope(|scope| {
        let uploads: Vec<_> = (0..8)
            .map(|i| {
                let (meta_addr, config) = (&meta_addr, &config);
                scope.spawn(move || {
                    let mut results = Vec::new();
                    for j in 0..3 {
                        let path = format!("/up-{i}-{j}");
                        let data = random_bytes(3 * MIB / 2 + i * 4099, (i * 10 + j) as u64);
                        let out = run_cairn(meta_addr, config, &["put", "-", &path], &data);
                        results.push((path, data, out.status.success()));
                    }
                    results
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(400));
        cluster.kill_chunk(1);
        uploads
            .into_iter()
            .flat_map(|u| u.join().unwrap())
            .collect()
    });
    let succeeded: Vec<_> = outcomes.iter().filter(|o| o.2).collect();
    eprintln!(
        "{} of {} uploads succeeded",
        succeeded.len(),
        outcomes.len()
    );
    assert!(!succeeded.is_empty());
    for (path, data, ok) in &outcomes {
        if *ok {
            assert!(get_bytes(&cluster, path) == *data, "{path} changed");
        } else {
            let err = cluster.fails(&["stat", path]);
            assert!(err.contains("does not exist"), "{path}: {err}");
        }
    }
    let listed = cluster.ok(&["ls", "/"]);
    assert_eq!(
        listed.lines().filter(|name| *name != "home/").count(),
        succeeded.len()
    );
    wait_healed(&cluster, "repair after the mid-upload kill");
    wait_fsck_clean(&cluster);
}

#[test]
fn returning_node_is_trimmed_and_filled() {
    let mut cluster = Cluster::start_full(
        4,
        &[
            "--chunk-size",
            "64KiB",
            "--down-after",
            "2s",
            "--up-after",
            "1s",
        ],
        &[("--repair-interval", "1s"), ("--collect-grace", "3s")],
    );
    let mut files = mixed_files(30, 100);
    put_all(&cluster, &files, 4);
    wait_healed(&cluster, "initial placement");
    let away = cluster.node_id(3);
    cluster.stop_chunk(3);
    cluster.wait_for("the stopped node to be down", |s| {
        node_status(s, &away)["state"] == "down"
    });
    // While it is away: delete ten files and overwrite five.
    for (path, _) in files.drain(..10) {
        cluster.ok(&["rm", &path]);
    }
    for (i, (path, data)) in files.iter_mut().take(5).enumerate() {
        *data = random_bytes(data.len() + 70_000, 900 + i as u64);
        let out = cluster.cairn_with_stdin(&["put", "--force", "-", path], data);
        assert!(out.status.success());
    }
    wait_healed(&cluster, "repair while the node is away");
    cluster.start_chunk(3);
    cluster.wait_for("the node to be up again", |s| {
        node_status(s, &away)["state"] == "up"
    });
    // It must end up holding exactly the referenced chunks it is a target of.
    let deadline = Instant::now() + HEAL_LIMIT;
    loop {
        let mut wanted = BTreeSet::new();
        for (path, _) in &files {
            let stat = cluster.json(&["stat", "--json", "--locations", path]);
            for loc in stat["locations"].as_array().unwrap() {
                if loc["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t == &away)
                {
                    wanted.insert(loc["id"].as_str().unwrap().to_string());
                }
            }
        }
        let held = chunks_on_disk(&cluster, 3);
        if held == wanted && !wanted.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node holds {} chunks, should hold {} ({} extra, {} missing); logs in {}",
            held.len(),
            wanted.len(),
            held.difference(&wanted).count(),
            wanted.difference(&held).count(),
            cluster.dir.path().display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_fsck_clean(&cluster);
    check_all(&cluster, &files, 4);
    let status = cluster.status().unwrap();
    assert!(report_sum(&status, &["collected_chunks_total"]) > 0);
}

#[test]
fn scrub_finds_and_replaces_every_flipped_chunk() {
    let cluster = Cluster::start_full(
        3,
        &["--chunk-size", "64KiB"],
        &[("--scrub-interval", "3s"), ("--repair-interval", "1m")],
    );
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("/s{i}"), random_bytes(256 * 1024, 500 + i)))
        .collect();
    put_all(&cluster, &files, 5);
    // Ten distinct chunks, each rotted on one node only.
    let mut rotted = Vec::new();
    for (path, _) in &files {
        for (k, id) in chunk_ids(&cluster, path).into_iter().take(2).enumerate() {
            let node = (rotted.len() + k) % 3;
            let file = chunk_file(&cluster, node, &id);
            rot(&file);
            rotted.push((node, id, file));
        }
    }
    assert_eq!(rotted.len(), 10);
    let status = cluster.wait_for_within(HEAL_LIMIT, "scrub to replace 10 chunks", |s| {
        report_sum(s, &["scrub", "replaced_chunks_total"]) >= 10
    });
    assert_eq!(report_sum(&status, &["scrub", "corrupt_chunks_total"]), 10);
    for (_, id, file) in &rotted {
        let data = std::fs::read(file).unwrap();
        assert_eq!(blake3::hash(&data).to_hex().as_str(), id, "replaced copy");
    }
    let mut found_by_scrub = 0.0;
    let mut quarantined = 0;
    for server in &cluster.chunks {
        let metrics = http_get(&server.addr, "/metrics");
        found_by_scrub += metric_value(&metrics, "cairn_chunk_corrupt_total{found_by=\"scrub\"}");
        quarantined += std::fs::read_dir(server.data_dir.join("quarantine"))
            .unwrap()
            .count();
    }
    assert_eq!(found_by_scrub, 10.0, "the scrubber found all ten");
    assert_eq!(quarantined, 10, "each bad copy is kept aside for a person");
    check_all(&cluster, &files, 5);
    wait_fsck_clean(&cluster);
}

#[test]
fn new_nodes_take_their_share_while_files_stay_readable() {
    let mut cluster = Cluster::start_full(
        3,
        &["--chunk-size", "64KiB"],
        &[("--repair-interval", "1s")],
    );
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("/r{i:02}"), random_bytes(256 * 1024, 700 + i)))
        .collect();
    put_all(&cluster, &files, 8);
    wait_healed(&cluster, "initial placement");
    let count = |s: &Value| -> u64 {
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["chunk_count"].as_u64().unwrap())
            .sum()
    };
    // 4 chunks of 64 KiB per file, 3 copies each. Counted from the files,
    // not from a status: a heartbeat may not yet report the last puts.
    let copies = (files.len() * 4 * 3) as u64;
    let before = cluster.wait_for_within(HEAL_LIMIT, "every copy reported", |s| count(s) == copies);
    let pushed_before = report_sum(&before, &["repair", "pushed_chunks_total"]);

    // Readers run through the whole move; any failure fails the test.
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let meta_addr = cluster.meta_addr.clone();
    let config = cluster.config.clone();
    std::thread::scope(|scope| {
        for t in 0..2 {
            let (stop, files, reads, meta_addr, config) =
                (&stop, &files, &reads, &meta_addr, &config);
            scope.spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let (path, data) = &files[i % files.len()];
                    let out = run_cairn(meta_addr, config, &["cat", path], &[]);
                    assert!(
                        out.status.success() && out.stdout == *data,
                        "{path} unreadable during the move: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 7;
                }
            });
        }
        // Stops the readers even if a wait below panics, so the scope ends.
        let _stop_readers = StopOnDrop(&stop);
        cluster.add_chunk(&[]);
        cluster.add_chunk(&[]);
        cluster.wait_nodes_up(5);
        wait_healed(&cluster, "rebalancing onto the new nodes");
    });
    wait_fsck_clean(&cluster);
    // Old copies are handed off once every node agrees on the new map.
    let after =
        cluster.wait_for_within(HEAL_LIMIT, "old copies handed off", |s| count(s) == copies);
    let new_ids = [cluster.node_id(3), cluster.node_id(4)];
    let on_new: u64 = new_ids
        .iter()
        .map(|id| node_status(&after, id)["chunk_count"].as_u64().unwrap())
        .sum();
    let moved = report_sum(&after, &["repair", "pushed_chunks_total"]) - pushed_before;
    let fraction = on_new as f64 / copies as f64;
    eprintln!(
        "pushed {moved} copies for {copies} ({:.3}); the new nodes hold {on_new} ({fraction:.3}, ideal 0.400); {} reads during the move",
        moved as f64 / copies as f64,
        reads.load(Ordering::Relaxed)
    );
    assert!(
        (0.3..=0.5).contains(&fraction),
        "fraction on new nodes {fraction}"
    );
    // Nothing else moves: no old node gained a copy.
    for i in 0..3 {
        let id = cluster.node_id(i);
        let was = node_status(&before, &id)["chunk_count"].as_u64().unwrap();
        let is = node_status(&after, &id)["chunk_count"].as_u64().unwrap();
        assert!(is <= was, "old node {i} went from {was} to {is} copies");
    }
}

#[test]
fn full_node_refuses_writes_and_still_serves_reads() {
    // The big nodes have room to spare while the small one fills, even when
    // a loaded machine notices it is full a few files late. Placement is
    // proportional to capacity, so every node fills at about the same
    // rate; what makes the small one full first is that "full" is two
    // chunks of room: with 1 MiB chunks that is a quarter of the small
    // node (full at 6 of its 8 chunks) and 2% of a big one. (With 64 KiB
    // chunks the small node was full only at 98%, which it reached within
    // the 120 files only when its ring points fell its way.)
    let mut cluster =
        Cluster::start_full(3, &["--chunk-size", "1MiB"], &[("--capacity", "128MiB")]);
    let small = cluster.add_chunk(&[("--capacity", "8MiB")]);
    cluster.wait_nodes_up(4);
    let small_id = cluster.node_id(small);
    let mut files = Vec::new();
    for i in 0..120 {
        let data = random_bytes(MIB, 3000 + i);
        let path = format!("/big{i:02}");
        put_bytes(&cluster, &data, &path);
        files.push((path, data));
        let status = cluster.status().unwrap();
        if node_status(&status, &small_id)["state"] == "full" {
            break;
        }
    }
    let status = cluster.wait_for("the small node to be full", |s| {
        node_status(s, &small_id)["state"] == "full"
    });
    let small_node = node_status(&status, &small_id);
    assert!(small_node["used_bytes"].as_u64().unwrap() <= 8 * MIB as u64);
    assert!(small_node["chunk_count"].as_u64().unwrap() > 0);
    // Writes go elsewhere.
    for i in 0..8 {
        let data = random_bytes(MIB, 4000 + i);
        let path = format!("/more{i}");
        put_bytes(&cluster, &data, &path);
        files.push((path, data));
    }
    // Every read, including chunks only the full node has among its
    // targets' copies, still works; ask the full node directly too.
    check_all(&cluster, &files, 4);
    let held = chunks_on_disk(&cluster, small);
    let some = held.iter().next().unwrap();
    let (name, token) = cluster_token_header();
    let (code, _) = try_http_full(
        &cluster.chunks[small].addr,
        "GET",
        &format!("/v1/chunks/{some}"),
        &[(name, &token)],
        b"",
        Duration::from_secs(5),
    )
    .expect("the full node answers");
    assert_eq!(code, 200, "the full node serves reads");
    let status = cluster.status().unwrap();
    assert!(
        node_status(&status, &small_id)["used_bytes"]
            .as_u64()
            .unwrap()
            <= 8 * MIB as u64
    );
}

#[test]
fn restart_on_a_new_address_moves_no_data() {
    let mut cluster = Cluster::start_full(3, &["--chunk-size", "64KiB"], &[]);
    let files = mixed_files(30, 2000);
    put_all(&cluster, &files, 4);
    wait_healed(&cluster, "initial placement");
    let id = cluster.node_id(1);
    let before = cluster.status().unwrap();
    let before_epoch = before["epoch"].as_u64().unwrap();
    // Pushes made by the nodes that keep running, before the restart (a
    // write may leave a slow third copy to repair).
    let pushed_before: u64 = [0, 2]
        .iter()
        .map(|&n| {
            node_status(&before, &cluster.node_id(n))["report"]["repair"]["pushed_chunks_total"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    let held_before = chunks_on_disk(&cluster, 1);
    cluster.kill_chunk(1);
    cluster.chunks[1].addr = format!("127.0.0.1:{}", free_port());
    cluster.start_chunk(1);
    let new_addr = cluster.chunks[1].addr.clone();
    let status = cluster.wait_for("the new address in the map", |s| {
        node_status(s, &id)["addr"] == new_addr.as_str()
    });
    assert_eq!(cluster.node_id(1), id, "same id");
    assert_eq!(node_status(&status, &id)["state"], "up");
    assert_eq!(
        status["epoch"].as_u64().unwrap(),
        before_epoch + 1,
        "one map change"
    );
    let status = wait_healed(&cluster, "settling at the new address");
    assert_eq!(
        report_sum(&status, &["repair", "pushed_chunks_total"]),
        pushed_before,
        "no data moved"
    );
    assert_eq!(chunks_on_disk(&cluster, 1), held_before);
    wait_fsck_clean(&cluster);
    check_all(&cluster, &files, 4);
}

#[test]
fn drained_node_empties_then_is_removed_for_good() {
    let (mut cluster, files) = four_loaded_nodes(30, 3000);
    let id = cluster.node_id(2);
    let err = cluster.fails(&["node", "remove", &id]);
    assert!(err.contains("drain it first"), "{err}");
    let prefix = &id[..8];
    cluster.ok(&["node", "drain", prefix]);
    cluster.wait_for_within(HEAL_LIMIT, "the drained node to hold nothing", |s| {
        let n = node_status(s, &id);
        n["state"] == "draining" && n["chunk_count"] == 0 && n["report"]["chunk_count"] == 0
    });
    assert!(chunks_on_disk(&cluster, 2).is_empty());
    cluster.ok(&["node", "remove", &id]);
    let status = cluster.status().unwrap();
    assert!(status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["id"] != id.as_str()));
    wait_fsck_clean(&cluster);
    check_all(&cluster, &files, 4);
    // The removed node keeps running but may not join again.
    std::thread::sleep(Duration::from_secs(2));
    let status = cluster.status().unwrap();
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3);
    let log = std::fs::read_to_string(cluster.dir.path().join("chunk-2.log")).unwrap();
    assert!(
        log.contains("removed from the cluster"),
        "the node logs why it cannot join"
    );
    // A down node needs --force.
    let gone = cluster.node_id(3);
    cluster.kill_chunk(3);
    cluster.wait_for("the killed node to be down", |s| {
        node_status(s, &gone)["state"] == "down"
    });
    let err = cluster.fails(&["node", "remove", &gone]);
    assert!(err.contains("--force"), "{err}");
    cluster.ok(&["node", "remove", "--force", &gone]);
}

#[test]
fn servers_expose_prometheus_metrics() {
    let cluster = Cluster::start_full(3, &["--chunk-size", "64KiB"], &[]);
    put_bytes(&cluster, &random_bytes(200_000, 1), "/m");
    get_bytes(&cluster, "/m");
    std::thread::sleep(Duration::from_millis(800));
    let meta = http_get(&cluster.meta_addr, "/metrics");
    for name in [
        "cairn_http_requests_total",
        "cairn_http_request_duration_seconds_bucket",
        "cairn_meta_heartbeats_total",
        "cairn_meta_nodes",
    ] {
        assert!(meta.contains(name), "metadata metrics lack {name}:\n{meta}");
    }
    let chunk = http_get(&cluster.chunks[0].addr, "/metrics");
    for name in [
        "cairn_http_requests_total{route=\"/v1/chunks/{id}\"",
        "cairn_chunk_held_chunks",
        "cairn_repair_queue_chunks",
        "cairn_scrub_pass_progress_ratio",
        "cairn_heartbeats_total",
        "cairn_chunk_written_bytes_total",
    ] {
        assert!(chunk.contains(name), "chunk metrics lack {name}:\n{chunk}");
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

// ---- small HTTP helpers ----

fn http_get(addr: &str, path: &str) -> String {
    let (code, body) = http_request(addr, "GET", path);
    assert_eq!(code, 200, "GET {path} on {addr}");
    String::from_utf8(body).unwrap()
}

/// Sums the samples of `series` (a metric name with its labels) in a page.
fn metric_value(page: &str, series: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn fsck_fails_when_every_copy_of_a_chunk_is_bad_and_node_commands_explain_refusals() {
    // A long repair interval and scrub interval: nothing heals before fsck looks.
    let cluster = Cluster::start_full(
        3,
        &["--chunk-size", "64KiB"],
        &[("--repair-interval", "10m")],
    );
    let data = random_bytes(200_000, 77);
    put_bytes(&cluster, &data, "/doomed");
    let id = chunk_ids(&cluster, "/doomed")[1].clone();
    for node in 0..3 {
        rot(&chunk_file(&cluster, node, &id));
    }
    // Presence alone does not see rot; verification does, and exits 1.
    let quick = cluster.json(&["fsck", "--no-verify", "--json"]);
    assert_eq!(quick["missing"], 0);
    // A reader gets no bad byte, and is told every copy is corrupt.
    let out = cluster.cairn(&["cat", "/doomed"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("every copy of chunk {id}")) && err.contains("corrupt"),
        "{err}"
    );
    let out = cluster.cairn(&["fsck"]);
    assert!(!out.status.success(), "fsck must fail when data is missing");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("missing           1"), "{text}");
    assert!(text.contains("/doomed"), "names the file: {text}");
    // No node is down: the copies are corrupt, and the report says where
    // the quarantined ones are, not to bring back nodes.
    assert!(text.contains("DATA CORRUPT"), "{text}");
    assert!(!text.contains("bring back"), "{text}");
    assert!(
        text.contains(&format!("chunk {id}: quarantined on")),
        "{text}"
    );
    for node in 0..3 {
        assert!(
            text.contains(&cluster.node_id(node)),
            "names node {node}: {text}"
        );
        // Each node moves its copy aside right after it answers.
        let quarantine = cluster.chunks[node].data_dir.join("quarantine");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_dir(&quarantine).unwrap().count() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            std::fs::read_dir(&quarantine).unwrap().count(),
            1,
            "node {node} keeps its corrupt copy for a person"
        );
    }
    let out = cluster.cairn(&["fsck", "--json"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["missing_corrupt"], 1);
    assert_eq!(
        report["quarantined"][0]["nodes"].as_array().unwrap().len(),
        3
    );

    let up = cluster.node_id(0);
    let err = cluster.fails(&["node", "undrain", &up]);
    assert!(err.contains("not draining"), "{err}");
    let err = cluster.fails(&["node", "drain", "no-such-node"]);
    assert!(err.contains("cairn status"), "{err}");
}

#[test]
fn a_paused_chunk_server_costs_a_put_and_a_read_seconds_not_the_chunk_timeout() {
    const SIGSTOP: i32 = 19;
    const SIGCONT: i32 = 18;
    let cluster = Cluster::start_full(3, &["--chunk-size", "256KiB"], &[]);
    let before = random_bytes(2 * MIB, 91);
    put_bytes(&cluster, &before, "/before");
    // Every chunk has a copy on every node (rf 3 of 3): each put and each
    // read meets the paused one.
    cluster.signal_chunk(1, SIGSTOP);
    let during = random_bytes(2 * MIB, 92);
    let started = Instant::now();
    put_bytes(&cluster, &during, "/during");
    let put_took = started.elapsed();
    let started = Instant::now();
    let read = get_bytes(&cluster, "/before");
    let read_took = started.elapsed();
    cluster.signal_chunk(1, SIGCONT);
    assert_eq!(read, before);
    // Before: a put waited for the chunk timeout (60 s) on the paused node
    // after two copies were durable, and a read waited as long on it.
    assert!(put_took < Duration::from_secs(25), "put took {put_took:?}");
    assert!(
        read_took < Duration::from_secs(25),
        "read took {read_took:?}"
    );
    // The copies the put left out are made once the node answers again.
    wait_healed(&cluster, "the paused node's copies made");
    wait_fsck_clean(&cluster);
    assert_eq!(get_bytes(&cluster, "/during"), during);
}
