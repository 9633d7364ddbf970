//! How every stored record is encoded: a format marker byte, then the body.
//!
//! The pattern is Garage's "migrate": each record type names its format
//! marker, keeps the shape it had before ([`Versioned::Previous`]) and an
//! upgrade from that shape. A record read with an older marker is decoded
//! as the older shape and upgraded, step by step, when it is read; a newer
//! marker is refused with a message that says to upgrade cairn. A record is
//! written in its current shape only.
//!
//! Upgrades that need more than the record itself (owner names become
//! numeric ids, which needs the user table) are steps of the whole state,
//! run when the database is opened (`state/upgrade.rs`); their previous
//! shapes live there.
//!
//! Records from before markers existed (Raft's own records, request
//! outcomes: plain JSON) are recognised by their first byte: JSON never
//! starts with a byte below 0x20, and markers are below it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use cairn_proto::ApiError;

/// Failure to apply or read: either a refusal for the user, or a storage
/// fault that must stop the metadata service.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("metadata storage: {0}")]
    Storage(#[from] redb::Error),
    #[error("corrupt metadata record: {0}")]
    Corrupt(String),
}

macro_rules! storage_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self { StateError::Storage(e.into()) }
        }
    )*};
}
storage_error_from!(
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::TransactionError,
    redb::DatabaseError
);

/// How a record's body is serialized after its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Compact, for the records of the namespace (not self-describing:
    /// every field is always written).
    Postcard,
    /// For records holding API types that skip absent fields when written.
    Json,
}

/// A stored record type with a format marker and an upgrade path.
pub trait Versioned: Serialize + DeserializeOwned {
    /// What the record is, for error messages ("inode", "user").
    const NAME: &'static str;
    /// The marker of the current shape; 1 or more, below 0x20.
    const FORMAT: u8;
    const CODEC: Codec = Codec::Postcard;
    /// The shape before this one; [`Initial`] when there is none that can
    /// be upgraded record by record.
    type Previous: Versioned;
    fn upgrade(previous: Self::Previous) -> Self;

    /// Decodes a body of this format (after the marker). Overridden only
    /// by shapes of earlier releases whose bodies vary.
    fn decode_body(body: &[u8]) -> Result<Self, String> {
        match Self::CODEC {
            Codec::Postcard => postcard::from_bytes(body).map_err(|e| e.to_string()),
            Codec::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
        }
    }
}

/// The end of every upgrade chain: no record has format 0, and no value
/// of this type exists.
#[derive(Debug, Serialize, Deserialize)]
pub enum Initial {}

impl Versioned for Initial {
    const NAME: &'static str = "record";
    const FORMAT: u8 = 0;
    type Previous = Initial;
    fn upgrade(previous: Initial) -> Initial {
        match previous {}
    }
}

/// The highest marker value: bytes from 0x20 up start JSON text (or are
/// not markers at all).
pub const MAX_FORMAT: u8 = 0x1f;

pub fn encode<T: Versioned>(value: &T) -> Vec<u8> {
    debug_assert!((1..=MAX_FORMAT).contains(&T::FORMAT));
    let mut out = vec![T::FORMAT];
    match T::CODEC {
        // Serializing our own plain structs into a Vec cannot fail.
        Codec::Postcard => {
            out = postcard::to_extend(value, out).expect("postcard encodes plain structs")
        }
        Codec::Json => serde_json::to_writer(&mut out, value).expect("records serialize to JSON"),
    }
    out
}

pub fn decode<T: Versioned>(bytes: &[u8]) -> Result<T, StateError> {
    let Some((&marker, body)) = bytes.split_first() else {
        return Err(StateError::Corrupt(format!("empty {} record", T::NAME)));
    };
    decode_format::<T>(marker, body)
}

