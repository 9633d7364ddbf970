//! What the log holds: one [`Request`] per entry (a [`Command`], the
//! proposer's clock, the user it runs as, the client's request id), and
//! what applying it answers ([`Output`]).
//!
//! A request carries its format ([`REQUEST_FORMAT`]) in its JSON. Entries
//! written by the previous release (no format: format 1, clock in ms) are
//! still read: a member re-applies them after a crash. An entry of a newer
//! format than this binary knows is refused when read, with a message that
//! says to upgrade, rather than applied wrongly.

use cairn_proto::api::{
    Acting, ChmodRequest, ChownRequest, CommitRequest, CommitResponse, KeyInfo, LinkRequest,
    MakeNodeRequest, MkdirRequest, MoveRequest, MutationResponse, RegisterRequest, RemoveRequest,
    TimesRequest, UserResponse, XattrRemoveRequest, XattrSetRequest,
};
use cairn_proto::{ApiError, ClusterMap, FileId, NodeId, NodeState};
use serde::{Deserialize, Serialize};

use crate::auth::TokenHash;

/// The format of the requests this binary writes: 2 has the clock in
/// nanoseconds (`now_ns`); 1 (no `format` field) had `now_ms`; 3 is
/// written only by requests `acting` for a local identity, so that a
/// member too old to know `acting` refuses them instead of applying them
/// with the admin's rights.
pub const REQUEST_FORMAT: u8 = 2;
pub const ACTING_REQUEST_FORMAT: u8 = 3;

/// A command as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RequestWire")]
pub struct Request {
    pub format: u8,
    /// The proposer's clock, in nanoseconds since the Unix epoch.
    pub now_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<u128>,
    /// The user the command runs as; `None`: the cluster itself (chunk
    /// servers, the liveness watcher, start-up), with every right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The numeric identity `user` (an admin) acts as for a trusted
    /// client's local process (`cairn mount --allow-other`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting: Option<Acting>,
    pub command: Command,
}

impl Request {
    pub fn new(
        now_ns: u64,
        request_id: Option<u128>,
        user: Option<String>,
        command: Command,
    ) -> Request {
        Request {
            format: REQUEST_FORMAT,
            now_ns,
            request_id,
            user,
            acting: None,
            command,
        }
    }

    /// The same request, run as `acting` by its (admin) user.
    pub fn acting(mut self, acting: Option<Acting>) -> Request {
        if acting.is_some() {
            self.format = ACTING_REQUEST_FORMAT;
        }
        self.acting = acting;
        self
    }
}

/// Every shape of a request in the log, as read.
#[derive(Deserialize)]
struct RequestWire {
    #[serde(default)]
    format: Option<u8>,
    #[serde(default)]
    now_ns: Option<u64>,
    #[serde(default)]
    now_ms: Option<u64>,
    #[serde(default)]
    request_id: Option<u128>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    acting: Option<Acting>,
    command: Command,
}

impl TryFrom<RequestWire> for Request {
    type Error = String;

