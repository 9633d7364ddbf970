//! What can go wrong, typed: a door (S3, the mount, the web page) turns
//! each kind into its own vocabulary (`NoSuchKey`, `ENOENT`, a 404), and
//! a person reads the message, which says what to do.

use cairn_proto::{ApiError, ChunkId, ErrorCode, FileId};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The metadata service refused the request; its code says why
    /// (`not_found`, `permission_denied`, ...) and its message what to do.
    #[error("{0}")]
    Api(ApiError),
    #[error(
        "cannot reach the metadata service at {addr} ({reason}); start a local cluster with `cairn dev`, \
         or point at yours with --meta ADDR[,ADDR...] or the CAIRN_META variable"
    )]
    MetaUnreachable { addr: String, reason: String },
    #[error(
        "no metadata leader could serve this ({reason}); a metadata group answers only while a majority of \
         its members run and reach each other: check each member with `cairn --stale-ok --meta ADDR status` \
         and start the ones that are down (members given: {addr})"
    )]
    NoLeader { addr: String, reason: String },
    /// A chunk server did not answer a control call (presence, repair).
    #[error("cannot reach {server}: {reason}; check `cairn status`")]
    NodeUnreachable { server: String, reason: String },
    /// No node gave a copy of a chunk: each was unreachable or had none.
    #[error(
        "no storage node could give chunk {id} ({}); check `cairn status` and start the nodes that are down",
        join_or(attempts, "no storage node serves reads")
    )]
    ChunkUnavailable { id: ChunkId, attempts: Vec<String> },
    /// Every copy fetched failed its hash. Each was reported to its node,
    /// which checks it and fetches a good copy if one exists anywhere.
    #[error(
        "every copy of chunk {id} that could be fetched is corrupt ({}); the nodes quarantine them and repair \
         from a good copy if one exists: run `cairn fsck` to see",
        nodes.join(", ")
    )]
    Corrupt { id: ChunkId, nodes: Vec<String> },
    /// A chunk could not be stored on enough nodes; nothing was committed.
    #[error(
        "chunk {id} was stored on only {stored} node(s), fewer than the {needed} a write needs ({}); \
         nothing was committed. Check `cairn status`",
        failures.join("; ")
    )]
    NotStored {
        id: ChunkId,
        stored: usize,
        needed: usize,
        failures: Vec<String>,
    },
    /// The file changed while it was being read, after the capabilities
    /// to read the old contents ran out: read it again.
    #[error("file {id} changed while it was being read; read it again")]
    Changed { id: FileId },
    /// A file's chunk list does not match its digest.
    #[error("file {id} has a chunk list that does not match its digest; the metadata is damaged")]
    DamagedMetadata { id: FileId },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("unexpected answer from {server}: {detail}")]
    Protocol { server: String, detail: String },
}

fn join_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join("; ")
    }
}

impl ClientError {
    /// The API error code, if the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api(e) => Some(e.code),
            _ => None,
        }
    }

    /// The server said the file, directory or attribute does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::NotFound)
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }

    /// A refusal made by the client itself, before asking anyone.
    pub fn invalid(message: impl Into<String>) -> ClientError {
        ClientError::Api(ApiError::new(ErrorCode::InvalidArgument, message))
    }
}

impl From<ApiError> for ClientError {
    fn from(e: ApiError) -> Self {
        ClientError::Api(e)
    }
}
