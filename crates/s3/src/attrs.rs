//! What S3 keeps about an object beside its bytes, in the file's extended
//! attributes (so `cairn xattr list` shows it):
//!
//! - `user.s3.content-type`, `-encoding`, `-disposition`, `-language`,
//!   `user.s3.cache-control`, `user.s3.expires`: the headers given at put
//! - `user.s3.meta.NAME`: each `x-amz-meta-NAME`
//! - `user.s3.integrity`: JSON `{digest, etag, checksums}`: the ETag (MD5)
//!   and the checksums of the contents whose BLAKE3 file digest is
//!   `digest`. They are trusted only while the file still has that digest:
//!   a file replaced through the CLI or the mount keeps its attributes but
//!   not stale ETags
//! - `user.s3.folder`: on a directory made by a put of `KEY/`; it is not
//!   pruned when emptied

use std::collections::HashMap;

use cairn_proto::api::Stat;
use cairn_proto::xattr::Xattr;
use cairn_proto::ChunkId;
use serde::{Deserialize, Serialize};

pub const INTEGRITY: &str = "user.s3.integrity";
pub const FOLDER: &str = "user.s3.folder";
const META_PREFIX: &str = "user.s3.meta.";
const CONTENT_TYPE: &str = "user.s3.content-type";
const CONTENT_ENCODING: &str = "user.s3.content-encoding";
const CONTENT_DISPOSITION: &str = "user.s3.content-disposition";
const CONTENT_LANGUAGE: &str = "user.s3.content-language";
const CACHE_CONTROL: &str = "user.s3.cache-control";
const EXPIRES: &str = "user.s3.expires";

/// The checksums an S3 input (PutObject, UploadPart) carries in headers,
/// taken out of it.
macro_rules! sent_checksums {
    ($input:expr) => {
        $crate::attrs::Checksums {
            crc32: $input.checksum_crc32.take(),
            crc32c: $input.checksum_crc32c.take(),
            crc64nvme: $input.checksum_crc64nvme.take(),
            sha1: $input.checksum_sha1.take(),
            sha256: $input.checksum_sha256.take(),
        }
    };
}

/// The headers and user metadata an S3 input (PutObject, CopyObject with
/// REPLACE, CreateMultipartUpload) gives its object.
macro_rules! object_headers {
    ($input:expr) => {
        $crate::attrs::ObjectHeaders {
            content_type: $input.content_type.clone(),
            content_encoding: $input.content_encoding.clone(),
            content_disposition: $input.content_disposition.clone(),
            content_language: $input.content_language.clone(),
            cache_control: $input.cache_control.clone(),
            expires: $input
                .expires
                .as_ref()
                .map($crate::objects::format_http_date),
            metadata: $input.metadata.clone().unwrap_or_default(),
        }
    };
}

/// The checksums S3 clients send and ask for, base64 as on the wire.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Checksums {
    pub fn from_s3(checksum: &s3s::dto::Checksum) -> Checksums {
        Checksums {
            crc32: checksum.checksum_crc32.clone(),
            crc32c: checksum.checksum_crc32c.clone(),
            crc64nvme: checksum.checksum_crc64nvme.clone(),
            sha1: checksum.checksum_sha1.clone(),
            sha256: checksum.checksum_sha256.clone(),
        }
    }
}

/// The ETag and checksums of contents with the BLAKE3 file digest `digest`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integrity {
    /// Format of this record; a newer one is ignored (the ETag is then
    /// derived from the digest), never misread.
    pub format: u8,
    pub digest: String,
    /// The ETag without quotes: MD5 hex, or MD5 of the parts' MD5s and
    /// `-N` for a multipart upload.
    pub etag: String,
    #[serde(default)]
    pub checksums: Checksums,
}

pub const INTEGRITY_FORMAT: u8 = 1;

impl Integrity {
    pub fn new(stat_digest: &ChunkId, etag: String, checksums: Checksums) -> Self {
        Integrity {
            format: INTEGRITY_FORMAT,
            digest: stat_digest.to_hex(),
            etag,
            checksums,
        }
    }

    pub fn xattr(&self) -> Xattr {
        Xattr {
            name: INTEGRITY.to_string(),
            value: serde_json::to_vec(self).expect("integrity serializes"),
        }
    }
}

