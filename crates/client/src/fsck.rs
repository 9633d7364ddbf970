//! `cairn fsck`: walk files, ask every node that serves data which of
//! their chunks it holds (re-hashing its copies with `verify`), and sort each
//! distinct chunk into one class:
//! - missing: no node holds a good copy (data is lost unless a down node
//!   comes back, or, when every copy found was corrupt, unless a person
//!   recovers a quarantined copy);
//! - corrupt: some copy failed its hash (the node quarantines it and
//!   fetches a good one), and a good copy exists;
//! - under-replicated: fewer good copies on its targets than the
//!   replication factor asks (repair is, or will be, at work);
//! - healthy: every target holds a good copy.
//!
//! Cost sketch: one walk page per 1000 entries, one stat per file, one
//! presence call per node per 4096 distinct chunks; with `verify` every
//! node reads and hashes each of its copies (~1 GiB/s a core).

use std::collections::{HashMap, HashSet};

use cairn_placement::Ring;
use cairn_proto::api::EntryKind;
use cairn_proto::{ChunkId, ClusterMap, FileId, NodeId};
use serde::{Deserialize, Serialize};

pub use crate::limits::MAX_FSCK_FILES;
use crate::meta::Page;
use crate::{ChunkClient, ClientError, MetaClient};

/// How many chunks lost to corruption the report names.
const MAX_QUARANTINED_NAMED: usize = 50;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FsckReport {
    pub files: u64,
    /// Distinct chunks checked.
    pub chunks: u64,
    pub healthy: u64,
    pub under_replicated: u64,
    pub missing: u64,
    /// Of the missing, those whose every copy found was corrupt: each node
    /// moved its copy to its `quarantine/` directory.
    #[serde(default)]
    pub missing_corrupt: u64,
    pub corrupt: u64,
    /// Where the quarantined copies of chunks lost to corruption are (the
    /// first [`MAX_QUARANTINED_NAMED`]).
    #[serde(default)]
    pub quarantined: Vec<QuarantinedChunk>,
    /// Files with at least one chunk that is not healthy, by path.
    pub problem_files: Vec<FileProblem>,
    /// Nodes that should serve data but did not answer; chunks only they
    /// hold show as missing or under-replicated.
    pub unreachable_nodes: Vec<String>,
}

/// A chunk with no good copy whose corrupt copies are quarantined.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantinedChunk {
    pub id: ChunkId,
    /// The nodes holding a quarantined copy, as `ID (ADDRESS)`.
    pub nodes: Vec<String>,
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
    /// No good copy, and the copies found were corrupt.
    MissingCorrupt,
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
            let corrupt_on = &survey.corrupt_on[i];
            let on_targets = held_by.iter().filter(|n| targets.contains(n)).count();
            // No good copy, and copies that were corrupt (found now, or
            // quarantined by an earlier check, a scrub or a reader).
            if held_by.is_empty() && !survey.quarantined_on[i].is_empty() {
                Class::MissingCorrupt
            } else if held_by.is_empty() {
                Class::Missing
            } else if !corrupt_on.is_empty() {
                Class::Corrupt
            } else if on_targets < rf {
                Class::UnderReplicated
            } else {
                Class::Healthy
            }
        })
        .collect();
    for (i, class) in classes.iter().enumerate() {
        match class {
            Class::Healthy => report.healthy += 1,
            Class::UnderReplicated => report.under_replicated += 1,
            Class::Missing => report.missing += 1,
            Class::MissingCorrupt => {
                report.missing += 1;
                report.missing_corrupt += 1;
                if report.quarantined.len() < MAX_QUARANTINED_NAMED {
                    report.quarantined.push(QuarantinedChunk {
                        id: ids[i],
                        nodes: survey.quarantined_on[i]
                            .iter()
                            .map(|node| describe_node(&map, node))
                            .collect(),
                    });
                }
            }
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
                Class::MissingCorrupt => {
                    problem.missing += 1;
                    problem.corrupt += 1;
                }
                Class::Corrupt => problem.corrupt += 1,
            }
        }
        if problem.under_replicated + problem.missing + problem.corrupt > 0 {
            report.problem_files.push(problem);
        }
    }
    Ok(report)
}

/// `ID (ADDRESS)` of a node, as the map has it.
fn describe_node(map: &ClusterMap, node: &NodeId) -> String {
    match map.node(node) {
        Some(info) => format!("{node} ({})", info.addr),
        None => node.to_string(),
    }
}

/// Every file under `path`: (path, id, chunk ids), in path order.
async fn walk(
    meta: &MetaClient,
    path: &str,
) -> Result<Vec<(String, FileId, Vec<ChunkId>)>, ClientError> {
    let root = meta.stat(path).await?;
    let root_path = cairn_proto::path::normalize(path).map_err(ClientError::Api)?;
    if root.kind == EntryKind::File {
        return Ok(vec![(
            root_path,
            root.id,
            root.chunks.iter().map(|c| c.id).collect(),
        )]);
    }
    let mut files = Vec::new();
    let mut page = Page::default();
    loop {
        let walked = meta.walk_page(&root_path, &page).await?;
        for entry in walked.entries {
            if entry.entry.kind != EntryKind::File {
                continue;
            }
            if files.len() >= MAX_FSCK_FILES {
                return Err(ClientError::invalid(format!(
                    "more than {MAX_FSCK_FILES} files under {path}; check a smaller subtree"
                )));
            }
            // A file removed since the page was read is skipped.
            match meta.stat_id(entry.entry.id).await {
                Ok(stat) => files.push((
                    entry.path,
                    stat.id,
                    stat.chunks.iter().map(|c| c.id).collect(),
                )),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        match walked.next {
            Some(next) => page.after = Some(next),
            None => return Ok(files),
        }
    }
}
