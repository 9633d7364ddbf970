//! Multipart uploads. An upload is the directory
//! `/buckets/.uploads/BUCKET/ID` (its key and headers in attributes); each
//! part is a file in it, `part-00001` ..., with its MD5 and checksums.
//! Completing commits one file whose chunk list is the parts' lists joined,
//! so no byte is copied, then removes the upload. Uploads untouched for
//! `--multipart-expiry` are removed by a sweep each gateway runs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_client::{Files, Page, PutOptions, Target};
use cairn_proto::api::{EntryKind, OnExists, Stat, XattrSetMode};
use cairn_proto::{file_digest, ErrorCode};
use futures::StreamExt;
use s3s::crypto::Checksum as _;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Result};

use crate::attrs::{etag_of, integrity_of, Checksums, Integrity, ObjectHeaders};
use crate::body::{Expected, Hashes, HashingBody, Verified};
use crate::buckets::timestamp_ms;
use crate::errors::{s3_error, Missing};
use crate::gateway::Gateway;
use crate::names::{is_folder, object_path, uploads_path, validate_bucket, UPLOADS_DIR};
use crate::objects::{check_copy_conditions, check_metadata, drain, hex, put_error, sync_stream};

/// S3's part numbers: 1 to 10,000.
pub const MAX_PART_NUMBER: i32 = 10_000;
/// S3's smallest part but the last: 5 MiB.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// Most parts or uploads one listing answers.
pub const MAX_LISTED: usize = 1000;
/// Most uploads of a bucket a listing scans.
pub const MAX_UPLOADS_SCANNED: usize = 10_000;
/// Most uploads of one bucket a sweep removes (the next sweep takes the
/// rest), so that one pass holds a bounded list.
const MAX_SWEPT_PER_BUCKET: usize = 10_000;
/// The attribute of an upload directory naming its key.
const UPLOAD_KEY: &str = "user.s3.upload.key";
/// Parts stat-ed at once by a completion.
const PARTS_IN_FLIGHT: usize = 16;
/// Chunks fetched at once while copying a part's range.
const COPY_WINDOW_CHUNKS: usize = 4;

fn upload_path(bucket: &str, upload_id: &str) -> S3Result<String> {
    let valid = upload_id.len() == 32 && upload_id.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(s3_error!(
            NoSuchUpload,
            "upload id {upload_id:?} is not one this gateway gives"
        ));
    }
    Ok(format!("{}/{upload_id}", uploads_path(bucket)))
}

fn part_name(number: i32) -> String {
    format!("part-{number:05}")
}

fn check_part_number(number: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&number) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "part number {number}: parts are numbered 1 to {MAX_PART_NUMBER}"
        ))
    }
}

/// The bytes `bytes=FIRST-LAST` of an upload-part-copy names, checked
/// against the source's size.
fn copy_range(range: Option<&str>, size: u64) -> S3Result<std::ops::Range<u64>> {
    let Some(range) = range else {
        return Ok(0..size);
    };
    let parsed = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    match parsed {
        Some((first, last)) if first <= last && last < size => Ok(first..last + 1),
        _ => Err(s3_error!(
            InvalidRange,
            "x-amz-copy-source-range {range:?} is not bytes=FIRST-LAST within the source's {size} bytes"
        )),
    }
}

impl Gateway {
    /// The key an upload is for; `NoSuchUpload` if it is gone.
    async fn upload_key(&self, files: &Files, path: &str, upload_id: &str) -> S3Result<String> {
        match files.xattr(Target::Path(path), UPLOAD_KEY).await {
            Ok(key) => Ok(String::from_utf8_lossy(&key).into_owned()),
            Err(e) if e.is_not_found() => Err(s3_error!(
                NoSuchUpload,
                "upload {upload_id} does not exist (completed, aborted or expired)"
            )),
            Err(e) => Err(s3_error(e, Missing::Upload)),
        }
    }

