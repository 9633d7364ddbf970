//! Object operations: put, get, head, delete, copy.
//!
//! A put streams the body into chunks while hashing it (MD5 for the ETag,
//! and any checksum the client sent or announced as a trailer), checks the
//! hashes, and only then commits the file with its attributes, in one
//! step: a body that fails its checksum leaves nothing behind but chunks
//! no file references, which chunk servers collect. Parents of a key are
//! made when the first put finds them missing; a delete prunes the parents
//! it leaves empty, so listings never show a prefix without an object.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use cairn_client::{ClientError, Files, Page, PutOptions, Reader, Target, UploadSummary};
use cairn_proto::api::{EntryKind, OnExists, Stat, XattrSetMode};
use cairn_proto::xattr::Xattr;
use cairn_proto::{ChunkRef, ErrorCode};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Result};

use crate::attrs::{
    etag_of, integrity_of, metadata_bytes, Checksums, Integrity, ObjectHeaders, FOLDER,
    MAX_USER_METADATA_BYTES,
};
use crate::body::{Expected, Hashes, HashingBody, Verified};
use crate::errors::{collision, s3_error, Missing};
use crate::gateway::Gateway;
use crate::names::{is_folder, object_path, parents_of, validate_bucket};

/// The MD5 of no bytes: the ETag of an empty object and of a folder.
pub const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
/// Chunks fetched at once for one GET.
const READ_WINDOW_CHUNKS: usize = 4;
/// Tries of a put whose parent directory a concurrent delete pruned.
const PARENT_RACE_TRIES: usize = 3;

/// An object as found: its record, and what S3 keeps beside it.
pub(crate) struct Found {
    pub stat: Stat,
    pub etag: String,
    pub integrity: Option<Integrity>,
    pub headers: ObjectHeaders,
}

impl Found {
    pub fn last_modified(&self) -> Timestamp {
        Timestamp::from(UNIX_EPOCH + Duration::from_millis(self.stat.modified_ms))
    }

    fn modified_secs(&self) -> i64 {
        (self.stat.modified_ms / 1000) as i64
    }
}

fn unix_secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Headers checked by GET and HEAD, in RFC 9110's order of precedence.
pub(crate) fn check_read_conditions(
    found: &Found,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let matches = |condition: &ETagCondition| match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(etag) => etag.value() == found.etag,
    };
    match (if_match, if_unmodified_since) {
        (Some(condition), _) if !matches(condition) => {
            return Err(s3_error!(
                PreconditionFailed,
                "the object's ETag is \"{}\"",
                found.etag
            ))
        }
        (None, Some(since)) if found.modified_secs() > unix_secs(since) => {
            return Err(s3_error!(
                PreconditionFailed,
                "the object was modified since then"
            ))
        }
        _ => {}
    }
    match (if_none_match, if_modified_since) {
        (Some(condition), _) if matches(condition) => Err(s3_error!(NotModified)),
        (None, Some(since)) if found.modified_secs() <= unix_secs(since) => {
            Err(s3_error!(NotModified))
        }
        _ => Ok(()),
    }
}

/// The error of a put or copy at `key`: a directory in the way, or a
/// file where a parent should be, is a key collision.
pub(crate) fn put_error(e: ClientError, key: &str) -> s3s::S3Error {
    match e.code() {
        Some(ErrorCode::IsADirectory) => collision(&format!(
            "key {key:?} names a prefix of other keys (a directory)"
        )),
        Some(ErrorCode::NotADirectory) => {
            collision(&format!("a part of key {key:?} is itself an object's key"))
        }
        _ => s3_error(e, Missing::Key),
    }
}

