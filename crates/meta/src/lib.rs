//! The Cairn metadata service: the namespace and the cluster map, changed
//! only through an openraft log (a one-voter group by default) whose log and
//! state machine live in one redb file under the data directory.
//!
//! - `state.rs`: the state machine's tables and commands (pure logic on redb)
//! - `store.rs`: openraft's log and state-machine storage traits on redb
//! - `network.rs`: Raft messages between members over HTTP
//! - `group.rs`: the metadata group: formation, membership changes, snapshots
//! - `liveness.rs`: heartbeat bookkeeping and the up/down/full rule
//! - `server.rs`: the HTTP/JSON API, the liveness watcher and status

mod access;
pub mod auth;
pub mod group;
pub mod liveness;
pub mod network;
pub mod perm;
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