    fn try_from(wire: RequestWire) -> Result<Request, String> {
        let format = wire.format.unwrap_or(1);
        let now_ns = match format {
            1 => wire
                .now_ms
                .ok_or("a format-1 log entry without now_ms")?
                .saturating_mul(1_000_000),
            REQUEST_FORMAT | ACTING_REQUEST_FORMAT => {
                wire.now_ns.ok_or("a log entry without now_ns")?
            }
            newer => {
                return Err(format!(
                    "log entry of format {newer} is newer than this binary understands ({ACTING_REQUEST_FORMAT}); \
                     upgrade cairn on this metadata member"
                ))
            }
        };
        Ok(Request {
            format: if wire.acting.is_some() {
                ACTING_REQUEST_FORMAT
            } else {
                REQUEST_FORMAT
            },
            now_ns,
            request_id: wire.request_id,
            user: wire.user,
            acting: wire.acting,
            command: wire.command,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Mkdir(MkdirRequest),
    Commit(CommitRequest),
    /// Removes a file or an empty directory at once; a non-empty directory
    /// (with `recursive`) leaves the namespace at once and its entries are
    /// deleted by later [`Command::Purge`]s.
    Remove(RemoveRequest),
    Rename(MoveRequest),
    Copy(MoveRequest),
    Chmod(ChmodRequest),
    Chown(ChownRequest),
    SetTimes(TimesRequest),
    SetXattr(XattrSetRequest),
    RemoveXattr(XattrRemoveRequest),
    /// Deletes up to `max_entries` entries of removed trees (the leader
    /// proposes these while any remain).
    Purge {
        max_entries: u64,
    },
    RegisterNode(RegisterRequest),
    /// Sets a node's state; with `expect`, only if the node is in that
    /// state when the command applies (a no-op otherwise), so that the
    /// liveness watcher never undoes an operator's drain that won a race.
    SetNodeState {
        id: NodeId,
        state: NodeState,
        #[serde(default)]
        expect: Option<NodeState>,
    },
    /// Removes a `draining` or `down` node from the map for good.
    RemoveNode {
        id: NodeId,
    },
    SetParams {
        replication: u32,
        chunk_size_bytes: u64,
    },
    /// Creates the user `admin` (uid 0, with `/home/admin`) if the cluster
    /// has no user yet; a no-op otherwise.
    BootstrapAdmin {
        password_hash: String,
    },
    AddUser {
        name: String,
        password_hash: String,
        groups: Vec<String>,
        admin: bool,
    },
    /// Sets a password and ends every session of the user.
    SetPassword {
        name: String,
        password_hash: String,
    },
    RemoveUser {
        name: String,
    },
    /// Opens a session for a user whose password the leader verified,
    /// unless the password changed since (`user_version`).
    CreateSession {
        token_hash: TokenHash,
        name: String,
        expires_ms: u64,
        user_version: u64,
    },
    /// Ends the session with this token hash (logout).
    EndSession {
        token_hash: TokenHash,
    },
    /// Ends every session of a user.
    EndUserSessions {
        name: String,
    },
    /// Gives `user` an S3 access key; the leader drew the id and the
    /// secret and sealed the secret (`auth::SealingKey`).
    CreateAccessKey {
        id: String,
        user: String,
        sealed_secret: Vec<u8>,
    },
    RemoveAccessKey {
        id: String,
    },
    /// A symbolic link, named pipe, socket or device node (`fs/mknod`).
    MakeNode(MakeNodeRequest),
    /// Another name for a file (`fs/link`).
    Link(LinkRequest),
    /// A remove by a client with the file open (`hold_open`): a file's
    /// last name goes, the file stays for `session` (`held.rs`).
    RemoveOpen {
        request: RemoveRequest,
        session: TokenHash,
    },
    /// A rename over a file the client has open (`hold_open`): the file
    /// replaced, if that was its last name, stays for `session`.
    RenameOpen {
        request: MoveRequest,
        session: TokenHash,
    },
    /// `session` closed the held file `id` for the last time.
    Release {
        id: FileId,
        session: TokenHash,
    },
    /// Requests proposed while another entry was being committed, applied
    /// in order, each as its own user and with its own request id, in one
    /// log entry (one fsync); answered with [`Output::Batch`]. Never
    /// nested.
    Batch(Vec<Request>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// Raft-internal entries (blank, membership) have no output.
    Nothing,
    Mutation(MutationResponse),
    Commit(CommitResponse),
    Map(ClusterMap),
    User(UserResponse),
    Key(KeyInfo),
    /// What a purge deleted, and how many removed trees remain.
    Purged {
        entries: u64,
        trees_left: u64,
    },
    /// The outcome of each request of a [`Command::Batch`], in order.
    Batch(Vec<Response>),
}

/// What a log entry's application answers to the proposer.
pub type Response = Result<Output, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_the_previous_format_read_and_newer_ones_are_refused() {
        let mkdir = r#"{"Mkdir": {"path": "/a"}}"#;
        let old: Request =
            serde_json::from_str(&format!(r#"{{"now_ms": 5, "command": {mkdir}}}"#)).unwrap();
        assert_eq!((old.format, old.now_ns), (REQUEST_FORMAT, 5_000_000));
        let current = Request::new(7, Some(3), Some("alice".into()), old.command.clone());
        let json = serde_json::to_string(&current).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), current);
        let newer = format!(r#"{{"format": 9, "now_ns": 1, "command": {mkdir}}}"#);
        let refused = serde_json::from_str::<Request>(&newer)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("newer") && refused.contains("upgrade cairn"),
            "{refused}"
        );
        let missing =
            serde_json::from_str::<Request>(&format!(r#"{{"format": 2, "command": {mkdir}}}"#));
        assert!(missing.is_err(), "a clock is required");
    }
}
