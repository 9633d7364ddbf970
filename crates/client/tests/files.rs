//! The file API against a real cluster (started with the test kit): ranged
//! reads across chunk boundaries that fetch only the chunks they overlap,
//! listings and walks in pages, removal of large trees, extended
//! attributes, typed errors, and transfers that outlive their capabilities.

use std::time::Duration;

use cairn_client::{ClientError, Files, MetaClient, Page, PutOptions, Target};
use cairn_proto::api::{OnExists, XattrSetMode};
use cairn_proto::xattr::Xattr;
use cairn_proto::ErrorCode;
use cairn_testkit::*;

const CHUNK: usize = 64 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The file API as the cluster's admin.
fn files(cluster: &Cluster) -> Files {
    let token = cluster.token(&cluster.config);
    Files::new(MetaClient::new(&cluster.meta_addr).with_token(Some(token)))
}

async fn put(files: &Files, path: &str, data: &[u8]) {
    files
        .put(path, data, &PutOptions::default(), &|_| {})
        .await
        .unwrap_or_else(|e| panic!("put {path}: {e}"));
}

async fn read(
    files: &Files,
    path: &str,
    offset: u64,
    length: Option<u64>,
) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    files
        .read(Target::Path(path), offset, length, &mut out, &|_| {})
        .await?;
    Ok(out)
}

