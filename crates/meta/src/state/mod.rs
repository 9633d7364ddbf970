//! The namespace state machine: directories, files, users and the cluster
//! map, kept in redb tables and changed only by [`Command`]s applied in log
//! order.
//!
//! - `tables.rs`: the tables and how a command or a read holds them
//! - `command.rs`: what a log entry holds and answers
//! - `apply.rs`: applying one entry (de-duplication, then the command)
//! - `requests.rs`: the outcomes of requests, kept for retries
//! - `namespace.rs`: mkdir, commit, remove, purge, rename, copy, chmod,
//!   chown, extended attributes
//! - `accounts.rs`: users, groups and sessions
//! - `nodes.rs`: the cluster map
//! - `write.rs`: the one write path of inodes and entries, which keeps the
//!   derived state (chunk references, counters, entry counts) in step
//! - `view.rs`: lookups and path resolution with permission checks
//! - `reads.rs`: what the read routes answer (stat, list, walk, xattrs)
//! - `inode.rs`, `users.rs`: the records
//! - `upgrade.rs`: the state's format, and upgrades from older ones
//!
//! Invariant (atomicity): a command either applies whole or changes nothing.
//! Every command checks everything that can be refused before its first
//! write; after that only a storage error can stop it, and a storage error
//! aborts the whole transaction. Determinism: a command's outcome depends
//! only on the state and the command (its clock is the proposer's
//! `now_ns`, carried in the command).
//!
//! Every command runs as a user (`Request::user`; none means the cluster
//! itself, with every right) and is checked against the permission rules
//! in `perm.rs` before it writes anything.

mod accounts;
mod apply;
mod command;
mod held;
mod inode;
mod namespace;
mod nodes;
mod reads;
mod requests;
mod tables;
mod upgrade;
pub mod users;
mod view;
mod write;

pub use accounts::{home_of, require_admin, HOME_DIR};
pub use command::{Command, Output, Request, Response, REQUEST_FORMAT};
pub use inode::{Inode, DETACHED};
pub use namespace::Orphan;
pub use nodes::{read_map, removed_nodes};
pub use reads::{counts, page_limit, reference_count, referenced, users as users_page, Names};
pub use requests::RequestOutcome;
pub use tables::{
    entry_key, entry_name, get_counter, get_counter_or_zero, keys, ReadView, Tables, View, AUTH,
    CHUNK_REFS, DIRENTS, HELD, HELD_BY_SESSION, INODES, LINKS, ORPHANS, REQUESTS, REQUESTS_BY_TIME,
    SM_META, XATTRS,
};
pub use upgrade::STATE_FORMAT;
pub use view::child_path;
