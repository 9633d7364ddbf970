//! Downloads and uploads, streamed both ways: a download is the file's
//! verified chunks as they arrive (a Range request fetches only the
//! chunks it touches, so a video seeks); an upload's parts go into chunks
//! as they arrive, never whole in memory.

use std::collections::HashSet;

use axum::body::Body;
use axum::extract::{Multipart, Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cairn_client::{PutOptions, Target};
use cairn_proto::api::{EntryKind, OnExists};
use cairn_proto::ErrorCode;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio_util::io::StreamReader;

use crate::layout::{child_path, files_href, WebError};
use crate::session::Visitor;

/// Chunks fetched at once for one download.
const DOWNLOAD_WINDOW: usize = 4;
/// Files one upload request may hold.
const MAX_UPLOAD_FILES: usize = 10_000;
/// Directories one upload may make (those of a folder).
const MAX_UPLOAD_DIRS: usize = 10_000;

#[derive(Deserialize)]
pub struct DownloadQuery {
    /// Shown in the browser (a picture, a video) rather than saved.
    #[serde(default)]
    inline: Option<String>,
}

pub async fn download(
    visitor: Visitor,
    Path(path): Path<String>,
    Query(query): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let path = format!("/{}", path.trim_start_matches('/'));
    let reader = visitor.files.open(Target::Path(&path)).await?;
    let stat = reader.stat().clone();
    if stat.kind != EntryKind::File {
        return Err(WebError::bad_request(format!(
            "{path} is {}; only files are downloaded",
            stat.kind.describe()
        )));
    }
    let size = stat.size_bytes;
    let etag = format!("\"{}-{}\"", stat.id, stat.version);
    // A Range for another version of the file is answered whole.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let range = match headers.get(header::RANGE).filter(|_| if_range_ok) {
        None => None,
        Some(value) => match parse_range(value.to_str().unwrap_or(""), size) {
            RangeAsk::Whole => None,
            RangeAsk::Part(start, end) => Some((start, end)),
            RangeAsk::Unsatisfiable => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                    format!("the range is outside {path} ({size} bytes)"),
                )
                    .into_response())
            }
        },
    };
    let (status, offset, length) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let name = path.rsplit('/').next().unwrap_or("download");
    let inline = query.inline.is_some();
    let stream = reader
        .stream_range(offset, Some(length), DOWNLOAD_WINDOW)
        .map_err(|e| {
            // The status is sent: a failure mid-way can only cut the body.
            tracing::warn!(error = %e, "a download failed part way");
            std::io::Error::other(e.to_string())
        });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if inline {
            safe_inline_type(name)
        } else {
            "application/octet-stream"
        }),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(if inline { "inline" } else { "attachment" }, name),
    );
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    // A file shown in the browser runs no script of its own.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; media-src 'self'; img-src 'self'"),
    );
    if let Some((start, end)) = range {
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")).expect("ascii"),
        );
    }
    Ok(response)
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// No single byte range this server serves (several, or another
    /// unit): the whole file, as RFC 9110 allows.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(value: &str, size: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = if first.is_empty() {
        // The last `last` bytes.
        match last.parse::<u64>() {
            Ok(0) | Err(_) => return RangeAsk::Unsatisfiable,
            Ok(_) if size == 0 => return RangeAsk::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size - 1),
        }
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return RangeAsk::Whole;
        };
        let end = if last.is_empty() {
            u64::MAX
        } else {
            match last.parse::<u64>() {
                Ok(end) if end >= start => end,
                _ => return RangeAsk::Whole,
            }
        };
        if start >= size {
            return RangeAsk::Unsatisfiable;
        }
        (start, end.min(size - 1))
    };
    RangeAsk::Part(parsed.0, parsed.1)
}

/// A type the browser may show in place: pictures, sound, video, PDF and
/// plain text; anything else (HTML above all) is not shown but saved.
fn safe_inline_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("mp4" | "m4v") => "video/mp4",
        Some("webm") => "video/webm",
        Some("mp3") => "audio/mpeg",
        Some("ogg" | "oga") => "audio/ogg",
        Some("wav") => "audio/wav",
        Some("pdf") => "application/pdf",
        Some(
            "txt" | "md" | "log" | "csv" | "json" | "rs" | "py" | "sh" | "toml" | "yaml" | "yml",
        ) => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `attachment; filename="x"; filename*=UTF-8''x` (RFC 6266), with the