impl Gateway {
    /// Finds the object `key` of `bucket` as the caller sees it, opening
    /// it for reading when `open`.
    pub(crate) async fn find(
        &self,
        files: &Files,
        bucket: &str,
        key: &str,
        open: bool,
    ) -> S3Result<(Found, Option<Arc<Reader>>)> {
        validate_bucket(bucket)?;
        let path = object_path(bucket, key)?;
        let folder = is_folder(key);
        // One call: the record (with capabilities to read) and its
        // attributes together.
        let looked_up = if open && !folder {
            files
                .open_with(Target::Path(&path), true)
                .await
                .map(|r| (r.stat().clone(), Some(r)))
        } else {
            files
                .stat_with_xattrs(Target::Path(&path))
                .await
                .map(|s| (s, None))
        };
        let (stat, reader) = match looked_up {
            Ok(found) => found,
            Err(e)
                if matches!(
                    e.code(),
                    Some(ErrorCode::NotFound | ErrorCode::NotADirectory)
                ) =>
            {
                self.bucket_exists(files, bucket).await?;
                return Err(s3_error!(
                    NoSuchKey,
                    "no object has key {key:?} in bucket {bucket}"
                ));
            }
            Err(e) if e.code() == Some(ErrorCode::IsADirectory) => {
                return Err(s3_error!(
                    NoSuchKey,
                    "no object has key {key:?} in bucket {bucket} (it is a prefix of other keys)"
                ));
            }
            Err(e) => return Err(s3_error(e, Missing::Key)),
        };
        // Links, pipes and devices made through the mount are no objects.
        if stat.kind.is_node() || (stat.kind == EntryKind::Dir) != folder {
            return Err(s3_error!(
                NoSuchKey,
                "no object has key {key:?} in bucket {bucket}"
            ));
        }
        let xattrs = stat.xattrs.clone().unwrap_or_default();
        let integrity = if folder {
            None
        } else {
            integrity_of(&stat, &xattrs)
        };
        let etag = if folder {
            EMPTY_MD5.to_string()
        } else {
            etag_of(&stat, integrity.as_ref())
        };
        Ok((
            Found {
                headers: ObjectHeaders::from_xattrs(&xattrs),
                stat,
                etag,
                integrity,
            },
            reader,
        ))
    }

    /// Makes the parent directories of `key`, once the bucket is known to
    /// exist (a put never makes a bucket).
    async fn make_parents(&self, files: &Files, bucket: &str, key: &str) -> S3Result<()> {
        self.bucket_exists(files, bucket).await?;
        let Some(parent) = parents_of(bucket, key).into_iter().next() else {
            return Ok(());
        };
        match files.mkdir(&parent, true, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => Ok(()),
            Err(e) => Err(put_error(e, key)),
        }
    }

    /// Stages `body` (of `size_bytes`, when the request says) as chunks
    /// for `path`, making the key's parents if the first try finds them
    /// missing (before any byte is read). A body shorter than a chunk is
    /// not checked before it is stored: its missing parents are found,
    /// and made, by the commit.
    #[allow(clippy::too_many_arguments)]
    async fn stage(
        &self,
        files: &Files,
        bucket: &str,
        key: &str,
        path: &str,
        body: &mut StreamingBlob,
        size_bytes: Option<u64>,
        hashes: &mut Hashes,
        on_exists: OnExists,
    ) -> S3Result<UploadSummary> {
        for attempt in 1..=PARENT_RACE_TRIES {
            let reader = HashingBody::new(body, hashes, self.limits.max_put_bytes);
            match files
                .stage(path, reader, on_exists, size_bytes, &|_| {})
                .await
            {
                Ok(summary) => return Ok(summary),
                Err(e)
                    if e.code() == Some(ErrorCode::NotFound)
                        && hashes.size_bytes == 0
                        && attempt < PARENT_RACE_TRIES =>
                {
                    self.make_parents(files, bucket, key).await?;
                }
                Err(ClientError::Io { context, source }) => {
                    return Err(s3_error!(IncompleteBody, "{context}: {source}"))
                }
                Err(e) => return Err(put_error(e, key)),
            }
        }
        unreachable!("the last try returns")
    }

