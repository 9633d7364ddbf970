//! Identifiers: content-addressed chunk ids, node ids and file ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A file's id: a u64 handed out by the metadata service, never reused.
/// Directories draw from the same sequence; the root is [`ROOT_ID`].
pub type FileId = u64;
/// Id of the root directory.
pub const ROOT_ID: FileId = 1;

/// BLAKE3-256 of a chunk's bytes. Written as 64 lowercase hex digits on the
/// wire and as the chunk's file name on disk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub const HEX_LEN: usize = 64;

    /// The id of `data`: its BLAKE3 hash.
    pub fn of(data: &[u8]) -> ChunkId {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(Self::HEX_LEN);
        for byte in self.0 {
            out.push(HEX_DIGITS[(byte >> 4) as usize] as char);
            out.push(HEX_DIGITS[(byte & 0xf) as usize] as char);
        }
        out
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    #[error("a chunk id is 64 lowercase hex digits; got {0} characters")]
    Length(usize),
    #[error("a chunk id is 64 lowercase hex digits; found {0:?}")]
    Digit(char),
}

impl FromStr for ChunkId {
    type Err = ParseIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != Self::HEX_LEN {
            return Err(ParseIdError::Length(text.chars().count()));
        }
        let mut out = [0u8; 32];
        let bytes = text.as_bytes();
        for (i, slot) in out.iter_mut().enumerate() {
            let hi = hex_value(bytes[2 * i])?;
            let lo = hex_value(bytes[2 * i + 1])?;
            *slot = (hi << 4) | lo;
        }
        Ok(ChunkId(out))
    }
}

// Only lowercase digits: the id is also a file name, so one id must have one spelling.
fn hex_value(digit: u8) -> Result<u8, ParseIdError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        other => Err(ParseIdError::Digit(other as char)),
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl Serialize for ChunkId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            Ok(ChunkId(<[u8; 32]>::deserialize(deserializer)?))
        }
    }
}

/// A storage node's id: a UUID made on the node's first start and kept in its
/// data directory, so an address change does not make it a new node.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

/// One entry of a file's chunk list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub length_bytes: u32,
}

/// The whole-file digest: BLAKE3 over the ordered (chunk id, little-endian
/// u64 length) pairs. Cheap to compute and to check (40 bytes a chunk, not
/// the data), and it changes whenever any byte of the file changes because
/// each chunk id is the hash of that chunk's bytes.
pub fn file_digest(chunks: &[ChunkRef]) -> ChunkId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"cairn-file-digest-v1");
    for chunk in chunks {
        hasher.update(&chunk.id.0);
        hasher.update(&u64::from(chunk.length_bytes).to_le_bytes());
    }
    ChunkId(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn chunk_id_hex_round_trips(bytes in proptest::array::uniform32(any::<u8>())) {
            let id = ChunkId(bytes);
            let text = id.to_hex();
            prop_assert_eq!(text.len(), 64);
            prop_assert_eq!(text.parse::<ChunkId>().unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<ChunkId>(&json).unwrap(), id);
        }
    }

    #[test]
    fn chunk_id_rejects_bad_text() {
        assert!(matches!(
            "abc".parse::<ChunkId>(),
            Err(ParseIdError::Length(3))
        ));
        let upper = "A".repeat(64);
        assert!(matches!(
            upper.parse::<ChunkId>(),
            Err(ParseIdError::Digit('A'))
        ));
        let slashy = format!("{}/", "0".repeat(63));
        assert!(slashy.parse::<ChunkId>().is_err());
    }

    #[test]
    fn digest_depends_on_order_and_length() {
        let a = ChunkRef {
            id: ChunkId::of(b"a"),
            length_bytes: 1,
        };
        let b = ChunkRef {
            id: ChunkId::of(b"b"),
            length_bytes: 1,
        };
        assert_ne!(file_digest(&[a, b]), file_digest(&[b, a]));
        let a_long = ChunkRef {
            length_bytes: 2,
            ..a
        };
        assert_ne!(file_digest(&[a]), file_digest(&[a_long]));
        assert_eq!(file_digest(&[a, b]), file_digest(&[a, b]));
    }
}