/// plain name limited to safe ASCII.
fn content_disposition(kind: &str, name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = crate::layout::query_value(name);
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[derive(Deserialize)]
pub struct UploadQuery {
    dir: String,
    csrf: String,
}

/// `POST /upload?dir=D&csrf=T`, a multipart form: each `file` or `folder`
/// part is stored under `D` (a folder's parts by their relative paths,
/// its directories made as needed); a `replace` part before them replaces
/// existing files. Answers with a redirect to `D`, or plain text to the
/// page's script.
pub async fn upload(
    visitor: Visitor,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<Response, WebError> {
    // Checked before a byte of the body is read.
    visitor.check_csrf(&query.csrf)?;
    let dir =
        cairn_proto::path::normalize(&query.dir).map_err(|e| WebError::bad_request(e.message))?;
    let mut replace = false;
    let mut stored = 0usize;
    let mut made_dirs: HashSet<String> = HashSet::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| WebError::bad_request(format!("the upload is not a valid form: {e}")))?
    {
        match field.name() {
            Some("replace") => {
                replace = true;
                continue;
            }
            Some("file" | "folder") => {}
            _ => continue,
        }
        let Some(file_name) = field.file_name().map(str::to_string) else {
            continue;
        };
        if file_name.is_empty() {
            // A file input left empty.
            continue;
        }
        if stored == MAX_UPLOAD_FILES {
            return Err(WebError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "one upload holds at most {MAX_UPLOAD_FILES} files; upload the rest separately"
                ),
            ));
        }
        let names = relative_names(&file_name)?;
        let (name, parents) = names.split_last().expect("at least one name");
        let mut parent = dir.clone();
        for directory in parents {
            parent = child_path(&parent, directory);
            if made_dirs.contains(&parent) {
                continue;
            }
            if made_dirs.len() == MAX_UPLOAD_DIRS {
                return Err(WebError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("one upload makes at most {MAX_UPLOAD_DIRS} directories"),
                ));
            }
            match visitor.files.mkdir(&parent, false, None).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
            made_dirs.insert(parent.clone());
        }
        let path = child_path(&parent, name);
        let options = PutOptions {
            on_exists: if replace {
                OnExists::Replace
            } else {
                OnExists::Fail
            },
            mode: None,
            xattrs: None,
            size_bytes: None,
        };
        let body = StreamReader::new(field.map(|part| part.map_err(std::io::Error::other)));
        match visitor.files.put(&path, body, &options, &|_| {}).await {
            Ok(_) => stored += 1,
            Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => {
                return Err(WebError::new(
                    StatusCode::CONFLICT,
                    format!("{path} already exists; tick \"replace existing files\" to replace it"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(user = %visitor.who.user, dir = %dir, files = stored, "upload");
    if headers.get("x-cairn-upload").is_some() {
        return Ok(format!("stored {stored} files in {dir}").into_response());
    }
    Ok(Redirect::to(&files_href(&dir)).into_response())
}

/// The names of a part's file name: `a.txt`, or a folder's `dir/sub/a.txt`,
/// each checked as Cairn checks names.
fn relative_names(file_name: &str) -> Result<Vec<String>, WebError> {
    let names: Vec<String> = file_name
        .split(['/', '\\'])
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() || names.len() > cairn_proto::path::MAX_PATH_DEPTH {
        return Err(WebError::bad_request(format!(
            "cannot store an uploaded file named {file_name:?}"
        )));
    }
    for name in &names {
        cairn_proto::path::validate_name(name).map_err(|e| {
            WebError::bad_request(format!("cannot store {file_name:?}: {}", e.message))
        })?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsk::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range("bytes=90-500", 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), RangeAsk::Part(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=9-3", 100), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=-5", 0), RangeAsk::Unsatisfiable);
    }

    #[test]
    fn uploaded_names_are_checked_and_html_is_never_shown_in_place() {
        assert_eq!(relative_names("a.txt").unwrap(), ["a.txt"]);
        assert_eq!(
            relative_names("dir/sub/a.txt").unwrap(),
            ["dir", "sub", "a.txt"]
        );
        assert!(relative_names("../etc/passwd").is_err());
        assert!(relative_names("").is_err());
        assert_eq!(safe_inline_type("movie.MP4"), "video/mp4");
        assert_eq!(safe_inline_type("page.html"), "application/octet-stream");
        assert_eq!(safe_inline_type("image.svg"), "application/octet-stream");
        let value = content_disposition("attachment", "naïve \"quote\".txt");
        let value = value.to_str().unwrap();
        assert!(
            value.starts_with("attachment; filename=\"na_ve _quote_.txt\""),
            "{value}"
        );
        assert!(
            value.contains("filename*=UTF-8''na%C3%AFve%20%22quote%22.txt"),
            "{value}"
        );
    }
}
