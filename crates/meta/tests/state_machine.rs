//! The namespace state machine on a real redb file: semantics of each
//! command, and structural invariants under random command sequences.

use std::collections::{HashMap, HashSet};

use cairn_meta::auth::{self, AUTH};
use cairn_meta::perm::Principal;
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
        self.apply_full(request_id, None, command)
    }

    /// Applies a command as user `user`.
    fn by(&mut self, user: &str, command: Command) -> Result<Output, ApiError> {
        self.apply_full(None, Some(user), command)
    }

    fn apply_full(
        &mut self,
        request_id: Option<u128>,
        user: Option<&str>,
        command: Command,
    ) -> Result<Output, ApiError> {
        self.clock += 1;
        let txn = self.db.begin_write().unwrap();
        let result = {
            let mut tables = Tables::open(&txn).unwrap();
            tables.apply_request(&Request {
                now_ms: self.clock,
                request_id,
                user: user.map(str::to_string),
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
        self.apply(mkdir_command(path, parents))
    }

    fn put(&mut self, path: &str, content: &[u8], on_exists: OnExists) -> Result<Output, ApiError> {
        self.apply(put_command(path, content, on_exists))
    }

    fn code(&mut self, command: Command) -> ErrorCode {
        self.apply(command)
            .expect_err("command should be refused")
            .code
    }

    fn stat(&self, path: &str) -> Result<(u64, state::Inode), ErrorCode> {
        self.stat_as(&Principal::system(), path)
    }

    fn stat_as(&self, who: &Principal, path: &str) -> Result<(u64, state::Inode), ErrorCode> {
        let txn = self.db.begin_read().unwrap();
        match state::resolve(
            &txn.open_table(INODES).unwrap(),
            &txn.open_table(DIRENTS).unwrap(),
            who,
            path,
        ) {
            Ok(found) => Ok(found),
            Err(StateError::Api(e)) => Err(e.code),
            Err(other) => panic!("{other}"),
        }
    }

    fn names(&self, path: &str) -> Vec<String> {
        self.list_as(&Principal::system(), path).unwrap()
    }

    fn list_as(&self, who: &Principal, path: &str) -> Result<Vec<String>, ErrorCode> {
        let txn = self.db.begin_read().unwrap();
        match state::list(
            &txn.open_table(INODES).unwrap(),
            &txn.open_table(DIRENTS).unwrap(),
            who,
            path,
        ) {
            Ok(listing) => Ok(listing.entries.into_iter().map(|e| e.name).collect()),
            Err(StateError::Api(e)) => Err(e.code),
            Err(other) => panic!("{other}"),
        }
    }

    /// The caller `name` as the server would build it from the users table.
    fn principal(&self, name: &str) -> Principal {
        let txn = self.db.begin_read().unwrap();
        auth::get_user(&txn.open_table(AUTH).unwrap(), name)
            .unwrap()
            .unwrap()
            .principal(name)
    }

    /// The first admin, and users alice and bob (both in group eng) and
    /// carol.
    fn with_users() -> Fixture {
        let mut f = Fixture::new();
        f.apply(Command::BootstrapAdmin {
            password_hash: "h".into(),
        })
        .unwrap();
        for (name, groups) in [
            ("alice", vec!["eng"]),
            ("bob", vec!["eng"]),
            ("carol", vec![]),
        ] {
            f.by(
                "admin",
                Command::AddUser {
                    name: name.into(),
                    password_hash: format!("hash of {name}"),
                    groups: groups.into_iter().map(String::from).collect(),
                    admin: false,
                },
            )
            .unwrap();
        }
        f
    }
}

fn mkdir_command(path: &str, parents: bool) -> Command {
    Command::Mkdir(MkdirRequest {
        path: path.into(),
        parents,
        mode: None,
    })
}

fn put_command(path: &str, content: &[u8], on_exists: OnExists) -> Command {
    let chunks: Vec<ChunkRef> = content
        .chunks(4)
        .map(|c| ChunkRef {
            id: ChunkId::of(c),
            length_bytes: c.len() as u32,
        })
        .collect();
    Command::Commit(CommitRequest {
        path: path.into(),
        size_bytes: content.len() as u64,
        digest: file_digest(&chunks),
        chunks,
        on_exists,
        mode: None,
    })
}

impl Fixture {
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
            all.insert(k.value(), state::decode_inode(v.value()).unwrap());
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
            assert_eq!(
                all[&v.value()].parent,
                parent,
                "an inode names its directory"
            );
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
        // The user counter equals the user records.
        let users = auth::list_users(&txn.open_table(AUTH).unwrap())
            .unwrap()
            .len() as u64;
        let counted = match txn.open_table(SM_META).unwrap().get("user_count").unwrap() {
            Some(_) => state::get_u64(&txn.open_table(SM_META).unwrap(), "user_count").unwrap(),
            None => 0,
        };
        assert_eq!(counted, users, "user count");
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
        mode: None,
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
    let mkdir = || mkdir_command("/a", false);
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
    let mkdir = || mkdir_command("/a", false);
    f.apply_as(Some(1), mkdir()).unwrap();
    f.clock += cairn_meta::state::REQUEST_RETENTION_MS + 1;
    // Any later entry forgets it; the same id is then a new operation.
    f.mkdir("/other", false).unwrap();
    assert_eq!(
        f.apply_as(Some(1), mkdir()).unwrap_err().code,
        ErrorCode::AlreadyExists
    );
}

// ---- users, sessions and permissions ----

fn chmod(path: &str, mode: u32) -> Command {
    Command::Chmod(cairn_proto::api::ChmodRequest {
        path: path.into(),
        mode,
    })
}

fn chgrp(path: &str, group: &str) -> Command {
    Command::Chown(cairn_proto::api::ChownRequest {
        path: path.into(),
        owner: None,
        group: Some(group.into()),
    })
}

fn denied(result: Result<Output, ApiError>) -> String {
    let e = result.expect_err("should be refused");
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{}", e.message);
    e.message
}

#[test]
fn the_first_admin_and_each_user_get_a_private_home() {
    let f = Fixture::with_users();
    assert_eq!(f.names("/home"), ["admin", "alice", "bob", "carol"]);
    let (_, home) = f.stat("/home/alice").unwrap();
    assert_eq!(
        (home.owner.as_str(), home.group.as_str(), home.mode),
        ("alice", "alice", 0o700)
    );
    let (_, root) = f.stat("/").unwrap();
    assert_eq!((root.owner.as_str(), root.mode), ("admin", 0o755));
    // A second bootstrap (another member, a retry) changes nothing.
    let mut f = f;
    assert_eq!(
        f.apply(Command::BootstrapAdmin {
            password_hash: "other".into()
        })
        .unwrap(),
        Output::Nothing
    );
    let alice = f.principal("alice");
    assert_eq!(alice.groups, ["alice", "eng"]);
    f.check_invariants();
}

#[test]
fn owner_group_and_other_bits_decide_reads() {
    let mut f = Fixture::with_users();
    f.by("alice", mkdir_command("/home/alice/shared", false))
        .unwrap();
    f.by("alice", chmod("/home/alice", 0o711)).unwrap();
    f.by(
        "alice",
        put_command("/home/alice/shared/f", b"data", OnExists::Fail),
    )
    .unwrap();
    f.by("alice", chgrp("/home/alice/shared/f", "eng")).unwrap();
    f.by("alice", chmod("/home/alice/shared/f", 0o640)).unwrap();
    let (alice, bob, carol) = (
        f.principal("alice"),
        f.principal("bob"),
        f.principal("carol"),
    );
    let (_, file) = f.stat_as(&carol, "/home/alice/shared/f").unwrap();
    assert!(
        file.allows(&alice, cairn_meta::perm::READ | cairn_meta::perm::WRITE),
        "owner"
    );
    assert!(file.allows(&bob, cairn_meta::perm::READ), "group");
    assert!(
        !file.allows(&bob, cairn_meta::perm::WRITE),
        "group cannot write"
    );
    assert!(!file.allows(&carol, cairn_meta::perm::READ), "other");
    // What stat shows: the chunk list only to readers.
    assert!(!file.to_stat(1, &bob).chunks.is_empty());
    assert!(file.to_stat(1, &carol).chunks.is_empty());
    assert!(file.to_stat(1, &carol).digest.is_none());
    // Owner bits are the owner's only class, even when narrower.
    f.by("alice", chmod("/home/alice/shared/f", 0o044)).unwrap();
    let (_, file) = f.stat_as(&alice, "/home/alice/shared/f").unwrap();
    assert!(!file.allows(&alice, cairn_meta::perm::READ));
    assert!(file.allows(&bob, cairn_meta::perm::READ));
    // Listing needs read on the directory; 0711 lets others through, not list.
    assert_eq!(
        f.list_as(&carol, "/home/alice"),
        Err(ErrorCode::PermissionDenied)
    );
    assert!(f.list_as(&carol, "/home/alice/shared").is_ok());
}

#[test]
fn search_is_needed_on_every_directory_of_a_path() {
    let mut f = Fixture::with_users();
    f.by("alice", mkdir_command("/home/alice/d", false))
        .unwrap();
    f.by(
        "alice",
        put_command("/home/alice/d/f", b"x", OnExists::Fail),
    )
    .unwrap();
    let bob = f.principal("bob");
    // Home is 0700: bob cannot reach anything under it.
    assert_eq!(
        f.stat_as(&bob, "/home/alice/d/f").map(|_| ()),
        Err(ErrorCode::PermissionDenied)
    );
    // Read without search: the names can be listed, nothing reached.
    f.by("alice", chmod("/home/alice", 0o744)).unwrap();
    assert_eq!(f.list_as(&bob, "/home/alice").unwrap(), ["d"]);
    assert_eq!(
        f.stat_as(&bob, "/home/alice/d").map(|_| ()),
        Err(ErrorCode::PermissionDenied)
    );
    f.by("alice", chmod("/home/alice", 0o711)).unwrap();
    assert!(f.stat_as(&bob, "/home/alice/d/f").is_ok());
    // A lookup by id checks the directories above it the same way.
    let (id, _) = f.stat("/home/alice/d/f").unwrap();
    let txn = f.db.begin_read().unwrap();
    let inodes = txn.open_table(INODES).unwrap();
    assert!(state::resolve_id(&inodes, &bob, id).is_ok());
    drop((inodes, txn));
    f.by("alice", chmod("/home/alice/d", 0o700)).unwrap();
    let txn = f.db.begin_read().unwrap();
    let inodes = txn.open_table(INODES).unwrap();
    let refused = state::resolve_id(&inodes, &bob, id).err().unwrap();
    assert!(matches!(refused, StateError::Api(e) if e.code == ErrorCode::PermissionDenied));
}

#[test]
fn creating_removing_and_renaming_need_write_on_the_directory() {
    let mut f = Fixture::with_users();
    f.by("alice", put_command("/home/alice/f", b"x", OnExists::Fail))
        .unwrap();
    f.by("alice", chmod("/home/alice", 0o755)).unwrap();
    let message = denied(f.by("bob", put_command("/home/alice/g", b"y", OnExists::Fail)));
    assert!(
        message.contains("bob may not create /home/alice/g"),
        "{message}"
    );
    assert!(message.contains("write"), "{message}");
    denied(f.by(
        "bob",
        Command::Remove(RemoveRequest {
            path: "/home/alice/f".into(),
            recursive: false,
        }),
    ));
    denied(f.by(
        "bob",
        Command::Rename(mv("/home/alice/f", "/home/bob/f", false)),
    ));
    denied(f.by("bob", mkdir_command("/home/alice/d", false)));
    denied(f.by("alice", mkdir_command("/top", false)));
    // Reading is enough to copy out, into a directory one may write.
    f.by(
        "bob",
        Command::Copy(mv("/home/alice/f", "/home/bob/", false)),
    )
    .unwrap();
    let (_, copy) = f.stat("/home/bob/f").unwrap();
    assert_eq!(copy.owner, "bob", "the copier owns the copy");
    // A group-writable directory lets the group in.
    f.by("admin", mkdir_command("/team", false)).unwrap();
    f.by("admin", chgrp("/team", "eng")).unwrap();
    f.by("admin", chmod("/team", 0o770)).unwrap();
    f.by("bob", put_command("/team/plan", b"p", OnExists::Fail))
        .unwrap();
    denied(f.by("carol", put_command("/team/x", b"p", OnExists::Fail)));
    // No sticky bit: anyone who may write the directory removes any entry.
    f.by(
        "alice",
        Command::Remove(RemoveRequest {
            path: "/team/plan".into(),
            recursive: false,
        }),
    )
    .unwrap();
    f.check_invariants();
}

#[test]
fn replacing_a_file_needs_write_on_the_file_not_on_its_directory() {
    let mut f = Fixture::with_users();
    f.by("admin", mkdir_command("/pub", false)).unwrap();
    f.by("admin", put_command("/pub/log", b"v1", OnExists::Fail))
        .unwrap();
    f.by("admin", chmod("/pub/log", 0o666)).unwrap();
    // The directory is 0755 (bob may not create), the file 0666.
    f.by("bob", put_command("/pub/log", b"v2", OnExists::Replace))
        .unwrap();
    let (_, log) = f.stat("/pub/log").unwrap();
    assert_eq!(
        (log.owner.as_str(), log.version),
        ("admin", 3),
        "an in-place replace keeps the owner (version 2 was the chmod)"
    );
    f.by("admin", chmod("/pub/log", 0o644)).unwrap();
    denied(f.by("bob", put_command("/pub/log", b"v3", OnExists::Replace)));
}

#[test]
fn moving_a_directory_elsewhere_needs_write_on_it() {
    let mut f = Fixture::with_users();
    f.by("admin", mkdir_command("/team", false)).unwrap();
    f.by("admin", chmod("/team", 0o777)).unwrap();
    f.by("alice", mkdir_command("/team/a", false)).unwrap();
    f.by("alice", chmod("/team/a", 0o555)).unwrap();
    // Renaming within the same directory only touches /team.
    f.by("bob", Command::Rename(mv("/team/a", "/team/b", false)))
        .unwrap();
    // Moving to another directory changes its "..": needs write on it.
    let message = denied(f.by("bob", Command::Rename(mv("/team/b", "/home/bob/b", false))));
    assert!(message.contains("directory /team/b"), "{message}");
    f.by("alice", chmod("/team/b", 0o777)).unwrap();
    f.by("bob", Command::Rename(mv("/team/b", "/home/bob/b", false)))
        .unwrap();
    f.check_invariants();
}

#[test]
fn removing_a_tree_needs_read_write_and_search_on_each_directory_in_it() {
    let mut f = Fixture::with_users();
    f.by("admin", mkdir_command("/team", false)).unwrap();
    f.by("admin", chmod("/team", 0o777)).unwrap();
    f.by("alice", mkdir_command("/team/a/b", true)).unwrap();
    f.by("alice", put_command("/team/a/b/f", b"x", OnExists::Fail))
        .unwrap();
    f.by("alice", chmod("/team/a", 0o777)).unwrap();
    let remove = || {
        Command::Remove(RemoveRequest {
            path: "/team/a".into(),
            recursive: true,
        })
    };
    let message = denied(f.by("bob", remove()));
    assert!(message.contains("/team/a/b"), "{message}");
    assert_eq!(f.names("/team/a/b"), ["f"], "nothing was removed");
    f.by("alice", chmod("/team/a/b", 0o777)).unwrap();
    f.by("bob", remove()).unwrap();
    f.check_invariants();
}

#[test]
fn only_owners_chmod_and_only_admins_give_files_away() {
    let mut f = Fixture::with_users();
    f.by("alice", put_command("/home/alice/f", b"x", OnExists::Fail))
        .unwrap();
    f.by("alice", chmod("/home/alice", 0o777)).unwrap();
    denied(f.by("bob", chmod("/home/alice/f", 0o777)));
    let give = |owner: &str| {
        Command::Chown(cairn_proto::api::ChownRequest {
            path: "/home/alice/f".into(),
            owner: Some(owner.into()),
            group: None,
        })
    };
    denied(f.by("alice", give("bob")));
    denied(f.by("alice", chgrp("/home/alice/f", "carol")));
    f.by("alice", chgrp("/home/alice/f", "eng")).unwrap();
    f.by("admin", give("bob")).unwrap();
    assert_eq!(f.stat("/home/alice/f").unwrap().1.owner, "bob");
    assert_eq!(
        f.by("admin", give("nobody")).unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        f.by("alice", chmod("/home/alice", 0o4755))
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument,
        "no setuid, setgid or sticky bits"
    );
}

#[test]
fn user_management_is_for_admins_and_keeps_one_admin() {
    let mut f = Fixture::with_users();
    let add = |name: &str| Command::AddUser {
        name: name.into(),
        password_hash: "h".into(),
        groups: vec![],
        admin: false,
    };
    denied(f.by("alice", add("mallory")));
    denied(f.by("alice", Command::RemoveUser { name: "bob".into() }));
    denied(f.by(
        "alice",
        Command::SetPassword {
            name: "bob".into(),
            password_hash: "h2".into(),
        },
    ));
    denied(f.by("alice", Command::EndUserSessions { name: "bob".into() }));
    // One's own sessions, and one's own password, are one's own business.
    f.by(
        "alice",
        Command::EndUserSessions {
            name: "alice".into(),
        },
    )
    .unwrap();
    f.by(
        "alice",
        Command::SetPassword {
            name: "alice".into(),
            password_hash: "h3".into(),
        },
    )
    .unwrap();
    assert_eq!(
        f.by("admin", add("alice")).unwrap_err().code,
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        f.by("admin", add("../x")).unwrap_err().code,
        ErrorCode::InvalidName
    );
    let message = f
        .by(
            "admin",
            Command::RemoveUser {
                name: "admin".into(),
            },
        )
        .unwrap_err()
        .message;
    assert!(message.contains("only admin"), "{message}");
    f.by(
        "admin",
        Command::RemoveUser {
            name: "carol".into(),
        },
    )
    .unwrap();
    // A removed user's commands are refused, and their home stays.
    assert_eq!(
        f.by("carol", mkdir_command("/home/carol/x", false))
            .unwrap_err()
            .code,
        ErrorCode::Unauthenticated
    );
    assert_eq!(f.stat("/home/carol").unwrap().1.owner, "carol");
    f.check_invariants();
}

fn session_count(f: &Fixture, name: &str) -> usize {
    let txn = f.db.begin_read().unwrap();
    auth::user_sessions(&txn.open_table(AUTH).unwrap(), name)
        .unwrap()
        .len()
}

fn open_session(
    f: &mut Fixture,
    hash: u8,
    name: &str,
    expires_ms: u64,
    version: u64,
) -> Result<Output, ApiError> {
    f.apply(Command::CreateSession {
        token_hash: [hash; 32],
        name: name.into(),
        expires_ms,
        user_version: version,
    })
}

#[test]
fn sessions_end_by_logout_password_change_expiry_and_removal() {
    let mut f = Fixture::with_users();
    open_session(&mut f, 1, "alice", u64::MAX, 1).unwrap();
    open_session(&mut f, 2, "alice", u64::MAX, 1).unwrap();
    let soon = f.clock + 5;
    open_session(&mut f, 3, "bob", soon, 1).unwrap();
    assert_eq!(session_count(&f, "alice"), 2);
    f.apply(Command::EndSession {
        token_hash: [1; 32],
    })
    .unwrap();
    assert_eq!(session_count(&f, "alice"), 1);
    // A password change ends the rest, and a login verified against the
    // old password no longer opens one.
    f.by(
        "alice",
        Command::SetPassword {
            name: "alice".into(),
            password_hash: "new".into(),
        },
    )
    .unwrap();
    assert_eq!(session_count(&f, "alice"), 0);
    assert_eq!(
        open_session(&mut f, 4, "alice", u64::MAX, 1)
            .unwrap_err()
            .code,
        ErrorCode::Unauthenticated
    );
    open_session(&mut f, 4, "alice", u64::MAX, 2).unwrap();
    // Expired sessions are forgotten by later commands.
    for _ in 0..6 {
        f.mkdir("/tick", true).unwrap();
    }
    assert_eq!(session_count(&f, "bob"), 0);
    // Removing a user ends their sessions.
    f.by(
        "admin",
        Command::RemoveUser {
            name: "alice".into(),
        },
    )
    .unwrap();
    let txn = f.db.begin_read().unwrap();
    assert!(auth::get_session(&txn.open_table(AUTH).unwrap(), &[4; 32])
        .unwrap()
        .is_none());
}

#[test]
fn a_user_keeps_at_most_a_bounded_number_of_sessions() {
    let mut f = Fixture::with_users();
    for i in 0..(auth::MAX_SESSIONS_PER_USER as u8 + 3) {
        open_session(&mut f, i, "bob", 10_000 + u64::from(i), 1).unwrap();
    }
    assert_eq!(session_count(&f, "bob"), auth::MAX_SESSIONS_PER_USER);
    let txn = f.db.begin_read().unwrap();
    let table = txn.open_table(AUTH).unwrap();
    assert!(
        auth::get_session(&table, &[0; 32]).unwrap().is_none(),
        "the first to expire went"
    );
    assert!(auth::get_session(&table, &[66; 32]).unwrap().is_some());
}

#[test]
fn records_written_before_users_read_as_the_admins() {
    // An inode of format 1: no owner, group or parent.
    #[derive(serde::Serialize)]
    struct V1 {
        kind: EntryKind,
        mode: u32,
        version: u64,
        created_ms: u64,
        modified_ms: u64,
        size_bytes: u64,
        digest: Option<ChunkId>,
        chunks: Vec<ChunkRef>,
    }
    let old = V1 {
        kind: EntryKind::File,
        mode: 0o644,
        version: 3,
        created_ms: 1,
        modified_ms: 2,
        size_bytes: 0,
        digest: None,
        chunks: vec![],
    };
    let inode = state::decode_inode(&state::encode(&old)).unwrap();
    assert_eq!(
        (inode.owner.as_str(), inode.group.as_str(), inode.version),
        ("admin", "admin", 3)
    );
}

#[derive(Debug, Clone)]
enum UserOp {
    Op(Op),
    Chmod(usize, u16),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Commands from users with every kind of permission, refused or not,
    /// leave a well-formed tree (a refusal writes nothing).
    #[test]
    fn commands_from_many_users_keep_the_tree_well_formed(
        ops in proptest::collection::vec(
            (0usize..3, prop_oneof![
                op().prop_map(UserOp::Op),
                (0..PATHS.len(), 0u16..0o1000).prop_map(|(p, m)| UserOp::Chmod(p, m)),
            ]),
            1..40,
        )
    ) {
        let mut f = Fixture::with_users();
        f.by("admin", chmod("/", 0o777)).unwrap();
        for (user, op) in ops {
            let user = ["admin", "alice", "bob"][user];
            let command = match op {
                UserOp::Op(Op::Mkdir(p, parents)) => mkdir_command(PATHS[p], parents),
                UserOp::Op(Op::Put(p, c, o)) => put_command(PATHS[p], &[c; 9], o),
                UserOp::Op(Op::Remove(p, r)) => Command::Remove(RemoveRequest { path: PATHS[p].into(), recursive: r }),
                UserOp::Op(Op::Rename(a, b, r)) => Command::Rename(mv(PATHS[a], PATHS[b], r)),
                UserOp::Op(Op::Copy(a, b, r)) => Command::Copy(mv(PATHS[a], PATHS[b], r)),
                UserOp::Chmod(p, m) => chmod(PATHS[p], u32::from(m)),
            };
            let _ = f.by(user, command);
            f.check_invariants();
        }
    }
}

// ---- fuzzing the command decoding (bounded, part of the suite) ----

/// Paths with the pieces that break path handling.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/a".to_string()),
        Just("/b".to_string()),
        Just("/..".to_string()),
        Just("/.".to_string()),
        Just("/x\0y".to_string()),
        Just("/home".to_string()),
        Just("/alice".to_string()),
        (250usize..260).prop_map(|n| format!("/{}", "n".repeat(n))),
    ];
    proptest::collection::vec(piece, 0..5).prop_map(|pieces| pieces.concat())
}

