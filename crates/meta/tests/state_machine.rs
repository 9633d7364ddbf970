//! The namespace state machine on a real redb file: semantics of each
//! command, and structural invariants under random command sequences.

use std::collections::{HashMap, HashSet};

use cairn_meta::state::{
    self, Command, Output, Request, StateError, Tables, CHUNK_REFS, DIRENTS, INODES, SM_META,
};
use cairn_meta::store::open_database;
use cairn_proto::api::{
    CommitRequest, EntryKind, MkdirRequest, MoveRequest, OnExists, RegisterRequest, RemoveRequest,
};
use cairn_proto::ids::ROOT_ID;
use cairn_proto::{file_digest, ApiError, ChunkId, ChunkRef, ErrorCode, NodeId, NodeState};
use proptest::prelude::*;
use redb::{Database, ReadableDatabase, ReadableTable};

struct Fixture {
    _dir: tempfile::TempDir,
    db: std::sync::Arc<Database>,
    clock: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("meta.redb")).unwrap();
        Fixture {
            _dir: dir,
            db,
            clock: 1000,
        }
    }

    /// Applies one command and commits the transaction even when the command
    /// is refused: a refusal must have written nothing.
    fn apply(&mut self, command: Command) -> Result<Output, ApiError> {
        self.apply_as(None, command)
    }

    /// Applies one log entry as `store.rs` does: through the request-id
    /// table, a refusal being the outcome.
    fn apply_as(&mut self, request_id: Option<u128>, command: Command) -> Result<Output, ApiError> {
        self.clock += 1;
        let txn = self.db.begin_write().unwrap();
        let result = {
            let mut tables = Tables::open(&txn).unwrap();
            tables.apply_request(&Request {
                now_ms: self.clock,
                request_id,
                command,
            })
        };
        txn.commit().unwrap();
        match result {
            Ok(outcome) => outcome,
            Err(StateError::Api(e)) => panic!("a refusal must be an outcome: {e}"),
            Err(other) => panic!("storage failure: {other}"),
        }
    }

    fn mkdir(&mut self, path: &str, parents: bool) -> Result<Output, ApiError> {
        self.apply(Command::Mkdir(MkdirRequest {
            path: path.into(),
            parents,
        }))
    }

    fn put(&mut self, path: &str, content: &[u8], on_exists: OnExists) -> Result<Output, ApiError> {
        let chunks: Vec<ChunkRef> = content
            .chunks(4)
            .map(|c| ChunkRef {
                id: ChunkId::of(c),
                length_bytes: c.len() as u32,
            })
            .collect();
        self.apply(Command::Commit(CommitRequest {
            path: path.into(),
            size_bytes: content.len() as u64,
            digest: file_digest(&chunks),
            chunks,
            on_exists,
        }))
    }

    fn code(&mut self, command: Command) -> ErrorCode {
        self.apply(command)
            .expect_err("command should be refused")
            .code
    }

    fn stat(&self, path: &str) -> Result<(u64, state::Inode), ErrorCode> {
        let txn = self.db.begin_read().unwrap();
        match state::resolve(
            &txn.open_table(INODES).unwrap(),
            &txn.open_table(DIRENTS).unwrap(),
            path,
        ) {
            Ok(found) => Ok(found),
            Err(StateError::Api(e)) => Err(e.code),
            Err(other) => panic!("{other}"),
        }
    }

    fn names(&self, path: &str) -> Vec<String> {
        let txn = self.db.begin_read().unwrap();
        state::list(
            &txn.open_table(INODES).unwrap(),
            &txn.open_table(DIRENTS).unwrap(),
            path,
        )
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.name)
        .collect()
    }

    /// Every entry points at a live inode, every inode but the root is
    /// reachable exactly once, directory sizes equal their entry counts and
    /// the counters equal the real counts.
    fn check_invariants(&self) {
        let txn = self.db.begin_read().unwrap();
        let inodes = txn.open_table(INODES).unwrap();
        let dirents = txn.open_table(DIRENTS).unwrap();
        let mut all: HashMap<u64, state::Inode> = HashMap::new();
        for row in inodes.iter().unwrap() {
            let (k, v) = row.unwrap();
            all.insert(k.value(), state::decode(v.value()).unwrap());
        }
        let mut referenced: HashSet<u64> = HashSet::new();
        let mut children: HashMap<u64, u64> = HashMap::new();
        for row in dirents.iter().unwrap() {
            let (k, v) = row.unwrap();
            let (parent, _) = k.value();
            assert!(
                all.get(&parent).is_some_and(|p| p.kind == EntryKind::Dir),
                "entry under a non-directory"
            );
            assert!(
                all.contains_key(&v.value()),
                "entry points at a missing inode"
            );
            assert!(referenced.insert(v.value()), "inode linked twice");
            *children.entry(parent).or_default() += 1;
        }
        for (id, inode) in &all {
            if *id != ROOT_ID {
                assert!(referenced.contains(id), "orphan inode {id}");
            }
            if inode.kind == EntryKind::Dir {
                assert_eq!(
                    inode.size_bytes,
                    children.get(id).copied().unwrap_or(0),
                    "entry count of {id}"
                );
            }
        }
        // Every chunk's reference count is the number of times file records
        // list it, and no chunk without references is kept.
        let mut expected_refs: HashMap<[u8; 32], u64> = HashMap::new();
        for inode in all.values() {
            for chunk in &inode.chunks {
                *expected_refs.entry(chunk.id.0).or_default() += 1;
            }
        }
        let mut actual_refs: HashMap<[u8; 32], u64> = HashMap::new();
        for row in txn.open_table(CHUNK_REFS).unwrap().iter().unwrap() {
            let (k, v) = row.unwrap();
            actual_refs.insert(k.value(), v.value());
        }
        assert_eq!(actual_refs, expected_refs, "chunk reference counts");
        let (files, dirs) = state::counts(&txn.open_table(SM_META).unwrap()).unwrap();
        assert_eq!(
            files as usize,
            all.values().filter(|i| i.kind == EntryKind::File).count()
        );
        assert_eq!(
            dirs as usize,
            all.values().filter(|i| i.kind == EntryKind::Dir).count()
        );
    }
}

