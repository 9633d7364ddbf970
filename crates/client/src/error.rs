use cairn_proto::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request; its message says why and what to do.
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
    /// A chunk could not be stored or fetched well enough; says which and why.
    #[error("{0}")]
    Transfer(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("unexpected answer from {server}: {detail}")]
    Protocol { server: String, detail: String },
}

impl ClientError {
    /// The API error code, if the server refused the request.
    pub fn code(&self) -> Option<cairn_proto::ErrorCode> {
        match self {
            ClientError::Api(e) => Some(e.code),
            _ => None,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }
}