#[test]
fn ranged_reads_cross_chunk_boundaries_and_fetch_only_what_they_overlap() {
    let cluster = Cluster::start_full(3, &["--chunk-size", "64KiB"], &[]);
    let files = files(&cluster);
    let data = random_bytes(5 * CHUNK + 1234, 7);
    runtime().block_on(async {
        put(&files, "/ranges", &data).await;
        let cases: &[(usize, usize)] = &[
            (0, 1),
            (0, CHUNK),
            (CHUNK - 1, 2),
            (CHUNK, CHUNK),
            (CHUNK - 10, 3 * CHUNK + 20),
            (5 * CHUNK, 1234),
            (5 * CHUNK + 1233, 100),
            (123_457, 77_777),
        ];
        for &(offset, length) in cases {
            let got = read(&files, "/ranges", offset as u64, Some(length as u64))
                .await
                .unwrap();
            let end = (offset + length).min(data.len());
            assert_eq!(got, &data[offset..end], "bytes {offset}+{length}");
        }
        assert!(read(&files, "/ranges", data.len() as u64, Some(5))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(read(&files, "/ranges", 0, None).await.unwrap(), data);
    });
    // Lose every copy of the first chunk: reads of the other chunks never
    // ask for it, and a read that needs it says which chunk is gone.
    let first = chunk_ids(&cluster, "/ranges")[0].clone();
    for node in 0..3 {
        std::fs::remove_file(chunk_file(&cluster, node, &first)).unwrap();
    }
    runtime().block_on(async {
        let tail = read(&files, "/ranges", CHUNK as u64, None).await.unwrap();
        assert_eq!(tail, &data[CHUNK..]);
        match read(&files, "/ranges", 10, Some(10)).await {
            Err(ClientError::ChunkUnavailable { id, .. }) => assert_eq!(id.to_hex(), first),
            other => panic!("expected the lost chunk, got {other:?}"),
        }
    });
}

#[test]
fn listings_and_walks_come_in_pages_and_trees_of_any_size_go_at_once() {
    let cluster = Cluster::start(3);
    let files = files(&cluster);
    runtime().block_on(async {
        files.mkdir("/many/sub", true, None).await.unwrap();
        // 2,500 entries, a page and a half of the largest page size asked.
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let files = files.clone();
            tasks.push(tokio::spawn(async move {
                for i in (worker..2_500).step_by(8) {
                    put(&files, &format!("/many/f{i:05}"), b"").await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        put(&files, "/many/sub/inner", b"x").await;
        let mut names = Vec::new();
        let mut page = Page {
            after: None,
            limit: Some(1000),
        };
        let mut pages = 0;
        loop {
            let listing = files.list("/many", &page).await.unwrap();
            assert!(listing.entries.len() <= 1000);
            pages += 1;
            names.extend(listing.entries.into_iter().map(|e| e.name));
            match listing.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(names.len(), 2_501);
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        let mut walked = Vec::new();
        let skipped = files
            .walk_each("/many", |entry| {
                walked.push(entry.path);
                Ok(())
            })
            .await
            .unwrap();
        assert!(skipped.is_empty());
        assert_eq!(walked.len(), 2_502);
        assert_eq!(
            walked[2_500..],
            ["/many/sub", "/many/sub/inner"],
            "'sub/' sorts last"
        );
        // The tree leaves the namespace at once, and is deleted behind.
        files.remove("/many", true).await.unwrap();
        assert!(files
            .stat(Target::Path("/many"))
            .await
            .unwrap_err()
            .is_not_found());
    });
    cluster.wait_for("the removed tree deleted", |s| {
        s["trees_being_deleted"] == 0 && s["file_count"] == 0
    });
}

#[test]
fn extended_attributes_and_typed_errors() {
    let cluster = Cluster::start(3);
    let files = files(&cluster);
    runtime().block_on(async {
        let options = PutOptions {
            xattrs: Some(vec![Xattr {
                name: "user.content-type".into(),
                value: b"text/plain".to_vec(),
            }]),
            ..PutOptions::default()
        };
        files
            .put("/doc", &b"hello"[..], &options, &|_| {})
            .await
            .unwrap();
        let target = Target::Path("/doc");
        assert_eq!(
            files.xattr(target, "user.content-type").await.unwrap(),
            b"text/plain"
        );
        files
            .set_xattr("/doc", "user.color", b"red", XattrSetMode::Create)
            .await
            .unwrap();
        assert_eq!(files.xattrs(target).await.unwrap().len(), 2);
        let exists = files
            .set_xattr("/doc", "user.color", b"blue", XattrSetMode::Create)
            .await
            .unwrap_err();
        assert_eq!(exists.code(), Some(ErrorCode::AlreadyExists));
        files.remove_xattr("/doc", "user.color").await.unwrap();
        assert!(files
            .xattr(target, "user.color")
            .await
            .unwrap_err()
            .is_not_found());
        // Typed refusals, before any byte is sent.
        let taken = files
            .put("/doc", &b"again"[..], &PutOptions::default(), &|_| {})
            .await
            .unwrap_err();
        assert_eq!(taken.code(), Some(ErrorCode::AlreadyExists));
        let replace = PutOptions {
            on_exists: OnExists::Replace,
            ..PutOptions::default()
        };
        files
            .put("/doc", &b"again"[..], &replace, &|_| {})
            .await
            .unwrap();
        assert_eq!(
            files.xattr(target, "user.content-type").await.unwrap(),
            b"text/plain",
            "a replace without attributes keeps them"
        );
        let missing = read(&files, "/nope", 0, None).await.unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        files.mkdir("/dir", false, None).await.unwrap();
        let dir = read(&files, "/dir", 0, None).await.unwrap_err();
        assert_eq!(dir.code(), Some(ErrorCode::IsADirectory), "{dir}");
    });
}

#[test]
fn transfers_outlive_their_capabilities() {
    // Capabilities good for 2 s: every transfer below outlives its first.
    let cluster = Cluster::start_full(3, &["--chunk-size", "64KiB", "--capability-ttl", "2s"], &[]);
    let files = files(&cluster);
    let data = random_bytes(8 * CHUNK, 11);
    runtime().block_on(async {
        // A put whose reader is slow: the write capability expires between chunks.
        let (mut writer, reader) = tokio::io::duplex(CHUNK);
        let feed = {
            let data = data.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for piece in data.chunks(2 * CHUNK) {
                    writer.write_all(piece).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(900)).await;
                }
            })
        };
        files
            .put("/slow", reader, &PutOptions::default(), &|_| {})
            .await
            .unwrap();
        feed.await.unwrap();
        // A reader opened, then used after its capabilities expired.
        let reader = files.open(Target::Path("/slow")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut out = Vec::new();
        reader
            .copy_range(0, None, &mut out, 2, &|_| {})
            .await
            .unwrap();
        assert_eq!(out, data);
        // A file replaced meanwhile cannot be read on: its old chunks get
        // no new capabilities.
        let reader = files.open(Target::Path("/slow")).await.unwrap();
        let replace = PutOptions {
            on_exists: OnExists::Replace,
            ..PutOptions::default()
        };
        files
            .put("/slow", &b"new"[..], &replace, &|_| {})
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut out = Vec::new();
        match reader.copy_range(0, None, &mut out, 2, &|_| {}).await {
            Err(ClientError::Changed { .. }) => {}
            other => panic!("expected a changed file, got {other:?}"),
        }
    });
}

#[test]
fn creates_answer_their_stat_and_chunk_writers_are_checked_at_commit() {
    let cluster = Cluster::start(3);
    let added = cluster.cairn_with_stdin(
        &["user", "add", "bob", "--password-stdin"],
        b"bob-password-1\n",
    );
    assert!(added.status.success(), "user add bob");
    let admin = files(&cluster);
    runtime().block_on(async {
        admin.mkdir("/shared", false, None).await.unwrap();
        // A create answers the stat a stat would: one call, not two.
        let created = admin.create_empty("/shared/new", 0o640).await.unwrap();
        let stat = admin.stat(Target::Path("/shared/new")).await.unwrap();
        assert_eq!(created, stat);
        assert_eq!((created.size_bytes, created.mode), (0, 0o640));
        let taken = admin.create_empty("/shared/new", 0o640).await.unwrap_err();
        assert_eq!(taken.code(), Some(ErrorCode::AlreadyExists), "{taken}");

        // One capability stores chunks for any file; the commit decides.
        let writer = admin.chunk_writer().await.unwrap();
        let chunk = writer
            .store(bytes::Bytes::from_static(b"written"))
            .await
            .unwrap();
        admin
            .commit_to(created.id, "/shared/new", vec![chunk])
            .await
            .unwrap();
        assert_eq!(
            read(&admin, "/shared/new", 0, None).await.unwrap(),
            b"written"
        );

        let bob_config = cluster.login_as("bob", "bob-password-1");
        let bob = Files::new(
            MetaClient::new(&cluster.meta_addr).with_token(Some(cluster.token(&bob_config))),
        );
        let bob_writer = bob.chunk_writer().await.unwrap();
        let chunk = bob_writer
            .store(bytes::Bytes::from_static(b"not bob's"))
            .await
            .unwrap();
        let refused = bob
            .commit_to(created.id, "/shared/new", vec![chunk])
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Some(ErrorCode::PermissionDenied),
            "{refused}"
        );
        assert_eq!(
            read(&admin, "/shared/new", 0, None).await.unwrap(),
            b"written"
        );
    });
}

/// Chunk capabilities the metadata service has granted so far.
fn grants_so_far(cluster: &Cluster) -> u64 {
    let (code, page) = http_request(&cluster.meta_addr, "GET", "/metrics");
    assert_eq!(code, 200, "GET /metrics");
    String::from_utf8(page)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cairn_http_requests_total{route=\"/v1/chunks/grant\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn small_puts_of_known_size_are_checked_by_the_commit_alone() {
    let cluster = Cluster::start(3);
    let added = cluster.cairn_with_stdin(
        &["user", "add", "bob", "--password-stdin"],
        b"bob-password-1\n",
    );
    assert!(added.status.success(), "user add bob");
    let admin = files(&cluster);
    let bob_meta = || {
        let config = cluster.login_as("bob", "bob-password-1");
        MetaClient::new(&cluster.meta_addr).with_token(Some(cluster.token(&config)))
    };
    let sized = |data: &[u8], on_exists| PutOptions {
        on_exists,
        size_bytes: Some(data.len() as u64),
        ..PutOptions::default()
    };
    runtime().block_on(async {
        admin.mkdir("/shared", false, None).await.unwrap();
        let grants_before = grants_so_far(&cluster);

        // The same refusals as a checked put, from the commit; nothing is
        // left under the refused names.
        let bob = Files::new(bob_meta());
        let body = b"bob's note";
        let refused = bob
            .put(
                "/shared/note",
                &body[..],
                &sized(body, OnExists::Fail),
                &|_| {},
            )
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Some(ErrorCode::PermissionDenied),
            "{refused}"
        );
        assert!(admin
            .stat(Target::Path("/shared/note"))
            .await
            .unwrap_err()
            .is_not_found());
        let missing = bob
            .put(
                "/nowhere/note",
                &body[..],
                &sized(body, OnExists::Fail),
                &|_| {},
            )
            .await
            .unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        admin
            .put(
                "/shared/doc",
                &b"first"[..],
                &sized(b"first", OnExists::Fail),
                &|_| {},
            )
            .await
            .unwrap();
        let taken = admin
            .put(
                "/shared/doc",
                &b"second"[..],
                &sized(b"second", OnExists::Fail),
                &|_| {},
            )
            .await
            .unwrap_err();
        assert_eq!(taken.code(), Some(ErrorCode::AlreadyExists), "{taken}");
        assert_eq!(
            read(&admin, "/shared/doc", 0, None).await.unwrap(),
            b"first"
        );

        // A view acting as another user (the S3 gateway's) shares its
        // process's capability, and its puts are still that user's.
        let as_bob = admin.acting_as(bob_meta());
        let refused = as_bob
            .put(
                "/shared/doc",
                &b"mine"[..],
                &sized(b"mine", OnExists::Replace),
                &|_| {},
            )
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Some(ErrorCode::PermissionDenied),
            "{refused}"
        );
        assert_eq!(
            read(&admin, "/shared/doc", 0, None).await.unwrap(),
            b"first"
        );
        // One capability for bob's client and one for the admin's and its
        // view, whatever the number of puts.
        assert_eq!(grants_so_far(&cluster) - grants_before, 2);

        // A put of unknown size is checked before its data moves.
        let checked_first = bob
            .put("/shared/note", &body[..], &PutOptions::default(), &|_| {})
            .await
            .unwrap_err();
        assert_eq!(
            checked_first.code(),
            Some(ErrorCode::PermissionDenied),
            "{checked_first}"
        );
        assert_eq!(grants_so_far(&cluster) - grants_before, 3);
    });
}