/// Registration of node `id` at `addr` in zone "z".
fn register(id: &str, addr: &str) -> RegisterRequest {
    RegisterRequest {
        id: NodeId(id.into()),
        addr: addr.into(),
        zone: "z".into(),
        capacity_bytes: 10,
    }
}

fn mv(src: &str, dst: &str, replace: bool) -> MoveRequest {
    MoveRequest {
        src: src.into(),
        dst: dst.into(),
        replace,
    }
}

#[test]
fn mkdir_semantics() {
    let mut f = Fixture::new();
    f.mkdir("/a", false).unwrap();
    assert_eq!(
        f.mkdir("/a", false).unwrap_err().code,
        ErrorCode::AlreadyExists
    );
    f.mkdir("/a", true).unwrap();
    assert_eq!(
        f.mkdir("/x/y/z", false).unwrap_err().code,
        ErrorCode::NotFound
    );
    f.mkdir("/x/y/z", true).unwrap();
    assert_eq!(f.names("/x/y"), vec!["z"]);
    f.put("/file", b"data", OnExists::Fail).unwrap();
    assert_eq!(
        f.mkdir("/file/sub", true).unwrap_err().code,
        ErrorCode::NotADirectory
    );
    assert_eq!(
        f.mkdir("/bad/../x", true).unwrap_err().code,
        ErrorCode::InvalidName
    );
    f.check_invariants();
}

#[test]
fn commit_refuses_replaces_or_renames() {
    let mut f = Fixture::new();
    let Output::Commit(first) = f.put("/f.txt", b"one", OnExists::Fail).unwrap() else {
        panic!()
    };
    assert_eq!(first.version, 1);
    let err = f.put("/f.txt", b"two", OnExists::Fail).unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExists);
    assert!(
        err.message.contains("--force") && err.message.contains("--rename"),
        "{}",
        err.message
    );
    let Output::Commit(replaced) = f.put("/f.txt", b"two", OnExists::Replace).unwrap() else {
        panic!()
    };
    assert_eq!((replaced.id, replaced.version), (first.id, 2));
    let Output::Commit(renamed) = f.put("/f.txt", b"three", OnExists::Rename).unwrap() else {
        panic!()
    };
    assert_eq!(renamed.path, "/f-1.txt");
    let Output::Commit(renamed2) = f.put("/f.txt", b"four", OnExists::Rename).unwrap() else {
        panic!()
    };
    assert_eq!(renamed2.path, "/f-2.txt");
    assert_ne!(renamed.id, first.id);
    assert_eq!(
        f.put("/missing/f", b"x", OnExists::Fail).unwrap_err().code,
        ErrorCode::NotFound
    );
    f.mkdir("/d", false).unwrap();
    assert_eq!(
        f.put("/d", b"x", OnExists::Replace).unwrap_err().code,
        ErrorCode::IsADirectory
    );
    f.check_invariants();
}

