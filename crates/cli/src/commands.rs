//! The client commands. Each resolves its arguments, calls the metadata
//! service and the chunk servers through `cairn-client`, and prints for a
//! person (or JSON with `--json`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use cairn_client::transfer::DEFAULT_WINDOW;
use cairn_client::{chunk_locations, download, ChunkClient, ClientError, MetaClient, Uploader};
use cairn_proto::api::{
    AddMemberRequest, ChmodRequest, ChownRequest, CommitRequest, EntryKind, GrantOp, GrantRequest,
    MkdirRequest, MoveRequest, NodeRequest, OnExists, RemoveMemberRequest, RemoveNodeRequest,
    RemoveRequest, Stat,
};
use cairn_proto::path::{normalize, parent_and_name};
use cairn_proto::ErrorCode;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;

use crate::output;

#[derive(Args)]
pub struct PutArgs {
    /// Local file, or `-` for stdin
    local: String,
    /// Remote path; ending in `/` or naming a directory means "into it"
    remote: String,
    /// Replace an existing file
    #[arg(long, conflicts_with = "rename")]
    force: bool,
    /// If the name is taken, store under a new unique name (printed)
    #[arg(long)]
    rename: bool,
    /// Permission bits of a new file, in octal, as in 600 [default: 644]
    #[arg(long, value_parser = parse_mode)]
    mode: Option<u32>,
}

#[derive(Args)]
pub struct GetArgs {
    /// Remote path, or `id:<file id>`
    remote: String,
    /// Local file or directory, or `-` for stdout
    local: String,
}

#[derive(Args)]
pub struct CatArgs {
    /// Remote path, or `id:<file id>`
    remote: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Long format: kind, size, version, modification time, id
    #[arg(short = 'l')]
    long: bool,
    #[arg(long)]
    json: bool,
    /// Directory (or file) to list [default: your home, /home/USER]
    path: Option<String>,
}

#[derive(Args)]
pub struct MkdirArgs {
    /// Create missing parents; no error if it exists
    #[arg(short = 'p', long)]
    parents: bool,
    /// Permission bits of the new directory, in octal, as in 750 [default: 755]
    #[arg(short = 'm', long, value_parser = parse_mode)]
    mode: Option<u32>,
    path: String,
}

#[derive(Args)]
pub struct ChmodArgs {
    /// Permission bits in octal, as in 640 or 0750
    #[arg(value_parser = parse_mode)]
    mode: u32,
    path: String,
}

#[derive(Args)]
pub struct ChownArgs {
    /// OWNER, OWNER:GROUP or :GROUP
    owner: String,
    path: String,
}

/// Octal permission bits, as in 640 or 0750.
fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text, 8)
        .map_err(|_| format!("{text:?} is not an octal mode, as in 640 or 0750"))?;
    if mode > 0o777 {
        return Err(format!(
            "{text} has bits beyond 777; cairn keeps only read, write and execute for owner, group and others"
        ));
    }
    Ok(mode)
}

#[derive(Args)]
pub struct RmArgs {
    /// Remove a directory and everything in it
    #[arg(short = 'r', long)]
    recursive: bool,
    path: String,
}

