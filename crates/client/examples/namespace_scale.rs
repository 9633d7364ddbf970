//! A namespace at scale, as `bench/namespace.sh` runs it: ENTRIES empty
//! files in one directory (and a tenth of them again in a tree of 100
//! directories), then
//! - directory listing pages per second (the default page, 1000 entries);
//! - walk pages per second over the whole tree;
//! - `rm -r` of everything: how long the tree takes to leave the namespace
//!   (one command) and to be deleted behind it (entries per second).
//!
//!   CAIRN_TOKEN=... cargo run --release -p cairn-client --example namespace_scale -- META_ADDRS ENTRIES
//!
//! CAIRN_TOKEN is an admin's session token (from `cairn login`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::{Files, MetaClient, Page};
use cairn_proto::api::{CommitRequest, OnExists};

/// Concurrent creators: enough to fill the leader's log batches.
const CREATORS: usize = 32;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, meta, entries] = args.as_slice() else {
        eprintln!("usage: namespace_scale META_ADDRS ENTRIES");
        std::process::exit(2);
    };
    let entries: usize = entries.parse().expect("ENTRIES is a number");
    let meta = MetaClient::new(meta).with_token(std::env::var("CAIRN_TOKEN").ok());
    let files = Files::new(meta.clone());
    let root = format!("/scale-{}", std::process::id());
    files
        .mkdir(&format!("{root}/flat"), true, None)
        .await
        .unwrap();
    let tree_files = entries / 10;
    for d in 0..100 {
        files
            .mkdir(&format!("{root}/tree/d{d:02}"), true, None)
            .await
            .unwrap();
    }

    // Empty files: one commit each, no chunk data.
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let total = entries + tree_files;
    let tasks: Vec<_> = (0..CREATORS)
        .map(|_| {
            let (meta, next, root) = (meta.clone(), next.clone(), root.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let path = if i < entries {
                        format!("{root}/flat/f{i:07}")
                    } else {
                        format!("{root}/tree/d{:02}/f{i:07}", i % 100)
                    };
                    let commit = CommitRequest {
                        path,
                        size_bytes: 0,
                        chunks: Vec::new(),
                        digest: cairn_proto::file_digest(&[]),
                        on_exists: OnExists::Fail,
                        mode: None,
                        xattrs: None,
                        id: None,
                    };
                    meta.commit(&commit).await.expect("create");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    report("create (32 clients)", total, "entries", started.elapsed());

    // Listing pages of the flat directory, the whole directory each round.
    for round in 1..=3 {
        let started = Instant::now();
        let (mut pages, mut seen) = (0, 0);
        let mut page = Page::default();
        loop {
            let listing = files.list(&format!("{root}/flat"), &page).await.unwrap();
            pages += 1;
            seen += listing.entries.len();
            match listing.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, entries, "every entry listed once");
        let elapsed = started.elapsed();
        report(
            &format!("list pages, round {round}"),
            pages,
            "pages",
            elapsed,
        );
        report(
            &format!("list entries, round {round}"),
            seen,
            "entries",
            elapsed,
        );
    }

    // Walk pages over everything.
    let started = Instant::now();
    let (mut pages, mut seen) = (0, 0);
    let mut page = Page::default();
    loop {
        let walked = files.walk(&root, &page).await.unwrap();
        pages += 1;
        seen += walked.entries.len();
        match walked.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        total + 100 + 2,
        "files, the 100 directories, flat and tree"
    );
    report("walk pages", pages, "pages", started.elapsed());
    report("walk entries", seen, "entries", started.elapsed());

    // rm -r: gone from the namespace at once, deleted behind.
    let before = meta.status().await.unwrap();
    let started = Instant::now();
    files.remove(&root, true).await.unwrap();
    let detached = started.elapsed();
    println!(
        "{:<28} {:>10.1} ms  (one command: the tree is gone from the namespace)",
        "rm -r, to leave",
        detached.as_secs_f64() * 1000.0
    );
    loop {
        let status = meta.status().await.unwrap();
        if status.trees_being_deleted == 0 && status.file_count + total as u64 <= before.file_count
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report("rm -r, deleted behind", seen, "entries", started.elapsed());
}

fn report(what: &str, count: usize, unit: &str, elapsed: Duration) {
    println!(
        "{what:<28} {:>10.0} {unit}/s   ({count} {unit} in {:.2} s)",
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}
