//! Namespace paths: `/a/b/c`. Every name is checked here, once, by every
//! process, so the state machine never sees a name it cannot store.

use crate::error::{ApiError, ErrorCode};

pub use crate::limits::{MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_PATH_DEPTH};

/// Checks one name: not empty, not `.` or `..`, no `/` or NUL, at most
/// [`MAX_NAME_BYTES`] bytes.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let problem = if name.is_empty() {
        Some("a name cannot be empty".to_string())
    } else if name == "." || name == ".." {
        Some(format!("{name:?} is not allowed as a name"))
    } else if name.contains('/') {
        Some("a name cannot contain '/'".to_string())
    } else if name.contains('\0') {
        Some("a name cannot contain a NUL byte".to_string())
    } else if name.len() > MAX_NAME_BYTES {
        Some(format!(
            "a name can be at most {MAX_NAME_BYTES} bytes; this one has {}",
            name.len()
        ))
    } else {
        None
    };
    match problem {
        Some(reason) => Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("invalid name {:?}: {reason}", shorten(name)),
        )),
        None => Ok(()),
    }
}

/// Splits an absolute or root-relative path into validated names. Repeated
/// and trailing slashes are ignored; `/` (or ``) is the root and gives no names.
pub fn split_path(path: &str) -> Result<Vec<&str>, ApiError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!(
                "path is {} bytes long; the limit is {MAX_PATH_BYTES}",
                path.len()
            ),
        ));
    }
    let names: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    if names.len() > MAX_PATH_DEPTH {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!(
                "path {:?} is {} levels deep; the limit is {MAX_PATH_DEPTH}",
                shorten(path),
                names.len()
            ),
        ));
    }
    for name in &names {
        validate_name(name).map_err(|e| {
            ApiError::new(
                e.code,
                format!("in path {:?}: {}", shorten(path), e.message),
            )
        })?;
    }
    Ok(names)
}

/// The canonical spelling of a path: `/` followed by its names joined by `/`.
pub fn normalize(path: &str) -> Result<String, ApiError> {
    Ok(join(&split_path(path)?))
}

pub fn join(names: &[&str]) -> String {
    if names.is_empty() {
        return "/".to_string();
    }
    let mut out = String::new();
    for name in names {
        out.push('/');
        out.push_str(name);
    }
    out
}

/// Splits a path into its parent's path and its last name; `None` for the root.
pub fn parent_and_name(path: &str) -> Result<Option<(String, String)>, ApiError> {
    let names = split_path(path)?;
    Ok(names
        .split_last()
        .map(|(last, parents)| (join(parents), last.to_string())))
}

// Error messages quote user input; a 10 KB name must not make a 10 KB message.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 80;
    if text.len() <= LIMIT {
        return text.to_string();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_and_normalizes() {
        assert_eq!(split_path("/").unwrap(), Vec::<&str>::new());
        assert_eq!(split_path("").unwrap(), Vec::<&str>::new());
        assert_eq!(split_path("/a//b/").unwrap(), vec!["a", "b"]);
        assert_eq!(normalize("a/b").unwrap(), "/a/b");
        assert_eq!(
            parent_and_name("/a/b/c").unwrap(),
            Some(("/a/b".to_string(), "c".to_string()))
        );
        assert_eq!(parent_and_name("/").unwrap(), None);
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["/a/../b", "/./x", "/a\0b", &format!("/{}", "n".repeat(256))] {
            let err = split_path(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidName, "{bad:?}");
            assert!(
                err.message.len() < 400,
                "message stays short: {}",
                err.message
            );
        }
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"n".repeat(255)).is_ok());
        let deep = "/a".repeat(MAX_PATH_DEPTH + 1);
        assert!(split_path(&deep).is_err());
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent(path in "[a-c/.]{0,30}") {
            if let Ok(normal) = normalize(&path) {
                prop_assert_eq!(normalize(&normal).unwrap(), normal.clone());
                prop_assert!(normal.starts_with('/'));
            }
        }
    }
}