/// The integrity record of `stat`'s file, if it has one that still
/// describes its contents.
pub fn integrity_of(stat: &Stat, xattrs: &[Xattr]) -> Option<Integrity> {
    let value = xattrs.iter().find(|x| x.name == INTEGRITY)?;
    integrity_matching(stat.digest.as_ref(), &value.value)
}

/// The integrity record in `value` if it describes contents with `digest`.
pub fn integrity_matching(digest: Option<&ChunkId>, value: &[u8]) -> Option<Integrity> {
    let integrity: Integrity = serde_json::from_slice(value).ok()?;
    let digest = digest?;
    (integrity.format == INTEGRITY_FORMAT && integrity.digest == digest.to_hex())
        .then_some(integrity)
}

/// The ETag of `stat`'s file: see [`etag_from`].
pub fn etag_of(stat: &Stat, integrity: Option<&Integrity>) -> String {
    etag_from(stat.digest.as_ref(), integrity)
}

/// The recorded ETag, else one derived from the BLAKE3 digest, written
/// with `-1` as multipart ETags are, so that clients do not take it for an
/// MD5 and compare it with one.
pub fn etag_from(digest: Option<&ChunkId>, integrity: Option<&Integrity>) -> String {
    match integrity {
        Some(integrity) => integrity.etag.clone(),
        None => {
            let digest = digest.map(|d| d.to_hex()).unwrap_or_default();
            format!("{}-1", &digest[..digest.len().min(32)])
        }
    }
}

/// The headers and user metadata of an object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// As sent, an HTTP date.
    pub expires: Option<String>,
    pub metadata: HashMap<String, String>,
}

impl ObjectHeaders {
    fn fields(&self) -> [(&'static str, &Option<String>); 6] {
        [
            (CONTENT_TYPE, &self.content_type),
            (CONTENT_ENCODING, &self.content_encoding),
            (CONTENT_DISPOSITION, &self.content_disposition),
            (CONTENT_LANGUAGE, &self.content_language),
            (CACHE_CONTROL, &self.cache_control),
            (EXPIRES, &self.expires),
        ]
    }

    pub fn to_xattrs(&self) -> Vec<Xattr> {
        let mut out: Vec<Xattr> = self
            .fields()
            .into_iter()
            .filter_map(|(name, value)| {
                value.as_ref().map(|v| Xattr {
                    name: name.to_string(),
                    value: v.as_bytes().to_vec(),
                })
            })
            .collect();
        let mut metadata: Vec<_> = self.metadata.iter().collect();
        metadata.sort();
        out.extend(metadata.into_iter().map(|(k, v)| Xattr {
            name: format!("{META_PREFIX}{}", k.to_ascii_lowercase()),
            value: v.as_bytes().to_vec(),
        }));
        out
    }

    pub fn from_xattrs(xattrs: &[Xattr]) -> ObjectHeaders {
        let text = |x: &Xattr| String::from_utf8_lossy(&x.value).into_owned();
        let mut out = ObjectHeaders::default();
        for x in xattrs {
            let slot = match x.name.as_str() {
                CONTENT_TYPE => &mut out.content_type,
                CONTENT_ENCODING => &mut out.content_encoding,
                CONTENT_DISPOSITION => &mut out.content_disposition,
                CONTENT_LANGUAGE => &mut out.content_language,
                CACHE_CONTROL => &mut out.cache_control,
                EXPIRES => &mut out.expires,
                name => {
                    if let Some(key) = name.strip_prefix(META_PREFIX) {
                        out.metadata.insert(key.to_string(), text(x));
                    }
                    continue;
                }
            };
            *slot = Some(text(x));
        }
        out
    }
}

/// S3's limit on user metadata: 2 KiB of names and values.
pub const MAX_USER_METADATA_BYTES: usize = 2048;

pub fn metadata_bytes(metadata: &HashMap<String, String>) -> usize {
    metadata.iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_through_xattrs() {
        let headers = ObjectHeaders {
            content_type: Some("text/plain".into()),
            cache_control: Some("max-age=60".into()),
            metadata: HashMap::from([("colour".into(), "blue".into())]),
            ..Default::default()
        };
        let xattrs = headers.to_xattrs();
        assert!(xattrs.iter().any(|x| x.name == "user.s3.meta.colour"));
        assert_eq!(ObjectHeaders::from_xattrs(&xattrs), headers);
    }
}
