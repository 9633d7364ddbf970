//! The Cairn metadata service: the namespace and the cluster map, changed
//! only through an openraft log (a one-voter group by default) whose log and
//! state machine live in one redb file under the data directory.
//!
//! - `state/`: the state machine's tables and commands (pure logic on redb)
//! - `records.rs`: the format markers and upgrades of every stored record
//! - `store/`: openraft's log and state-machine storage on redb, snapshots
//! - `network.rs`: Raft messages between members over HTTP
//! - `group.rs`: the metadata group: formation, membership changes, snapshots
//! - `liveness.rs`: heartbeat bookkeeping and the up/down/full rule
//! - `server/`: start-up, the consensus plumbing, and the HTTP routes
//! - `perm.rs`, `auth.rs`: the permission rule; passwords and tokens
//! - `limits.rs`: every limit and timing, with the assertions relating them

pub mod auth;
pub mod group;
pub mod limits;
pub mod liveness;
pub mod network;
pub mod perm;
pub mod records;
pub mod server;
pub mod state;
pub mod store;

pub use server::{run, MetaConfig};

use std::io::Cursor;

openraft::declare_raft_types!(
    /// openraft's type parameters for the metadata group.
    pub TypeConfig:
        D = state::Request,
        R = state::Response,
);
