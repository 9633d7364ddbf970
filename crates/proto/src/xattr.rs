//! Extended attributes: named byte strings on a file or directory, as
//! Linux keeps them (`user.color`, `security.selinux`). S3 user metadata
//! and content types live here too.
//!
//! A name has a namespace prefix that decides who may touch it (checked by
//! the state machine): `user.` needs the file's read or write permission,
//! `trusted.` is for admins only, `security.` is readable by anyone who
//! may reach the file and writable by admins. `system.` (POSIX ACLs) is
//! not supported.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ApiError, ErrorCode};
use crate::limits::{MAX_XATTR_NAME_BYTES, MAX_XATTR_VALUE_BYTES};

/// One extended attribute. In JSON the value is base64 (standard alphabet,
/// padded): `{"name": "user.color", "value": "cmVk"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: String,
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
}

/// Who may read or write an attribute, by its name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrNamespace {
    /// `user.`: the file's read permission to read, write to write.
    User,
    /// `trusted.`: admins only.
    Trusted,
    /// `security.`: read by whoever may reach the file, written by admins.
    Security,
}

impl XattrNamespace {
    /// The namespace of a valid name (see [`validate_xattr_name`]).
    pub fn of(name: &str) -> XattrNamespace {
        if name.starts_with("trusted.") {
            XattrNamespace::Trusted
        } else if name.starts_with("security.") {
            XattrNamespace::Security
        } else {
            XattrNamespace::User
        }
    }
}

/// Checks an attribute name: 1 to 255 bytes, no NUL, in the `user.`,
/// `trusted.` or `security.` namespace with something after the prefix.
pub fn validate_xattr_name(name: &str) -> Result<(), ApiError> {
    let shown: String = name.chars().take(60).collect();
    let problem = if name.is_empty() || name.len() > MAX_XATTR_NAME_BYTES {
        Some(format!("a name has 1 to {MAX_XATTR_NAME_BYTES} bytes"))
    } else if name.contains('\0') {
        Some("a name cannot contain a NUL byte".to_string())
    } else if name.starts_with("system.") {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "extended attribute {shown:?}: the system. namespace (POSIX ACLs) is not supported"
            ),
        ));
    } else if !["user.", "trusted.", "security."]
        .iter()
        .any(|prefix| name.len() > prefix.len() && name.starts_with(prefix))
    {
        Some(format!(
            "a name starts with user., trusted. or security. and goes on, as in user.{shown}"
        ))
    } else {
        None
    };
    match problem {
        Some(reason) => Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("invalid extended attribute name {shown:?}: {reason}"),
        )),
        None => Ok(()),
    }
}

/// Checks an attribute's name and value size.
pub fn validate_xattr(xattr: &Xattr) -> Result<(), ApiError> {
    validate_xattr_name(&xattr.name)?;
    if xattr.value.len() > MAX_XATTR_VALUE_BYTES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "extended attribute {} has a {}-byte value; the limit is {MAX_XATTR_VALUE_BYTES}",
                xattr.name,
                xattr.value.len()
            ),
        ));
    }
    Ok(())
}

/// What an attribute costs against the per-inode budget
/// ([`crate::limits::MAX_XATTR_BYTES_PER_INODE`]): its name and its value.
pub fn xattr_cost(name: &str, value_len: usize) -> usize {
    name.len() + value_len
}

mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("value is not base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_need_a_known_namespace() {
        assert!(validate_xattr_name("user.color").is_ok());
        assert!(validate_xattr_name("trusted.x").is_ok());
        assert!(validate_xattr_name("security.selinux").is_ok());
        for bad in ["", "color", "user.", "user.a\0b", &"u".repeat(256)] {
            assert_eq!(
                validate_xattr_name(bad).unwrap_err().code,
                ErrorCode::InvalidName,
                "{bad:?}"
            );
        }
        assert_eq!(
            validate_xattr_name("system.posix_acl_access")
                .unwrap_err()
                .code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(XattrNamespace::of("trusted.x"), XattrNamespace::Trusted);
        assert_eq!(XattrNamespace::of("user.x"), XattrNamespace::User);
    }

    #[test]
    fn values_travel_as_base64_and_are_bounded() {
        let xattr = Xattr {
            name: "user.bin".into(),
            value: vec![0, 255, 10],
        };
        let json = serde_json::to_string(&xattr).unwrap();
        assert_eq!(json, r#"{"name":"user.bin","value":"AP8K"}"#);
        assert_eq!(serde_json::from_str::<Xattr>(&json).unwrap(), xattr);
        assert!(serde_json::from_str::<Xattr>(r#"{"name":"user.a","value":"!!"}"#).is_err());
        let big = Xattr {
            name: "user.big".into(),
            value: vec![0; MAX_XATTR_VALUE_BYTES + 1],
        };
        assert_eq!(validate_xattr(&big).unwrap_err().code, ErrorCode::TooLarge);
    }
}