#[test]
fn commit_checks_the_chunk_list() {
    let mut f = Fixture::new();
    let chunk = ChunkRef {
        id: ChunkId::of(b"abcd"),
        length_bytes: 4,
    };
    let wrong_size = CommitRequest {
        path: "/f".into(),
        size_bytes: 5,
        chunks: vec![chunk],
        digest: file_digest(&[chunk]),
        on_exists: OnExists::Fail,
    };
    assert_eq!(
        f.code(Command::Commit(wrong_size.clone())),
        ErrorCode::InvalidArgument
    );
    let wrong_digest = CommitRequest {
        size_bytes: 4,
        digest: ChunkId::of(b"nope"),
        ..wrong_size
    };
    assert_eq!(
        f.code(Command::Commit(wrong_digest)),
        ErrorCode::InvalidArgument
    );
    f.check_invariants();
}

#[test]
fn remove_semantics() {
    let mut f = Fixture::new();
    f.mkdir("/d/e", true).unwrap();
    f.put("/d/e/f", b"x", OnExists::Fail).unwrap();
    let err = f
        .apply(Command::Remove(RemoveRequest {
            path: "/d".into(),
            recursive: false,
        }))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::DirectoryNotEmpty);
    assert!(err.message.contains("-r"));
    assert_eq!(
        f.code(Command::Remove(RemoveRequest {
            path: "/".into(),
            recursive: true
        })),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        f.code(Command::Remove(RemoveRequest {
            path: "/nope".into(),
            recursive: false
        })),
        ErrorCode::NotFound
    );
    f.apply(Command::Remove(RemoveRequest {
        path: "/d".into(),
        recursive: true,
    }))
    .unwrap();
    assert_eq!(f.stat("/d").unwrap_err(), ErrorCode::NotFound);
    assert!(f.names("/").is_empty());
    f.check_invariants();
}

#[test]
fn rename_semantics() {
    let mut f = Fixture::new();
    f.mkdir("/a/b", true).unwrap();
    f.mkdir("/dst", false).unwrap();
    f.put("/a/b/f", b"x", OnExists::Fail).unwrap();
    f.put("/g", b"y", OnExists::Fail).unwrap();
    let (fid, _) = f.stat("/a/b/f").unwrap();
    // into a directory
    f.apply(Command::Rename(mv("/a/b/f", "/dst", false)))
        .unwrap();
    assert_eq!(f.stat("/dst/f").unwrap().0, fid);
    // onto an existing file: refused, then replaced with `replace`
    assert_eq!(
        f.code(Command::Rename(mv("/g", "/dst/f", false))),
        ErrorCode::AlreadyExists
    );
    f.apply(Command::Rename(mv("/g", "/dst/f", true))).unwrap();
    assert_eq!(f.stat("/g").unwrap_err(), ErrorCode::NotFound);
    assert_ne!(f.stat("/dst/f").unwrap().0, fid);
    // a directory into itself
    assert_eq!(
        f.code(Command::Rename(mv("/a", "/a/b", false))),
        ErrorCode::InvalidArgument
    );
    // a whole directory moves with its contents
    f.apply(Command::Rename(mv("/dst", "/a/moved", false)))
        .unwrap();
    assert_eq!(f.names("/a/moved"), vec!["f"]);
    assert_eq!(
        f.code(Command::Rename(mv("/missing", "/x", false))),
        ErrorCode::NotFound
    );
    f.check_invariants();
}

#[test]
fn copy_shares_chunks_and_gets_a_new_id() {
    let mut f = Fixture::new();
    f.put("/src", b"some content here", OnExists::Fail).unwrap();
    f.apply(Command::Copy(mv("/src", "/copy", false))).unwrap();
    let (a, ia) = f.stat("/src").unwrap();
    let (b, ib) = f.stat("/copy").unwrap();
    assert_ne!(a, b);
    assert_eq!(ia.chunks, ib.chunks);
    assert_eq!(ia.digest, ib.digest);
    assert_eq!(
        f.code(Command::Copy(mv("/src", "/copy", false))),
        ErrorCode::AlreadyExists
    );
    f.mkdir("/d", false).unwrap();
    assert_eq!(
        f.code(Command::Copy(mv("/d", "/e", false))),
        ErrorCode::IsADirectory
    );
    f.check_invariants();
}

