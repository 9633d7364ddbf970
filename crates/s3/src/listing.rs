//! ListObjects (v1 and v2) over the namespace, in S3's order.
//!
//! Directory entries are keyed by name with a trailing `/` for a
//! directory, and a walk goes through them in the byte order of those
//! keys, depth first, so it meets objects exactly in S3's key order. With
//! delimiter `/`, one directory is listed (its subdirectories are the
//! common prefixes); otherwise the deepest directory the prefix names is
//! walked, and another delimiter rolls keys up as it goes. An empty
//! directory lists as a folder object `KEY/`; pruning removes the empty
//! directories implicit parents leave, so the folders shown are real ones.
//!
//! Cost sketch: one metadata page per 1,000 entries scanned, plus one
//! attribute read per object listed (its ETag), 16 at once.

use cairn_client::{ClientError, Files, Page, Target};
use cairn_proto::api::{DirEntry, EntryKind};
use cairn_proto::ErrorCode;
use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Result};

use crate::attrs::{etag_from, integrity_matching, INTEGRITY};
use crate::buckets::timestamp_ms;
use crate::errors::{s3_error, Missing};
use crate::gateway::Gateway;
use crate::names::{bucket_path, url_encode, validate_bucket};
use crate::objects::EMPTY_MD5;

/// Most keys one listing answers (S3's limit and default).
pub const MAX_KEYS: usize = 1000;
/// Most entries one listing scans before it answers what it has (a
/// delimiter that rolls up a million keys costs a bounded request).
pub const MAX_SCANNED_ENTRIES: usize = 100_000;
/// Metadata page size while listing.
const PAGE_ENTRIES: u32 = 1000;
/// Attribute reads in flight while listing.
const ETAG_READS_IN_FLIGHT: usize = 16;

pub(crate) struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Keys up to this one (inclusive) are not listed.
    pub after: Option<String>,
    pub max_keys: usize,
}

pub(crate) struct Listed {
    pub objects: Vec<Object>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or prefix answered, from which the next page goes on.
    pub next: Option<String>,
}

impl Listed {
    /// The objects and common prefixes of the page, their keys
    /// percent-encoded when `url` (encoding-type=url).
    fn encoded(&mut self, url: bool) -> (Vec<Object>, Vec<CommonPrefix>) {
        let encode = |text: String| if url { url_encode(&text) } else { text };
        let objects = std::mem::take(&mut self.objects)
            .into_iter()
            .map(|object| Object {
                key: object.key.map(encode),
                ..object
            })
            .collect();
        let prefixes = std::mem::take(&mut self.prefixes)
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(encode(p)),
            })
            .collect();
        (objects, prefixes)
    }
}

enum Item {
    Object(String, DirEntry),
    Prefix(String),
}

/// Collects items up to the page size; says when to stop.
struct Collector<'a> {
    after: Option<&'a str>,
    max_keys: usize,
    items: Vec<Item>,
    truncated: bool,
    scanned: usize,
    last_prefix: Option<String>,
}

impl Collector<'_> {
    /// Takes `item`, unless it is at or before the start; false once the
    /// page is full.
    fn push(&mut self, item: Item) -> bool {
        let skip = match (&item, self.after) {
            (Item::Object(key, _), Some(after)) => key.as_str() <= after,
            // A prefix is listed again only when the start is inside it.
            (Item::Prefix(prefix), Some(after)) => {
                prefix.as_str() <= after && !(after.starts_with(prefix.as_str()) && after != prefix)
            }
            _ => false,
        };
        if skip {
            return true;
        }
        if let Item::Prefix(prefix) = &item {
            if self.last_prefix.as_deref() == Some(prefix) {
                return true;
            }
            self.last_prefix = Some(prefix.clone());
        }
        if self.items.len() == self.max_keys {
            self.truncated = true;
            return false;
        }
        self.items.push(item);
        true
    }

    /// Counts one entry scanned; false past the scan limit (the page then
    /// ends truncated).
    fn scanned_one(&mut self) -> bool {
        self.scanned += 1;
        if self.scanned > MAX_SCANNED_ENTRIES && !self.items.is_empty() {
            self.truncated = true;
            return false;
        }
        true
    }
}

/// The text just before `text` for a cursor: without its last character.
fn before(text: &str) -> Option<String> {
    let mut chars = text.chars();
    chars.next_back()?;
    let shorter = chars.as_str();
    (!shorter.is_empty()).then(|| shorter.to_string())
}

/// Whether `cursor` is a valid listing cursor (names of 1..=255 bytes,
/// no NUL, not `.`/`..`, separated by `/`, maybe ending in `/`).
fn valid_cursor(cursor: &str) -> bool {
    let body = cursor.strip_suffix('/').unwrap_or(cursor);
    !body.is_empty()
        && body.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.len() <= 255
                && !part.contains('\0')
        })
}

