//! The S3 operations, each on the file API as the user of the request's
//! access key (`Gateway::files_for`): permissions are decided by the
//! metadata service, as for every other door. Bucket creation and removal
//! are the exception: `/buckets` belongs to the cluster, so the gateway
//! makes and removes bucket directories itself, after checking that the
//! user may (any user may make a bucket, only its owner or an admin remove
//! it), and gives a new bucket to its user.

use std::time::Duration;

use cairn_client::Files;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

/// What a gateway is allowed and how long things last.
#[derive(Debug, Clone)]
pub struct GatewayLimits {
    /// Largest single PutObject or UploadPart body (S3: 5 GiB).
    pub max_put_bytes: u64,
    /// Multipart uploads not completed within this long are removed.
    pub multipart_expiry: Duration,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        GatewayLimits {
            max_put_bytes: 5 * 1024 * 1024 * 1024,
            multipart_expiry: Duration::from_secs(7 * 86_400),
        }
    }
}

#[derive(Clone)]
pub struct Gateway {
    /// The gateway's own file API: the cluster token, acting for no user.
    pub(crate) system: Files,
    pub(crate) limits: GatewayLimits,
}

impl Gateway {
    pub fn new(system: Files, limits: GatewayLimits) -> Gateway {
        Gateway { system, limits }
    }

    /// The file API acting for the user of the request's access key.
    /// Anonymous requests never get here (s3s refuses them first), but
    /// the check stays: nothing runs as the cluster for a stranger.
    pub(crate) fn files_for<T>(&self, req: &S3Request<T>) -> S3Result<Files> {
        let Some(credentials) = &req.credentials else {
            return Err(s3_error!(
                AccessDenied,
                "sign requests with a Cairn access key (`cairn key create`)"
            ));
        };
        let meta = self
            .system
            .meta()
            .clone()
            .with_access_key(Some(&credentials.access_key));
        Ok(self.system.acting_as(meta))
    }
}

/// The `S3` trait, each operation in the module for its kind.
#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.do_list_buckets(req).await.map(S3Response::new)
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.do_create_bucket(req).await.map(S3Response::new)
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.do_head_bucket(req).await.map(S3Response::new)
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.do_delete_bucket(req).await.map(S3Response::new)
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.do_get_bucket_location(req).await.map(S3Response::new)
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.do_put_object(req).await.map(S3Response::new)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.do_get_object(req).await.map(S3Response::new)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.do_head_object(req).await.map(S3Response::new)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.do_delete_object(req).await.map(S3Response::new)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.do_delete_objects(req).await.map(S3Response::new)
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.do_copy_object(req).await.map(S3Response::new)
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.do_list_objects(req).await.map(S3Response::new)
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.do_list_objects_v2(req).await.map(S3Response::new)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.do_create_multipart_upload(req)
            .await
            .map(S3Response::new)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.do_upload_part(req).await.map(S3Response::new)
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.do_upload_part_copy(req).await.map(S3Response::new)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.do_list_parts(req).await.map(S3Response::new)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.do_list_multipart_uploads(req)
            .await
            .map(S3Response::new)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.do_complete_multipart_upload(req)
            .await
            .map(S3Response::new)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.do_abort_multipart_upload(req)
            .await
            .map(S3Response::new)
    }
}