#[test]
fn node_registration_bumps_the_epoch_only_on_change() {
    let mut f = Fixture::new();
    let req = register("n1", "127.0.0.1:1");
    let Output::Map(m1) = f.apply(Command::RegisterNode(req.clone())).unwrap() else {
        panic!()
    };
    let Output::Map(m2) = f.apply(Command::RegisterNode(req.clone())).unwrap() else {
        panic!()
    };
    assert_eq!(m1.epoch, m2.epoch);
    let moved = RegisterRequest {
        addr: "127.0.0.1:2".into(),
        ..req
    };
    let Output::Map(m3) = f.apply(Command::RegisterNode(moved)).unwrap() else {
        panic!()
    };
    assert_eq!(m3.epoch, m2.epoch + 1);
    assert_eq!(m3.nodes.len(), 1);
    assert_eq!(m3.nodes[0].addr, "127.0.0.1:2");
    let down = Command::SetNodeState {
        id: NodeId("n1".into()),
        state: NodeState::Down,
        expect: Some(NodeState::Up),
    };
    let Output::Map(m4) = f.apply(down.clone()).unwrap() else {
        panic!()
    };
    assert_eq!(
        (m4.epoch, m4.nodes[0].state),
        (m3.epoch + 1, NodeState::Down)
    );
    // A conditional change whose expectation no longer holds is a no-op.
    let Output::Map(same) = f.apply(down).unwrap() else {
        panic!()
    };
    assert_eq!(same.epoch, m4.epoch);
    // Registering again does not bring a down node up: damping decides.
    let Output::Map(m5) = f
        .apply(Command::RegisterNode(register("n1", "127.0.0.1:3")))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (m5.nodes[0].state, m5.nodes[0].addr.as_str()),
        (NodeState::Down, "127.0.0.1:3")
    );
    assert_eq!(
        f.code(Command::SetParams {
            replication: 0,
            chunk_size_bytes: 4 << 20
        }),
        ErrorCode::InvalidArgument
    );
}

#[derive(Debug, Clone)]
enum Op {
    Mkdir(usize, bool),
    Put(usize, u8, OnExists),
    Remove(usize, bool),
    Rename(usize, usize, bool),
    Copy(usize, usize, bool),
}

