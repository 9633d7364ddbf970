//! S3 buckets as the namespace holds them, for every door that makes them
//! (the S3 gateway, the web page): bucket `NAME` is the directory
//! `/buckets/NAME`, mode 0700, owned by the user who made it, and its
//! multipart uploads stage under `/buckets/.uploads/NAME`, owned alike.
//! `/buckets` belongs to the cluster, so only a cluster process (holding
//! the cluster secret) makes and removes buckets, for a user it has
//! identified: the `system` file API below.

use cairn_proto::api::{ChownRequest, WhoAmI};
use cairn_proto::ErrorCode;

use crate::error::ClientError;
use crate::files::Files;

/// Where buckets live.
pub const BUCKETS_DIR: &str = "/buckets";
/// Where multipart uploads stage their parts: `UPLOADS_DIR/BUCKET/ID/`.
/// A dot name can never be a bucket's (bucket names start with a letter
/// or a digit).
pub const UPLOADS_DIR: &str = "/buckets/.uploads";
/// The one well-formed name a bucket cannot have: `GET /metrics` is the
/// gateway's Prometheus page.
pub const RESERVED_BUCKET: &str = "metrics";
/// A new bucket's permission bits: private, as S3's are.
pub const BUCKET_MODE: u32 = 0o700;

/// What is wrong with a bucket name by S3's rules (3 to 63 characters of
/// lowercase letters, digits, `.` and `-`, starting and ending with a
/// letter or digit, no `..`, not an IP address), if anything.
pub fn bucket_name_problem(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let well_formed = (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err();
    if name == RESERVED_BUCKET {
        Some(format!(
            "bucket name {name:?} is reserved: the gateway serves its metrics at /{RESERVED_BUCKET}"
        ))
    } else if well_formed {
        None
    } else {
        Some(format!(
            "bucket name {name:?}: use 3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
        ))
    }
}

pub fn bucket_path(bucket: &str) -> String {
    format!("{BUCKETS_DIR}/{bucket}")
}

pub fn uploads_path(bucket: &str) -> String {
    format!("{UPLOADS_DIR}/{bucket}")
}

/// Why a bucket was not made.
#[derive(Debug)]
pub enum CreateBucketError {
    InvalidName(String),
    /// The user has a bucket of that name already.
    OwnedByYou,
    /// Another user has a bucket of that name.
    TakenByAnother,
    Client(ClientError),
}

impl std::fmt::Display for CreateBucketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CreateBucketError::InvalidName(problem) => f.write_str(problem),
            CreateBucketError::OwnedByYou => f.write_str("you own a bucket of that name already"),
            CreateBucketError::TakenByAnother => {
                f.write_str("a bucket of that name belongs to another user; choose another name")
            }
            CreateBucketError::Client(e) => e.fmt(f),
        }
    }
}

impl From<ClientError> for CreateBucketError {
    fn from(e: ClientError) -> CreateBucketError {
        CreateBucketError::Client(e)
    }
}

/// Makes `/buckets` and `/buckets/.uploads` (once per cluster).
pub async fn ensure_layout(system: &Files) -> Result<(), ClientError> {
    for dir in [BUCKETS_DIR, UPLOADS_DIR] {
        match system.mkdir(dir, true, Some(0o755)).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes bucket `bucket` for `who`, through `system` (a cluster process's
/// file API): its directory and its staging directory, theirs.
pub async fn create_bucket(
    system: &Files,
    bucket: &str,
    who: &WhoAmI,
) -> Result<(), CreateBucketError> {
    if let Some(problem) = bucket_name_problem(bucket) {
        return Err(CreateBucketError::InvalidName(problem));
    }
    let path = bucket_path(bucket);
    let mut made = system.mkdir(&path, false, Some(BUCKET_MODE)).await;
    if made
        .as_ref()
        .is_err_and(|e| e.code() == Some(ErrorCode::NotFound))
    {
        // No door made the layout yet (the gateway does when it starts).
        ensure_layout(system).await?;
        made = system.mkdir(&path, false, Some(BUCKET_MODE)).await;
    }
    match made {
        Ok(_) => {}
        Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => {
            let stat = system.stat(crate::Target::Path(&path)).await?;
            return Err(if stat.owner == who.user {
                CreateBucketError::OwnedByYou
            } else {
                CreateBucketError::TakenByAnother
            });
        }
        Err(e) => return Err(e.into()),
    }
    let group = who.groups.first().map(String::as_str);
    if let Err(e) = give(system, &path, &who.user, group).await {
        // Never leave a bucket that belongs to the cluster.
        let _ = system.remove(&path, false).await;
        return Err(e.into());
    }
    ensure_uploads_dir(system, bucket, &who.user, group).await?;
    tracing::info!(bucket, user = %who.user, "bucket created");
    Ok(())
}

/// Makes the bucket's staging directory for multipart uploads, owned as
/// the bucket is, unless it exists (a bucket made with `cairn mkdir` has
/// none until its first upload).
pub async fn ensure_uploads_dir(
    system: &Files,
    bucket: &str,
    owner: &str,
    group: Option<&str>,
) -> Result<(), ClientError> {
    let path = uploads_path(bucket);
    match system.mkdir(&path, true, Some(BUCKET_MODE)).await {
        Ok(_) => {}
        Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => return Ok(()),
        Err(e) => return Err(e),
    }
    give(system, &path, owner, group).await
}

/// Gives `path` to `owner` and `group`.
async fn give(
    system: &Files,
    path: &str,
    owner: &str,
    group: Option<&str>,
) -> Result<(), ClientError> {
    system
        .chown(&ChownRequest {
            path: path.to_string(),
            owner: Some(owner.to_string()),
            group: group.map(str::to_string),
            uid: None,
            gid: None,
        })
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3() {
        for good in ["abc", "my-bucket.2024", "0ab"] {
            assert_eq!(bucket_name_problem(good), None, "{good}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            ".uploads",
            "a_b",
            RESERVED_BUCKET,
        ] {
            assert!(bucket_name_problem(bad).is_some(), "{bad}");
        }
        assert!(bucket_name_problem("metrics").unwrap().contains("reserved"));
    }
}