    pub(crate) async fn do_create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<CreateMultipartUploadOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        let bucket = input.bucket.as_str();
        let key = input.key.as_str();
        validate_bucket(bucket)?;
        object_path(bucket, key)?;
        if is_folder(key) {
            return Err(s3_error!(
                InvalidRequest,
                "key {key:?} ends in '/', a folder: it cannot hold data"
            ));
        }
        let headers = object_headers!(input);
        check_metadata(&headers)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let path = upload_path(bucket, &upload_id)?;
        let made = match files.mkdir(&path, false, Some(0o700)).await {
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                // The bucket has no staging directory yet (made with
                // `cairn mkdir`), or there is no bucket.
                let bucket_stat = files
                    .stat(Target::Path(&crate::names::bucket_path(bucket)))
                    .await
                    .map_err(|e| s3_error(e, Missing::Bucket))?;
                cairn_client::buckets::ensure_uploads_dir(
                    &self.system,
                    bucket,
                    &bucket_stat.owner,
                    Some(&bucket_stat.group),
                )
                .await
                .map_err(|e| s3_error(e, Missing::Bucket))?;
                files.mkdir(&path, false, Some(0o700)).await
            }
            other => other,
        };
        made.map_err(|e| s3_error(e, Missing::Bucket))?;
        let mut xattrs = headers.to_xattrs();
        xattrs.push(cairn_proto::xattr::Xattr {
            name: UPLOAD_KEY.to_string(),
            value: key.as_bytes().to_vec(),
        });
        for xattr in xattrs {
            files
                .set_xattr(&path, &xattr.name, &xattr.value, XattrSetMode::Any)
                .await
                .map_err(|e| s3_error(e, Missing::Bucket))?;
        }
        Ok(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        })
    }

    pub(crate) async fn do_upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<UploadPartOutput> {
        let mut body = req.input.body.take();
        let result = self.upload_part(req, body.as_mut()).await;
        if result.is_err() {
            drain(body.as_mut()).await;
        }
        result
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
        body: Option<&mut StreamingBlob>,
    ) -> S3Result<UploadPartOutput> {
        let files = self.files_for(&req)?;
        let headers_sent = req.headers;
        let trailers = req.trailing_headers;
        let mut input = req.input;
        validate_bucket(&input.bucket)?;
        check_part_number(input.part_number)?;
        let upload = upload_path(&input.bucket, &input.upload_id)?;
        let part = format!("{upload}/{}", part_name(input.part_number));
        let (expected, mut hashes) = Expected::new(
            &headers_sent,
            trailers,
            sent_checksums!(input),
            input.checksum_algorithm.as_ref(),
            input.content_md5.take(),
        )?;
        let body = body.ok_or_else(|| s3_error!(IncompleteBody, "a part needs a body"))?;
        let reader = HashingBody::new(body, &mut hashes, self.limits.max_put_bytes);
        let size_bytes = input.content_length.and_then(|n| u64::try_from(n).ok());
        let staged = match files
            .stage(&part, reader, OnExists::Replace, size_bytes, &|_| {})
            .await
        {
            Ok(staged) => staged,
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                return Err(s3_error!(
                    NoSuchUpload,
                    "upload {} does not exist (completed, aborted or expired)",
                    input.upload_id
                ))
            }
            Err(e) => return Err(put_error(e, &input.key)),
        };
        let Verified {
            etag,
            checksums: computed,
            size_bytes,
        } = expected.check(hashes)?;
        let options = PutOptions {
            on_exists: OnExists::Replace,
            mode: None,
            xattrs: Some(vec![Integrity::new(
                &staged.digest,
                etag.clone(),
                computed.clone(),
            )
            .xattr()]),
            size_bytes: None,
        };
        files
            .commit(&part, staged.chunks, &options)
            .await
            .map_err(|e| s3_error(e, Missing::Upload))?;
        cairn_telemetry::counter!("cairn_s3_put_bytes_total").increment(size_bytes);
        Ok(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32: computed.crc32,
            checksum_crc32c: computed.crc32c,
            checksum_crc64nvme: computed.crc64nvme,
            checksum_sha1: computed.sha1,
            checksum_sha256: computed.sha256,
            ..Default::default()
        })
    }

    pub(crate) async fn do_upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<UploadPartCopyOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        validate_bucket(&input.bucket)?;
        check_part_number(input.part_number)?;
        let upload = upload_path(&input.bucket, &input.upload_id)?;
        self.upload_key(&files, &upload, &input.upload_id).await?;
        let part = format!("{upload}/{}", part_name(input.part_number));
        let (src_bucket, src_key) = match &input.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => return Err(s3_error!(NotImplemented, "copy sources are bucket/key")),
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
        let stat = reader.stat().clone();
        let range = copy_range(input.copy_source_range.as_deref(), stat.size_bytes)?;
        let plain_md5 = found.integrity.as_ref().filter(|i| !i.etag.contains('-'));
        let (chunks, integrity) = match plain_md5 {
            // The whole object, whose MD5 is known: share its chunks.
            Some(integrity) if range == (0..stat.size_bytes) => {
                (stat.chunks.clone(), integrity.clone())
            }
            // A range (or an object without an MD5): read it through.
            _ => {
                let mut body = StreamingBlob::wrap(sync_stream(reader.stream_range(
                    range.start,
                    Some(range.end - range.start),
                    COPY_WINDOW_CHUNKS,
                )));
                let mut hashes = Hashes::new(Default::default());
                let body_reader =
                    HashingBody::new(&mut body, &mut hashes, self.limits.max_put_bytes);
                let staged = files
                    .stage(
                        &part,
                        body_reader,
                        OnExists::Replace,
                        Some(range.end - range.start),
                        &|_| {},
                    )
                    .await
                    .map_err(|e| s3_error(e, Missing::Upload))?;
                let md5: [u8; 16] = hashes.md5.finalize();
                let integrity = Integrity::new(&staged.digest, hex(&md5), Checksums::default());
                (staged.chunks, integrity)
            }
        };
        let options = PutOptions {
            on_exists: OnExists::Replace,
            mode: None,
            xattrs: Some(vec![Integrity {
                digest: file_digest(&chunks).to_hex(),
                ..integrity.clone()
            }
            .xattr()]),
            size_bytes: None,
        };
        files
            .commit(&part, chunks, &options)
            .await
            .map_err(|e| s3_error(e, Missing::Upload))?;
        Ok(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(integrity.etag)),
                last_modified: Some(Timestamp::from(SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// The parts of an upload, in order, with their records and ETags.
    async fn parts_of(
        &self,
        files: &Files,
        upload: &str,
        after: Option<i32>,
        limit: usize,
    ) -> S3Result<(Vec<(i32, Stat, String)>, bool)> {
        let mut names = Vec::new();
        let mut page = Page {
            after: after.map(part_name),
            limit: Some(MAX_LISTED as u32),
        };
        let mut more = false;
        'pages: loop {
            let listing = files
                .list(upload, &page)
                .await
                .map_err(|e| s3_error(e, Missing::Upload))?;
            for entry in listing.entries {
                let Some(number) = entry
                    .name
                    .strip_prefix("part-")
                    .and_then(|n| n.parse::<i32>().ok())
                else {
                    continue;
                };
                if entry.kind != EntryKind::File {
                    continue;
                }
                if names.len() == limit {
                    more = true;
                    break 'pages;
                }
                names.push((number, entry.id));
            }
            match listing.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        let parts = futures::stream::iter(names)
            .map(|(number, id)| async move {
                let stat = files.stat_with_xattrs(Target::Id(id)).await?;
                let xattrs = stat.xattrs.as_deref().unwrap_or_default();
                let etag = etag_of(&stat, integrity_of(&stat, xattrs).as_ref());
                Ok::<_, cairn_client::ClientError>((number, stat, etag))
            })
            .buffered(PARTS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| s3_error(e, Missing::Upload))?;
        Ok((parts, more))
    }

    pub(crate) async fn do_list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<ListPartsOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        validate_bucket(&input.bucket)?;
        let upload = upload_path(&input.bucket, &input.upload_id)?;
        self.upload_key(&files, &upload, &input.upload_id).await?;
        let max_parts = input
            .max_parts
            .unwrap_or(MAX_LISTED as i32)
            .clamp(0, MAX_LISTED as i32) as usize;
        let (parts, more) = self
            .parts_of(
                &files,
                &upload,
                input.part_number_marker.filter(|m| *m > 0),
                max_parts,
            )
            .await?;
        let next = parts.last().map(|(n, _, _)| *n);
        Ok(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max_parts as i32),
            part_number_marker: input.part_number_marker,
            is_truncated: Some(more),
            next_part_number_marker: if more { next } else { None },
            parts: Some(
                parts
                    .into_iter()
                    .map(|(number, stat, etag)| Part {
                        part_number: Some(number),
                        size: Some(stat.size_bytes as i64),
                        e_tag: Some(ETag::Strong(etag)),
                        last_modified: Some(timestamp_ms(stat.modified_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        })
    }

    pub(crate) async fn do_list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<ListMultipartUploadsOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        self.bucket_exists(&files, &input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max_uploads = input
            .max_uploads
            .unwrap_or(MAX_LISTED as i32)
            .clamp(0, MAX_LISTED as i32) as usize;
        let mut ids = Vec::new();
        let listed = files
            .list_each(&uploads_path(&input.bucket), |entry| {
                if entry.kind == EntryKind::Dir && ids.len() < MAX_UPLOADS_SCANNED {
                    ids.push((entry.name, entry.modified_ms));
                }
                Ok(())
            })
            .await;
        match listed {
            Ok(()) => {}
            // No staging directory: no uploads.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(s3_error(e, Missing::Bucket)),
        }
        let base = uploads_path(&input.bucket);
        let mut uploads = futures::stream::iter(ids)
            .map(|(id, modified_ms)| {
                let files = &files;
                let base = &base;
                async move {
                    let key = files
                        .xattr(Target::Path(&format!("{base}/{id}")), UPLOAD_KEY)
                        .await
                        .ok()?;
                    Some((String::from_utf8_lossy(&key).into_owned(), id, modified_ms))
                }
            })
            .buffered(PARTS_IN_FLIGHT)
            .filter_map(|found| async move { found })
            .collect::<Vec<_>>()
            .await;
        uploads.retain(|(key, id, _)| {
            key.starts_with(&prefix)
                && match (&input.key_marker, &input.upload_id_marker) {
                    (Some(km), Some(im)) if !km.is_empty() => (key, id) > (km, im),
                    (Some(km), _) if !km.is_empty() => key > km,
                    _ => true,
                }
        });
        uploads.sort();
        let truncated = uploads.len() > max_uploads;
        uploads.truncate(max_uploads);
        let last = uploads.last().cloned();
        Ok(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max_uploads as i32),
            is_truncated: Some(truncated),
            next_key_marker: truncated
                .then(|| last.as_ref().map(|l| l.0.clone()))
                .flatten(),
            next_upload_id_marker: truncated
                .then(|| last.as_ref().map(|l| l.1.clone()))
                .flatten(),
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|(key, id, modified_ms)| MultipartUpload {
                        key: Some(key),
                        upload_id: Some(id),
                        initiated: Some(timestamp_ms(modified_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        })
    }

    pub(crate) async fn do_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<CompleteMultipartUploadOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        let bucket = input.bucket.as_str();
        let key = input.key.as_str();
        validate_bucket(bucket)?;
        let path = object_path(bucket, key)?;
        let upload = upload_path(bucket, &input.upload_id)?;
        let upload_key = self.upload_key(&files, &upload, &input.upload_id).await?;
        if upload_key != key {
            return Err(s3_error!(
                NoSuchUpload,
                "upload {} is for key {upload_key:?}, not {key:?}",
                input.upload_id
            ));
        }
        let asked: Vec<CompletedPart> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if asked.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "a completion names at least one part"
            ));
        }
        let mut previous = 0;
        for part in &asked {
            let number = part.part_number.unwrap_or(0);
            check_part_number(number)?;
            if number <= previous {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "parts must be named in ascending order; {number} follows {previous}"
                ));
            }
            previous = number;
        }
        let (stored, _) = self
            .parts_of(&files, &upload, None, MAX_PART_NUMBER as usize)
            .await?;
        let stored: std::collections::HashMap<i32, (Stat, String)> =
            stored.into_iter().map(|(n, s, e)| (n, (s, e))).collect();
        let mut chunks = Vec::new();
        let mut md5s = Vec::with_capacity(asked.len() * 16);
        for (index, part) in asked.iter().enumerate() {
            let number = part.part_number.unwrap_or(0);
            let Some((stat, etag)) = stored.get(&number) else {
                return Err(s3_error!(InvalidPart, "part {number} was not uploaded"));
            };
            if let Some(given) = &part.e_tag {
                if given.value() != etag {
                    return Err(s3_error!(
                        InvalidPart,
                        "part {number} has ETag \"{etag}\", not \"{}\"",
                        given.value()
                    ));
                }
            }
            let last = index + 1 == asked.len();
            if !last && stat.size_bytes < MIN_PART_BYTES {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {number} is {} bytes; every part but the last needs at least {MIN_PART_BYTES}",
                    stat.size_bytes
                ));
            }
            let md5 = decode_hex_md5(etag).ok_or_else(|| {
                s3_error!(InvalidPart, "part {number} has no MD5; upload it again")
            })?;
            md5s.extend_from_slice(&md5);
            chunks.extend(stat.chunks.iter().copied());
        }
        let etag = format!(
            "{}-{}",
            hex(&s3s::crypto::Md5::checksum(&md5s)),
            asked.len()
        );
        let upload_xattrs = files
            .xattrs(Target::Path(&upload))
            .await
            .map_err(|e| s3_error(e, Missing::Upload))?;
        let headers = ObjectHeaders::from_xattrs(&upload_xattrs);
        let mut xattrs = headers.to_xattrs();
        xattrs.push(
            Integrity::new(&file_digest(&chunks), etag.clone(), Checksums::default()).xattr(),
        );
        let options = PutOptions {
            on_exists: OnExists::Replace,
            mode: None,
            xattrs: Some(xattrs),
            size_bytes: None,
        };
        self.commit(&files, bucket, key, &path, chunks, &options)
            .await?;
        if let Err(e) = files.remove(&upload, true).await {
            tracing::warn!(upload = %upload, error = %e, "cannot remove a completed upload; the sweep will");
        }
        Ok(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        })
    }

    pub(crate) async fn do_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<AbortMultipartUploadOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        validate_bucket(&input.bucket)?;
        let upload = upload_path(&input.bucket, &input.upload_id)?;
        self.upload_key(&files, &upload, &input.upload_id).await?;
        files
            .remove(&upload, true)
            .await
            .map_err(|e| s3_error(e, Missing::Upload))?;
        Ok(AbortMultipartUploadOutput::default())
    }

    /// Removes uploads untouched for the expiry; returns how many.
    pub async fn sweep_uploads(&self) -> Result<usize, cairn_client::ClientError> {
        let expiry_ms = self.limits.multipart_expiry.as_millis() as u64;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64;
        let mut buckets = Vec::new();
        self.system
            .list_each(UPLOADS_DIR, |entry| {
                buckets.push(entry.name);
                Ok(())
            })
            .await?;
        let mut removed = 0;
        for bucket in buckets {
            let mut stale = Vec::new();
            let base = format!("{UPLOADS_DIR}/{bucket}");
            self.system
                .list_each(&base, |entry| {
                    if entry.modified_ms + expiry_ms < now_ms && stale.len() < MAX_SWEPT_PER_BUCKET
                    {
                        stale.push(entry.name);
                    }
                    Ok(())
                })
                .await?;
            for id in stale {
                match self.system.remove(&format!("{base}/{id}"), true).await {
                    Ok(_) => removed += 1,
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }
}

fn decode_hex_md5(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_are_checked() {
        assert_eq!(copy_range(None, 10).unwrap(), 0..10);
        assert_eq!(copy_range(Some("bytes=2-5"), 10).unwrap(), 2..6);
        assert!(copy_range(Some("bytes=5-2"), 10).is_err());
        assert!(copy_range(Some("bytes=0-10"), 10).is_err());
        assert!(copy_range(Some("2-5"), 10).is_err());
    }

    #[test]
    fn part_md5s_decode() {
        assert_eq!(
            decode_hex_md5("d41d8cd98f00b204e9800998ecf8427e").unwrap()[0],
            0xd4
        );
        assert!(decode_hex_md5("abc-2").is_none());
    }
}
