//! Cairn's errors as S3 errors: the code S3 clients act on, and Cairn's
//! own message, which names the object and what to do.

use cairn_client::ClientError;
use cairn_proto::ErrorCode;
use s3s::{S3Error, S3ErrorCode};

/// What a `not_found` means where it happened.
#[derive(Debug, Clone, Copy)]
pub enum Missing {
    Key,
    Bucket,
    Upload,
}

pub fn s3_error(error: ClientError, missing: Missing) -> S3Error {
    let message = error.to_string();
    let code = match error.code() {
        Some(ErrorCode::NotFound) => match missing {
            Missing::Key => S3ErrorCode::NoSuchKey,
            Missing::Bucket => S3ErrorCode::NoSuchBucket,
            Missing::Upload => S3ErrorCode::NoSuchUpload,
        },
        Some(ErrorCode::PermissionDenied | ErrorCode::NotOwner) => S3ErrorCode::AccessDenied,
        Some(ErrorCode::Unauthenticated) => S3ErrorCode::InvalidAccessKeyId,
        Some(ErrorCode::NotADirectory | ErrorCode::IsADirectory) => {
            return collision(&message);
        }
        Some(ErrorCode::InvalidName | ErrorCode::InvalidArgument) => S3ErrorCode::InvalidArgument,
        Some(ErrorCode::TooLarge) => S3ErrorCode::EntityTooLarge,
        Some(ErrorCode::HashMismatch) => S3ErrorCode::BadDigest,
        Some(ErrorCode::DirectoryNotEmpty) => S3ErrorCode::BucketNotEmpty,
        Some(ErrorCode::AlreadyExists) => S3ErrorCode::PreconditionFailed,
        Some(ErrorCode::TooManyRequests) => S3ErrorCode::SlowDown,
        Some(
            ErrorCode::NotEnoughNodes
            | ErrorCode::NoSpace
            | ErrorCode::Unavailable
            | ErrorCode::NotLeader,
        ) => S3ErrorCode::ServiceUnavailable,
        Some(ErrorCode::FailedPrecondition | ErrorCode::TooManyLinks) => {
            S3ErrorCode::InvalidRequest
        }
        Some(ErrorCode::Internal) => S3ErrorCode::InternalError,
        None => match error {
            ClientError::MetaUnreachable { .. }
            | ClientError::NoLeader { .. }
            | ClientError::NodeUnreachable { .. }
            | ClientError::ChunkUnavailable { .. }
            | ClientError::NotStored { .. } => S3ErrorCode::ServiceUnavailable,
            _ => S3ErrorCode::InternalError,
        },
    };
    if matches!(
        code,
        S3ErrorCode::InternalError | S3ErrorCode::ServiceUnavailable
    ) {
        tracing::warn!(%message, "an S3 request failed");
    }
    S3Error::with_message(code, message)
}

/// A key that would need a file where a directory is, or the reverse
/// (`a` and `a/b`): S3 allows both, a file system cannot hold both.
pub fn collision(detail: &str) -> S3Error {
    let mut error = S3Error::with_message(
        S3ErrorCode::Custom("KeyCollidesWithPrefix".into()),
        format!(
            "{detail}. Cairn stores keys as paths, so a key cannot also be the prefix of other keys \
             (as `a` and `a/b`); choose another key"
        ),
    );
    error.set_status_code(axum::http::StatusCode::CONFLICT);
    error
}
