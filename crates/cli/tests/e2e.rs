//! End-to-end: real `cairn` processes on 127.0.0.1, what a user sees.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cairn_testkit::*;

#[test]
fn files_of_every_edge_size_round_trip_with_three_copies() {
    let cluster = Cluster::start_with(3, &["--chunk-size", "1MiB"]);
    let sizes = [0, 1, MIB - 1, MIB, MIB + 1, 50 * MIB];
    for (i, size) in sizes.iter().enumerate() {
        let data = random_bytes(*size, i as u64 + 1);
        let local = cluster.local_file(&format!("in-{size}"), &data);
        let remote = format!("/f-{size}");
        let out = cluster.ok(&["put", local.to_str().unwrap(), &remote]);
        let id: u64 = out.split_whitespace().next().unwrap().parse().unwrap();
        let back = cluster.dir.path().join(format!("back-{size}"));
        cluster.ok(&["get", &remote, back.to_str().unwrap()]);
        assert!(
            std::fs::read(&back).unwrap() == data,
            "size {size}: content differs after get"
        );
        assert!(
            get_bytes(&cluster, &format!("id:{id}")) == data,
            "size {size}: content differs by id"
        );
        let expected_chunks = size.div_ceil(MIB);
        let locs = locations(&cluster, &remote);
        assert_eq!(locs.len(), expected_chunks, "size {size}");
        for (targets, holders) in locs {
            let distinct: HashSet<_> = targets.iter().collect();
            assert_eq!(distinct.len(), 3, "three distinct targets");
            for target in &targets {
                assert!(
                    holders.contains(target),
                    "size {size}: target {target} lacks a copy"
                );
            }
        }
    }
    // No partial or temporary file is left beside a fetched one.
    let leftovers: Vec<_> = std::fs::read_dir(cluster.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("cairn-partial"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn namespace_commands_and_their_errors() {
    let cluster = Cluster::start(3);
    let hello = cluster.local_file("hello.txt", b"hello");
    let hello = hello.to_str().unwrap();

    cluster.ok(&["mkdir", "/docs"]);
    let err = cluster.fails(&["mkdir", "/a/b/c"]);
    assert!(
        err.contains("does not exist") && err.contains("mkdir -p"),
        "{err}"
    );
    cluster.ok(&["mkdir", "-p", "/a/b/c"]);
    cluster.ok(&["mkdir", "-p", "/a/b/c"]);
    let err = cluster.fails(&["mkdir", "/docs"]);
    assert!(err.contains("already exists"), "{err}");

    // put into a directory, by trailing slash or by name
    cluster.ok(&["put", hello, "/docs/"]);
    cluster.ok(&["put", hello, "/a"]);
    assert_eq!(cluster.ok(&["ls", "/docs"]), "hello.txt\n");
    assert_eq!(cluster.ok(&["ls", "/a"]), "b/\nhello.txt\n");
    let err = cluster.fails(&["put", hello, "/docs/hello.txt"]);
    assert!(
        err.contains("already exists") && err.contains("--force") && err.contains("--rename"),
        "{err}"
    );
    let renamed = cluster.ok(&["put", "--rename", hello, "/docs/hello.txt"]);
    assert!(renamed.trim().ends_with("/docs/hello-1.txt"), "{renamed}");
    let new_content = cluster.local_file("v2", b"hello, again");
    cluster.ok(&[
        "put",
        "--force",
        new_content.to_str().unwrap(),
        "/docs/hello.txt",
    ]);
    assert_eq!(get_bytes(&cluster, "/docs/hello.txt"), b"hello, again");
    let stat = cluster.json(&["stat", "--json", "/docs/hello.txt"]);
    assert_eq!(stat["version"], 2);
    assert_eq!(stat["size_bytes"], 12);

    let err = cluster.fails(&["put", hello, "/nowhere/x"]);
    assert!(
        err.contains("/nowhere") && err.contains("does not exist"),
        "{err}"
    );
    let err = cluster.fails(&["put", hello, "/docs/hello.txt/inner"]);
    assert!(err.contains("is a file"), "{err}");
    let err = cluster.fails(&["rm", "/docs"]);
    assert!(err.contains("rm -r"), "{err}");
    // `..` is resolved as typed (lexically: there are no symbolic links).
    cluster.ok(&["mkdir", "/bad/../name"]);
    assert!(cluster.ok(&["ls", "/"]).lines().any(|l| l == "name/"));
    let err = cluster.fails(&["ls", "/bad"]);
    assert!(err.contains("/bad does not exist"), "{err}");
    cluster.ok(&["rm", "/name"]);
    let long = format!("/{}", "x".repeat(300));
    let err = cluster.fails(&["mkdir", &long]);
    assert!(err.contains("at most 255 bytes"), "{err}");
    let err = cluster.fails(&["get", "/docs", "-"]);
    assert!(err.contains("is a directory"), "{err}");
    let err = cluster.fails(&["cat", "/missing"]);
    assert!(err.contains("/missing does not exist"), "{err}");

    // mv is atomic and moves into directories; cp refuses to overwrite
    cluster.ok(&["mv", "/docs/hello-1.txt", "/a/b"]);
    assert_eq!(cluster.ok(&["ls", "/a/b"]), "c/\nhello-1.txt\n");
    let err = cluster.fails(&["mv", "/a/hello.txt", "/docs/hello.txt"]);
    assert!(err.contains("--force"), "{err}");
    cluster.ok(&["mv", "--force", "/a/hello.txt", "/docs/hello.txt"]);
    assert_eq!(get_bytes(&cluster, "/docs/hello.txt"), b"hello");
    cluster.ok(&["mv", "/a", "/docs/moved-a"]);
    assert_eq!(cluster.ok(&["ls", "/docs/moved-a/b"]), "c/\nhello-1.txt\n");
    let err = cluster.fails(&["mv", "/docs", "/docs/moved-a"]);
    assert!(err.contains("into itself"), "{err}");

    // ls -l and --json
    let long = cluster.ok(&["ls", "-l", "/docs"]);
    assert!(
        long.contains("file") && long.contains("hello.txt") && long.contains("dir"),
        "{long}"
    );
    let listing = cluster.json(&["ls", "--json", "/docs"]);
    assert_eq!(listing["entries"].as_array().unwrap().len(), 2);

    cluster.ok(&["rm", "-r", "/docs"]);
    assert_eq!(
        cluster.ok(&["ls", "/"]),
        "home/\n",
        "only the home directories are left"
    );
    let err = cluster.fails(&["rm", "/"]);
    assert!(err.contains("root"), "{err}");
}

#[test]
fn cp_shares_chunks_and_gets_its_own_id() {
    let cluster = Cluster::start_with(3, &["--chunk-size", "1MiB"]);
    let data = random_bytes(3 * MIB + 17, 7);
    let src_id = put_bytes(&cluster, &data, "/src.bin");
    let out = cluster.ok(&["cp", "/src.bin", "/copy.bin"]);
    let copy_id: u64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert_ne!(src_id, copy_id);
    assert_eq!(
        chunk_ids(&cluster, "/src.bin"),
        chunk_ids(&cluster, "/copy.bin")
    );
    cluster.ok(&["rm", "/src.bin"]);
    assert!(get_bytes(&cluster, "/copy.bin") == data);
    let err = cluster.fails(&["cp", "/copy.bin", "/copy.bin"]);
    assert!(err.contains("onto itself"), "{err}");
}

#[test]
fn eight_clients_put_and_get_at_once() {
    let cluster = Cluster::start_with(3, &["--chunk-size", "256KiB"]);
    let files: Vec<Vec<u8>> = (0..8)
        .map(|i| random_bytes(MIB + i * 4099, 100 + i as u64))
        .collect();
    std::thread::scope(|scope| {
        for (i, data) in files.iter().enumerate() {
            let cluster = &cluster;
            scope.spawn(move || put_bytes(cluster, data, &format!("/c{i}")));
        }
    });
    let files = &files;
    std::thread::scope(|scope| {
        for (i, data) in files.iter().enumerate() {
            let cluster = &cluster;
            // Each client reads back every file, so reads overlap reads and writes.
            scope.spawn(move || {
                put_bytes(cluster, data, &format!("/again-{i}"));
                for (j, expected) in files.iter().enumerate() {
                    assert!(
                        get_bytes(cluster, &format!("/c{j}")) == *expected,
                        "client {i} file {j}"
                    );
                }
            });
        }
    });
    assert_eq!(
        cluster.ok(&["ls", "/"]).lines().count(),
        17,
        "16 files and /home"
    );
}

#[test]
fn a_killed_chunk_server_loses_nothing() {
    let mut cluster = Cluster::start_with(3, &["--chunk-size", "512KiB"]);
    let files: Vec<Vec<u8>> = (0..5)
        .map(|i| random_bytes(2 * MIB + i * 1000, 200 + i as u64))
        .collect();
    for (i, data) in files.iter().enumerate() {
        put_bytes(&cluster, data, &format!("/f{i}"));
    }
    let victim = cluster.node_id(1);
    cluster.kill_chunk(1);
    // Reads fail over to the surviving replicas, whether or not the node is
    // marked down yet (the default down-after is 10 s).
    for (i, data) in files.iter().enumerate() {
        assert!(
            get_bytes(&cluster, &format!("/f{i}")) == *data,
            "file {i} after the kill"
        );
    }
    // Writes still succeed with two copies; none is on the dead node.
    let fresh = random_bytes(3 * MIB, 300);
    put_bytes(&cluster, &fresh, "/after-kill");
    assert!(get_bytes(&cluster, "/after-kill") == fresh);
    for (_, holders) in locations(&cluster, "/after-kill") {
        assert!(holders.len() >= 2, "at least two copies: {holders:?}");
        assert!(!holders.contains(&victim));
    }
}

#[test]
fn whole_cluster_restart_keeps_everything() {
    let mut cluster = Cluster::start(3);
    let data = random_bytes(5 * MIB + 3, 400);
    put_bytes(&cluster, &data, "/keep.bin");
    cluster.ok(&["mkdir", "-p", "/x/y"]);
    cluster.ok(&["cp", "/keep.bin", "/x/y/copy.bin"]);
    let epoch_before = cluster.status().unwrap()["epoch"].as_u64().unwrap();
    cluster.stop_all();
    assert!(
        !cluster.cairn(&["ls", "/"]).status.success(),
        "cluster is down"
    );
    cluster.start_all();
    assert!(get_bytes(&cluster, "/keep.bin") == data);
    assert!(get_bytes(&cluster, "/x/y/copy.bin") == data);
    let status = cluster.status().unwrap();
    assert_eq!(
        status["nodes"].as_array().unwrap().len(),
        3,
        "same three nodes, no new ones"
    );
    assert_eq!(
        status["epoch"].as_u64().unwrap(),
        epoch_before,
        "same addresses: the map did not change"
    );
}

#[test]
fn chunk_server_on_a_new_port_keeps_its_id() {
    let mut cluster = Cluster::start(3);
    let data = random_bytes(MIB, 500);
    put_bytes(&cluster, &data, "/f");
    let id = cluster.node_id(2);
    let epoch_before = cluster.status().unwrap()["epoch"].as_u64().unwrap();
    cluster.kill_chunk(2);
    let new_addr = format!("127.0.0.1:{}", free_port());
    cluster.chunks[2].addr = new_addr.clone();
    cluster.start_chunk(2);
    let status = cluster.wait_for("the node's new address", |s| {
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == id.as_str() && n["addr"] == new_addr.as_str())
    });
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3, "no new node");
    assert_eq!(status["epoch"].as_u64().unwrap(), epoch_before + 1);
    assert_eq!(cluster.node_id(2), id);
    assert!(get_bytes(&cluster, "/f") == data);
    for (_, holders) in locations(&cluster, "/f") {
        assert!(
            holders.contains(&id),
            "the moved node still serves its chunks"
        );
    }
}

/// Sends one raw HTTP/1.1 request as a cluster process (with the cluster
/// token); returns the status code and the body.
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (name, token) = cluster_token_header();
    let (code, body) = try_http_full(
        addr,
        method,
        path,
        &[(name, &token)],
        body,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("{method} {path} on {addr}: no answer"));
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn chunk_api_refuses_bad_ids_and_bodies() {
    let cluster = Cluster::start(3);
    let addr = &cluster.chunks[0].addr;
    let claimed = blake3::hash(b"the real content").to_hex().to_string();
    let (code, body) = http(
        addr,
        "PUT",
        &format!("/v1/chunks/{claimed}"),
        b"other content",
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("hash_mismatch") && body.contains("nothing was stored"),
        "{body}"
    );
    let path = chunk_file(&cluster, 0, &claimed);
    assert!(!path.exists(), "a mismatched chunk must not be kept");
    let (code, _) = http(addr, "GET", &format!("/v1/chunks/{claimed}"), b"");
    assert_eq!(code, 404);
    let (code, body) = http(addr, "GET", "/v1/chunks/not-hex", b"");
    assert_eq!(code, 400, "{body}");
    let (code, _) = http(
        addr,
        "PUT",
        &format!("/v1/chunks/{claimed}"),
        b"the real content",
    );
    assert_eq!(code, 201);
    assert!(path.exists());
    let (code, body) = http(
        addr,
        "POST",
        "/v1/chunks/has",
        format!("{{\"ids\":[\"{claimed}\"]}}").as_bytes(),
    );
    assert_eq!((code, body.contains("true")), (200, true), "{body}");
    let (code, body) = http(addr, "POST", "/v1/chunks/has", b"{not json");
    assert_eq!(code, 400, "{body}");
    // The metadata API answers malformed requests with JSON errors too.
    let (code, body) = http(&cluster.meta_addr, "POST", "/v1/fs/mkdir", b"{\"path\": 7}");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid_argument"), "{body}");
}

#[test]
fn too_few_nodes_up_is_reported() {
    let mut cluster = Cluster::start_with(3, &["--down-after", "1s"]);
    assert!(cluster.cairn(&["status"]).status.success());
    cluster.kill_chunk(0);
    cluster.kill_chunk(1);
    cluster.wait_nodes_up(1);
    let out = cluster.cairn(&["status"]);
    assert!(
        !out.status.success(),
        "status exits non-zero when fewer than replication nodes are up"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("down"));
    let hello = cluster.local_file("h", b"hello");
    let err = cluster.fails(&["put", hello.to_str().unwrap(), "/h"]);
    assert!(
        err.contains("only 1 storage nodes are up") && err.contains("cairn status"),
        "{err}"
    );
    // A node that comes back is marked up again.
    cluster.start_chunk(0);
    cluster.wait_nodes_up(2);
    cluster.ok(&["put", hello.to_str().unwrap(), "/h"]);
}

#[test]
fn unreachable_cluster_says_what_to_do() {
    let addr = format!("127.0.0.1:{}", free_port());
    let config = std::path::Path::new("/nonexistent/cairn-config.json");
    let out = run_cairn(&addr, config, &["ls", "/"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&addr) && err.contains("cairn dev") && err.contains("--meta"),
        "{err}"
    );
}

#[test]
fn corrupt_replicas_are_skipped_and_never_returned() {
    let cluster = Cluster::start_with(3, &["--chunk-size", "256KiB"]);
    let data = random_bytes(MIB, 600);
    put_bytes(&cluster, &data, "/f");
    let ids = chunk_ids(&cluster, "/f");
    // Corrupt each chunk on its first two targets, the nodes a reader tries
    // first: every read must skip two bad copies to reach the good one. The
    // first is rotten in place, the second longer than its chunk (a reader
    // stops reading it past the chunk's length).
    let node_index = |id: &str| (0..3).find(|&i| cluster.node_id(i) == id).unwrap();
    for (id, (targets, _)) in ids.iter().zip(locations(&cluster, "/f")) {
        rot(&chunk_file(&cluster, node_index(&targets[0]), id));
        grow(&chunk_file(&cluster, node_index(&targets[1]), id));
    }
    let back = cluster.dir.path().join("back");
    cluster.ok(&["get", "/f", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == data);

    // The reader reported the bad copies; their nodes replace them from the
    // good one. Wait for that (bounded) so no replacement lands later.
    let good = |node: usize| {
        std::fs::read(chunk_file(&cluster, node, &ids[1]))
            .map(|b| blake3::hash(&b).to_hex().to_string() == ids[1])
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(0..3).all(good) {
        assert!(
            std::time::Instant::now() < deadline,
            "reported copies were not replaced"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // One chunk corrupt everywhere: get fails, names the chunk, and leaves
    // neither the output file nor a partial one.
    for node in 0..3 {
        rot(&chunk_file(&cluster, node, &ids[1]));
    }
    let out_dir = cluster.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("never");
    let err = cluster.fails(&["get", "/f", target.to_str().unwrap()]);
    assert!(err.contains(&ids[1]) && err.contains("corrupt"), "{err}");
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        0,
        "no output, no partial file"
    );
    let out = cluster.cairn(&["cat", "/f"]);
    assert!(!out.status.success());
    assert!(out.stdout.len() < data.len(), "cat stops at the bad chunk");
}

#[test]
fn chunk_put_over_the_size_limit_cut_short_or_of_unknown_length_is_refused() {
    let cluster = Cluster::start(3);
    let addr = &cluster.chunks[0].addr;
    let id = blake3::hash(b"x").to_hex().to_string();
    // As another chunk server would send it: with the cluster token.
    let (name, token) = cluster_token_header();
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!("PUT /v1/chunks/{id} HTTP/1.1\r\nHost: {addr}\r\n{name}: {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 100 * MIB);
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("at most 64 MiB"), "{response}");
    // Declares 1000 bytes, sends 10, closes: nothing may be stored.
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "PUT /v1/chunks/{id} HTTP/1.1\r\nHost: {addr}\r\n{name}: {token}\r\nContent-Length: 1000\r\n\r\n0123456789"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(!response.starts_with("HTTP/1.1 2"), "{response}");
    assert!(!chunk_file(&cluster, 0, &id).exists());
    // The right bytes, but sent chunked, without a Content-Length: the
    // server needs the size before the body (it lands in a buffer made
    // for it), so it refuses, naming the header.
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "PUT /v1/chunks/{id} HTTP/1.1\r\nHost: {addr}\r\n{name}: {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("needs a Content-Length"), "{response}");
    assert!(!chunk_file(&cluster, 0, &id).exists());
    let (code, body) = http(addr, "GET", "/v1/health", b"");
    assert_eq!(code, 200, "the server keeps serving: {body}");
}

#[test]
fn get_into_a_fifo_writes_through_it_and_leaves_it_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let cluster = Cluster::start_with(3, &["--chunk-size", "256KiB"]);
    let data = random_bytes(MIB, 601);
    put_bytes(&cluster, &data, "/f");
    // A FIFO stands for any destination that is not a file (/dev/null,
    // a device): renaming the fetched file over it would replace it.
    let fifo = cluster.dir.path().join("pipe");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path and plain mode bits.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let reading = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    cluster.ok(&["get", "/f", fifo.to_str().unwrap()]);
    // Checked first: had it been replaced, the reader would wait forever.
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "still a FIFO, not replaced: {kind:?}");
    assert!(
        reading.join().unwrap() == data,
        "the bytes came through the FIFO"
    );
    let leftovers: Vec<_> = std::fs::read_dir(cluster.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("cairn-partial"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no partial file beside it: {leftovers:?}"
    );
}
