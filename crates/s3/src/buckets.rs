//! Bucket operations. A bucket is the directory `/buckets/NAME`, mode
//! 0700, owned by the user who made it; its multipart uploads stage under
//! `/buckets/.uploads/NAME`, owned alike.

use std::time::{Duration, UNIX_EPOCH};

use cairn_client::buckets::{self, CreateBucketError};
use cairn_client::{ClientError, Files, Page, Target};
use cairn_proto::api::{EntryKind, WhoAmI};
use cairn_proto::ErrorCode;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Result};

use crate::errors::{s3_error, Missing};
use crate::gateway::Gateway;
use crate::names::{bucket_path, uploads_path, validate_bucket, BUCKETS_DIR};

/// Most buckets ListBuckets answers (S3's default quota per account).
pub const MAX_BUCKETS_LISTED: usize = 10_000;

pub fn timestamp_ms(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

impl Gateway {
    /// Makes `/buckets` and `/buckets/.uploads` (once per cluster).
    pub async fn ensure_layout(&self) -> Result<(), ClientError> {
        buckets::ensure_layout(&self.system).await
    }

    async fn whoami(&self, files: &Files) -> S3Result<WhoAmI> {
        files
            .meta()
            .whoami()
            .await
            .map_err(|e| s3_error(e, Missing::Bucket))
    }

    /// The bucket's directory, checked to exist (as the user sees it).
    pub(crate) async fn bucket_exists(&self, files: &Files, bucket: &str) -> S3Result<()> {
        validate_bucket(bucket)?;
        match files.stat(Target::Path(&bucket_path(bucket))).await {
            Ok(stat) if stat.kind == EntryKind::Dir => Ok(()),
            Ok(_) => Err(s3_error!(NoSuchBucket, "bucket {bucket} does not exist")),
            Err(e) => Err(s3_error(e, Missing::Bucket)),
        }
    }

    pub(crate) async fn do_list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<ListBucketsOutput> {
        let files = self.files_for(&req)?;
        let who = self.whoami(&files).await?;
        let mut buckets = Vec::new();
        self.system
            .list_each(BUCKETS_DIR, |entry| {
                let mine = entry.owner == who.user || who.admin;
                if buckets.len() == MAX_BUCKETS_LISTED {
                    return Ok(());
                }
                if entry.kind == EntryKind::Dir && mine && validate_bucket(&entry.name).is_ok() {
                    buckets.push(Bucket {
                        name: Some(entry.name),
                        creation_date: Some(timestamp_ms(entry.modified_ms)),
                        ..Default::default()
                    });
                }
                Ok(())
            })
            .await
            .map_err(|e| s3_error(e, Missing::Bucket))?;
        Ok(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some(who.user.clone()),
                id: Some(who.user),
            }),
            ..Default::default()
        })
    }

    pub(crate) async fn do_create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<CreateBucketOutput> {
        let files = self.files_for(&req)?;
        let bucket = req.input.bucket.as_str();
        validate_bucket(bucket)?;
        let who = self.whoami(&files).await?;
        match buckets::create_bucket(&self.system, bucket, &who).await {
            Ok(()) => Ok(CreateBucketOutput {
                location: Some(format!("/{bucket}")),
            }),
            Err(CreateBucketError::InvalidName(problem)) => {
                Err(s3_error!(InvalidBucketName, "{problem}"))
            }
            Err(CreateBucketError::OwnedByYou) => Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "you own bucket {bucket} already"
            )),
            Err(CreateBucketError::TakenByAnother) => Err(s3_error!(
                BucketAlreadyExists,
                "bucket {bucket} exists and belongs to another user; choose another name"
            )),
            Err(CreateBucketError::Client(e)) => Err(s3_error(e, Missing::Bucket)),
        }
    }

    pub(crate) async fn do_head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<HeadBucketOutput> {
        let files = self.files_for(&req)?;
        let bucket = req.input.bucket.as_str();
        validate_bucket(bucket)?;
        // Listing needs read permission: the same check a GET would meet.
        files
            .list(
                &bucket_path(bucket),
                &Page {
                    after: None,
                    limit: Some(1),
                },
            )
            .await
            .map_err(|e| s3_error(e, Missing::Bucket))?;
        Ok(HeadBucketOutput::default())
    }

    pub(crate) async fn do_get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<GetBucketLocationOutput> {
        let files = self.files_for(&req)?;
        self.bucket_exists(&files, &req.input.bucket).await?;
        // us-east-1, written as no constraint.
        Ok(GetBucketLocationOutput::default())
    }

    pub(crate) async fn do_delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<DeleteBucketOutput> {
        let files = self.files_for(&req)?;
        let bucket = req.input.bucket.as_str();
        validate_bucket(bucket)?;
        let who = self.whoami(&files).await?;
        let path = bucket_path(bucket);
        let stat = files
            .stat(Target::Path(&path))
            .await
            .map_err(|e| s3_error(e, Missing::Bucket))?;
        if stat.owner != who.user && !who.admin {
            return Err(s3_error!(
                AccessDenied,
                "bucket {bucket} belongs to {}; only its owner or an admin may remove it",
                stat.owner
            ));
        }
        match self.system.remove(&path, false).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::DirectoryNotEmpty) => {
                return Err(s3_error!(
                    BucketNotEmpty,
                    "bucket {bucket} still holds objects; delete them first"
                ))
            }
            Err(e) => return Err(s3_error(e, Missing::Bucket)),
        }
        match self.system.remove(&uploads_path(bucket), true).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(bucket, error = %e, "cannot remove the multipart uploads of a removed bucket")
            }
        }
        tracing::info!(bucket, user = %who.user, "bucket removed");
        Ok(DeleteBucketOutput::default())
    }
}