const PATHS: [&str; 8] = ["/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/z", "/c", "/b/x/q"];

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    let on_exists = prop_oneof![
        Just(OnExists::Fail),
        Just(OnExists::Replace),
        Just(OnExists::Rename)
    ];
    prop_oneof![
        (p.clone(), any::<bool>()).prop_map(|(a, b)| Op::Mkdir(a, b)),
        (p.clone(), any::<u8>(), on_exists).prop_map(|(a, c, o)| Op::Put(a, c, o)),
        (p.clone(), any::<bool>()).prop_map(|(a, r)| Op::Remove(a, r)),
        (p.clone(), p.clone(), any::<bool>()).prop_map(|(a, b, r)| Op::Rename(a, b, r)),
        (p.clone(), p, any::<bool>()).prop_map(|(a, b, r)| Op::Copy(a, b, r)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any sequence of commands, refused or not, leaves a well-formed tree.
    #[test]
    fn random_commands_keep_the_tree_well_formed(ops in proptest::collection::vec(op(), 1..40)) {
        let mut f = Fixture::new();
        for op in ops {
            let _ = match op {
                Op::Mkdir(p, parents) => f.mkdir(PATHS[p], parents),
                Op::Put(p, c, o) => f.put(PATHS[p], &[c; 9], o),
                Op::Remove(p, r) => f.apply(Command::Remove(RemoveRequest { path: PATHS[p].into(), recursive: r })),
                Op::Rename(a, b, r) => f.apply(Command::Rename(mv(PATHS[a], PATHS[b], r))),
                Op::Copy(a, b, r) => f.apply(Command::Copy(mv(PATHS[a], PATHS[b], r))),
            };
            f.check_invariants();
        }
    }
}

#[test]
fn only_a_draining_or_down_node_is_removed_and_it_never_rejoins() {
    let mut f = Fixture::new();
    let req = register("n1", "127.0.0.1:1");
    f.apply(Command::RegisterNode(req.clone())).unwrap();
    let remove = Command::RemoveNode {
        id: NodeId("n1".into()),
    };
    assert_eq!(f.code(remove.clone()), ErrorCode::FailedPrecondition);
    f.apply(Command::SetNodeState {
        id: NodeId("n1".into()),
        state: NodeState::Draining,
        expect: None,
    })
    .unwrap();
    // The liveness watcher's conditional change loses to the drain.
    f.apply(Command::SetNodeState {
        id: NodeId("n1".into()),
        state: NodeState::Down,
        expect: Some(NodeState::Up),
    })
    .unwrap();
    let Output::Map(map) = f.apply(remove.clone()).unwrap() else {
        panic!()
    };
    assert!(map.nodes.is_empty());
    assert_eq!(f.code(remove), ErrorCode::NotFound);
    assert_eq!(
        f.code(Command::RegisterNode(req)),
        ErrorCode::FailedPrecondition
    );
}

#[test]
fn chunk_references_follow_files() {
    let mut f = Fixture::new();
    f.put("/a", b"aaaabbbb", OnExists::Fail).unwrap();
    f.apply(Command::Copy(mv("/a", "/b", false))).unwrap();
    let a = ChunkId::of(b"aaaa");
    let refs = |f: &Fixture, id: &ChunkId| {
        let txn = f.db.begin_read().unwrap();
        state::reference_count(&txn.open_table(CHUNK_REFS).unwrap(), id).unwrap()
    };
    assert_eq!(refs(&f, &a), 2);
    f.put("/a", b"ccccbbbb", OnExists::Replace).unwrap();
    assert_eq!(refs(&f, &a), 1);
    f.apply(Command::Remove(RemoveRequest {
        path: "/b".into(),
        recursive: false,
    }))
    .unwrap();
    assert_eq!(refs(&f, &a), 0);
    assert_eq!(refs(&f, &ChunkId::of(b"bbbb")), 1);
    f.check_invariants();
}

#[test]
fn a_database_from_before_chunk_references_gets_them_built() {
    let mut f = Fixture::new();
    f.put("/a", b"aaaabbbbcc", OnExists::Fail).unwrap();
    f.put("/b", b"aaaadddd", OnExists::Fail).unwrap();
    // Make it look like a database written before the index existed.
    let txn = f.db.begin_write().unwrap();
    {
        let mut refs = txn.open_table(CHUNK_REFS).unwrap();
        refs.retain(|_, _| false).unwrap();
        let mut meta = txn.open_table(SM_META).unwrap();
        meta.remove("chunk_refs_indexed").unwrap();
    }
    txn.commit().unwrap();
    let txn = f.db.begin_write().unwrap();
    Tables::open(&txn).unwrap().ensure_initialized().unwrap();
    txn.commit().unwrap();
    f.check_invariants();
    let txn = f.db.begin_read().unwrap();
    let refs = txn.open_table(CHUNK_REFS).unwrap();
    assert_eq!(
        state::reference_count(&refs, &ChunkId::of(b"aaaa")).unwrap(),
        2
    );
}

#[test]
fn a_retried_request_applies_once_and_gets_the_first_outcome() {
    let mut f = Fixture::new();
    let mkdir = || {
        Command::Mkdir(MkdirRequest {
            path: "/a".into(),
            parents: false,
        })
    };
    let first = f.apply_as(Some(7), mkdir()).unwrap();
    // The retry of the same operation: answered, not applied again.
    assert_eq!(f.apply_as(Some(7), mkdir()).unwrap(), first);
    // Another operation doing the same thing is refused as before.
    assert_eq!(
        f.apply_as(Some(8), mkdir()).unwrap_err().code,
        ErrorCode::AlreadyExists
    );
    // A refusal is remembered too: its retry is the same refusal, even
    // once the state would allow it.
    let rename = || Command::Rename(mv("/missing", "/b", false));
    let refused = f.apply_as(Some(9), rename()).unwrap_err();
    f.mkdir("/missing", false).unwrap();
    assert_eq!(f.apply_as(Some(9), rename()).unwrap_err(), refused);
    assert_eq!(f.stat("/a").unwrap().1.version, 1);
}

#[test]
fn request_outcomes_are_forgotten_after_the_retention() {
    let mut f = Fixture::new();
    let mkdir = || {
        Command::Mkdir(MkdirRequest {
            path: "/a".into(),
            parents: false,
        })
    };
    f.apply_as(Some(1), mkdir()).unwrap();
    f.clock += cairn_meta::state::REQUEST_RETENTION_MS + 1;
    // Any later entry forgets it; the same id is then a new operation.
    f.mkdir("/other", false).unwrap();
    assert_eq!(
        f.apply_as(Some(1), mkdir()).unwrap_err().code,
        ErrorCode::AlreadyExists
    );
}
