//! Cairn's errors as errno values. Every error the mount answers with is
//! logged with its message first (the message says what to do; errno
//! cannot).

use cairn_client::ClientError;
use cairn_proto::ErrorCode;
use fuser::Errno;

/// The errno for `error`, logged at a level that fits it: refusals a
/// program expects (missing names, existing names) at debug, the rest as
/// warnings an operator should see.
pub fn errno(doing: &str, error: &ClientError) -> Errno {
    let errno = match error.code() {
        Some(code) => match code {
            ErrorCode::NotFound => Errno::ENOENT,
            ErrorCode::AlreadyExists => Errno::EEXIST,
            ErrorCode::NotADirectory => Errno::ENOTDIR,
            ErrorCode::IsADirectory => Errno::EISDIR,
            ErrorCode::DirectoryNotEmpty => Errno::ENOTEMPTY,
            ErrorCode::InvalidName | ErrorCode::InvalidArgument => Errno::EINVAL,
            ErrorCode::TooLarge => Errno::EFBIG,
            ErrorCode::NoSpace | ErrorCode::NotEnoughNodes => Errno::ENOSPC,
            ErrorCode::PermissionDenied | ErrorCode::Unauthenticated => Errno::EACCES,
            ErrorCode::NotOwner => Errno::EPERM,
            ErrorCode::TooManyLinks => Errno::EMLINK,
            ErrorCode::TooManyRequests | ErrorCode::Unavailable => Errno::EAGAIN,
            _ => Errno::EIO,
        },
        None => Errno::EIO,
    };
    let expected = matches!(
        error.code(),
        Some(
            ErrorCode::NotFound
                | ErrorCode::AlreadyExists
                | ErrorCode::DirectoryNotEmpty
                | ErrorCode::IsADirectory
                | ErrorCode::NotADirectory
        )
    );
    if expected {
        tracing::debug!("{doing}: {error}");
    } else {
        tracing::warn!("{doing}: {error}");
    }
    errno
}