    /// Commits `chunks` as `path`, making the key's parents again if a
    /// concurrent delete pruned them.
    pub(crate) async fn commit(
        &self,
        files: &Files,
        bucket: &str,
        key: &str,
        path: &str,
        chunks: Vec<ChunkRef>,
        options: &PutOptions,
    ) -> S3Result<()> {
        for attempt in 1..=PARENT_RACE_TRIES {
            match files.commit(path, chunks.clone(), options).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some(ErrorCode::NotFound) && attempt < PARENT_RACE_TRIES => {
                    self.make_parents(files, bucket, key).await?;
                }
                Err(e) => return Err(put_error(e, key)),
            }
        }
        unreachable!("the last try returns")
    }

    pub(crate) async fn do_put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<PutObjectOutput> {
        let mut body = req.input.body.take();
        let result = self.put_object(req, body.as_mut()).await;
        if result.is_err() {
            drain(body.as_mut()).await;
        }
        result
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
        body: Option<&mut StreamingBlob>,
    ) -> S3Result<PutObjectOutput> {
        let files = self.files_for(&req)?;
        let headers_sent = req.headers;
        let trailers = req.trailing_headers;
        let mut input = req.input;
        let bucket = input.bucket.as_str();
        let key = input.key.as_str();
        validate_bucket(bucket)?;
        let path = object_path(bucket, key)?;
        if is_folder(key) {
            if input.content_length.unwrap_or(0) > 0 {
                return Err(s3_error!(
                    InvalidRequest,
                    "key {key:?} ends in '/', a folder: it cannot hold data"
                ));
            }
            return self.put_folder(&files, bucket, key, &path).await;
        }
        let headers = object_headers!(input);
        check_metadata(&headers)?;
        let on_exists = match &input.if_none_match {
            Some(ETagCondition::Any) => OnExists::Fail,
            Some(ETagCondition::ETag(_)) => {
                return Err(s3_error!(
                    NotImplemented,
                    "If-None-Match on a put takes only '*' (create only if absent)"
                ))
            }
            None => OnExists::Replace,
        };
        if let Some(condition) = &input.if_match {
            let found = match self.find(&files, bucket, key, false).await {
                Ok((found, _)) => found,
                Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchKey => {
                    return Err(s3_error!(PreconditionFailed, "no object has key {key:?}"))
                }
                Err(e) => return Err(e),
            };
            if let ETagCondition::ETag(etag) = condition {
                if etag.value() != found.etag {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "the object's ETag is \"{}\"",
                        found.etag
                    ));
                }
            }
        }
        let (expected, mut hashes) = Expected::new(
            &headers_sent,
            trailers,
            sent_checksums!(input),
            input.checksum_algorithm.as_ref(),
            input.content_md5.take(),
        )?;
        let body = body.ok_or_else(|| s3_error!(IncompleteBody, "a put needs a body"))?;
        let size_bytes = input.content_length.and_then(|n| u64::try_from(n).ok());
        let staged = self
            .stage(
                &files,
                bucket,
                key,
                &path,
                body,
                size_bytes,
                &mut hashes,
                on_exists,
            )
            .await?;
        let Verified {
            etag,
            checksums: computed,
            size_bytes,
        } = expected.check(hashes)?;
        let mut xattrs = headers.to_xattrs();
        xattrs.push(Integrity::new(&staged.digest, etag.clone(), computed.clone()).xattr());
        let options = PutOptions {
            on_exists,
            mode: None,
            xattrs: Some(xattrs),
            size_bytes: None,
        };
        self.commit(&files, bucket, key, &path, staged.chunks, &options)
            .await?;
        cairn_telemetry::counter!("cairn_s3_put_bytes_total").increment(size_bytes);
        Ok(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32: computed.crc32,
            checksum_crc32c: computed.crc32c,
            checksum_crc64nvme: computed.crc64nvme,
            checksum_sha1: computed.sha1,
            checksum_sha256: computed.sha256,
            ..Default::default()
        })
    }

    /// A put of `KEY/`: the directory, marked as a folder so that it stays
    /// when emptied.
    async fn put_folder(
        &self,
        files: &Files,
        bucket: &str,
        key: &str,
        path: &str,
    ) -> S3Result<PutObjectOutput> {
        self.bucket_exists(files, bucket).await?;
        match files.mkdir(path, true, None).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => {}
            Err(e) => return Err(put_error(e, key)),
        }
        files
            .set_xattr(path, FOLDER, b"", XattrSetMode::Any)
            .await
            .map_err(|e| put_error(e, key))?;
        Ok(PutObjectOutput {
            e_tag: Some(ETag::Strong(EMPTY_MD5.to_string())),
            ..Default::default()
        })
    }

    pub(crate) async fn do_head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<HeadObjectOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        let (found, _) = self.find(&files, &input.bucket, &input.key, false).await?;
        check_read_conditions(
            &found,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let size = found.stat.size_bytes;
        let (length, content_range) = match &input.range {
            None => (size, None),
            Some(range) => {
                let r = range.check(size)?;
                (r.end - r.start, Some(content_range(&r, size)))
            }
        };
        let checksums = full_object_checksums(
            &found,
            input.checksum_mode.as_ref(),
            content_range.is_none(),
        );
        let headers = found.headers.clone();
        Ok(HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(length as i64),
            content_range,
            last_modified: Some(found.last_modified()),
            e_tag: Some(ETag::Strong(found.etag.clone())),
            content_type: Some(headers.content_type.unwrap_or_else(default_content_type)),
            content_encoding: headers.content_encoding,
            content_disposition: headers.content_disposition,
            content_language: headers.content_language,
            cache_control: headers.cache_control,
            expires: headers.expires.as_deref().and_then(parse_http_date),
            metadata: (!headers.metadata.is_empty()).then_some(headers.metadata),
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_crc64nvme: checksums.crc64nvme,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            ..Default::default()
        })
    }

    pub(crate) async fn do_get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<GetObjectOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        if input.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "GET by part number is not supported; use a Range"
            ));
        }
        let (found, reader) = self.find(&files, &input.bucket, &input.key, true).await?;
        check_read_conditions(
            &found,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let size = found.stat.size_bytes;
        let (range, content_range) = match &input.range {
            None => (0..size, None),
            Some(range) => {
                let r = range.check(size)?;
                let shown = content_range(&r, size);
                (r, Some(shown))
            }
        };
        let length = range.end - range.start;
        let body = match reader {
            Some(reader) if length > 0 => {
                cairn_telemetry::counter!("cairn_s3_get_bytes_total").increment(length);
                Some(StreamingBlob::wrap(sync_stream(reader.stream_range(
                    range.start,
                    Some(length),
                    READ_WINDOW_CHUNKS,
                ))))
            }
            _ => Some(StreamingBlob::wrap(futures::stream::empty::<
                Result<bytes::Bytes, std::io::Error>,
            >())),
        };
        let checksums = full_object_checksums(
            &found,
            input.checksum_mode.as_ref(),
            content_range.is_none(),
        );
        let headers = found.headers.clone();
        Ok(GetObjectOutput {
            body,
            accept_ranges: Some("bytes".into()),
            content_length: Some(length as i64),
            content_range,
            last_modified: Some(found.last_modified()),
            e_tag: Some(ETag::Strong(found.etag.clone())),
            content_type: Some(
                input
                    .response_content_type
                    .or(headers.content_type)
                    .unwrap_or_else(default_content_type),
            ),
            content_encoding: input.response_content_encoding.or(headers.content_encoding),
            content_disposition: input
                .response_content_disposition
                .or(headers.content_disposition),
            content_language: input.response_content_language.or(headers.content_language),
            cache_control: input.response_cache_control.or(headers.cache_control),
            expires: input
                .response_expires
                .or_else(|| headers.expires.as_deref().and_then(parse_http_date)),
            metadata: (!headers.metadata.is_empty()).then_some(headers.metadata),
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_crc64nvme: checksums.crc64nvme,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            ..Default::default()
        })
    }

    pub(crate) async fn do_delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<DeleteObjectOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        self.delete(&files, &input.bucket, &input.key).await?;
        Ok(DeleteObjectOutput::default())
    }

    pub(crate) async fn do_delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<DeleteObjectsOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        if input.delete.objects.len() > MAX_DELETE_OBJECTS {
            return Err(s3_error!(
                MalformedXML,
                "a DeleteObjects request names at most {MAX_DELETE_OBJECTS} keys; got {}",
                input.delete.objects.len()
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let bucket = input.bucket.as_str();
        let files = &files;
        let outcomes = futures::stream::iter(input.delete.objects)
            .map(|object| async move {
                let outcome = self.delete(files, bucket, &object.key).await;
                (object.key, outcome)
            })
            .buffered(DELETES_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, outcome) in outcomes {
            match outcome {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(key),
                    ..Default::default()
                }),
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    key: Some(key),
                    version_id: None,
                }),
            }
        }
        Ok(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        })
    }

    /// Deletes one key: a missing one is no error (S3 deletes are
    /// idempotent), a missing bucket is. Then prunes the parents left
    /// empty.
    async fn delete(&self, files: &Files, bucket: &str, key: &str) -> S3Result<()> {
        validate_bucket(bucket)?;
        let path = object_path(bucket, key)?;
        let stat = match files.stat(Target::Path(&path)).await {
            Ok(stat) => stat,
            Err(e)
                if matches!(
                    e.code(),
                    Some(ErrorCode::NotFound | ErrorCode::NotADirectory)
                ) =>
            {
                return self.bucket_exists(files, bucket).await;
            }
            Err(e) => return Err(s3_error(e, Missing::Key)),
        };
        let is_dir = stat.kind == EntryKind::Dir;
        if is_dir != is_folder(key) {
            // `a` names a prefix here, or `a/` a file: no such object.
            return Ok(());
        }
        match files.remove(&path, false).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) if e.code() == Some(ErrorCode::DirectoryNotEmpty) => {
                // A folder that holds objects: it stops being one, and goes
                // when its last object does.
                return match files.remove_xattr(&path, FOLDER).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(s3_error(e, Missing::Key)),
                };
            }
            Err(e) => return Err(s3_error(e, Missing::Key)),
        }
        self.prune(files, bucket, key).await;
        Ok(())
    }

    /// Removes the parents of `key` that are left empty, deepest first,
    /// stopping at one that holds something or is a folder. A look (a
    /// read) comes before each removal (a write): most parents hold more.
    async fn prune(&self, files: &Files, bucket: &str, key: &str) {
        let one = Page {
            after: None,
            limit: Some(1),
        };
        for dir in parents_of(bucket, key) {
            match files.list(&dir, &one).await {
                Ok(listing) if listing.entries.is_empty() => {}
                _ => return,
            }
            match files.xattr(Target::Path(&dir), FOLDER).await {
                Ok(_) => return,
                Err(e) if e.is_not_found() => {}
                Err(_) => return,
            }
            match files.remove(&dir, false).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(_) => return,
            }
        }
    }

    pub(crate) async fn do_copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<CopyObjectOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        let (src_bucket, src_key) = match &input.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "copy sources are bucket/key; access points are not supported"
                ))
            }
        };
        let (found, reader) = self.find(&files, &src_bucket, &src_key, true).await?;
        check_copy_conditions(
            &found,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let Some(reader) = reader else {
            return Err(s3_error!(InvalidRequest, "a folder cannot be copied"));
        };
        let bucket = input.bucket.as_str();
        let key = input.key.as_str();
        validate_bucket(bucket)?;
        let path = object_path(bucket, key)?;
        if is_folder(key) {
            return Err(s3_error!(
                InvalidRequest,
                "key {key:?} ends in '/', a folder: it cannot hold data"
            ));
        }
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let headers = if replace {
            object_headers!(input)
        } else {
            if src_bucket == bucket && src_key == key {
                return Err(s3_error!(
                    InvalidRequest,
                    "copying an object onto itself needs x-amz-metadata-directive: REPLACE"
                ));
            }
            found.headers.clone()
        };
        check_metadata(&headers)?;
        let stat = reader.stat();
        let mut xattrs: Vec<Xattr> = headers.to_xattrs();
        let integrity = found.integrity.clone().unwrap_or_else(|| {
            Integrity::new(
                &stat.digest.expect("a file has a digest"),
                found.etag.clone(),
                Checksums::default(),
            )
        });
        xattrs.push(integrity.xattr());
        let options = PutOptions {
            on_exists: OnExists::Replace,
            mode: None,
            xattrs: Some(xattrs),
            size_bytes: None,
        };
        // The same chunks under a second name: no data moves. The ETag is
        // the source's (the same bytes); the copy was modified just now.
        self.commit(&files, bucket, key, &path, stat.chunks.clone(), &options)
            .await?;
        Ok(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(integrity.etag)),
                last_modified: Some(Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

/// Most bytes of a refused request's body read and dropped so that the
/// connection stays usable; past it the connection closes.
const MAX_DRAIN_BYTES: u64 = 8 * 1024 * 1024;

/// Reads and drops what is left of a refused request's body (up to
/// [`MAX_DRAIN_BYTES`]). An answer sent before the body is read leaves the
/// client sending it, or waiting to (`Expect: 100-continue`), on a
/// connection the server then closes; a client that reuses it meanwhile
/// sees its next request fail.
pub(crate) async fn drain(body: Option<&mut StreamingBlob>) {
    let Some(body) = body else { return };
    let mut seen = 0u64;
    while let Some(Ok(piece)) = body.next().await {
        seen += piece.len() as u64;
        if seen > MAX_DRAIN_BYTES {
            return;
        }
    }
}

/// Keys one DeleteObjects request deletes at once.
const DELETES_IN_FLIGHT: usize = 16;

/// Most keys one DeleteObjects request may name (S3's limit).
pub const MAX_DELETE_OBJECTS: usize = 1000;

/// `x-amz-copy-source-if-*`: all four answer 412 when they fail.
pub(crate) fn check_copy_conditions(
    found: &Found,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    match check_read_conditions(
        found,
        if_match,
        if_none_match,
        if_modified_since,
        if_unmodified_since,
    ) {
        Err(e) if *e.code() == s3s::S3ErrorCode::NotModified => Err(s3_error!(
            PreconditionFailed,
            "the copy source does not meet x-amz-copy-source-if-none-match or -if-modified-since"
        )),
        other => other,
    }
}

pub(crate) fn check_metadata(headers: &ObjectHeaders) -> S3Result<()> {
    let bytes = metadata_bytes(&headers.metadata);
    if bytes > MAX_USER_METADATA_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "user metadata (x-amz-meta-*) is {bytes} bytes; the most is {MAX_USER_METADATA_BYTES}"
        ));
    }
    Ok(())
}

