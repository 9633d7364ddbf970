//! Metadata operations per second and their latency, as `bench/meta_ops.sh`
//! runs it: N concurrent clients each create, stat, rename and delete their
//! own empty files, and make directories, one phase per kind of operation.
//!
//!   CAIRN_TOKEN=... cargo run --release -p cairn-client --example meta_ops -- META_ADDRS CLIENTS OPS_PER_CLIENT LABEL
//!
//! CAIRN_TOKEN is an admin's session token (from `cairn login`).

use std::time::{Duration, Instant};

use cairn_client::MetaClient;
use cairn_proto::api::{CommitRequest, MkdirRequest, MoveRequest, OnExists, RemoveRequest};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, meta, clients, ops, label] = args.as_slice() else {
        eprintln!("usage: meta_ops META_ADDRS CLIENTS OPS_PER_CLIENT LABEL");
        std::process::exit(2);
    };
    let clients: usize = clients.parse().expect("CLIENTS is a number");
    let ops: usize = ops.parse().expect("OPS_PER_CLIENT is a number");
    let meta = MetaClient::new(meta).with_token(std::env::var("CAIRN_TOKEN").ok());
    let run = format!("/bench-{}-{clients}", std::process::id());
    for k in 0..clients {
        let request = MkdirRequest {
            path: format!("{run}/c{k}"),
            parents: true,
            mode: None,
        };
        meta.mkdir(&request).await.expect("bench directories");
    }
    for phase in ["mkdir", "create", "stat", "rename", "delete"] {
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|k| {
                let (meta, dir) = (meta.clone(), format!("{run}/c{k}"));
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(ops);
                    for i in 0..ops {
                        let t = Instant::now();
                        one(&meta, phase, &dir, i).await;
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies: Vec<Duration> = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("client task"));
        }
        let wall = started.elapsed();
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "{label:<14} {clients:>3} clients  {phase:<7} {:>8.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
            latencies.len() as f64 / wall.as_secs_f64(),
            at(0.50).as_secs_f64() * 1000.0,
            at(0.99).as_secs_f64() * 1000.0,
        );
    }
}

async fn one(meta: &MetaClient, phase: &str, dir: &str, i: usize) {
    let (file, renamed) = (format!("{dir}/f{i}"), format!("{dir}/g{i}"));
    let result = match phase {
        "mkdir" => meta
            .mkdir(&MkdirRequest {
                path: format!("{dir}/d{i}"),
                parents: false,
                mode: None,
            })
            .await
            .map(drop),
        "create" => meta
            .commit(&CommitRequest {
                path: file,
                size_bytes: 0,
                chunks: Vec::new(),
                digest: cairn_proto::file_digest(&[]),
                on_exists: OnExists::Fail,
                mode: None,
                xattrs: None,
                id: None,
            })
            .await
            .map(drop),
        "stat" => meta.stat(&file).await.map(drop),
        "rename" => meta
            .rename(&MoveRequest {
                src: file,
                dst: renamed,
                replace: false,
                exact: false,
                hold_open: false,
            })
            .await
            .map(drop),
        "delete" => meta
            .remove(&RemoveRequest {
                path: renamed,
                recursive: false,
                kind: None,
                hold_open: false,
            })
            .await
            .map(drop),
        other => unreachable!("no phase {other}"),
    };
    if let Err(e) = result {
        panic!("{phase} {dir} #{i} failed: {e}");
    }
}