fn max_cursor(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Gateway {
    pub(crate) async fn list(
        &self,
        files: &Files,
        bucket: &str,
        query: &ListQuery,
    ) -> S3Result<Listed> {
        validate_bucket(bucket)?;
        let prefix = query.prefix.as_str();
        let dir_rel = match prefix.rfind('/') {
            Some(slash) => &prefix[..=slash],
            None => "",
        };
        let rest = &prefix[dir_rel.len()..];
        let dir_path = match dir_rel.strip_suffix('/') {
            Some(dir) => format!("{}/{dir}", bucket_path(bucket)),
            None => bucket_path(bucket),
        };
        let mut collector = Collector {
            after: query.after.as_deref(),
            max_keys: query.max_keys,
            items: Vec::new(),
            truncated: false,
            scanned: 0,
            last_prefix: None,
        };
        // Where to start: just before the prefix's rest, or at the start key.
        let mut after_rel = None;
        if let Some(after) = query.after.as_deref() {
            match after.strip_prefix(dir_rel) {
                Some(rel) => after_rel = Some(rel.to_string()),
                None if after > dir_rel => return self.answer(files, collector).await,
                None => {}
            }
        }
        let by_directory = query.delimiter.as_deref() == Some("/");
        let seek_after = if by_directory {
            after_rel.map(|rel| match rel.find('/') {
                // The start is a prefix itself: go past it.
                Some(slash) if slash == rel.len() - 1 => rel,
                // The start is inside a subdirectory: list that one again.
                Some(slash) => rel[..slash].to_string(),
                None => rel,
            })
        } else {
            after_rel
        };
        let seek = max_cursor(before(rest), seek_after).filter(|c| valid_cursor(c));
        let mut page = Page {
            after: seek,
            limit: Some(PAGE_ENTRIES),
        };
        'pages: loop {
            let (entries, next) = if by_directory {
                match files.list(&dir_path, &page).await {
                    Ok(listing) => (
                        listing
                            .entries
                            .into_iter()
                            .map(|e| (format!("{dir_rel}{}", e.name), e))
                            .collect::<Vec<_>>(),
                        listing.next,
                    ),
                    Err(e) => return self.missing_dir(files, bucket, dir_rel, e, collector).await,
                }
            } else {
                match files.walk(&dir_path, &page).await {
                    Ok(walked) => {
                        let base = format!("{dir_path}/");
                        let entries = walked
                            .entries
                            .into_iter()
                            .filter_map(|w| {
                                let rel = w.path.strip_prefix(&base)?.to_string();
                                Some((format!("{dir_rel}{rel}"), w.entry))
                            })
                            .collect::<Vec<_>>();
                        (entries, walked.next)
                    }
                    Err(e) => return self.missing_dir(files, bucket, dir_rel, e, collector).await,
                }
            };
            for (mut key, entry) in entries {
                if !collector.scanned_one() {
                    break 'pages;
                }
                if entry.kind.is_node() {
                    // Links, pipes and devices made through the mount
                    // are no objects.
                    continue;
                }
                let is_dir = entry.kind == EntryKind::Dir;
                if is_dir {
                    key.push('/');
                }
                if !key.starts_with(prefix) {
                    if key.as_str() > prefix {
                        break 'pages;
                    }
                    continue;
                }
                let item = if by_directory {
                    if is_dir {
                        Item::Prefix(key)
                    } else {
                        Item::Object(key, entry)
                    }
                } else {
                    // A directory with entries is no object: its entries
                    // come next. An empty one is a folder.
                    if is_dir && entry.size_bytes > 0 {
                        continue;
                    }
                    match query.delimiter.as_deref().filter(|d| !d.is_empty()) {
                        Some(delimiter) => match key[prefix.len()..].find(delimiter) {
                            Some(at) => {
                                Item::Prefix(key[..prefix.len() + at + delimiter.len()].to_string())
                            }
                            None => Item::Object(key, entry),
                        },
                        None => Item::Object(key, entry),
                    }
                };
                if !collector.push(item) {
                    break 'pages;
                }
            }
            match next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        self.answer(files, collector).await
    }

    /// A listing whose directory is missing: no bucket is an error, no
    /// prefix directory an empty answer.
    async fn missing_dir(
        &self,
        files: &Files,
        bucket: &str,
        dir_rel: &str,
        error: ClientError,
        collector: Collector<'_>,
    ) -> S3Result<Listed> {
        if !matches!(
            error.code(),
            Some(ErrorCode::NotFound | ErrorCode::NotADirectory)
        ) || dir_rel.is_empty()
        {
            return Err(s3_error(error, Missing::Bucket));
        }
        self.bucket_exists(files, bucket).await?;
        self.answer(files, collector).await
    }

    /// The page: objects with their ETags (read 16 at once), prefixes.
    async fn answer(&self, files: &Files, collector: Collector<'_>) -> S3Result<Listed> {
        let next = collector.items.last().map(|item| match item {
            Item::Object(key, _) | Item::Prefix(key) => key.clone(),
        });
        let mut prefixes = Vec::new();
        let mut pending = Vec::new();
        for item in collector.items {
            match item {
                Item::Prefix(prefix) => prefixes.push(prefix),
                Item::Object(key, entry) => pending.push((key, entry)),
            }
        }
        let objects = futures::stream::iter(pending)
            .map(|(key, entry)| async move {
                let etag = if entry.kind == EntryKind::Dir {
                    EMPTY_MD5.to_string()
                } else {
                    let integrity = match files.xattr(Target::Id(entry.id), INTEGRITY).await {
                        Ok(value) => integrity_matching(entry.digest.as_ref(), &value),
                        Err(_) => None,
                    };
                    etag_from(entry.digest.as_ref(), integrity.as_ref())
                };
                Object {
                    key: Some(key),
                    size: Some(if entry.kind == EntryKind::Dir {
                        0
                    } else {
                        entry.size_bytes as i64
                    }),
                    e_tag: Some(ETag::Strong(etag)),
                    last_modified: Some(timestamp_ms(entry.modified_ms)),
                    storage_class: Some(ObjectStorageClass::from_static(
                        ObjectStorageClass::STANDARD,
                    )),
                    owner: Some(Owner {
                        display_name: Some(entry.owner.clone()),
                        id: Some(entry.owner),
                    }),
                    ..Default::default()
                }
            })
            .buffered(ETAG_READS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        Ok(Listed {
            objects,
            prefixes,
            truncated: collector.truncated,
            next: if collector.truncated { next } else { None },
        })
    }

    pub(crate) async fn do_list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<ListObjectsV2Output> {
        let files = self.files_for(&req)?;
        let input = req.input;
        let url = url_encoding(input.encoding_type.as_ref())?;
        let query = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            after: input
                .continuation_token
                .clone()
                .or_else(|| input.start_after.clone())
                .filter(|a| !a.is_empty()),
            max_keys: max_keys(input.max_keys)?,
        };
        let mut listed = self.list(&files, &input.bucket, &query).await?;
        let encode = |text: String| if url { url_encode(&text) } else { text };
        let key_count = (listed.objects.len() + listed.prefixes.len()) as i32;
        let (objects, prefixes) = listed.encoded(url);
        Ok(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode(query.prefix.clone())),
            delimiter: query.delimiter.clone().map(encode),
            max_keys: Some(query.max_keys as i32),
            key_count: Some(key_count),
            is_truncated: Some(listed.truncated),
            continuation_token: input.continuation_token,
            // Opaque to clients: given back as sent, never encoded.
            next_continuation_token: listed.next,
            start_after: input.start_after.map(encode),
            encoding_type: input.encoding_type,
            contents: Some(objects),
            common_prefixes: Some(prefixes),
            ..Default::default()
        })
    }

    pub(crate) async fn do_list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<ListObjectsOutput> {
        let files = self.files_for(&req)?;
        let input = req.input;
        let url = url_encoding(input.encoding_type.as_ref())?;
        let query = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            after: input.marker.clone().filter(|m| !m.is_empty()),
            max_keys: max_keys(input.max_keys)?,
        };
        let mut listed = self.list(&files, &input.bucket, &query).await?;
        let encode = |text: String| if url { url_encode(&text) } else { text };
        let (objects, prefixes) = listed.encoded(url);
        Ok(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encode(query.prefix.clone())),
            delimiter: query.delimiter.clone().map(encode),
            marker: Some(encode(input.marker.unwrap_or_default())),
            max_keys: Some(query.max_keys as i32),
            is_truncated: Some(listed.truncated),
            next_marker: listed.next.map(encode),
            encoding_type: input.encoding_type,
            contents: Some(objects),
            common_prefixes: Some(prefixes),
            ..Default::default()
        })
    }
}

fn url_encoding(encoding: Option<&EncodingType>) -> S3Result<bool> {
    match encoding {
        None => Ok(false),
        Some(e) if e.as_str() == EncodingType::URL => Ok(true),
        Some(e) => Err(s3_error!(
            InvalidArgument,
            "encoding-type {:?} is not supported; use url",
            e.as_str()
        )),
    }
}

fn max_keys(asked: Option<i32>) -> S3Result<usize> {
    match asked {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "max-keys must be 0 or more; got {n}"
        )),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_start_just_before_a_prefix() {
        assert_eq!(before("photos"), Some("photo".to_string()));
        assert_eq!(before("p"), None);
        assert_eq!(before("é"), None);
        assert!(valid_cursor("a/b/"));
        assert!(!valid_cursor("a//b"));
        assert_eq!(
            max_cursor(Some("a".into()), Some("b".into())),
            Some("b".into())
        );
    }
}
