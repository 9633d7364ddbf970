//! Fuzzing, bounded in cases so that it runs in the test suite: the
//! parsers every server applies to untrusted input never panic, and what
//! they accept satisfies their rules.

use std::str::FromStr;

use cairn_proto::api::{
    AddUserRequest, CapabilityKey, ChunkOp, CommitRequest, LoginRequest, MkdirRequest, MoveRequest,
    RegisterRequest,
};
use cairn_proto::path::{split_path, MAX_NAME_BYTES, MAX_PATH_DEPTH};
use cairn_proto::ChunkId;
use proptest::prelude::*;

/// Strings made of the pieces that break path handling.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("\0".to_string()),
        Just("a".to_string()),
        Just("é".to_string()),
        Just("\u{202e}".to_string()),
        "[a-z]{1,3}".prop_map(String::from),
        (250usize..300).prop_map(|n| "n".repeat(n)),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn paths_are_split_into_valid_names_or_refused(path in hostile_path()) {
        if let Ok(names) = split_path(&path) {
            prop_assert!(names.len() <= MAX_PATH_DEPTH);
            for name in names {
                prop_assert!(!name.is_empty() && name != "." && name != "..");
                prop_assert!(!name.contains('/') && !name.contains('\0'));
                prop_assert!(name.len() <= MAX_NAME_BYTES);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_parser(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<CommitRequest>(&bytes);
        let _ = serde_json::from_slice::<MkdirRequest>(&bytes);
        let _ = serde_json::from_slice::<MoveRequest>(&bytes);
        let _ = serde_json::from_slice::<RegisterRequest>(&bytes);
        let _ = serde_json::from_slice::<LoginRequest>(&bytes);
        let _ = serde_json::from_slice::<AddUserRequest>(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = ChunkId::from_str(&text);
        let _ = split_path(&text);
    }

    /// A capability is accepted only if it is exactly one the key issued.
    #[test]
    fn no_string_but_an_issued_capability_passes(text in "[gpa]\\.[0-9]{1,20}\\.[0-9a-f]{0,40}", id in any::<[u8; 32]>()) {
        let key = CapabilityKey::from_secret(b"fuzzing the capability check");
        let id = ChunkId(id);
        for op in [ChunkOp::Get, ChunkOp::Put, ChunkOp::Admin] {
            prop_assert!(key.check(Some(&text), op, Some(&id), 0).is_err());
        }
        let issued = key.issue(ChunkOp::Get, Some(&id), u64::MAX);
        prop_assert!(key.check(Some(&issued), ChunkOp::Get, Some(&id), 0).is_ok());
    }

    #[test]
    fn chunk_ids_parse_only_from_64_hex_digits(text in "[0-9a-fA-Fxz]{0,70}") {
        if let Ok(id) = ChunkId::from_str(&text) {
            prop_assert_eq!(text.len(), 64);
            prop_assert_eq!(id.to_string(), text.to_ascii_lowercase());
        }
    }
}
