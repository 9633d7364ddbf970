//! `cairn fsck`: walk files, ask every node that serves data which of
//! their chunks it holds (re-hashing its copies with `verify`), and sort each
//! distinct chunk into one class:
//! - missing: no node holds a good copy (data is lost unless a down node
//!   comes back);
//! - corrupt: some copy failed its hash (the node quarantines it and
//!   fetches a good one), and a good copy exists;
//! - under-replicated: fewer good copies on its targets than the
//!   replication factor asks (repair is, or will be, at work);
//! - healthy: every target holds a good copy.
//!
//! Cost sketch: one listing per directory, one stat per file, one presence
//! call per node per 4096 distinct chunks; with `verify` every node reads
//! and hashes each of its copies (~1 GiB/s a core).

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_placement::Ring;
use cairn_proto::api::EntryKind;
use cairn_proto::{ChunkId, FileId, NodeId};
use serde::{Deserialize, Serialize};

use crate::{ChunkClient, ClientError, MetaClient};

/// The most files one fsck walks (bounds its memory: ~100 bytes a chunk).
pub const MAX_FSCK_FILES: usize = 10_000_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FsckReport {
    pub files: u64,
    /// Distinct chunks checked.
    pub chunks: u64,
    pub healthy: u64,
    pub under_replicated: u64,
    pub missing: u64,
    pub corrupt: u64,
    /// Files with at least one chunk that is not healthy, by path.
    pub problem_files: Vec<FileProblem>,
    /// Nodes that should serve data but did not answer; chunks only they
    /// hold show as missing or under-replicated.
    pub unreachable_nodes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileProblem {
    pub path: String,
    pub id: FileId,
    pub under_replicated: u64,
    pub missing: u64,
    pub corrupt: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Healthy,
    UnderReplicated,
    Missing,
    Corrupt,
}

/// Checks every file under `path` (or the file `path` names).
pub async fn fsck(
    meta: &MetaClient,
    chunks: &ChunkClient,
    path: &str,
    verify: bool,
) -> Result<FsckReport, ClientError> {
    let files = walk(meta, path).await?;
    let map = meta.map().await?;
    let ring = Ring::new(&map);
    let rf = map.replication as usize;

    // Distinct chunks, and the files that use each.
    let mut ids: Vec<ChunkId> = Vec::new();
    let mut index_of: HashMap<ChunkId, usize> = HashMap::new();
    for (_, _, file_chunks) in &files {
        for id in file_chunks {
            index_of.entry(*id).or_insert_with(|| {
                ids.push(*id);
                ids.len() - 1
            });
        }
    }
    let survey = crate::survey(chunks, &map, &ids, verify).await;
    let mut report = FsckReport {
        files: files.len() as u64,
        chunks: ids.len() as u64,
        unreachable_nodes: survey.unreachable,
        ..FsckReport::default()
    };
    let classes: Vec<Class> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let targets: HashSet<&NodeId> = ring
                .targets(id, rf)
                .into_iter()
                .chain(ring.write_targets(id, rf))
                .map(|n| &n.id)
                .collect();
            let held_by = &survey.held_by[i];
            let on_targets = held_by.iter().filter(|n| targets.contains(n)).count();
            if held_by.is_empty() {
                Class::Missing
            } else if survey.corrupt[i] {
                Class::Corrupt
            } else if on_targets < rf {
                Class::UnderReplicated
            } else {
                Class::Healthy
            }
        })
        .collect();
    for class in &classes {
        match class {
            Class::Healthy => report.healthy += 1,
            Class::UnderReplicated => report.under_replicated += 1,
            Class::Missing => report.missing += 1,
            Class::Corrupt => report.corrupt += 1,
        }
    }
    for (path, id, file_chunks) in &files {
        let mut problem = FileProblem {
            path: path.clone(),
            id: *id,
            ..FileProblem::default()
        };
        // A chunk used twice by one file is counted once for it.
        let distinct: HashSet<&ChunkId> = file_chunks.iter().collect();
        for chunk in distinct {
            match classes[index_of[chunk]] {
                Class::Healthy => {}
                Class::UnderReplicated => problem.under_replicated += 1,
                Class::Missing => problem.missing += 1,
                Class::Corrupt => problem.corrupt += 1,
            }
        }
        if problem.under_replicated + problem.missing + problem.corrupt > 0 {
            report.problem_files.push(problem);
        }
    }
    Ok(report)
}

/// Every file under `path`: (path, id, chunk ids), in path order.
async fn walk(
    meta: &MetaClient,
    path: &str,
) -> Result<Vec<(String, FileId, Vec<ChunkId>)>, ClientError> {
    let root = meta.stat(path).await?;
    let root_path = cairn_proto::path::normalize(path).map_err(ClientError::Api)?;
    let mut files = BTreeMap::new();
    if root.kind == EntryKind::File {
        files.insert(
            root_path,
            (root.id, root.chunks.iter().map(|c| c.id).collect()),
        );
    } else {
        let mut dirs = vec![root_path];
        while let Some(dir) = dirs.pop() {
            let listing = meta.list(&dir).await?;
            for entry in listing.entries {
                let child = if dir == "/" {
                    format!("/{}", entry.name)
                } else {
                    format!("{dir}/{}", entry.name)
                };
                match entry.kind {
                    EntryKind::Dir => dirs.push(child),
                    EntryKind::File => {
                        if files.len() >= MAX_FSCK_FILES {
                            return Err(ClientError::Transfer(format!(
                                "more than {MAX_FSCK_FILES} files under {path}; check a smaller subtree"
                            )));
                        }
                        // A file removed since the listing is skipped.
                        match meta.stat_id(entry.id).await {
                            Ok(stat) => {
                                files.insert(
                                    child,
                                    (stat.id, stat.chunks.iter().map(|c| c.id).collect()),
                                );
                            }
                            Err(e) if e.code() == Some(cairn_proto::ErrorCode::NotFound) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
    }
    Ok(files
        .into_iter()
        .map(|(path, (id, chunks))| (path, id, chunks))
        .collect())
}
