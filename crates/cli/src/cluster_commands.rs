//! The cluster commands: `status`, `fsck`, `node`, `meta-admin`.

use std::process::ExitCode;

use anyhow::bail;
use cairn_client::{ChunkClient, Grant, MetaClient};
use cairn_proto::api::{AddMemberRequest, NodeRequest, RemoveMemberRequest, RemoveNodeRequest};
use clap::Args;

use crate::context::Context;
use crate::output;

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

/// A chunk client with an admin's capability, for presence and repair calls.
async fn admin_chunk_client(meta: &MetaClient) -> anyhow::Result<ChunkClient> {
    let grant = Grant::admin(meta).await?;
    Ok(ChunkClient::new()
        .with_tls(meta.tls().clone())
        .with_capability(grant.capability().await?))
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

pub async fn fsck(ctx: &Context, args: FsckArgs) -> anyhow::Result<ExitCode> {
    let meta = ctx.meta();
    let path = ctx.resolve(&args.path).await?;
    let chunks = admin_chunk_client(meta).await?;
    let report = cairn_client::fsck::fsck(meta, &chunks, &path, !args.no_verify).await?;
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
