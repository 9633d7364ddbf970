//! The error vocabulary of every API. An error carries a machine-readable
//! code (which also fixes the HTTP status) and a message for a person that
//! names the object, the cause and what to do.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    DirectoryNotEmpty,
    InvalidName,
    InvalidArgument,
    /// A chunk body whose hash is not the id it was sent under.
    HashMismatch,
    TooLarge,
    /// Not enough storage nodes are up to place the data.
    NotEnoughNodes,
    /// This metadata member is not the leader; `leader` in the body says
    /// who is. Answered as a 307 redirect when the leader is known.
    NotLeader,
    /// The operation cannot be done in the object's current state (removing
    /// a node that still holds data); the message says what to do first.
    FailedPrecondition,
    /// A chunk server has no room for the chunk; writers go to another node.
    NoSpace,
    Unavailable,
    /// The request lacks a credential it needs (a login, or the cluster
    /// secret), or the one it carries is expired, revoked or forged.
    Unauthenticated,
    /// The caller is known but may not do this (permission bits, admin-only
    /// calls, a chunk capability for another chunk).
    PermissionDenied,
    /// Only the object's owner (or an admin) may do this: chmod, chown,
    /// setting given times, removing another's entry from a sticky
    /// directory (EPERM, where `permission_denied` is EACCES).
    NotOwner,
    /// Too many attempts (logins) in a short time; retry later.
    TooManyRequests,
    /// A file has as many names (hard links) as it may (EMLINK).
    TooManyLinks,
    Internal,
}

impl ErrorCode {
    /// The code as it appears in JSON (`permission_denied`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::NotADirectory => "not_a_directory",
            ErrorCode::IsADirectory => "is_a_directory",
            ErrorCode::DirectoryNotEmpty => "directory_not_empty",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::HashMismatch => "hash_mismatch",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NotEnoughNodes => "not_enough_nodes",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::NoSpace => "no_space",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::TooManyLinks => "too_many_links",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists
            | ErrorCode::DirectoryNotEmpty
            | ErrorCode::FailedPrecondition
            | ErrorCode::TooManyLinks => 409,
            ErrorCode::NoSpace => 507,
            ErrorCode::NotADirectory
            | ErrorCode::IsADirectory
            | ErrorCode::InvalidName
            | ErrorCode::InvalidArgument
            | ErrorCode::HashMismatch => 400,
            ErrorCode::TooLarge => 413,
            ErrorCode::NotLeader => 503,
            ErrorCode::NotEnoughNodes | ErrorCode::Unavailable => 503,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied | ErrorCode::NotOwner => 403,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal => 500,
        }
    }
}

/// The JSON body of every error response: `{"code": "...", "message": "..."}`,
/// and with `not_leader`, `"leader": "host:port"` when the answering
/// metadata member knows who leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Address of the metadata leader (only on `not_leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            leader: None,
        }
    }

    /// A metadata member that does not lead refuses a call that needs the
    /// leader, naming the leader when it knows it.
    pub fn not_leader(leader: Option<String>) -> Self {
        let message = match &leader {
            Some(addr) => format!("this metadata member is not the leader; the leader is {addr}"),
            None => {
                "this metadata member is not the leader and no leader is elected (is a majority of \
                     the metadata members running and reachable?); retry shortly"
                    .to_string()
            }
        };
        ApiError {
            code: ErrorCode::NotLeader,
            message,
            leader,
        }
    }

    pub fn not_found(what: impl fmt::Display) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} does not exist"))
    }

    pub fn internal(message: impl fmt::Display) -> Self {
        ApiError::new(ErrorCode::Internal, format!("internal error: {message}"))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_the_same_in_logs_and_in_json() {
        for code in [
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::NotADirectory,
            ErrorCode::IsADirectory,
            ErrorCode::DirectoryNotEmpty,
            ErrorCode::InvalidName,
            ErrorCode::InvalidArgument,
            ErrorCode::HashMismatch,
            ErrorCode::TooLarge,
            ErrorCode::NotEnoughNodes,
            ErrorCode::NotLeader,
            ErrorCode::FailedPrecondition,
            ErrorCode::NoSpace,
            ErrorCode::Unavailable,
            ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied,
            ErrorCode::TooManyRequests,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json.as_str(), Some(code.as_str()));
        }
    }
}