/// A request as a client could send it, any command, as JSON.
fn request_json() -> impl Strategy<Value = Vec<u8>> {
    let command = prop_oneof![
        (
            hostile_path(),
            any::<bool>(),
            proptest::option::of(0u32..0o10000)
        )
            .prop_map(|(p, parents, mode)| Command::Mkdir(MkdirRequest {
                path: p,
                parents,
                mode
            })),
        (hostile_path(), any::<u8>()).prop_map(|(p, c)| put_command(
            &p,
            &[c; 5],
            OnExists::Replace
        )),
        (hostile_path(), any::<bool>()).prop_map(|(p, r)| Command::Remove(RemoveRequest {
            path: p,
            recursive: r
        })),
        (hostile_path(), hostile_path(), any::<bool>()).prop_map(|(a, b, r)| Command::Rename(
            MoveRequest {
                src: a,
                dst: b,
                replace: r
            }
        )),
        (hostile_path(), hostile_path()).prop_map(|(a, b)| Command::Copy(MoveRequest {
            src: a,
            dst: b,
            replace: true
        })),
        (hostile_path(), 0u32..0o10000).prop_map(|(p, m)| chmod(&p, m)),
        (hostile_path(), "[a-z]{0,4}").prop_map(|(p, g)| chgrp(&p, &g)),
        "[a-z./]{0,6}".prop_map(|name| Command::RemoveUser { name }),
        "[a-z./]{0,6}".prop_map(|name| Command::EndUserSessions { name }),
    ];
    (
        command,
        proptest::option::of(prop_oneof![
            Just("admin".to_string()),
            Just("alice".to_string()),
            Just("nobody".to_string())
        ]),
    )
        .prop_map(|(command, user)| {
            serde_json::to_vec(&Request {
                now_ms: 5_000,
                request_id: None,
                user,
                command,
            })
            .unwrap()
        })
}

/// Byte-level damage: flips, cuts and insertions.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, kind, value) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match kind % 3 {
            0 => bytes[at] ^= value | 1,
            1 => bytes.truncate(at),
            _ => bytes.insert(at, value),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever a request decodes to, applying it never panics, a refusal
    /// writes nothing, and the tree stays well formed.
    #[test]
    fn damaged_and_hostile_requests_never_break_the_state_machine(
        requests in proptest::collection::vec(
            (request_json(), proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..3)),
            1..24,
        )
    ) {
        let mut f = Fixture::with_users();
        for (json, edits) in requests {
            let bytes = mutate(json, &edits);
            let Ok(request) = serde_json::from_slice::<Request>(&bytes) else {
                continue;
            };
            let _ = f.apply_full(None, request.user.as_deref(), request.command);
            f.check_invariants();
        }
    }
}
