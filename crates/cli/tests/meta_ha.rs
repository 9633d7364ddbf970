//! A metadata group of three `cairn meta` processes under failures: the
//! leader killed under load, paused, every member restarted at once, a
//! member replaced. Each test starts its own processes on free loopback
//! ports, and bounds every wait.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_testkit::*;
use serde_json::Value;

const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;
const ELECTION_LIMIT: Duration = Duration::from_secs(30);

/// Names in a directory, from `ls --json`, through `meta` (a member list),
/// but for `/home`, which every cluster has.
fn names(meta: &str, config: &Path, dir: &str, stale_ok: bool) -> BTreeSet<String> {
    let mut args = vec!["ls", "--json", dir];
    if stale_ok {
        args.insert(0, "--stale-ok");
    }
    let out = run_cairn(meta, config, &args, &[]);
    assert!(
        out.status.success(),
        "ls {dir} via {meta}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap();
    listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .filter(|name| !(dir == "/" && name == "home"))
        .collect()
}

fn applied_index(cluster: &Cluster, i: usize) -> Option<u64> {
    cluster.member_health(i)?["applied_index"].as_u64()
}

/// Waits until every running member (started and not killed) answers and
/// has applied as far as the leader.
fn wait_caught_up(cluster: &Cluster) {
    let deadline = Instant::now() + ELECTION_LIMIT;
    loop {
        let leader = cluster.wait_leader(None, ELECTION_LIMIT);
        let target = applied_index(cluster, leader);
        let running: Vec<usize> = (0..cluster.metas.len())
            .filter(|&i| cluster.is_running(i))
            .collect();
        if target.is_some() && running.iter().all(|&i| applied_index(cluster, i) >= target) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members did not catch up with the leader; logs in {}",
            cluster.dir.path().display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One client operation as a client saw it.
struct Op {
    what: String,
    ok: bool,
    started: Instant,
    ended: Instant,
    error: String,
}

#[test]
fn leader_killed_while_clients_put_and_rename_loses_nothing() {
    const CLIENTS: usize = 8;
    const FILES_PER_CLIENT: usize = 10;
    // A short --down-after: the new leader must give every storage node a
    // fresh grace period rather than judge them on its empty heartbeat table.
    let mut cluster = Cluster::start_group(3, 3, &["--down-after", "3s"], &[]);
    let leader = cluster.wait_leader(None, ELECTION_LIMIT);
    let epoch_before = cluster.status().unwrap()["epoch"].clone();
    for k in 0..CLIENTS {
        cluster.ok(&["mkdir", &format!("/c{k}")]);
    }

    let acked = AtomicUsize::new(0);
    let ops: Mutex<Vec<Op>> = Mutex::new(Vec::new());
    let meta = cluster.meta_addr.clone();
    let config = cluster.config.clone();
    let mut killed_at = None;
    std::thread::scope(|scope| {
        for k in 0..CLIENTS {
            let (acked, ops, meta, config) = (&acked, &ops, &meta, &config);
            scope.spawn(move || {
                for i in 0..FILES_PER_CLIENT {
                    let (f, g) = (format!("/c{k}/f{i}"), format!("/c{k}/g{i}"));
                    let content = format!("client {k} file {i}");
                    let steps: [(String, Vec<&str>, &[u8]); 2] = [
                        (format!("put {f}"), vec!["put", "-", &f], content.as_bytes()),
                        (format!("mv {f} {g}"), vec!["mv", &f, &g], b""),
                    ];
                    for (what, args, stdin) in steps {
                        let started = Instant::now();
                        let out = run_cairn(meta, config, &args, stdin);
                        let op = Op {
                            what,
                            ok: out.status.success(),
                            started,
                            ended: Instant::now(),
                            error: String::from_utf8_lossy(&out.stderr).into_owned(),
                        };
                        acked.fetch_add(op.ok as usize, Ordering::SeqCst);
                        ops.lock().unwrap().push(op);
                    }
                }
            });
        }
        // Kill the leader once about a third of the operations are done.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::SeqCst) < CLIENTS * FILES_PER_CLIENT * 2 / 3 {
            assert!(Instant::now() < deadline, "clients made no progress");
            std::thread::sleep(Duration::from_millis(10));
        }
        cluster.kill_member(leader);
        killed_at = Some(Instant::now());
    });
    let killed_at = killed_at.unwrap();

    let ops = ops.into_inner().unwrap();
    let failed: Vec<&Op> = ops.iter().filter(|op| !op.ok).collect();
    assert!(
        failed.is_empty(),
        "{} operations failed, first: {} -> {}",
        failed.len(),
        failed[0].what,
        failed[0].error
    );
    assert_eq!(ops.len(), CLIENTS * FILES_PER_CLIENT * 2);
    // The pause clients saw: the longest operation in flight at the kill,
    // and the longest time with no acknowledgement at all after it.
    let longest_ms = ops
        .iter()
        .filter(|op| op.started <= killed_at && op.ended >= killed_at)
        .map(|op| (op.ended - op.started).as_millis())
        .max()
        .unwrap_or(0);
    let mut acks: Vec<Instant> = ops
        .iter()
        .map(|op| op.ended)
        .filter(|&t| t >= killed_at)
        .collect();
    acks.sort();
    let gap_ms = std::iter::once(killed_at)
        .chain(acks.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .max()
        .unwrap_or(0);
    eprintln!(
        "leader kill: longest operation in flight {longest_ms} ms; longest time without an acknowledgement {gap_ms} ms"
    );

    // Every acknowledged operation is there, each applied once: every put
    // and every rename succeeded (a rename applied twice would have found
    // its source gone), and each directory holds exactly the renamed files.
    for k in 0..CLIENTS {
        let expected: BTreeSet<String> = (0..FILES_PER_CLIENT).map(|i| format!("g{i}")).collect();
        assert_eq!(
            names(&meta, &cluster.config, &format!("/c{k}"), false),
            expected,
            "client {k}"
        );
    }
    for (k, i) in [
        (0, 0),
        (3, FILES_PER_CLIENT / 2),
        (CLIENTS - 1, FILES_PER_CLIENT - 1),
    ] {
        let content = get_bytes(&cluster, &format!("/c{k}/g{i}"));
        assert_eq!(content, format!("client {k} file {i}").as_bytes());
    }

    // No storage node was marked down across the leader change (the map
    // epoch would have moved), including after a --down-after of the new
    // leader's rule.
    std::thread::sleep(Duration::from_secs(4));
    let status = cluster.status().unwrap();
    assert_eq!(
        status["epoch"], epoch_before,
        "a node changed state: {status}"
    );
    assert_eq!(status["nodes_up"], 3);

    // The killed member comes back and catches up.
    cluster.start_member(leader);
    wait_caught_up(&cluster);
    assert_eq!(
        names(
            &cluster.metas[leader].addr.clone(),
            &cluster.config,
            "/c0",
            true
        ),
        names(&meta, &cluster.config, "/c0", false)
    );
}

#[test]
fn paused_leader_steps_down_and_no_term_has_two_leaders() {
    let cluster = Cluster::start_group(3, 0, &[], &[]);
    let old = cluster.wait_leader(None, ELECTION_LIMIT);
    let old_term = cluster.member_health(old).unwrap()["term"]
        .as_u64()
        .unwrap();
    cluster.ok(&["mkdir", "/before"]);
    let others: String = (0..3)
        .filter(|&i| i != old)
        .map(|i| cluster.metas[i].addr.clone())
        .collect::<Vec<_>>()
        .join(",");

    // Every member's claims, polled all along: (term -> members that said
    // they led in it).
    let claims: Mutex<BTreeMap<u64, BTreeSet<u64>>> = Mutex::new(BTreeMap::new());
    let watching = AtomicBool::new(true);
    let cluster_ref = &cluster;
    std::thread::scope(|scope| {
        for i in 0..3 {
            let (claims, watching) = (&claims, &watching);
            scope.spawn(move || {
                while watching.load(Ordering::SeqCst) {
                    if let Some(h) = cluster_ref.member_health(i) {
                        if h["role"] == "leader" {
                            let term = h["term"].as_u64().unwrap();
                            let id = h["id"].as_u64().unwrap();
                            claims.lock().unwrap().entry(term).or_default().insert(id);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }

        cluster_ref.signal_member(old, SIGSTOP);
        let paused_at = Instant::now();
        // A client that only knows the paused leader: its request waits in
        // the socket until the member resumes.
        let old_addr = cluster_ref.metas[old].addr.clone();
        let config = cluster_ref.config.clone();
        let stale_client = scope.spawn(move || {
            run_cairn(
                &old_addr,
                &config,
                &["mkdir", "/sent-to-the-paused-leader"],
                &[],
            )
        });
        let new = cluster_ref.wait_leader(Some(old), ELECTION_LIMIT);
        eprintln!(
            "paused leader: member {} elected {} ms after the pause",
            cluster_ref.metas[new].id,
            paused_at.elapsed().as_millis()
        );
        for i in 0..5 {
            let out = run_cairn(
                &others,
                &cluster_ref.config,
                &["mkdir", &format!("/during-{i}")],
                &[],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster_ref.signal_member(old, SIGCONT);

        // It learns of the new term and follows.
        let deadline = Instant::now() + ELECTION_LIMIT;
        loop {
            let h = cluster_ref.member_health(old);
            if h.as_ref()
                .is_some_and(|h| h["role"] == "follower" && h["term"].as_u64().unwrap() > old_term)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the resumed leader did not step down: {h:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = stale_client.join().unwrap();
        assert!(
            out.status.success(),
            "the request sent to the paused leader: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_caught_up(cluster_ref);
        watching.store(false, Ordering::SeqCst);
    });

    let claims = claims.into_inner().unwrap();
    for (term, leaders) in &claims {
        assert_eq!(leaders.len(), 1, "term {term} had leaders {leaders:?}");
    }
    assert!(
        claims.len() >= 2,
        "expected the old and a new term: {claims:?}"
    );
    // Every member holds the same namespace, with each write once.
    let expected: BTreeSet<String> = ["before", "sent-to-the-paused-leader"]
        .into_iter()
        .map(String::from)
        .chain((0..5).map(|i| format!("during-{i}")))
        .collect();
    for member in &cluster.metas {
        assert_eq!(
            names(&member.addr, &cluster.config, "/", true),
            expected,
            "member {}",
            member.id
        );
    }
}

#[test]
fn a_group_killed_all_at_once_restarts_with_its_state() {
    let mut cluster = Cluster::start_group(3, 0, &[], &[]);
    cluster.wait_leader(None, ELECTION_LIMIT);
    cluster.ok(&["mkdir", "-p", "/a/b/c"]);
    cluster.ok(&["mkdir", "/x"]);
    cluster.ok(&["mv", "/x", "/a/y"]);
    let before = cluster.ok(&["ls", "-l", "/a"]);

    for i in 0..3 {
        cluster.kill_member(i);
    }
    cluster.start_meta();
    cluster.wait_leader(None, ELECTION_LIMIT);
    assert_eq!(cluster.ok(&["ls", "-l", "/a"]), before);
    cluster.ok(&["mkdir", "/after-restart"]);
    assert!(names(&cluster.meta_addr, &cluster.config, "/", false).contains("after-restart"));
}

#[test]
fn a_replaced_member_catches_up_from_a_snapshot_and_a_later_leader_kill_loses_nothing() {
    let mut cluster = Cluster::start_group(3, 0, &[], &[]);
    let leader = cluster.wait_leader(None, ELECTION_LIMIT);
    for i in 0..30 {
        cluster.ok(&["mkdir", &format!("/d{i}")]);
    }
    // Compact: the log before the snapshot is gone, so a new member can
    // only catch up from the snapshot.
    let out = cluster.ok(&["meta-admin", "snapshot"]);
    assert!(out.contains("purged up to"), "{out}");
    let purged: u64 = out.trim().rsplit(' ').next().unwrap().parse().unwrap();

    // Replace a follower.
    let victim = (0..3).find(|&i| i != leader).unwrap();
    let victim_id = cluster.metas[victim].id.to_string();
    cluster.ok(&["meta-admin", "remove", "--id", &victim_id]);
    cluster.kill_member(victim);
    let fresh = cluster.add_member();
    let (fresh_id, fresh_addr) = (
        cluster.metas[fresh].id.to_string(),
        cluster.metas[fresh].addr.clone(),
    );
    cluster.ok(&[
        "meta-admin",
        "add-voter",
        "--id",
        &fresh_id,
        "--addr",
        &fresh_addr,
    ]);
    let members: Value =
        serde_json::from_str(&cluster.ok(&["meta-admin", "members", "--json"])).unwrap();
    let voters: BTreeSet<u64> = members
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["voter"] == true)
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    let expected_voters: BTreeSet<u64> = (0..cluster.metas.len())
        .filter(|&i| i != victim)
        .map(|i| cluster.metas[i].id)
        .collect();
    assert_eq!(voters, expected_voters);
    let health = cluster.member_health(fresh).unwrap();
    assert!(
        health["snapshot_index"].as_u64() >= Some(purged),
        "the new member has no snapshot: {health}"
    );
    let log = std::fs::read_to_string(cluster.member_log(fresh)).unwrap();
    assert!(log.contains("installing a snapshot"), "{log}");
    cluster.ok(&["mkdir", "/after-join"]);

    // Kill the leader: the new member and the other original one elect a
    // leader and keep every write.
    cluster.kill_member(leader);
    cluster.wait_leader(Some(leader), ELECTION_LIMIT);
    cluster.ok(&["mkdir", "/after-kill"]);
    let mut expected: BTreeSet<String> = (0..30).map(|i| format!("d{i}")).collect();
    expected.insert("after-join".into());
    expected.insert("after-kill".into());
    assert_eq!(
        names(&cluster.meta_addr, &cluster.config, "/", false),
        expected
    );
    wait_caught_up(&cluster);
    assert_eq!(names(&fresh_addr, &cluster.config, "/", true), expected);
}

// ---- linearizability ----

use cairn_testkit::lincheck::{non_linearizable_keys, Action, Operation};

#[test]
fn the_checker_accepts_overlaps_and_refuses_stale_reads() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let op = |action: Action, called: u64, returned: Option<u64>| Operation {
        key: "k".into(),
        action,
        called: at(called),
        returned: returned.map(at),
    };
    let write = |v: &str| Action::Write(v.into());
    let read = |v: Option<&str>| Action::Read(v.map(String::from));
    // A read overlapping a write may see either value.
    let overlapping = vec![
        op(write("a"), 0, Some(10)),
        op(write("b"), 20, Some(40)),
        op(read(Some("a")), 25, Some(30)),
        op(read(Some("b")), 26, Some(35)),
    ];
    assert!(non_linearizable_keys(&overlapping).is_empty());
    // After "b" is acknowledged, nobody may read "a".
    let stale = vec![
        op(write("a"), 0, Some(10)),
        op(write("b"), 20, Some(30)),
        op(read(Some("a")), 40, Some(50)),
    ];
    assert_eq!(non_linearizable_keys(&stale), vec!["k".to_string()]);
    // Two readers disagreeing on the order of two writes.
    let disagree = vec![
        op(write("a"), 0, Some(100)),
        op(write("b"), 0, Some(100)),
        op(read(Some("a")), 10, Some(20)),
        op(read(Some("b")), 30, Some(40)),
        op(read(Some("a")), 50, Some(60)),
    ];
    assert_eq!(non_linearizable_keys(&disagree).len(), 1);
    // A write whose outcome is unknown may or may not have happened...
    let unknown = vec![
        op(write("a"), 0, Some(10)),
        op(write("x"), 20, None),
        op(read(Some("a")), 30, Some(40)),
        op(read(Some("x")), 50, Some(60)),
    ];
    assert!(non_linearizable_keys(&unknown).is_empty());
    // ...but not before it was sent, and a lost value is never read.
    let early = vec![op(read(Some("x")), 0, Some(10)), op(write("x"), 20, None)];
    assert_eq!(non_linearizable_keys(&early).len(), 1);
    let phantom = vec![op(read(Some("y")), 0, Some(10))];
    assert_eq!(non_linearizable_keys(&phantom).len(), 1);
    let absent_first = vec![op(read(None), 0, Some(5)), op(write("a"), 1, Some(3))];
    assert!(non_linearizable_keys(&absent_first).is_empty());
}

#[test]
fn concurrent_reads_and_writes_through_leader_failures_are_linearizable() {
    const CLIENTS: usize = 4;
    const OPS_PER_CLIENT: usize = 24;
    const KEYS: usize = 3;
    let mut cluster = Cluster::start_group(3, 3, &[], &[]);
    cluster.wait_leader(None, ELECTION_LIMIT);
    cluster.ok(&["mkdir", "/lin"]);
    let history: Mutex<Vec<Operation>> = Mutex::new(Vec::new());
    let done = AtomicUsize::new(0);
    let meta = cluster.meta_addr.clone();
    let config = cluster.config.clone();
    let mut failures = Vec::new();
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (history, done, meta, config) = (&history, &done, &meta, &config);
            scope.spawn(move || {
                let choices = random_bytes(OPS_PER_CLIENT * 2, 1000 + client as u64);
                for i in 0..OPS_PER_CLIENT {
                    let key = format!("/lin/k{}", choices[2 * i] as usize % KEYS);
                    let called = Instant::now();
                    let op = if choices[2 * i + 1].is_multiple_of(2) {
                        let value = format!("client {client} write {i}");
                        let out = run_cairn(
                            meta,
                            config,
                            &["put", "--force", "-", &key],
                            value.as_bytes(),
                        );
                        Some(Operation {
                            key,
                            action: Action::Write(value),
                            called,
                            // A failed write may still have been applied.
                            returned: out.status.success().then(Instant::now),
                        })
                    } else {
                        let out = run_cairn(meta, config, &["cat", &key], &[]);
                        let returned = Some(Instant::now());
                        let stderr = String::from_utf8_lossy(&out.stderr);
                        if out.status.success() {
                            let value = String::from_utf8(out.stdout).unwrap();
                            Some(Operation {
                                key,
                                action: Action::Read(Some(value)),
                                called,
                                returned,
                            })
                        } else if stderr.contains("does not exist") {
                            Some(Operation {
                                key,
                                action: Action::Read(None),
                                called,
                                returned,
                            })
                        } else {
                            // A failed read observed nothing.
                            None
                        }
                    };
                    if let Some(op) = op {
                        history.lock().unwrap().push(op);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // Failures while the clients run: kill the leader, bring it back,
        // then pause the next leader past an election and resume it.
        let total = CLIENTS * OPS_PER_CLIENT;
        let wait_done = |fraction: usize| {
            let deadline = Instant::now() + Duration::from_secs(120);
            while done.load(Ordering::SeqCst) < total * fraction / 5 {
                assert!(Instant::now() < deadline, "clients made no progress");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_done(1);
        let first = cluster.wait_leader(None, ELECTION_LIMIT);
        cluster.kill_member(first);
        failures.push(format!("killed member {}", cluster.metas[first].id));
        wait_done(2);
        cluster.start_member(first);
        failures.push(format!("restarted member {}", cluster.metas[first].id));
        wait_done(3);
        let second = cluster.wait_leader(None, ELECTION_LIMIT);
        cluster.signal_member(second, SIGSTOP);
        std::thread::sleep(Duration::from_secs(3));
        cluster.signal_member(second, SIGCONT);
        failures.push(format!(
            "paused member {} for 3 s",
            cluster.metas[second].id
        ));
    });

    let history = history.into_inner().unwrap();
    let writes = history
        .iter()
        .filter(|op| matches!(op.action, Action::Write(_)))
        .count();
    let unknown = history.iter().filter(|op| op.returned.is_none()).count();
    let bad = non_linearizable_keys(&history);
    eprintln!(
        "linearizability: {} operations ({writes} writes, {unknown} with unknown outcome, {} reads) on {KEYS} keys \
         through: {}; non-linearizable keys: {bad:?}",
        history.len(),
        history.len() - writes,
        failures.join(", ")
    );
    assert!(bad.is_empty(), "not linearizable: {bad:?}");
    assert!(
        history.len() >= CLIENTS * OPS_PER_CLIENT * 3 / 4,
        "too many failed reads to check much: {} of {}",
        history.len(),
        CLIENTS * OPS_PER_CLIENT
    );
}

// ---- growing a group, and the refusals of meta-admin and of `cairn meta` ----

#[test]
fn a_one_member_service_grows_into_a_group_and_its_first_member_restarts_as_a_follower() {
    let mut cluster = Cluster::start_group(1, 0, &[], &[]);
    cluster.ok(&["mkdir", "/before"]);
    // Refusals that leave the group as it is, each saying what to do.
    let err = cluster.fails(&["meta-admin", "remove", "--id", "1"]);
    assert!(
        err.contains("only voter") && err.contains("add another"),
        "{err}"
    );
    let err = cluster.fails(&["meta-admin", "remove", "--id", "9"]);
    assert!(
        err.contains("member 9") && err.contains("cairn status"),
        "{err}"
    );
    let err = cluster.fails(&[
        "meta-admin",
        "add-voter",
        "--id",
        "0",
        "--addr",
        "127.0.0.1:1",
    ]);
    assert!(err.contains("--id must be 1 or more"), "{err}");

    for _ in 0..2 {
        let i = cluster.add_member();
        let (id, addr) = (
            cluster.metas[i].id.to_string(),
            cluster.metas[i].addr.clone(),
        );
        cluster.ok(&["meta-admin", "add-voter", "--id", &id, "--addr", &addr]);
    }
    let err = cluster.fails(&[
        "meta-admin",
        "add-voter",
        "--id",
        "2",
        "--addr",
        "127.0.0.1:1",
    ]);
    assert!(
        err.contains("already exists") && err.contains("remove it first"),
        "{err}"
    );
    let members: Value =
        serde_json::from_str(&cluster.ok(&["meta-admin", "members", "--json"])).unwrap();
    assert_eq!(
        members
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["voter"] == true)
            .count(),
        3
    );

    // The first member, which formed the group alone, comes back after a
    // crash as a follower of the leader the other two elected.
    cluster.wait_leader(None, ELECTION_LIMIT);
    cluster.kill_member(0);
    let new = cluster.wait_leader(Some(0), ELECTION_LIMIT);
    let via_new = cluster.metas[new].addr.clone();
    let out = run_cairn(&via_new, &cluster.config, &["mkdir", "/while-away"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.start_member(0);
    wait_caught_up(&cluster);
    // Once more, now that it was a follower when it stopped, and with an
    // election timeout too long for it to stand: it must serve as a
    // follower, not wait to lead.
    assert_ne!(cluster.leader(), Some(0));
    cluster.kill_member(0);
    cluster.metas[0].args = vec!["--election-timeout".into(), "50s".into()];
    cluster.start_member(0);
    wait_caught_up(&cluster);
    let first = cluster.metas[0].addr.clone();
    let expected: BTreeSet<String> = ["before", "while-away"].map(String::from).into();
    assert_eq!(names(&first, &cluster.config, "/", true), expected);
    assert_eq!(names(&first, &cluster.config, "/", false), expected);
}

#[test]
fn bad_group_flags_are_refused_at_start_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("meta");
    let listen = format!("127.0.0.1:{}", free_port());
    let secret = dir.path().join("cluster.secret");
    write_secret(&secret, CLUSTER_SECRET);
    let secret = secret.to_str().unwrap();
    for (flags, says) in [
        (
            vec![
                "--id",
                "2",
                "--peers",
                "1=127.0.0.1:1",
                "--cluster-secret-file",
                secret,
            ],
            "--peers must list this member too",
        ),
        (
            vec!["--peers", "1=127.0.0.1:1"],
            "a metadata group needs --cluster-secret-file",
        ),
        (
            vec!["--join"],
            "a metadata group needs --cluster-secret-file",
        ),
        (vec!["--peers", "1="], "has no address"),
        (vec!["--peers", "1=a:1,1=b:2"], "names member 1 twice"),
        (vec!["--id", "0"], "--id must be 1 or more"),
        (vec!["--election-timeout", "1ms"], "between 50ms and 60s"),
    ] {
        let out = std::process::Command::new(cairn_bin())
            .args([
                "meta",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--listen",
                &listen,
            ])
            .args(&flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{flags:?}: {err}"
        );
    }
}

/// The member list with member `first` first, as a user may give it.
fn members_with_first(cluster: &Cluster, first: usize) -> String {
    let mut order: Vec<usize> = (0..cluster.metas.len()).filter(|&i| i != first).collect();
    order.insert(0, first);
    order
        .iter()
        .map(|&i| cluster.metas[i].addr.clone())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn a_paused_member_named_first_costs_a_client_a_moment_not_the_call() {
    let cluster = Cluster::start_group(3, 3, &[], &[]);
    let leader = cluster.wait_leader(None, ELECTION_LIMIT);
    let follower = (0..3).find(|&i| i != leader).unwrap();
    // A member list the client has never used: nothing remembered, so the
    // paused member is asked first. It accepts connections (the kernel
    // does) and answers nothing.
    let members = members_with_first(&cluster, follower);
    cluster.signal_member(follower, SIGSTOP);
    let started = Instant::now();
    let out = run_cairn(
        &members,
        &cluster.config,
        &["put", "-", "/after-pause"],
        b"data",
    );
    let took = started.elapsed();
    cluster.signal_member(follower, SIGCONT);
    assert!(
        out.status.success(),
        "a put with a paused first member: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Before: one attempt waited 10 s and the call gave up at 5 s.
    assert!(took < Duration::from_secs(9), "the put took {took:?}");
    // The client remembers the leader for the next command.
    let remembered = std::fs::read_to_string(cluster.config.with_extension("leader")).unwrap();
    assert_eq!(
        remembered,
        format!("{members}\n{}\n", cluster.metas[leader].addr)
    );

    // A paused leader named first: the others elect a new one, and the
    // client gets there.
    let members = members_with_first(&cluster, leader);
    std::fs::remove_file(cluster.config.with_extension("leader")).unwrap();
    cluster.signal_member(leader, SIGSTOP);
    let out = run_cairn(
        &members,
        &cluster.config,
        &["put", "-", "/after-leader-pause"],
        b"data",
    );
    cluster.signal_member(leader, SIGCONT);
    assert!(
        out.status.success(),
        "a put with a paused leader first: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get_bytes(&cluster, "/after-leader-pause"), b"data");
}