/// The stored checksums, for a whole-object answer to a client that asked.
fn full_object_checksums(found: &Found, mode: Option<&ChecksumMode>, whole: bool) -> Checksums {
    let asked = mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    match &found.integrity {
        Some(integrity) if asked && whole => integrity.checksums.clone(),
        _ => Checksums::default(),
    }
}

fn content_range(range: &std::ops::Range<u64>, size: u64) -> String {
    format!(
        "bytes {}-{}/{size}",
        range.start,
        range.end.saturating_sub(1)
    )
}

fn default_content_type() -> String {
    "binary/octet-stream".to_string()
}

pub(crate) fn format_http_date(t: &Timestamp) -> String {
    let mut out = Vec::new();
    match t.format(TimestampFormat::HttpDate, &mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => String::new(),
    }
}

fn parse_http_date(text: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, text).ok()
}

/// The reader's stream, made `Sync` as s3s's bodies must be: a task
/// drives it and hands pieces over a channel of a few chunks.
pub(crate) fn sync_stream(
    stream: impl futures::Stream<Item = Result<bytes::Bytes, ClientError>> + Send + 'static,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync + 'static {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(piece) = stream.next().await {
            let failed = piece.is_err();
            let piece = piece.map_err(|e| std::io::Error::other(e.to_string()));
            if failed {
                tracing::warn!(error = ?piece.as_ref().err(), "an S3 read failed part way");
            }
            // The client went away: stop fetching.
            if tx.send(piece).await.is_err() || failed {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    })
}