#[derive(Args)]
pub struct MoveArgs {
    src: String,
    /// Destination; an existing directory means "into it"
    dst: String,
    /// Replace an existing file at the destination
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct StatArgs {
    /// Remote path, or `id:<file id>`
    path: String,
    /// Also show each chunk's target nodes and which nodes hold it
    #[arg(long)]
    locations: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FsckArgs {
    /// Check the files under this directory (or this one file)
    #[arg(default_value = "/")]
    path: String,
    /// Ask every node to start a repair pass now
    #[arg(long)]
    repair: bool,
    /// Only ask which nodes hold each chunk; do not have them re-hash their copies
    #[arg(long)]
    no_verify: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum NodeCommand {
    /// Move every chunk off a node, before removing it
    Drain(NodeArgs),
    /// Stop draining a node: it takes data again
    Undrain(NodeArgs),
    /// Remove a drained node (or, with --force, a dead one) from the cluster
    Remove(NodeRemoveArgs),
}

#[derive(Args)]
pub struct NodeArgs {
    /// Node id (a unique prefix will do) or its address
    node: String,
}

#[derive(Args)]
pub struct NodeRemoveArgs {
    /// Node id (a unique prefix will do) or its address
    node: String,
    /// Remove a node that is down without a drain: its copies are given up
    #[arg(long)]
    force: bool,
}

#[derive(clap::Subcommand)]
pub enum MetaAdminCommand {
    /// List the metadata group's members, the leader, and each member's lag
    Members(MetaAdminJson),
    /// Add a metadata member as a voter: start it first (empty --data-dir,
    /// its own --id, --peers of the group), then run this; it catches up,
    /// then votes
    AddVoter(AddMemberArgs),
    /// Add a metadata member that copies the log but does not vote
    AddLearner(AddMemberArgs),
    /// Remove a metadata member (voter or learner) from the group
    Remove(RemoveMemberArgs),
    /// Snapshot the metadata state now and purge the log it covers
    Snapshot,
}

#[derive(Args)]
pub struct MetaAdminJson {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct AddMemberArgs {
    /// The new member's --id
    #[arg(long)]
    id: u64,
    /// Address the other members reach it at (its --listen)
    #[arg(long)]
    addr: String,
}

#[derive(Args)]
pub struct RemoveMemberArgs {
    /// The member's --id
    #[arg(long)]
    id: u64,
}

fn progress_bar(total_bytes: Option<u64>, verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total_bytes {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {bytes} {bytes_per_sec}").expect("static template"),
        ),
    };
    bar.set_message(verb.to_string());
    bar
}

/// `id:42` or a path; with `read`, refused unless the caller may read it.
async fn resolve(meta: &MetaClient, remote: &str, read: bool) -> Result<Stat, ClientError> {
    match remote.strip_prefix("id:") {
        Some(id) => {
            let id = id.parse().map_err(|_| {
                ClientError::Api(cairn_proto::ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("{remote:?} is not a file id; write id:<number>, as in id:42"),
                ))
            })?;
            match read {
                true => meta.open_id(id).await,
                false => meta.stat_id(id).await,
            }
        }
        None if read => meta.open(remote).await,
        None => meta.stat(remote).await,
    }
}

pub async fn put(meta: &MetaClient, args: PutArgs) -> anyhow::Result<ExitCode> {
    let target = put_target(meta, &args).await?;
    let on_exists = match (args.force, args.rename) {
        (true, _) => OnExists::Replace,
        (_, true) => OnExists::Rename,
        _ => OnExists::Fail,
    };
    // Refuse before uploading anything: the commit checks again, atomically.
    let existing = match target.lookup {
        Some(lookup) => lookup,
        None => meta.stat(&target.path).await,
    };
    match existing {
        Ok(stat) if stat.kind == EntryKind::Dir => bail!(
            "{} is a directory; give a file name inside it, as in {}/NAME",
            target.path,
            target.path
        ),
        Ok(_) if on_exists == OnExists::Fail => bail!(
            "{} already exists; use --force to replace it or --rename to store under a new name",
            target.path
        ),
        Ok(_) => {}
        // A new file: make sure its parent directory is there before uploading.
        Err(e) if e.code() == Some(ErrorCode::NotFound) && !target.parent_is_dir => {
            if let Some((parent, _)) = parent_and_name(&target.path)? {
                let parent_stat = meta.stat(&parent).await?;
                if parent_stat.kind != EntryKind::Dir {
                    bail!("{parent} is a file, so {} cannot be inside it", target.path);
                }
            }
        }
        Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let target = target.path;
    let map = meta.map().await?;
    // Asked before any byte moves: refused here if the file cannot be written.
    let grant = meta
        .grant(&GrantRequest {
            op: GrantOp::Put,
            path: Some(target.clone()),
        })
        .await?;
    let chunks = chunk_client(meta).with_capability(grant.capability);
    let uploader = Uploader::new(chunks, &map, DEFAULT_WINDOW)?;
    let summary = if args.local == "-" {
        let bar = progress_bar(None, "put");
        let summary = uploader.upload(tokio::io::stdin(), &|n| bar.inc(n)).await;
        bar.finish_and_clear();
        summary?
    } else {
        let file = tokio::fs::File::open(&args.local)
            .await
            .with_context(|| format!("cannot open local file {}", args.local))?;
        let metadata = file.metadata().await?;
        if metadata.is_dir() {
            bail!(
                "{} is a directory; put stores one file at a time",
                args.local
            );
        }
        let bar = progress_bar(Some(metadata.len()), "put");
        let summary = uploader.upload(file, &|n| bar.inc(n)).await;
        bar.finish_and_clear();
        summary?
    };
    let committed = meta
        .commit(&CommitRequest {
            path: target,
            size_bytes: summary.size_bytes,
            chunks: summary.chunks,
            digest: summary.digest,
            on_exists,
            mode: args.mode,
            xattrs: None,
        })
        .await?;
    println!("{} {}", committed.id, committed.path);
    Ok(ExitCode::SUCCESS)
}

/// Where a put stores its file, and what is known about that path already.
struct PutTarget {
    path: String,
    /// The stat of `path`, when finding the target already asked for it.
    lookup: Option<Result<Stat, ClientError>>,
    /// The parent is known to be a directory (REMOTE named one).
    parent_is_dir: bool,
}

/// REMOTE, or REMOTE/NAME when REMOTE ends in `/` or names a directory.
async fn put_target(meta: &MetaClient, args: &PutArgs) -> anyhow::Result<PutTarget> {
    let lookup = if args.remote.ends_with('/') {
        None
    } else {
        let lookup = meta.stat(&args.remote).await;
        let is_dir = matches!(&lookup, Ok(stat) if stat.kind == EntryKind::Dir);
        if !is_dir {
            let path = normalize(&args.remote)?;
            return Ok(PutTarget {
                path,
                lookup: Some(lookup),
                parent_is_dir: false,
            });
        }
        Some(lookup)
    };
    if args.local == "-" {
        bail!(
            "{} is a directory; give the remote file a name when reading stdin, as in {}/NAME",
            args.remote,
            args.remote.trim_end_matches('/')
        );
    }
    let name = Path::new(&args.local)
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("cannot take a file name from {}", args.local))?;
    Ok(PutTarget {
        path: normalize(&format!("{}/{name}", args.remote))?,
        lookup: None,
        // Known only when REMOTE was looked up (no trailing slash).
        parent_is_dir: lookup.is_some(),
    })
}

pub async fn get(meta: &MetaClient, args: GetArgs) -> anyhow::Result<ExitCode> {
    let stat = resolve(meta, &args.remote, true).await?;
    if stat.kind == EntryKind::Dir {
        bail!(
            "{} is a directory; get fetches one file at a time (list it with `cairn ls`)",
            args.remote
        );
    }
    let map = meta.map().await?;
    let client = chunk_client(meta);
    if args.local == "-" {
        let mut stdout = tokio::io::stdout();
        download(&client, &map, &stat, &mut stdout, DEFAULT_WINDOW, &|_| {}).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut local = PathBuf::from(&args.local);
    if local.is_dir() {
        let name = args
            .remote
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && !n.starts_with("id:"));
        local = local.join(
            name.map(str::to_string)
                .unwrap_or_else(|| format!("cairn-file-{}", stat.id)),
        );
    }
    // Write beside the destination, rename when every chunk verified: the
    // output name never shows a partial or unverified file.
    let file_name = local.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let temp = local.with_file_name(format!(".{file_name}.cairn-partial-{}", std::process::id()));
    let result = async {
        let mut file = tokio::fs::File::create(&temp)
            .await
            .with_context(|| format!("cannot create {}", temp.display()))?;
        let bar = progress_bar(Some(stat.size_bytes), "get");
        let fetched = download(&client, &map, &stat, &mut file, DEFAULT_WINDOW, &|n| {
            bar.inc(n)
        })
        .await;
        bar.finish_and_clear();
        fetched?;
        file.flush().await?;
        drop(file);
        tokio::fs::rename(&temp, &local).await.with_context(|| {
            format!(
                "cannot move the fetched file into place at {}",
                local.display()
            )
        })?;
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

pub async fn cat(meta: &MetaClient, args: CatArgs) -> anyhow::Result<ExitCode> {
    get(
        meta,
        GetArgs {
            remote: args.remote,
            local: "-".into(),
        },
    )
    .await
}

pub async fn ls(meta: &MetaClient, args: LsArgs) -> anyhow::Result<ExitCode> {
    let path = match args.path {
        Some(path) => path,
        None => meta.whoami().await?.home,
    };
    let listing = meta.list(&path).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
    } else if args.long {
        print!("{}", output::long_listing(&listing.entries));
    } else {
        for entry in &listing.entries {
            let suffix = if entry.kind == EntryKind::Dir {
                "/"
            } else {
                ""
            };
            println!("{}{suffix}", entry.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn mkdir(meta: &MetaClient, args: MkdirArgs) -> anyhow::Result<ExitCode> {
    meta.mkdir(&MkdirRequest {
        path: args.path,
        parents: args.parents,
        mode: args.mode,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn chmod(meta: &MetaClient, args: ChmodArgs) -> anyhow::Result<ExitCode> {
    meta.chmod(&ChmodRequest {
        path: args.path,
        mode: args.mode,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn chown(meta: &MetaClient, args: ChownArgs) -> anyhow::Result<ExitCode> {
    let (owner, group) = match args.owner.split_once(':') {
        Some((owner, group)) => (owner, Some(group)),
        None => (args.owner.as_str(), None),
    };
    let owner = (!owner.is_empty()).then(|| owner.to_string());
    let group = group.filter(|g| !g.is_empty()).map(str::to_string);
    if owner.is_none() && group.is_none() {
        bail!("give OWNER, OWNER:GROUP or :GROUP, as in alice:eng");
    }
    meta.chown(&ChownRequest {
        path: args.path,
        owner,
        group,
        ..ChownRequest::default()
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// A chunk client that talks to the chunk servers as `meta` talks to the
/// metadata service (TLS with the same CA, or plain HTTP).
fn chunk_client(meta: &MetaClient) -> ChunkClient {
    ChunkClient::new().with_tls(meta.tls().clone())
}

/// A chunk client with an admin's capability, for presence and repair calls.
async fn admin_chunk_client(meta: &MetaClient) -> anyhow::Result<ChunkClient> {
    let grant = meta
        .grant(&GrantRequest {
            op: GrantOp::Admin,
            path: None,
        })
        .await?;
    Ok(chunk_client(meta).with_capability(grant.capability))
}

pub async fn rm(meta: &MetaClient, args: RmArgs) -> anyhow::Result<ExitCode> {
    meta.remove(&RemoveRequest {
        path: args.path,
        recursive: args.recursive,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn mv(meta: &MetaClient, args: MoveArgs) -> anyhow::Result<ExitCode> {
    let moved = meta
        .rename(&MoveRequest {
            src: args.src,
            dst: args.dst,
            replace: args.force,
        })
        .await?;
    println!("{}", moved.path);
    Ok(ExitCode::SUCCESS)
}

pub async fn cp(meta: &MetaClient, args: MoveArgs) -> anyhow::Result<ExitCode> {
    let copied = meta
        .copy(&MoveRequest {
            src: args.src,
            dst: args.dst,
            replace: args.force,
        })
        .await?;
    println!("{} {}", copied.id, copied.path);
    Ok(ExitCode::SUCCESS)
}

pub async fn stat(meta: &MetaClient, args: StatArgs) -> anyhow::Result<ExitCode> {
    let stat = resolve(meta, &args.path, false).await?;
    let locations = if args.locations {
        let map = meta.map().await?;
        let chunks = admin_chunk_client(meta).await?;
        Some(chunk_locations(&chunks, &map, &stat.chunks).await?)
    } else {
        None
    };
    if args.json {
        let mut value = serde_json::to_value(&stat)?;
        if let Some(locations) = &locations {
            value["locations"] = serde_json::to_value(locations)?;
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!(
            "{}",
            output::stat_text(&args.path, &stat, locations.as_deref())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(meta: &MetaClient, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let status = meta.status().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", output::status_text(&status));
    }
    if status.healthy {
        Ok(ExitCode::SUCCESS)
    } else {
        if !args.json {
            eprintln!(
                "not enough storage nodes are up: {} up, replication needs {}",
                status.nodes_up, status.replication
            );
        }
        Ok(ExitCode::FAILURE)
    }
}

/// How many files with problems `fsck` lists in text (all of them in JSON).
const FSCK_FILES_SHOWN: usize = 50;

pub async fn fsck(meta: &MetaClient, args: FsckArgs) -> anyhow::Result<ExitCode> {
    let chunks = admin_chunk_client(meta).await?;
    let report = cairn_client::fsck::fsck(meta, &chunks, &args.path, !args.no_verify).await?;
    let mut repair_asked = Vec::new();
    if args.repair {
        let map = meta.map().await?;
        for node in map.nodes.iter().filter(|n| n.state.serves_reads()) {
            match chunks.request_repair(&node.addr).await {
                Ok(()) => repair_asked.push(node.addr.clone()),
                Err(e) => eprintln!("could not ask {} to repair: {e}", node.addr),
            }
        }
    }
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if args.repair {
            value["repair_requested"] = serde_json::to_value(&repair_asked)?;
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", output::fsck_text(&report, FSCK_FILES_SHOWN));
        if args.repair {
            println!(
                "asked {} node(s) to repair now; run `cairn fsck` again to see the result",
                repair_asked.len()
            );
        }
    }
    Ok(if report.missing > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn node(meta: &MetaClient, command: NodeCommand) -> anyhow::Result<ExitCode> {
    let map = meta.map().await?;
    let given = match &command {
        NodeCommand::Drain(a) | NodeCommand::Undrain(a) => &a.node,
        NodeCommand::Remove(a) => &a.node,
    };
    let id = find_node(&map, given)?;
    match command {
        NodeCommand::Drain(_) => {
            meta.drain_node(&NodeRequest { id: id.clone() }).await?;
            println!("{id} is draining; its chunks move to other nodes (watch `cairn status`), then `cairn node remove {id}`");
        }
        NodeCommand::Undrain(_) => {
            meta.undrain_node(&NodeRequest { id: id.clone() }).await?;
            println!("{id} takes data again");
        }
        NodeCommand::Remove(args) => {
            meta.remove_node(&RemoveNodeRequest {
                id: id.clone(),
                force: args.force,
            })
            .await?;
            println!("{id} removed from the cluster");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The node `given` names: its full id, a unique id prefix, or its address.
fn find_node(map: &cairn_proto::ClusterMap, given: &str) -> anyhow::Result<cairn_proto::NodeId> {
    let matches: Vec<&cairn_proto::NodeInfo> = map
        .nodes
        .iter()
        .filter(|n| n.id.0 == given || n.addr == given)
        .collect();
    let matches = if matches.is_empty() && !given.is_empty() {
        map.nodes
            .iter()
            .filter(|n| n.id.0.starts_with(given))
            .collect()
    } else {
        matches
    };
    match matches.as_slice() {
        [node] => Ok(node.id.clone()),
        [] => bail!("no storage node has the id or address {given:?}; see `cairn status`"),
        many => bail!(
            "{given:?} matches {} nodes ({}); give more of the id",
            many.len(),
            many.iter()
                .map(|n| n.id.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub async fn meta_admin(meta: &MetaClient, command: MetaAdminCommand) -> anyhow::Result<ExitCode> {
    let members = match command {
        MetaAdminCommand::Members(args) => {
            let status = meta.status().await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&status.members)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "leader {}, term {}, applied index {}",
                status.leader.map_or("none".to_string(), |l| l.to_string()),
                status.term,
                status
                    .commit_index
                    .map_or("-".to_string(), |i| i.to_string())
            );
            status.members
        }
        MetaAdminCommand::AddVoter(args) | MetaAdminCommand::AddLearner(args) if args.id == 0 => {
            bail!("--id must be 1 or more")
        }
        MetaAdminCommand::AddVoter(args) => {
            let request = AddMemberRequest {
                id: args.id,
                addr: args.addr,
                learner: false,
            };
            meta.add_member(&request).await?.members
        }
        MetaAdminCommand::AddLearner(args) => {
            let request = AddMemberRequest {
                id: args.id,
                addr: args.addr,
                learner: true,
            };
            meta.add_member(&request).await?.members
        }
        MetaAdminCommand::Remove(args) => {
            meta.remove_member(&RemoveMemberRequest { id: args.id })
                .await?
                .members
        }
        MetaAdminCommand::Snapshot => {
            let answer = meta.snapshot().await?;
            let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            println!(
                "snapshot at log index {}; log purged up to {}",
                show(answer.snapshot_index),
                show(answer.purged_index)
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    print!("{}", output::members_text(&members));
    Ok(ExitCode::SUCCESS)
}