fn decode_format<T: Versioned>(marker: u8, body: &[u8]) -> Result<T, StateError> {
    if marker == T::FORMAT {
        return T::decode_body(body)
            .map_err(|e| StateError::Corrupt(format!("{} record: {e}", T::NAME)));
    }
    if marker > T::FORMAT {
        return Err(StateError::Corrupt(format!(
            "{} record of format {marker} is newer than this binary understands ({}); upgrade cairn",
            T::NAME,
            T::FORMAT
        )));
    }
    if <T::Previous as Versioned>::FORMAT == 0 {
        return Err(StateError::Corrupt(format!(
            "{} record of format {marker} was not upgraded when the database was opened (current: {})",
            T::NAME,
            T::FORMAT
        )));
    }
    Ok(T::upgrade(decode_format::<T::Previous>(marker, body)?))
}

/// A record of openraft's own types (votes, log entries, membership):
/// marker 1 then JSON, as openraft's types are made for self-describing
/// formats. Records from before markers are plain JSON.
pub const RAFT_RECORD_FORMAT: u8 = 1;

pub fn encode_raft<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RAFT_RECORD_FORMAT];
    serde_json::to_writer(&mut out, value).expect("raft records serialize to JSON");
    out
}

pub fn decode_raft<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.first() {
        Some(&RAFT_RECORD_FORMAT) => serde_json::from_slice(&bytes[1..]).map_err(|e| e.to_string()),
        Some(&marker) if marker <= MAX_FORMAT => Err(format!(
            "raft record of format {marker} is newer than this binary understands ({RAFT_RECORD_FORMAT}); upgrade cairn"
        )),
        // From before markers: JSON text.
        _ => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct PointV1 {
        x: u32,
    }
    impl Versioned for PointV1 {
        const NAME: &'static str = "point";
        const FORMAT: u8 = 1;
        type Previous = Initial;
        fn upgrade(previous: Initial) -> Self {
            match previous {}
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct PointV2 {
        x: u64,
        y: u64,
    }
    impl Versioned for PointV2 {
        const NAME: &'static str = "point";
        const FORMAT: u8 = 2;
        type Previous = PointV1;
        fn upgrade(previous: PointV1) -> Self {
            PointV2 {
                x: u64::from(previous.x),
                y: 0,
            }
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct PointV3 {
        x: u64,
        y: u64,
        label: String,
    }
    impl Versioned for PointV3 {
        const NAME: &'static str = "point";
        const FORMAT: u8 = 3;
        const CODEC: Codec = Codec::Postcard;
        type Previous = PointV2;
        fn upgrade(previous: PointV2) -> Self {
            PointV3 {
                x: previous.x,
                y: previous.y,
                label: "upgraded".into(),
            }
        }
    }

    #[test]
    fn an_old_record_is_upgraded_step_by_step_when_read() {
        let v1 = encode(&PointV1 { x: 7 });
        assert_eq!(v1[0], 1);
        let read: PointV3 = decode(&v1).unwrap();
        assert_eq!(
            read,
            PointV3 {
                x: 7,
                y: 0,
                label: "upgraded".into()
            }
        );
        let v3 = PointV3 {
            x: 1,
            y: 2,
            label: "now".into(),
        };
        assert_eq!(decode::<PointV3>(&encode(&v3)).unwrap(), v3);
    }

    #[test]
    fn a_newer_record_is_refused_with_advice() {
        let v3 = encode(&PointV3 {
            x: 1,
            y: 2,
            label: String::new(),
        });
        let refused = decode::<PointV2>(&v3).unwrap_err().to_string();
        assert!(
            refused.contains("newer") && refused.contains("upgrade cairn"),
            "{refused}"
        );
        assert!(decode::<PointV2>(&[]).is_err());
    }

    #[test]
    fn raft_records_read_with_or_without_a_marker() {
        let marked = encode_raft(&vec![1, 2]);
        assert_eq!(decode_raft::<Vec<u32>>(&marked).unwrap(), vec![1, 2]);
        assert_eq!(decode_raft::<Vec<u32>>(b"[3]").unwrap(), vec![3]);
        assert_eq!(decode_raft::<Option<u32>>(b"null").unwrap(), None);
        assert!(decode_raft::<Vec<u32>>(&[9, b'[', b']'])
            .unwrap_err()
            .contains("newer"));
    }
}
