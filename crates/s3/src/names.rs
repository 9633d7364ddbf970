//! Buckets and keys as paths of the one namespace.
//!
//! Bucket `photos` is the directory `/buckets/photos`; key `2024/jan.jpg`
//! in it is the file `/buckets/photos/2024/jan.jpg`, its parents made as
//! needed. A key ending in `/` is a folder: the directory itself. Each part
//! of a key between slashes must be a valid Cairn name (1 to 255 bytes, no
//! NUL, not `.` or `..`), so keys such as `a//b` or `../x` are refused with
//! a message that says why.

use cairn_proto::limits::MAX_NAME_BYTES;
use s3s::{s3_error, S3Result};

pub use cairn_client::buckets::{bucket_path, uploads_path, BUCKETS_DIR, UPLOADS_DIR};

/// S3's longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a bucket name against S3's rules (`bucket_name_problem`).
pub fn validate_bucket(name: &str) -> S3Result<()> {
    match cairn_client::buckets::bucket_name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(s3_error!(InvalidBucketName, "{problem}")),
    }
}

/// The path key `key` of `bucket` is stored at (a folder key's directory).
pub fn object_path(bucket: &str, key: &str) -> S3Result<String> {
    validate_key(key)?;
    let parts = key.strip_suffix('/').unwrap_or(key);
    Ok(format!("{}/{parts}", bucket_path(bucket)))
}

/// Whether `key` names a folder (a directory) rather than a file.
pub fn is_folder(key: &str) -> bool {
    key.ends_with('/')
}

pub fn validate_key(key: &str) -> S3Result<()> {
    let shown: String = key.chars().take(80).collect();
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "an object key cannot be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(
            KeyTooLongError,
            "key {shown:?}... is {} bytes; the most is {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    let parts = key.strip_suffix('/').unwrap_or(key);
    for part in parts.split('/') {
        let problem = if part.is_empty() {
            Some("it has an empty part (a leading '/' or '//')")
        } else if part == "." || part == ".." {
            Some("it has a '.' or '..' part")
        } else if part.len() > MAX_NAME_BYTES {
            Some("a part between '/' is longer than 255 bytes")
        } else if part.contains('\0') {
            Some("it contains a NUL byte")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(s3_error!(
                InvalidArgument,
                "key {shown:?} cannot be stored: Cairn keeps keys as paths and {problem}; rename the key"
            ));
        }
    }
    Ok(())
}

/// The parent directories of key `key`'s path, deepest first, down to (not
/// including) the bucket.
pub fn parents_of(bucket: &str, key: &str) -> Vec<String> {
    let base = bucket_path(bucket);
    let parts: Vec<&str> = key.strip_suffix('/').unwrap_or(key).split('/').collect();
    (1..parts.len())
        .rev()
        .map(|n| format!("{base}/{}", parts[..n].join("/")))
        .collect()
}

/// Percent-encodes a key for `encoding-type=url` answers: everything but
/// unreserved characters and `/` (clients decode with `unquote_plus`, so a
/// `+` must be sent as `%2B`).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_refused_as_s3_refuses_them() {
        assert!(validate_bucket("my-bucket.2024").is_ok());
        let refused = validate_bucket("Abc").unwrap_err();
        assert_eq!(refused.code(), &s3s::S3ErrorCode::InvalidBucketName);
    }

    #[test]
    fn keys_map_to_paths_and_back() {
        assert_eq!(object_path("b", "a/x y+z").unwrap(), "/buckets/b/a/x y+z");
        assert_eq!(object_path("b", "dir/").unwrap(), "/buckets/b/dir");
        for bad in ["", "/a", "a//b", "a/../b", "./a", "a/./"] {
            assert!(object_path("b", bad).is_err(), "{bad:?}");
        }
        assert!(object_path("b", &"k".repeat(1025)).is_err());
        assert_eq!(parents_of("b", "a/b/c"), ["/buckets/b/a/b", "/buckets/b/a"]);
        assert_eq!(parents_of("b", "a/b/"), ["/buckets/b/a"]);
        assert!(parents_of("b", "top").is_empty());
    }

    #[test]
    fn url_encoding_keeps_slashes_and_escapes_plus() {
        assert_eq!(url_encode("a b+c/%é"), "a%20b%2Bc/%25%C3%A9");
    }
}
