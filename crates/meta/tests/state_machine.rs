//! The namespace state machine on a real redb file: semantics of each
//! command, and structural invariants under random command sequences.

use std::collections::{HashMap, HashSet};

use cairn_meta::limits::{MAX_SESSIONS_PER_USER, PURGE_BATCH_ENTRIES, REQUEST_RETENTION_NS};
use cairn_meta::perm::Principal;
use cairn_meta::records::{decode, StateError};
use cairn_meta::state::{
    self, entry_name, get_counter_or_zero, keys, users, Command, Inode, Names, Output, ReadView,
    Request, Tables, AUTH, CHUNK_REFS, DETACHED, DIRENTS, HELD, HELD_BY_SESSION, INODES, LINKS,
    ORPHANS, SM_META, XATTRS,
};
use cairn_meta::store::open_database;
use cairn_proto::api::{
    ChownRequest, CommitRequest, EntryKind, LinkRequest, MkdirRequest, MoveRequest, OnExists,
    RegisterRequest, RemoveKind, RemoveRequest, XattrRemoveRequest, XattrSetMode, XattrSetRequest,
};
use cairn_proto::ids::ROOT_ID;
use cairn_proto::xattr::Xattr;
use cairn_proto::{file_digest, ApiError, ChunkId, ChunkRef, ErrorCode, NodeId, NodeState};
use proptest::prelude::*;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

struct Fixture {
    _dir: tempfile::TempDir,
    db: std::sync::Arc<Database>,
    /// The proposer's clock, in nanoseconds.
    clock: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("meta.redb")).unwrap();
        Fixture {
            _dir: dir,
            db,
            clock: 1_000_000_000,
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
        self.apply_batch(vec![(request_id, user.map(str::to_string), command)])
            .pop()
            .unwrap()
    }

    /// Applies many commands in one transaction, as a batch of log entries.
    fn apply_batch(
        &mut self,
        commands: Vec<(Option<u128>, Option<String>, Command)>,
    ) -> Vec<Result<Output, ApiError>> {
        let mut txn = self.db.begin_write().unwrap();
        txn.set_durability(redb::Durability::None).unwrap();
        let mut outcomes = Vec::new();
        {
            let mut tables = Tables::open(&txn).unwrap();
            for (request_id, user, command) in commands {
                self.clock += 1_000;
                match tables.apply_request(&Request::new(self.clock, request_id, user, command)) {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(StateError::Api(e)) => panic!("a refusal must be an outcome: {e}"),
                    Err(other) => panic!("storage failure: {other}"),
                }
            }
        }
        txn.commit().unwrap();
        outcomes
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

    /// Reads with the namespace tables of a read transaction.
    fn view<T>(&self, read: impl FnOnce(&ReadView) -> T) -> T {
        let txn = self.db.begin_read().unwrap();
        read(&ReadView::open(&txn).unwrap())
    }

    fn stat(&self, path: &str) -> Result<(u64, Inode), ErrorCode> {
        self.stat_as(&Principal::system(), path)
    }

    fn stat_as(&self, who: &Principal, path: &str) -> Result<(u64, Inode), ErrorCode> {
        self.view(|view| match view.resolve(who, path) {
            Ok(found) => Ok(found),
            Err(StateError::Api(e)) => Err(e.code),
            Err(other) => panic!("{other}"),
        })
    }

    /// (owner, group) names of the object at `path`.
    fn owners(&self, path: &str) -> (String, String) {
        let (_, inode) = self.stat(path).unwrap();
        self.view(|view| {
            (
                view.user_name(inode.uid).unwrap(),
                view.group_name(inode.gid).unwrap(),
            )
        })
    }

    fn names(&self, path: &str) -> Vec<String> {
        self.list_as(&Principal::system(), path).unwrap()
    }

    fn list_as(&self, who: &Principal, path: &str) -> Result<Vec<String>, ErrorCode> {
        let mut names = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.view(|view| view.list(who, path, after.as_deref(), None));
            match page {
                Ok(page) => {
                    names.extend(page.entries.into_iter().map(|e| e.name));
                    match page.next {
                        Some(next) => after = Some(next),
                        None => return Ok(names),
                    }
                }
                Err(StateError::Api(e)) => return Err(e.code),
                Err(other) => panic!("{other}"),
            }
        }
    }

    /// The caller `name` as the server would build it from the users table.
    fn principal(&self, name: &str) -> Principal {
        self.view(|view| view.principal(Some(name)).unwrap())
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

    /// Purges removed trees until none is left; returns the purges it took.
    fn purge_all(&mut self) -> u64 {
        let mut purges = 0;
        loop {
            let Output::Purged { trees_left, .. } = self
                .apply(Command::Purge {
                    max_entries: PURGE_BATCH_ENTRIES,
                })
                .unwrap()
            else {
                panic!("a purge answers what it did")
            };
            purges += 1;
            if trees_left == 0 {
                return purges;
            }
        }
    }
}

fn mkdir_command(path: &str, parents: bool) -> Command {
    Command::Mkdir(MkdirRequest {
        path: path.into(),
        parents,
        mode: None,
    })
}

fn chunks_of(content: &[u8]) -> Vec<ChunkRef> {
    content
        .chunks(4)
        .map(|c| ChunkRef {
            id: ChunkId::of(c),
            length_bytes: c.len() as u32,
        })
        .collect()
}

fn put_command(path: &str, content: &[u8], on_exists: OnExists) -> Command {
    let chunks = chunks_of(content);
    Command::Commit(CommitRequest {
        path: path.into(),
        size_bytes: content.len() as u64,
        digest: file_digest(&chunks),
        chunks,
        on_exists,
        mode: None,
        xattrs: None,
        id: None,
    })
}

fn remove_command(path: &str, recursive: bool) -> Command {
    Command::Remove(RemoveRequest {
        path: path.into(),
        recursive,
        kind: None,
        hold_open: false,
    })
}

impl Fixture {
    /// The tree is well formed: every entry points at a live inode of the
    /// kind its key says, every inode is reachable from the root or from
    /// the root of a removed tree (a directory once, a file once per name),
    /// records name a directory holding them, directory sizes equal their
    /// entry counts, the links table lists exactly the names of files with
    /// several, and every derived count (chunk references, files,
    /// directories, users, xattr bytes, names) equals what it counts.
    fn check_invariants(&self) {
        let txn = self.db.begin_read().unwrap();
        let inodes = txn.open_table(INODES).unwrap();
        let dirents = txn.open_table(DIRENTS).unwrap();
        let mut all: HashMap<u64, Inode> = HashMap::new();
        for row in inodes.iter().unwrap() {
            let (k, v) = row.unwrap();
            all.insert(k.value(), decode(v.value()).unwrap());
        }
        let mut linked: HashSet<u64> = HashSet::new();
        let mut names: HashMap<u64, Vec<(u64, String)>> = HashMap::new();
        let mut children: HashMap<u64, u64> = HashMap::new();
        let mut subdirs: HashMap<u64, u64> = HashMap::new();
        for row in dirents.iter().unwrap() {
            let (k, v) = row.unwrap();
            let (parent, key) = k.value();
            let (name, is_dir) = entry_name(key);
            cairn_proto::path::validate_name(name).unwrap();
            assert!(
                all.get(&parent).is_some_and(|p| p.kind == EntryKind::Dir),
                "entry under a non-directory"
            );
            let child = all
                .get(&v.value())
                .expect("entry points at a missing inode");
            assert_eq!(
                child.kind == EntryKind::Dir,
                is_dir,
                "key {key:?} says the kind"
            );
            assert!(
                linked.insert(v.value()) || !is_dir,
                "directory linked twice"
            );
            names
                .entry(v.value())
                .or_default()
                .push((parent, name.to_string()));
            *children.entry(parent).or_default() += 1;
            if is_dir {
                *subdirs.entry(parent).or_default() += 1;
            }
        }
        let orphans: HashSet<u64> = txn
            .open_table(ORPHANS)
            .unwrap()
            .iter()
            .unwrap()
            .map(|r| r.unwrap().0.value())
            .collect();
        let mut expected_link_rows: HashSet<(u64, u64, String)> = HashSet::new();
        let held: HashSet<u64> = txn
            .open_table(HELD)
            .unwrap()
            .iter()
            .unwrap()
            .map(|r| r.unwrap().0.value())
            .collect();
        let held_by_session: HashSet<u64> = txn
            .open_table(HELD_BY_SESSION)
            .unwrap()
            .iter()
            .unwrap()
            .map(|r| r.unwrap().0.value().1)
            .collect();
        assert_eq!(held, held_by_session, "each held file has its session row");
        for id in &held {
            assert_eq!(
                all.get(id).map(|i| i.names),
                Some(0),
                "held {id} is nameless"
            );
        }
        for (id, inode) in &all {
            if *id == ROOT_ID {
                assert_eq!(inode.parent, ROOT_ID);
            } else if orphans.contains(id) {
                assert_eq!(inode.parent, DETACHED, "a removed tree's root is detached");
                assert!(!linked.contains(id), "a removed tree's root has no entry");
            } else {
                assert!(
                    linked.contains(id) || held.contains(id),
                    "inode {id} is neither linked, removed nor held"
                );
            }
            let its_names = names.get(id).cloned().unwrap_or_default();
            if inode.names == 0 {
                assert!(held.contains(id), "a nameless inode {id} is held");
                assert!(!linked.contains(id) && inode.parent == DETACHED);
                assert_eq!(inode.kind, EntryKind::File);
            } else if linked.contains(id) {
                assert_eq!(inode.names, its_names.len() as u64, "names of {id}");
                assert!(
                    its_names.iter().any(|(dir, _)| *dir == inode.parent),
                    "inode {id} names a directory holding it"
                );
            } else {
                assert_eq!(inode.names, 1, "a removed tree's root has one name");
            }
            if inode.names > 1 {
                expected_link_rows.extend(
                    its_names
                        .iter()
                        .map(|(dir, name)| (*id, *dir, name.clone())),
                );
            }
            if inode.kind == EntryKind::Dir {
                assert_eq!(
                    inode.size_bytes,
                    children.get(id).copied().unwrap_or(0),
                    "entry count of {id}"
                );
                assert_eq!(
                    inode.subdirs,
                    subdirs.get(id).copied().unwrap_or(0),
                    "subdirectory count (link count - 2) of {id}"
                );
            }
            assert!(inode.changed_ns >= inode.modified_ns, "ctime follows mtime");
        }
        let link_rows: HashSet<(u64, u64, String)> = txn
            .open_table(LINKS)
            .unwrap()
            .iter()
            .unwrap()
            .map(|r| {
                let (key, _) = r.unwrap();
                let (id, dir, name) = key.value();
                (id, dir, name.to_string())
            })
            .collect();
        assert_eq!(link_rows, expected_link_rows, "the links table");
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
        // Extended attributes belong to live inodes, which count their bytes.
        let mut xattr_bytes: HashMap<u64, u32> = HashMap::new();
        for row in txn.open_table(XATTRS).unwrap().iter().unwrap() {
            let (k, v) = row.unwrap();
            let (id, name) = k.value();
            assert!(all.contains_key(&id), "attribute of a missing inode");
            *xattr_bytes.entry(id).or_default() += (name.len() + v.value().len()) as u32;
        }
        for (id, inode) in &all {
            assert_eq!(
                inode.xattr_bytes,
                xattr_bytes.get(id).copied().unwrap_or(0),
                "xattr bytes of {id}"
            );
        }
        // The counters equal what they count.
        let meta = txn.open_table(SM_META).unwrap();
        let auth = txn.open_table(AUTH).unwrap();
        let (users, _) = users::users_page(&auth, None, usize::MAX).unwrap();
        assert_eq!(
            get_counter_or_zero(&meta, keys::USER_COUNT).unwrap(),
            users.len() as u64,
            "user count"
        );
        for (name, user) in &users {
            assert_eq!(
                users::user_name(&auth, user.uid).unwrap().as_deref(),
                Some(name.as_str())
            );
        }
        let (files, dirs) = state::counts(&meta).unwrap();
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
        exact: false,
        hold_open: false,
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
        xattrs: None,
        id: None,
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
            kind: None,
            hold_open: false,
        }))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::DirectoryNotEmpty);
    assert!(err.message.contains("-r"));
    assert_eq!(
        f.code(Command::Remove(RemoveRequest {
            path: "/".into(),
            recursive: true,
            kind: None,
            hold_open: false,
        })),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        f.code(Command::Remove(RemoveRequest {
            path: "/nope".into(),
            recursive: false,
            kind: None,
            hold_open: false,
        })),
        ErrorCode::NotFound
    );
    f.apply(Command::Remove(RemoveRequest {
        path: "/d".into(),
        recursive: true,
        kind: None,
        hold_open: false,
    }))
    .unwrap();
    assert_eq!(f.stat("/d").unwrap_err(), ErrorCode::NotFound);
    assert!(f.names("/").is_empty());
    f.check_invariants();
    f.purge_all();
    f.check_invariants();
    assert_eq!(f.view(|_| ()), ());
    let txn = f.db.begin_read().unwrap();
    assert_eq!(txn.open_table(ORPHANS).unwrap().len().unwrap(), 0);
    assert_eq!(
        txn.open_table(INODES).unwrap().len().unwrap(),
        1,
        "the root only"
    );
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

fn link(src: &str, dst: &str) -> Command {
    Command::Link(LinkRequest {
        src: src.into(),
        dst: dst.into(),
    })
}

#[test]
fn hard_links_share_one_record_until_the_last_name_goes() {
    let mut f = Fixture::new();
    f.mkdir("/a", false).unwrap();
    f.mkdir("/b", false).unwrap();
    f.put("/a/f", b"shared contents", OnExists::Fail).unwrap();
    let (id, before) = f.stat("/a/f").unwrap();
    assert_eq!(before.links(), 1);
    f.clock += 5;
    f.apply(link("/a/f", "/b/g")).unwrap();
    f.apply(link("/b/g", "/a/h")).unwrap();
    let (gid, g) = f.stat("/b/g").unwrap();
    assert_eq!((gid, g.links()), (id, 3));
    assert!(g.changed_ns > before.changed_ns, "a new name changes ctime");
    assert_eq!(g.modified_ns, before.modified_ns, "and not mtime");
    f.check_invariants();
    // One record: a change through one name shows through all.
    f.apply(chmod("/a/h", 0o600)).unwrap();
    f.put("/b/g", b"new contents", OnExists::Replace).unwrap();
    let (_, h) = f.stat("/a/h").unwrap();
    assert_eq!((h.mode, h.size_bytes), (0o600, 12));
    // Refusals: an existing name, a directory, a missing source.
    assert_eq!(f.code(link("/a/f", "/b/g")), ErrorCode::AlreadyExists);
    assert_eq!(f.code(link("/a", "/b/a")), ErrorCode::IsADirectory);
    assert_eq!(f.code(link("/a/none", "/b/x")), ErrorCode::NotFound);
    // Renaming one name onto another of the same file does nothing.
    f.apply(Command::Rename(MoveRequest {
        exact: true,
        ..mv("/a/f", "/a/h", true)
    }))
    .unwrap();
    f.apply(Command::Rename(mv("/a/f", "/a/h", true))).unwrap();
    assert_eq!(f.stat("/a/f").unwrap().1.links(), 3);
    assert_eq!(
        f.code(Command::Copy(mv("/a/f", "/a/h", true))),
        ErrorCode::InvalidArgument,
        "a copy onto another name of itself"
    );
    // A rename moves one name; the record follows a name that stays.
    f.apply(Command::Rename(mv("/a/f", "/b/f2", false)))
        .unwrap();
    f.apply(remove_command("/a/h", false)).unwrap();
    let (_, left) = f.stat("/b/g").unwrap();
    assert_eq!(left.links(), 2);
    assert_eq!(left.parent, f.stat("/b").unwrap().0);
    f.check_invariants();
    // Removing the tree that holds a name leaves the file to its others;
    // reachable by id all along, before and after the purge.
    f.mkdir("/t", false).unwrap();
    f.apply(link("/b/g", "/t/n")).unwrap();
    f.apply(remove_command("/b/g", false)).unwrap();
    f.apply(remove_command("/b/f2", false)).unwrap();
    assert_eq!(f.stat("/t/n").unwrap().1.parent, f.stat("/t").unwrap().0);
    f.apply(link("/t/n", "/a/back")).unwrap();
    f.put("/t/filler", b"x", OnExists::Fail).unwrap();
    f.apply(remove_command("/t", true)).unwrap();
    let by_id =
        |f: &Fixture| f.view(|view| view.resolve_id(&Principal::system(), id).map(|i| i.links()));
    assert_eq!(by_id(&f).unwrap(), 2, "a name outside the removed tree");
    f.check_invariants();
    f.purge_all();
    assert_eq!(f.stat("/a/back").unwrap().1.links(), 1);
    assert_eq!(by_id(&f).unwrap(), 1);
    f.check_invariants();
    // The last name takes the record and its chunk references.
    f.apply(remove_command("/a/back", false)).unwrap();
    assert!(by_id(&f).is_err());
    f.check_invariants();
}

#[test]
fn only_owners_link_files_that_give_rights() {
    let mut f = Fixture::with_users();
    f.by("alice", put_command("/home/alice/f", b"x", OnExists::Fail))
        .unwrap();
    f.by("alice", chmod("/home/alice/f", 0o666)).unwrap();
    f.by("alice", chmod("/home/alice", 0o777)).unwrap();
    // Bob may read and write it: as Linux's protected_hardlinks, he may link it.
    f.by("bob", link("/home/alice/f", "/home/alice/bob-link"))
        .unwrap();
    // Not once it is set-uid, nor when he may not write it.
    f.by("alice", chmod("/home/alice/f", 0o4666)).unwrap();
    let refused = not_owner(f.by("bob", link("/home/alice/f", "/home/alice/b2")));
    assert!(refused.contains("owner (alice)"), "{refused}");
    f.by("alice", chmod("/home/alice/f", 0o644)).unwrap();
    not_owner(f.by("bob", link("/home/alice/f", "/home/alice/b3")));
    // Alice links her own; the directory still needs write.
    f.by("alice", chmod("/home/alice", 0o755)).unwrap();
    f.by("alice", link("/home/alice/f", "/home/alice/mine"))
        .unwrap();
    denied(f.by("bob", link("/home/alice/f", "/home/alice/b4")));
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
    Link(usize, usize),
    RemoveOpen(usize),
    SetXattr(usize, u8),
    Purge(u8),
}

impl Op {
    fn command(self) -> Command {
        match self {
            Op::Mkdir(p, parents) => mkdir_command(PATHS[p], parents),
            Op::Put(p, c, o) => put_command(PATHS[p], &[c; 9], o),
            Op::Remove(p, r) => remove_command(PATHS[p], r),
            Op::Rename(a, b, r) => Command::Rename(mv(PATHS[a], PATHS[b], r)),
            Op::Copy(a, b, r) => Command::Copy(mv(PATHS[a], PATHS[b], r)),
            Op::Link(a, b) => link(PATHS[a], PATHS[b]),
            Op::RemoveOpen(p) => remove_open(PATHS[p], 1),
            Op::SetXattr(p, size) => Command::SetXattr(XattrSetRequest {
                path: PATHS[p].into(),
                xattr: Xattr {
                    name: format!("user.n{}", size % 3),
                    value: vec![size; usize::from(size)],
                },
                mode: XattrSetMode::Any,
            }),
            Op::Purge(max) => Command::Purge {
                max_entries: u64::from(max % 4),
            },
        }
    }
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
        (p.clone(), p.clone(), any::<bool>()).prop_map(|(a, b, r)| Op::Copy(a, b, r)),
        (p.clone(), p.clone()).prop_map(|(a, b)| Op::Link(a, b)),
        p.clone().prop_map(Op::RemoveOpen),
        (p, any::<u8>()).prop_map(|(a, size)| Op::SetXattr(a, size)),
        any::<u8>().prop_map(Op::Purge),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any sequence of commands, refused or not, leaves a well-formed tree.
    #[test]
    fn random_commands_keep_the_tree_well_formed(ops in proptest::collection::vec(op(), 1..40)) {
        let mut f = Fixture::new();
        for op in ops {
            let _ = f.apply(op.command());
            f.check_invariants();
        }
        f.purge_all();
        f.check_invariants();
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
        kind: None,
        hold_open: false,
    }))
    .unwrap();
    assert_eq!(refs(&f, &a), 0);
    assert_eq!(refs(&f, &ChunkId::of(b"bbbb")), 1);
    f.check_invariants();
}

#[test]
fn a_batch_applies_each_request_in_order_as_its_own_user_and_id() {
    let mut f = Fixture::with_users();
    let batch = Command::Batch(vec![
        Request::new(
            f.clock,
            Some(7),
            Some("alice".into()),
            mkdir_command("/home/alice/a", false),
        ),
        Request::new(
            f.clock,
            None,
            Some("alice".into()),
            mkdir_command("/home/alice/a", false),
        ),
        Request::new(
            f.clock,
            None,
            Some("bob".into()),
            mkdir_command("/home/alice/b", false),
        ),
        Request::new(
            f.clock,
            Some(7),
            Some("alice".into()),
            mkdir_command("/home/alice/c", false),
        ),
        Request::new(f.clock, None, None, Command::Batch(Vec::new())),
    ]);
    let Output::Batch(outcomes) = f.apply(batch).unwrap() else {
        panic!("a batch answers a batch")
    };
    assert!(outcomes[0].is_ok());
    assert_eq!(
        outcomes[1].as_ref().unwrap_err().code,
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        outcomes[2].as_ref().unwrap_err().code,
        ErrorCode::PermissionDenied,
        "bob's own rights"
    );
    assert_eq!(outcomes[3], outcomes[0], "request id 7 applies once");
    assert_eq!(
        outcomes[4].as_ref().unwrap_err().code,
        ErrorCode::InvalidArgument,
        "no nesting"
    );
    assert!(f.stat("/home/alice/c").is_err());
    assert_eq!(f.owners("/home/alice/a").0, "alice");
    f.check_invariants();
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
    f.clock += REQUEST_RETENTION_NS + 1;
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
    Command::Chown(ChownRequest {
        path: path.into(),
        group: Some(group.into()),
        ..ChownRequest::default()
    })
}

fn denied(result: Result<Output, ApiError>) -> String {
    let e = result.expect_err("should be refused");
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{}", e.message);
    e.message
}

/// Refused as needing the owner (EPERM through the mount).
fn not_owner(result: Result<Output, ApiError>) -> String {
    let e = result.expect_err("should be refused");
    assert_eq!(e.code, ErrorCode::NotOwner, "{}", e.message);
    e.message
}

#[test]
fn the_first_admin_and_each_user_get_a_private_home() {
    let f = Fixture::with_users();
    assert_eq!(f.names("/home"), ["admin", "alice", "bob", "carol"]);
    let (_, home) = f.stat("/home/alice").unwrap();
    assert_eq!(f.owners("/home/alice"), ("alice".into(), "alice".into()));
    assert_eq!((home.uid, home.gid, home.mode), (1000, 1000, 0o700));
    let (_, root) = f.stat("/").unwrap();
    assert_eq!((root.uid, root.gid, root.mode), (0, 0, 0o755));
    assert_eq!(f.owners("/"), ("admin".into(), "admin".into()));
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
    let groups: Vec<String> = alice
        .gids
        .iter()
        .map(|gid| f.view(|view| view.group_name(*gid).unwrap()))
        .collect();
    assert_eq!(groups, ["alice", "eng"]);
    let bob = f.principal("bob");
    assert_eq!(bob.gids[1], alice.gids[1], "eng is one group");
    assert_ne!(bob.gids[0], bob.uid, "1001 went to eng before bob came");
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
    let stat_for = |who: &Principal| f.view(|view| Names::new(view).stat(1, &file, who).unwrap());
    assert!(!stat_for(&bob).chunks.is_empty());
    assert!(stat_for(&carol).chunks.is_empty());
    assert!(stat_for(&carol).digest.is_none());
    assert_eq!(
        (
            stat_for(&carol).owner.as_str(),
            stat_for(&carol).group.as_str()
        ),
        ("alice", "eng")
    );
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
    assert!(f.view(|view| view.resolve_id(&bob, id).is_ok()));
    f.by("alice", chmod("/home/alice/d", 0o700)).unwrap();
    let refused = f.view(|view| view.resolve_id(&bob, id).err().unwrap());
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
            kind: None,
            hold_open: false,
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
    assert_eq!(f.owners("/home/bob/f").0, "bob", "the copier owns the copy");
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
            kind: None,
            hold_open: false,
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
        (f.owners("/pub/log").0.as_str(), log.version),
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
            kind: None,
            hold_open: false,
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
    not_owner(f.by("bob", chmod("/home/alice/f", 0o777)));
    let give = |owner: &str| {
        Command::Chown(ChownRequest {
            path: "/home/alice/f".into(),
            owner: Some(owner.into()),
            ..ChownRequest::default()
        })
    };
    not_owner(f.by("alice", give("bob")));
    not_owner(f.by("alice", chgrp("/home/alice/f", "carol")));
    f.by("alice", chgrp("/home/alice/f", "eng")).unwrap();
    f.by("admin", give("bob")).unwrap();
    assert_eq!(f.owners("/home/alice/f").0, "bob");
    assert_eq!(
        f.by("admin", give("nobody")).unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        f.by("alice", chmod("/home/alice", 0o14755))
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument,
        "no bits above set-uid"
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
    // ... owned by carol's uid, shown as the number, never given again.
    assert_eq!(f.stat("/home/carol").unwrap().1.uid, 1002);
    assert_eq!(f.owners("/home/carol").0, "1002");
    f.by(
        "admin",
        Command::AddUser {
            name: "carol".into(),
            password_hash: "h".into(),
            groups: vec![],
            admin: false,
        },
    )
    .unwrap();
    assert_eq!(
        f.principal("carol").uid,
        1003,
        "a new carol is another user"
    );
    assert_eq!(f.owners("/home/carol").0, "1002");
    f.check_invariants();
}

fn session_count(f: &Fixture, name: &str) -> usize {
    let txn = f.db.begin_read().unwrap();
    users::user_sessions(&txn.open_table(AUTH).unwrap(), name)
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
    let soon_ms = f.clock / 1_000_000 + 5;
    open_session(&mut f, 3, "bob", soon_ms, 1).unwrap();
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
    f.clock += 10_000_000;
    f.mkdir("/tick", true).unwrap();
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
    assert!(users::get_session(&txn.open_table(AUTH).unwrap(), &[4; 32])
        .unwrap()
        .is_none());
}

fn remove_open(path: &str, session: u8) -> Command {
    Command::RemoveOpen {
        request: RemoveRequest {
            path: path.into(),
            recursive: false,
            kind: Some(RemoveKind::NotDir),
            hold_open: true,
        },
        session: [session; 32],
    }
}

#[test]
fn a_file_removed_while_open_stays_for_its_session_until_released() {
    let mut f = Fixture::with_users();
    open_session(&mut f, 1, "alice", u64::MAX, 1).unwrap();
    f.by(
        "alice",
        put_command("/home/alice/f", b"open contents", OnExists::Fail),
    )
    .unwrap();
    let (id, _) = f.stat("/home/alice/f").unwrap();
    f.by("alice", remove_open("/home/alice/f", 1)).unwrap();
    assert_eq!(f.stat("/home/alice/f").unwrap_err(), ErrorCode::NotFound);
    f.check_invariants();
    // Its holder (and admins) still reach it by id, and may write it;
    // others may not, whatever its mode.
    let (alice, bob) = (f.principal("alice"), f.principal("bob"));
    let by_id = |f: &Fixture, who: &Principal| f.view(|view| view.resolve_id(who, id).map(|_| ()));
    by_id(&f, &alice).unwrap();
    assert!(by_id(&f, &bob).is_err());
    let mut rewrite = put_command("/home/alice/f", b"written after the unlink", OnExists::Fail);
    if let Command::Commit(req) = &mut rewrite {
        req.id = Some(id);
    }
    f.by("alice", rewrite).unwrap();
    f.check_invariants();
    // Released only by the session that holds it; then it is gone.
    let other = f.by(
        "alice",
        Command::Release {
            id,
            session: [2; 32],
        },
    );
    assert_eq!(other.unwrap_err().code, ErrorCode::NotFound);
    f.by(
        "alice",
        Command::Release {
            id,
            session: [1; 32],
        },
    )
    .unwrap();
    assert!(by_id(&f, &alice).is_err());
    f.check_invariants();
    // Another name keeps the file in the namespace: nothing is held.
    f.by("alice", put_command("/home/alice/g", b"x", OnExists::Fail))
        .unwrap();
    f.by("alice", link("/home/alice/g", "/home/alice/g2"))
        .unwrap();
    f.by("alice", remove_open("/home/alice/g", 1)).unwrap();
    assert_eq!(f.stat("/home/alice/g2").unwrap().1.links(), 1);
    // A rename over an open file holds the file replaced, as an unlink.
    f.by(
        "alice",
        put_command("/home/alice/old", b"old", OnExists::Fail),
    )
    .unwrap();
    f.by(
        "alice",
        put_command("/home/alice/new", b"new", OnExists::Fail),
    )
    .unwrap();
    let (old_id, _) = f.stat("/home/alice/old").unwrap();
    let mut over = mv("/home/alice/new", "/home/alice/old", true);
    over.exact = true;
    over.hold_open = true;
    f.by(
        "alice",
        Command::RenameOpen {
            request: over,
            session: [1; 32],
        },
    )
    .unwrap();
    f.view(|view| view.resolve_id(&alice, old_id)).unwrap();
    assert_ne!(f.stat("/home/alice/old").unwrap().0, old_id);
    f.check_invariants();
    // Files held by a session go when it ends (here, at its logout).
    f.by("alice", remove_open("/home/alice/g2", 1)).unwrap();
    f.by("alice", put_command("/home/alice/h", b"y", OnExists::Fail))
        .unwrap();
    f.by("alice", remove_open("/home/alice/h", 1)).unwrap();
    f.check_invariants();
    f.apply(Command::EndSession {
        token_hash: [1; 32],
    })
    .unwrap();
    let txn = f.db.begin_read().unwrap();
    assert_eq!(txn.open_table(HELD).unwrap().len().unwrap(), 0);
    drop(txn);
    f.check_invariants();
}

#[test]
fn a_user_keeps_at_most_a_bounded_number_of_sessions() {
    let mut f = Fixture::with_users();
    for i in 0..(MAX_SESSIONS_PER_USER as u8 + 3) {
        open_session(&mut f, i, "bob", 10_000 + u64::from(i), 1).unwrap();
    }
    assert_eq!(session_count(&f, "bob"), MAX_SESSIONS_PER_USER);
    let txn = f.db.begin_read().unwrap();
    let table = txn.open_table(AUTH).unwrap();
    assert!(
        users::get_session(&table, &[0; 32]).unwrap().is_none(),
        "the first to expire went"
    );
    assert!(users::get_session(&table, &[66; 32]).unwrap().is_some());
}

// ---- removing trees of any size ----

/// `count` empty files `/DIR/f00000`... committed in batches of one
/// transaction each (as a leader applies a batch of log entries).
fn fill(f: &mut Fixture, dir: &str, count: usize) {
    f.mkdir(dir, true).unwrap();
    let names: Vec<String> = (0..count).map(|i| format!("{dir}/f{i:06}")).collect();
    for batch in names.chunks(5_000) {
        let commands = batch
            .iter()
            .map(|path| (None, None, put_command(path, b"", OnExists::Fail)))
            .collect();
        for outcome in f.apply_batch(commands) {
            outcome.unwrap();
        }
    }
}

#[test]
fn a_removed_tree_leaves_the_namespace_at_once_and_is_deleted_in_bounded_purges() {
    let mut f = Fixture::new();
    fill(&mut f, "/t/a", 1500);
    fill(&mut f, "/t/b/c", 700);
    f.put("/t/b/shared", b"shared content", OnExists::Fail)
        .unwrap();
    f.apply(Command::Copy(mv("/t/b/shared", "/kept", false)))
        .unwrap();
    let (deep, _) = f.stat("/t/b/c/f000001").unwrap();
    let (files_before, dirs_before) = f.view(|_| {
        let txn = f.db.begin_read().unwrap();
        state::counts(&txn.open_table(SM_META).unwrap()).unwrap()
    });
    f.apply(remove_command("/t", true)).unwrap();
    // Gone at once, by path and by id, even for an admin.
    assert_eq!(f.stat("/t").unwrap_err(), ErrorCode::NotFound);
    assert_eq!(f.names("/"), ["kept"]);
    let by_id = f.view(|view| view.resolve_id(&Principal::system(), deep).err().unwrap());
    assert!(matches!(by_id, StateError::Api(e) if e.code == ErrorCode::NotFound));
    f.check_invariants();
    // Each purge deletes at most its batch; the records go with them.
    let mut purges = 0;
    loop {
        let Output::Purged {
            entries,
            trees_left,
        } = f
            .apply(Command::Purge {
                max_entries: PURGE_BATCH_ENTRIES,
            })
            .unwrap()
        else {
            panic!()
        };
        assert!(entries <= PURGE_BATCH_ENTRIES);
        purges += 1;
        f.check_invariants();
        if trees_left == 0 {
            break;
        }
    }
    let entries = 1500 + 700 + 1 + 4; // files, and t, a, b, c
    assert!(purges >= entries / PURGE_BATCH_ENTRIES, "{purges} purges");
    let txn = f.db.begin_read().unwrap();
    let (files, dirs) = state::counts(&txn.open_table(SM_META).unwrap()).unwrap();
    assert_eq!((files, dirs), (files_before - 2201, dirs_before - 4));
    // The copy outside the tree keeps its chunks referenced.
    let shared = chunks_of(b"shared content")[0].id;
    assert_eq!(
        state::reference_count(&txn.open_table(CHUNK_REFS).unwrap(), &shared).unwrap(),
        1
    );
}

#[test]
fn a_hundred_thousand_entries_are_listed_in_pages_and_removed_in_batches() {
    const ENTRIES: usize = 100_000;
    let mut f = Fixture::new();
    fill(&mut f, "/big", ENTRIES);
    // The default page, then the largest.
    for (limit, pages_expected) in [
        (None, ENTRIES / 1000 + 1),
        (Some(10_000), ENTRIES / 10_000 + 1),
    ] {
        let mut seen = Vec::with_capacity(ENTRIES);
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = f
                .view(|view| view.list(&Principal::system(), "/big", after.as_deref(), limit))
                .unwrap();
            pages += 1;
            seen.extend(page.entries.into_iter().map(|e| e.name));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), ENTRIES);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, once each");
        assert!(pages <= pages_expected, "{pages} pages");
    }
    // A page larger than the maximum is the maximum.
    let page = f
        .view(|view| view.list(&Principal::system(), "/big", None, Some(1_000_000)))
        .unwrap();
    assert_eq!(page.entries.len(), 10_000);
    f.apply(remove_command("/big", true)).unwrap();
    assert!(f.names("/").is_empty());
    let purges = f.purge_all();
    assert_eq!(purges, ENTRIES as u64 / PURGE_BATCH_ENTRIES + 1);
    let txn = f.db.begin_read().unwrap();
    assert_eq!(
        txn.open_table(INODES).unwrap().len().unwrap(),
        1,
        "the root only"
    );
}

#[test]
fn removing_a_tree_needs_every_check_before_anything_leaves() {
    let mut f = Fixture::with_users();
    f.by("admin", mkdir_command("/team/x/y", true)).unwrap();
    f.by("admin", chmod("/team", 0o777)).unwrap();
    f.by("admin", chmod("/team/x", 0o777)).unwrap();
    f.by("admin", put_command("/team/x/y/f", b"x", OnExists::Fail))
        .unwrap();
    denied(f.by("bob", remove_command("/team/x", true)));
    assert_eq!(f.names("/team/x/y"), ["f"]);
    let txn = f.db.begin_read().unwrap();
    assert_eq!(txn.open_table(ORPHANS).unwrap().len().unwrap(), 0);
}

// ---- order, listing pages and walks ----

#[test]
fn entries_sort_in_the_byte_order_of_full_paths() {
    let mut f = Fixture::new();
    f.mkdir("/a", false).unwrap();
    f.put("/a/inner", b"i", OnExists::Fail).unwrap();
    f.put("/a-b", b"x", OnExists::Fail).unwrap();
    f.put("/a.txt", b"x", OnExists::Fail).unwrap();
    f.put("/ab", b"x", OnExists::Fail).unwrap();
    // '-' (0x2d) and '.' (0x2e) sort before '/' (0x2f): as S3 orders keys.
    assert_eq!(f.names("/"), ["a-b", "a.txt", "a", "ab"]);
    let walk = f
        .view(|view| view.walk(&Principal::system(), "/", None, None))
        .unwrap();
    let paths: Vec<&str> = walk.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/a-b", "/a.txt", "/a", "/a/inner", "/ab"]);
    assert_eq!(walk.next, None);
    // A cursor that is not an entry key is refused.
    let bad = f
        .view(|view| view.list(&Principal::system(), "/", Some("a/b"), None))
        .unwrap_err();
    assert!(matches!(bad, StateError::Api(e) if e.code == ErrorCode::InvalidArgument));
}

/// Every walk entry below `path`, page by page of `limit`.
fn walk_all(f: &Fixture, who: &Principal, path: &str, limit: u32) -> (Vec<String>, Vec<String>) {
    let mut paths = Vec::new();
    let mut skipped = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = f
            .view(|view| view.walk(who, path, after.as_deref(), Some(limit)))
            .unwrap();
        assert!(page.entries.len() <= limit as usize);
        paths.extend(page.entries.iter().map(|e| e.path.clone()));
        skipped.extend(page.skipped);
        match page.next {
            Some(next) => after = Some(next),
            None => return (paths, skipped),
        }
    }
}

#[test]
fn a_walk_in_pages_sees_every_entry_once_in_order() {
    let mut f = Fixture::new();
    for dir in ["/w/a", "/w/a/b", "/w/a-c", "/w/b/c/d", "/w/e"] {
        f.mkdir(dir, true).unwrap();
    }
    for file in [
        "/w/a/1",
        "/w/a/b/2",
        "/w/a-c/3",
        "/w/a.x",
        "/w/b/c/d/4",
        "/w/b/c/5",
        "/w/z",
    ] {
        f.put(file, b"x", OnExists::Fail).unwrap();
    }
    let system = Principal::system();
    let (whole, _) = walk_all(&f, &system, "/w", 10_000);
    assert_eq!(whole.len(), 14);
    // Byte order of the paths with a '/' after each directory's name.
    let dirs: HashSet<&str> = [
        "/w/a", "/w/a/b", "/w/a-c", "/w/b", "/w/b/c", "/w/b/c/d", "/w/e",
    ]
    .into();
    let keys: Vec<String> = whole
        .iter()
        .map(|p| {
            if dirs.contains(p.as_str()) {
                format!("{p}/")
            } else {
                p.clone()
            }
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    for limit in [1, 2, 3, 5] {
        assert_eq!(
            walk_all(&f, &system, "/w", limit).0,
            whole,
            "pages of {limit}"
        );
    }
    assert_eq!(
        whole[..5],
        ["/w/a-c", "/w/a-c/3", "/w/a.x", "/w/a", "/w/a/1"]
    );
    // A directory removed between two pages is passed over.
    let first = f
        .view(|view| view.walk(&system, "/w", None, Some(5)))
        .unwrap();
    assert_eq!(first.entries.last().unwrap().path, "/w/a/1");
    f.apply(remove_command("/w/a", true)).unwrap();
    let rest = f
        .view(|view| view.walk(&system, "/w", first.next.as_deref(), None))
        .unwrap();
    assert_eq!(rest.entries[0].path, "/w/b");
    // A walk of a file is that file.
    let one = f
        .view(|view| view.walk(&system, "/w/z", None, None))
        .unwrap();
    assert_eq!(one.entries.len(), 1);
}

#[test]
fn a_walk_shows_but_does_not_enter_what_the_caller_may_not_list() {
    let mut f = Fixture::with_users();
    f.by(
        "alice",
        put_command("/home/alice/secret", b"s", OnExists::Fail),
    )
    .unwrap();
    f.by("bob", put_command("/home/bob/mine", b"m", OnExists::Fail))
        .unwrap();
    let bob = f.principal("bob");
    let (paths, skipped) = walk_all(&f, &bob, "/home", 2);
    assert_eq!(
        paths,
        [
            "/home/admin",
            "/home/alice",
            "/home/bob",
            "/home/bob/mine",
            "/home/carol"
        ]
    );
    assert_eq!(skipped, ["/home/admin", "/home/alice", "/home/carol"]);
    let refused = f
        .view(|view| view.walk(&bob, "/home/alice", None, None))
        .unwrap_err();
    assert!(matches!(refused, StateError::Api(e) if e.code == ErrorCode::PermissionDenied));
}

#[test]
fn users_are_listed_in_pages() {
    let f = Fixture::with_users();
    let txn = f.db.begin_read().unwrap();
    let auth = txn.open_table(AUTH).unwrap();
    let first = state::users_page(&auth, None, Some(3), 0).unwrap();
    let names: Vec<&str> = first.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["admin", "alice", "bob"]);
    assert_eq!(first.users[0].uid, 0);
    assert_eq!(first.users[1].groups, ["alice", "eng"]);
    let rest = state::users_page(&auth, first.next.as_deref(), Some(3), 0).unwrap();
    assert_eq!(rest.users.len(), 1);
    assert_eq!(rest.users[0].name, "carol");
    assert_eq!(rest.next, None);
}

#[test]
fn access_keys_belong_to_a_user_and_leave_with_them() {
    let mut f = Fixture::with_users();
    let create = |id: &str, user: &str| Command::CreateAccessKey {
        id: id.into(),
        user: user.into(),
        sealed_secret: vec![7; 56],
    };
    let id = |n: usize| format!("CK{n:018}");
    // Own keys, or anyone's for an admin.
    let Output::Key(info) = f.by("alice", create(&id(1), "alice")).unwrap() else {
        panic!("a key creation answers the key")
    };
    assert_eq!(
        (info.user.as_str(), info.access_key_id.as_str()),
        ("alice", id(1).as_str())
    );
    let refused = f.by("bob", create(&id(2), "alice")).unwrap_err();
    assert_eq!(refused.code, ErrorCode::PermissionDenied);
    f.by("admin", create(&id(2), "bob")).unwrap();
    assert_eq!(
        f.by("admin", create(&id(3), "nobody")).unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        f.by("alice", create(&id(1), "alice")).unwrap_err().code,
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        f.by("alice", create("not a key id", "alice"))
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    // Bounded per user.
    for n in 10..(10 + cairn_proto::api::MAX_ACCESS_KEYS_PER_USER - 1) {
        f.by("carol", create(&id(n), "carol")).unwrap();
    }
    f.by("carol", create(&id(99), "carol")).unwrap();
    assert_eq!(
        f.by("carol", create(&id(100), "carol")).unwrap_err().code,
        ErrorCode::TooLarge
    );
    // Removal: own or an admin's doing.
    assert_eq!(
        f.by("bob", Command::RemoveAccessKey { id: id(1) })
            .unwrap_err()
            .code,
        ErrorCode::PermissionDenied
    );
    f.by("alice", Command::RemoveAccessKey { id: id(1) })
        .unwrap();
    assert_eq!(
        f.by("alice", Command::RemoveAccessKey { id: id(1) })
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    // A removed user's keys go with them, both rows.
    f.by("admin", Command::RemoveUser { name: "bob".into() })
        .unwrap();
    let txn = f.db.begin_read().unwrap();
    let auth = txn.open_table(AUTH).unwrap();
    assert_eq!(users::get_access_key(&auth, &id(2)).unwrap(), None);
    assert!(users::user_access_keys(&auth, "bob").unwrap().is_empty());
    assert_eq!(
        users::user_access_keys(&auth, "carol").unwrap().len(),
        cairn_proto::api::MAX_ACCESS_KEYS_PER_USER
    );
    let all = users::all_access_keys(&auth, 10_000).unwrap();
    assert!(all.iter().all(|(_, key)| key.user == "carol"));
    assert_eq!(all.len(), cairn_proto::api::MAX_ACCESS_KEYS_PER_USER);
}

// ---- extended attributes ----

fn set_xattr(path: &str, name: &str, value: &[u8], mode: XattrSetMode) -> Command {
    Command::SetXattr(XattrSetRequest {
        path: path.into(),
        xattr: Xattr {
            name: name.into(),
            value: value.to_vec(),
        },
        mode,
    })
}

fn xattrs_of(
    f: &Fixture,
    who: &Principal,
    path: &str,
) -> Result<Vec<(String, Vec<u8>)>, ErrorCode> {
    f.view(|view| {
        let (id, inode) = view.resolve(who, path).map_err(code_of)?;
        let list = view.xattrs(who, id, &inode, path, None).map_err(code_of)?;
        Ok(list.into_iter().map(|x| (x.name, x.value)).collect())
    })
}

fn code_of(e: StateError) -> ErrorCode {
    match e {
        StateError::Api(e) => e.code,
        other => panic!("{other}"),
    }
}

#[test]
fn extended_attributes_are_set_read_and_removed_within_limits() {
    let mut f = Fixture::with_users();
    f.by(
        "alice",
        put_command("/home/alice/f", b"data", OnExists::Fail),
    )
    .unwrap();
    f.by("alice", chmod("/home/alice", 0o755)).unwrap();
    let (alice, bob) = (f.principal("alice"), f.principal("bob"));
    let (_, before) = f.stat("/home/alice/f").unwrap();
    f.by(
        "alice",
        set_xattr("/home/alice/f", "user.color", b"red", XattrSetMode::Any),
    )
    .unwrap();
    let (_, after) = f.stat("/home/alice/f").unwrap();
    assert_eq!(
        after.modified_ns, before.modified_ns,
        "attributes are not contents"
    );
    assert!(after.changed_ns > before.changed_ns);
    assert_eq!(after.version, before.version + 1);
    assert_eq!(
        xattrs_of(&f, &bob, "/home/alice/f").unwrap(),
        [("user.color".into(), b"red".to_vec())]
    );
    // XATTR_CREATE and XATTR_REPLACE.
    assert_eq!(
        f.by(
            "alice",
            set_xattr("/home/alice/f", "user.color", b"blue", XattrSetMode::Create)
        )
        .unwrap_err()
        .code,
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        f.by(
            "alice",
            set_xattr("/home/alice/f", "user.size", b"1", XattrSetMode::Replace)
        )
        .unwrap_err()
        .code,
        ErrorCode::NotFound
    );
    // user. needs write on the file; trusted. and security. need an admin.
    denied(f.by(
        "bob",
        set_xattr("/home/alice/f", "user.color", b"x", XattrSetMode::Any),
    ));
    denied(f.by(
        "alice",
        set_xattr("/home/alice/f", "trusted.t", b"x", XattrSetMode::Any),
    ));
    f.by(
        "admin",
        set_xattr("/home/alice/f", "trusted.t", b"t", XattrSetMode::Any),
    )
    .unwrap();
    f.by(
        "admin",
        set_xattr("/home/alice/f", "security.s", b"s", XattrSetMode::Any),
    )
    .unwrap();
    let names = |list: Vec<(String, Vec<u8>)>| list.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(
        names(xattrs_of(&f, &alice, "/home/alice/f").unwrap()),
        ["security.s", "user.color"]
    );
    assert_eq!(
        names(xattrs_of(&f, &Principal::system(), "/home/alice/f").unwrap()),
        ["security.s", "trusted.t", "user.color"]
    );
    f.by("alice", chmod("/home/alice/f", 0o600)).unwrap();
    assert_eq!(
        names(xattrs_of(&f, &bob, "/home/alice/f").unwrap()),
        ["security.s"],
        "user. needs read"
    );
    // The per-inode budget counts names and values.
    let big = vec![7u8; cairn_proto::limits::MAX_XATTR_VALUE_BYTES];
    assert_eq!(
        f.by(
            "alice",
            set_xattr("/home/alice/f", "user.big", &big, XattrSetMode::Any)
        )
        .unwrap_err()
        .code,
        ErrorCode::TooLarge
    );
    let fits = vec![7u8; cairn_proto::limits::MAX_XATTR_VALUE_BYTES - 100];
    f.by(
        "alice",
        set_xattr("/home/alice/f", "user.big", &fits, XattrSetMode::Any),
    )
    .unwrap();
    assert_eq!(
        f.by(
            "alice",
            set_xattr("/home/alice/f", "user.more", &[1; 80], XattrSetMode::Any)
        )
        .unwrap_err()
        .code,
        ErrorCode::TooLarge
    );
    f.check_invariants();
    // Removal, and a name that is not there.
    f.by(
        "alice",
        Command::RemoveXattr(XattrRemoveRequest {
            path: "/home/alice/f".into(),
            name: "user.big".into(),
        }),
    )
    .unwrap();
    assert_eq!(
        f.by(
            "alice",
            Command::RemoveXattr(XattrRemoveRequest {
                path: "/home/alice/f".into(),
                name: "user.big".into(),
            }),
        )
        .unwrap_err()
        .code,
        ErrorCode::NotFound
    );
    assert_eq!(
        f.by(
            "alice",
            set_xattr("/home/alice/f", "color", b"x", XattrSetMode::Any)
        )
        .unwrap_err()
        .code,
        ErrorCode::InvalidName
    );
    f.check_invariants();
    // Removing the file removes its attributes (the invariants check it).
    f.by("alice", remove_command("/home/alice/f", false))
        .unwrap();
    f.check_invariants();
}

#[test]
fn a_commit_can_set_the_attributes_with_the_contents() {
    let mut f = Fixture::new();
    let with_xattrs = |content: &[u8], xattrs: Option<Vec<Xattr>>| {
        let Command::Commit(mut commit) = put_command("/obj", content, OnExists::Replace) else {
            unreachable!()
        };
        commit.xattrs = xattrs;
        Command::Commit(commit)
    };
    let meta = |name: &str, value: &str| Xattr {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    };
    f.apply(with_xattrs(
        b"v1",
        Some(vec![meta("user.a", "1"), meta("user.b", "2")]),
    ))
    .unwrap();
    let system = Principal::system();
    assert_eq!(xattrs_of(&f, &system, "/obj").unwrap().len(), 2);
    // None keeps them; Some replaces them all.
    f.apply(with_xattrs(b"v2", None)).unwrap();
    assert_eq!(xattrs_of(&f, &system, "/obj").unwrap().len(), 2);
    f.apply(with_xattrs(b"v3", Some(vec![meta("user.c", "3")])))
        .unwrap();
    assert_eq!(
        xattrs_of(&f, &system, "/obj").unwrap(),
        [("user.c".into(), b"3".to_vec())]
    );
    assert_eq!(
        f.code(with_xattrs(
            b"v4",
            Some(vec![meta("user.c", "3"), meta("user.c", "4")])
        )),
        ErrorCode::InvalidArgument
    );
    f.check_invariants();
}

// ---- times and numeric owners ----

#[test]
fn times_follow_the_posix_rules() {
    let mut f = Fixture::new();
    f.mkdir("/d", false).unwrap();
    f.mkdir("/e", false).unwrap();
    f.put("/d/f", b"one", OnExists::Fail).unwrap();
    let (_, dir) = f.stat("/d").unwrap();
    let (_, file) = f.stat("/d/f").unwrap();
    assert_eq!(
        dir.modified_ns, file.created_ns,
        "a new entry changes its directory"
    );
    // chmod: ctime only.
    f.apply(chmod("/d/f", 0o600)).unwrap();
    let (_, chmodded) = f.stat("/d/f").unwrap();
    assert_eq!(chmodded.modified_ns, file.modified_ns);
    assert!(chmodded.changed_ns > file.changed_ns);
    // New contents: the file's mtime and ctime, not its directory's.
    f.put("/d/f", b"two", OnExists::Replace).unwrap();
    let (_, replaced) = f.stat("/d/f").unwrap();
    assert!(replaced.modified_ns > chmodded.modified_ns);
    assert_eq!(replaced.changed_ns, replaced.modified_ns);
    assert_eq!(f.stat("/d").unwrap().1.modified_ns, dir.modified_ns);
    // A rename changes both directories and the moved file's ctime.
    f.apply(Command::Rename(mv("/d/f", "/e/f", false))).unwrap();
    let (_, moved) = f.stat("/e/f").unwrap();
    assert_eq!(moved.modified_ns, replaced.modified_ns);
    assert!(moved.changed_ns > replaced.changed_ns);
    assert_eq!(f.stat("/d").unwrap().1.modified_ns, moved.changed_ns);
    assert_eq!(f.stat("/e").unwrap().1.modified_ns, moved.changed_ns);
    f.check_invariants();
}

#[test]
fn owners_are_numbers_and_chown_takes_names_or_numbers() {
    let mut f = Fixture::with_users();
    f.by("alice", put_command("/home/alice/f", b"x", OnExists::Fail))
        .unwrap();
    let eng = f.principal("alice").gids[1];
    let by_number = |uid: Option<u32>, gid: Option<u32>| {
        Command::Chown(ChownRequest {
            path: "/home/alice/f".into(),
            uid,
            gid,
            ..ChownRequest::default()
        })
    };
    // The owner may pick one of their groups by number.
    f.by("alice", by_number(None, Some(eng))).unwrap();
    assert_eq!(f.owners("/home/alice/f"), ("alice".into(), "eng".into()));
    not_owner(f.by("alice", by_number(None, Some(0))));
    // An admin may give a file to any uid, even one no user has.
    f.by("admin", by_number(Some(4242), Some(4343))).unwrap();
    let (_, file) = f.stat("/home/alice/f").unwrap();
    assert_eq!((file.uid, file.gid), (4242, 4343));
    assert_eq!(f.owners("/home/alice/f"), ("4242".into(), "4343".into()));
    let both = Command::Chown(ChownRequest {
        path: "/home/alice/f".into(),
        owner: Some("bob".into()),
        uid: Some(1),
        ..ChownRequest::default()
    });
    assert_eq!(
        f.by("admin", both).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        f.by("admin", chgrp("/home/alice/f", "nosuch"))
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
}

// ---- databases written by earlier releases ----

/// A state of format 1, as the first release wrote it: inodes without
/// owners or parents, no chunk reference index, no users.
#[test]
fn a_state_from_before_users_is_upgraded_when_opened() {
    #[derive(serde::Serialize)]
    struct InodeV1 {
        kind: EntryKind,
        mode: u32,
        version: u64,
        created_ms: u64,
        modified_ms: u64,
        size_bytes: u64,
        digest: Option<ChunkId>,
        chunks: Vec<ChunkRef>,
    }
    let v1 = |kind, size_bytes, chunks: Vec<ChunkRef>| {
        let digest = (kind == EntryKind::File).then(|| file_digest(&chunks));
        let mut out = vec![1u8];
        out.extend(
            postcard::to_stdvec(&InodeV1 {
                kind,
                mode: 0o755,
                version: 2,
                created_ms: 1_000,
                modified_ms: 2_000,
                size_bytes,
                digest,
                chunks,
            })
            .unwrap(),
        );
        out
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let chunks = chunks_of(b"abcdefgh");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut inodes = txn.open_table(INODES).unwrap();
            inodes
                .insert(1, v1(EntryKind::Dir, 1, vec![]).as_slice())
                .unwrap();
            inodes
                .insert(2, v1(EntryKind::Dir, 1, vec![]).as_slice())
                .unwrap();
            inodes
                .insert(3, v1(EntryKind::File, 8, chunks.clone()).as_slice())
                .unwrap();
            let mut dirents = txn.open_table(DIRENTS).unwrap();
            dirents.insert((1, "d"), 2).unwrap();
            dirents.insert((2, "f"), 3).unwrap();
            let mut meta = txn.open_table(SM_META).unwrap();
            for (key, value) in [("next_id", 4u64), ("file_count", 1), ("dir_count", 2)] {
                meta.insert(key, value.to_le_bytes().as_slice()).unwrap();
            }
            let map = cairn_proto::ClusterMap {
                epoch: 1,
                replication: 3,
                chunk_size_bytes: 4 << 20,
                nodes: vec![],
            };
            meta.insert("cluster_map", cairn_meta::records::encode(&map).as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let f = Fixture {
        db: open_database(&path).unwrap(),
        _dir: dir,
        clock: 3_000_000_000,
    };
    f.check_invariants();
    let (id, file) = f.stat("/d/f").unwrap();
    assert_eq!((id, file.uid, file.gid, file.parent), (3, 0, 0, 2));
    assert_eq!(
        (file.created_ns, file.modified_ns),
        (1_000_000_000, 2_000_000_000)
    );
    assert_eq!(f.names("/"), ["d"]);
    let txn = f.db.begin_read().unwrap();
    let refs = txn.open_table(CHUNK_REFS).unwrap();
    assert_eq!(state::reference_count(&refs, &chunks[0].id).unwrap(), 1);
    let meta = txn.open_table(SM_META).unwrap();
    assert_eq!(
        get_counter_or_zero(&meta, keys::STATE_FORMAT).unwrap(),
        state::STATE_FORMAT
    );
}

#[test]
fn a_state_of_a_newer_format_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    drop(open_database(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SM_META)
            .unwrap()
            .insert(keys::STATE_FORMAT, 99u64.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let Err(refused) = open_database(&path) else {
        panic!("a newer state is refused")
    };
    let refused = refused.to_string();
    assert!(
        refused.contains("format 99") && refused.contains("upgrade cairn"),
        "{refused}"
    );
}

/// The data directory written by the previous release
/// (`crates/testkit/fixtures/release-1`, made by its script).
fn previous_release_database() -> (tempfile::TempDir, std::path::PathBuf) {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testkit/fixtures/release-1/meta/meta.redb");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    std::fs::copy(&fixture, &path).unwrap();
    (dir, path)
}

#[test]
fn the_database_of_the_previous_release_is_upgraded_when_opened() {
    let (dir, path) = previous_release_database();
    let f = Fixture {
        db: open_database(&path).unwrap(),
        _dir: dir,
        clock: 4_000_000_000_000_000_000,
    };
    f.check_invariants();
    // What the fixture's script stored (CONTENTS beside it).
    let contents = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testkit/fixtures/release-1/CONTENTS"),
    )
    .unwrap();
    let mut checked = 0;
    for line in contents.lines().filter(|l| l.starts_with('/')) {
        let fields: Vec<&str> = line.split('|').collect();
        let (path, kind, owners, mode) = (fields[0], fields[1], fields[2], fields[3]);
        let (_, inode) = f.stat(path).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        let (owner, group) = owners.split_once(':').unwrap();
        assert_eq!(
            f.owners(path),
            (owner.to_string(), group.to_string()),
            "{path}"
        );
        assert_eq!(inode.mode, u32::from_str_radix(mode, 8).unwrap(), "{path}");
        assert_eq!(inode.kind == EntryKind::Dir, kind == "dir", "{path}");
        assert!(
            inode.modified_ns > 1_700_000_000_000_000_000,
            "{path}: times in ns"
        );
        checked += 1;
    }
    assert_eq!(checked, 10);
    // Users got ids by age (admin 0), their own groups the same ids.
    let (admin, alice, bob) = (
        f.principal("admin"),
        f.principal("alice"),
        f.principal("bob"),
    );
    assert_eq!((admin.uid, alice.uid, bob.uid), (0, 1000, 1001));
    assert_eq!(admin.gids, [0]);
    assert_eq!(alice.gids[0], 1000);
    assert_eq!(bob.gids[1], alice.gids[1], "eng is one group");
    // Passwords still verify.
    let txn = f.db.begin_read().unwrap();
    let auth = txn.open_table(AUTH).unwrap();
    let hash = |name: &str| users::get_user(&auth, name).unwrap().unwrap().password_hash;
    assert!(cairn_meta::auth::verify_password(
        "alice password",
        &hash("alice")
    ));
    assert!(cairn_meta::auth::verify_password(
        "release-1 admin password",
        &hash("admin")
    ));
    // Chunks stay referenced: big.txt and its copy share one.
    let (_, big) = f.stat("/shared/docs/big.txt").unwrap();
    assert_eq!(
        state::reference_count(&txn.open_table(CHUNK_REFS).unwrap(), &big.chunks[0].id).unwrap(),
        2
    );
    drop((auth, txn));
    // The namespace works as usual after the upgrade.
    let mut f = f;
    f.by(
        "alice",
        put_command("/shared/docs/new.txt", b"new", OnExists::Fail),
    )
    .unwrap();
    f.by("bob", remove_command("/home/bob/note.txt", false))
        .unwrap();
    f.check_invariants();
}

#[tokio::test]
async fn the_log_of_the_previous_release_still_reads() {
    use openraft::storage::RaftLogStorage;
    use openraft::RaftLogReader;
    let (_dir, path) = previous_release_database();
    let db = open_database(&path).unwrap();
    let mut log = cairn_meta::store::LogStore::new(db);
    let state = log.get_log_state().await.unwrap();
    let last = state.last_log_id.unwrap().index;
    let entries = log.try_get_log_entries(0..=last).await.unwrap();
    assert!(!entries.is_empty());
    for entry in &entries {
        if let openraft::EntryPayload::Normal(request) = &entry.payload {
            assert_eq!(
                request.format,
                state::REQUEST_FORMAT,
                "read as the current format"
            );
            assert!(request.now_ns > 1_700_000_000_000_000_000, "ms became ns");
        }
    }
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
                UserOp::Op(op) => op.command(),
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
            recursive: r,
            kind: None,
            hold_open: false,
        })),
        (hostile_path(), hostile_path(), any::<bool>()).prop_map(|(a, b, r)| Command::Rename(
            MoveRequest {
                src: a,
                dst: b,
                replace: r,
                exact: false,
                hold_open: false,
            }
        )),
        (hostile_path(), hostile_path()).prop_map(|(a, b)| Command::Copy(MoveRequest {
            src: a,
            dst: b,
            replace: true,
            exact: false,
            hold_open: false,
        })),
        (hostile_path(), 0u32..0o10000).prop_map(|(p, m)| chmod(&p, m)),
        (hostile_path(), "[a-z]{0,4}").prop_map(|(p, g)| chgrp(&p, &g)),
        "[a-z./]{0,6}".prop_map(|name| Command::RemoveUser { name }),
        (
            hostile_path(),
            "[a-z.]{0,8}",
            proptest::collection::vec(any::<u8>(), 0..4)
        )
            .prop_map(|(path, name, value)| Command::SetXattr(XattrSetRequest {
                path,
                xattr: Xattr { name, value },
                mode: XattrSetMode::Any,
            })),
        (0u64..5).prop_map(|max_entries| Command::Purge { max_entries }),
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
            serde_json::to_vec(&Request::new(5_000_000_000, None, user, command)).unwrap()
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

// ---- what the mount needs: commits by id, rename(2), utimensat(2) ----

fn exact_mv(src: &str, dst: &str, replace: bool) -> Command {
    Command::Rename(MoveRequest {
        exact: true,
        ..mv(src, dst, replace)
    })
}

#[test]
fn an_exact_rename_follows_rename_2() {
    let mut f = Fixture::new();
    f.mkdir("/d/full/x", true).unwrap();
    f.mkdir("/d/empty", false).unwrap();
    f.mkdir("/d/other", false).unwrap();
    f.put("/d/f", b"f", OnExists::Fail).unwrap();
    f.put("/d/g", b"g", OnExists::Fail).unwrap();
    // A file never replaces a directory, nor a directory a file.
    assert_eq!(
        f.code(exact_mv("/d/f", "/d/empty", true)),
        ErrorCode::IsADirectory
    );
    assert_eq!(
        f.code(exact_mv("/d/other", "/d/f", true)),
        ErrorCode::NotADirectory
    );
    // A directory replaces an empty one only.
    assert_eq!(
        f.code(exact_mv("/d/other", "/d/full", true)),
        ErrorCode::DirectoryNotEmpty
    );
    let (other, _) = f.stat("/d/other").unwrap();
    f.apply(exact_mv("/d/other", "/d/empty", true)).unwrap();
    assert_eq!(f.stat("/d/empty").unwrap().0, other, "not moved into it");
    assert_eq!(f.names("/d"), vec!["empty", "f", "full", "g"]);
    // Without `replace` (RENAME_NOREPLACE) nothing is replaced.
    assert_eq!(
        f.code(exact_mv("/d/f", "/d/g", false)),
        ErrorCode::AlreadyExists
    );
    let (fid, _) = f.stat("/d/f").unwrap();
    f.apply(exact_mv("/d/f", "/d/g", true)).unwrap();
    assert_eq!(f.stat("/d/g").unwrap().0, fid);
    // Onto itself: nothing happens.
    f.apply(exact_mv("/d/g", "/d/g", true)).unwrap();
    assert_eq!(f.stat("/d/g").unwrap().0, fid);
    f.check_invariants();
}

#[test]
fn a_commit_by_id_finds_the_file_wherever_it_moved() {
    let mut f = Fixture::with_users();
    f.by(
        "alice",
        put_command("/home/alice/a", b"one", OnExists::Fail),
    )
    .unwrap();
    let (id, before) = f.stat("/home/alice/a").unwrap();
    f.by(
        "alice",
        Command::Rename(mv("/home/alice/a", "/home/alice/b", false)),
    )
    .unwrap();
    let Command::Commit(mut commit) = put_command("/home/alice/a", b"two!", OnExists::Fail) else {
        unreachable!()
    };
    commit.id = Some(id);
    f.by("alice", Command::Commit(commit.clone())).unwrap();
    let (same, after) = f.stat("/home/alice/b").unwrap();
    assert_eq!((same, after.size_bytes), (id, 4));
    assert!(after.version > before.version && after.modified_ns > before.modified_ns);
    assert_eq!(f.stat("/home/alice/a").unwrap_err(), ErrorCode::NotFound);
    // Write permission on the file is checked, and a directory has no contents.
    denied(f.by("bob", Command::Commit(commit.clone())));
    let (home, _) = f.stat("/home/alice").unwrap();
    commit.id = Some(home);
    assert_eq!(
        f.by("alice", Command::Commit(commit.clone()))
            .unwrap_err()
            .code,
        ErrorCode::IsADirectory
    );
    commit.id = Some(999_999);
    assert_eq!(
        f.by("alice", Command::Commit(commit)).unwrap_err().code,
        ErrorCode::NotFound
    );
    f.check_invariants();
}

#[test]
fn times_are_set_as_utimensat_allows() {
    use cairn_proto::api::{TimeSet, TimesRequest};
    let times = |accessed, modified| {
        Command::SetTimes(TimesRequest {
            path: "/home/alice/f".into(),
            accessed,
            modified,
        })
    };
    let mut f = Fixture::with_users();
    f.by("alice", put_command("/home/alice/f", b"x", OnExists::Fail))
        .unwrap();
    f.by("alice", chmod("/home/alice", 0o777)).unwrap();
    f.by("alice", chmod("/home/alice/f", 0o666)).unwrap();
    let (_, before) = f.stat("/home/alice/f").unwrap();
    // The owner sets given times; ctime becomes now.
    f.by("alice", times(Some(TimeSet::At(5)), Some(TimeSet::At(7))))
        .unwrap();
    let (_, set) = f.stat("/home/alice/f").unwrap();
    assert_eq!((set.accessed_ns, set.modified_ns), (5, 7));
    assert!(set.changed_ns > before.changed_ns);
    // Only mtime; atime left alone.
    f.by("alice", times(None, Some(TimeSet::At(9)))).unwrap();
    let (_, only_m) = f.stat("/home/alice/f").unwrap();
    assert_eq!((only_m.accessed_ns, only_m.modified_ns), (5, 9));
    // Another user who may write it may set both to now, but not given times.
    not_owner(f.by("bob", times(Some(TimeSet::At(1)), None)));
    f.by("bob", times(Some(TimeSet::Now), Some(TimeSet::Now)))
        .unwrap();
    let (_, now) = f.stat("/home/alice/f").unwrap();
    assert_eq!(now.accessed_ns, now.modified_ns);
    assert_eq!(now.modified_ns, now.changed_ns);
    // Without write permission, not even now.
    f.by("alice", chmod("/home/alice/f", 0o644)).unwrap();
    denied(f.by("bob", times(None, Some(TimeSet::Now))));
    // Both left alone: nothing changes, not even ctime.
    let (_, still) = f.stat("/home/alice/f").unwrap();
    f.by("alice", times(None, None)).unwrap();
    assert_eq!(f.stat("/home/alice/f").unwrap().1, still);
    f.check_invariants();
}

#[test]
fn sticky_set_uid_and_set_gid_bits_follow_linux() {
    let mut f = Fixture::with_users();
    let mode = |f: &Fixture, path: &str| f.stat(path).unwrap().1.mode;
    // A sticky directory everyone may write (/tmp): only an entry's owner,
    // the directory's owner or an admin removes or renames it.
    f.by("admin", mkdir_command("/tmp", false)).unwrap();
    f.by("admin", chmod("/tmp", 0o1777)).unwrap();
    assert_eq!(mode(&f, "/tmp"), 0o1777);
    f.by("alice", put_command("/tmp/a", b"alice's", OnExists::Fail))
        .unwrap();
    f.by("bob", put_command("/tmp/b", b"bob's", OnExists::Fail))
        .unwrap();
    let message = not_owner(f.by("bob", remove_command("/tmp/a", false)));
    assert!(message.contains("sticky"), "{message}");
    not_owner(f.by("bob", Command::Rename(mv("/tmp/a", "/tmp/mine", false))));
    not_owner(f.by("alice", Command::Rename(mv("/tmp/a", "/tmp/b", true))));
    f.by("alice", Command::Rename(mv("/tmp/a", "/tmp/a2", false)))
        .unwrap();
    f.by("admin", remove_command("/tmp/b", false)).unwrap();
    f.by("alice", remove_command("/tmp/a2", false)).unwrap();

    // A write by a user drops set-uid, and set-gid with group execute.
    f.by(
        "alice",
        put_command("/home/alice/tool", b"v1", OnExists::Fail),
    )
    .unwrap();
    // The mode after `user` sets `set` and then writes the file.
    let write_after = |f: &mut Fixture, user: &str, set: u32| {
        f.by(user, chmod("/home/alice/tool", set)).unwrap();
        assert_eq!(mode(f, "/home/alice/tool"), set);
        let write = put_command("/home/alice/tool", b"new", OnExists::Replace);
        f.by(user, write).unwrap();
        mode(f, "/home/alice/tool")
    };
    assert_eq!(write_after(&mut f, "alice", 0o6755), 0o0755);
    // Set-gid without group execute (mandatory locking) stays.
    assert_eq!(write_after(&mut f, "alice", 0o6745), 0o2745);
    // An admin's write keeps them (CAP_FSETID); any chown of a file drops them.
    assert_eq!(write_after(&mut f, "admin", 0o6755), 0o6755);
    f.by("admin", chgrp("/home/alice/tool", "eng")).unwrap();
    assert_eq!(mode(&f, "/home/alice/tool"), 0o0755);
    // An owner outside the file's group cannot set set-gid.
    f.by("admin", chgrp("/home/alice/tool", "carol")).unwrap();
    f.by("alice", chmod("/home/alice/tool", 0o2755)).unwrap();
    assert_eq!(mode(&f, "/home/alice/tool"), 0o0755);

    // A set-gid directory gives its group to what is made in it, and its
    // set-gid bit to directories.
    f.by("admin", mkdir_command("/team", false)).unwrap();
    f.by("admin", chgrp("/team", "eng")).unwrap();
    f.by("admin", chmod("/team", 0o2775)).unwrap();
    f.by("alice", mkdir_command("/team/sub/deeper", true))
        .unwrap();
    f.by("alice", put_command("/team/sub/f", b"x", OnExists::Fail))
        .unwrap();
    assert_eq!(f.owners("/team/sub"), ("alice".into(), "eng".into()));
    assert_eq!(f.owners("/team/sub/f"), ("alice".into(), "eng".into()));
    assert_eq!(mode(&f, "/team/sub") & 0o2000, 0o2000);
    assert_eq!(mode(&f, "/team/sub/deeper") & 0o2000, 0o2000);
    assert_eq!(mode(&f, "/team/sub/f"), 0o644);
    // Elsewhere, the maker's own group.
    assert_eq!(f.owners("/home/alice/tool").0, "alice");
    f.by("alice", mkdir_command("/home/alice/d", false))
        .unwrap();
    assert_eq!(f.owners("/home/alice/d"), ("alice".into(), "alice".into()));
    assert_eq!(
        f.by("alice", chmod("/home/alice/d", 0o10777))
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    f.check_invariants();
}

fn node(path: &str, kind: EntryKind, target: Option<&str>, rdev: u64) -> Command {
    Command::MakeNode(cairn_proto::api::MakeNodeRequest {
        path: path.into(),
        kind,
        target: target.map(String::from),
        mode: Some(0o640),
        rdev,
    })
}

#[test]
fn links_pipes_sockets_and_devices_are_metadata_only() {
    let mut f = Fixture::with_users();
    let home = "/home/alice";
    f.by(
        "alice",
        put_command("/home/alice/real", b"data", OnExists::Fail),
    )
    .unwrap();
    // A symbolic link keeps its target as text, bits 777, size its length.
    f.by(
        "alice",
        node("/home/alice/ln", EntryKind::Symlink, Some("real"), 0),
    )
    .unwrap();
    let (_, link) = f.stat("/home/alice/ln").unwrap();
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(
        (link.target.as_deref(), link.mode, link.size_bytes),
        (Some("real"), 0o777, 4)
    );
    // Dangling and absolute targets are fine: nothing follows them here.
    f.by(
        "alice",
        node(
            "/home/alice/dangling",
            EntryKind::Symlink,
            Some("/no/such"),
            0,
        ),
    )
    .unwrap();
    f.by("alice", node("/home/alice/fifo", EntryKind::Fifo, None, 0))
        .unwrap();
    f.by(
        "alice",
        node("/home/alice/sock", EntryKind::Socket, None, 0),
    )
    .unwrap();
    let (_, fifo) = f.stat("/home/alice/fifo").unwrap();
    assert_eq!(
        (fifo.kind, fifo.mode, fifo.size_bytes),
        (EntryKind::Fifo, 0o640, 0)
    );
    // Devices: admins only (CAP_MKNOD), with their number.
    not_owner(f.by(
        "alice",
        node("/home/alice/null", EntryKind::CharDevice, None, 0x103),
    ));
    f.by(
        "admin",
        node("/home/alice/null", EntryKind::CharDevice, None, 0x103),
    )
    .unwrap();
    assert_eq!(f.stat("/home/alice/null").unwrap().1.rdev, 0x103);

    // Refusals, each naming what is wrong.
    let invalid = |f: &mut Fixture, command: Command| {
        let e = f.by("alice", command).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{}", e.message);
        e.message
    };
    assert!(invalid(&mut f, node("/home/alice/x", EntryKind::Symlink, None, 0)).contains("target"));
    assert!(invalid(
        &mut f,
        node("/home/alice/x", EntryKind::Symlink, Some(""), 0)
    )
    .contains("empty"));
    let long = "a".repeat(4096);
    assert!(invalid(
        &mut f,
        node("/home/alice/x", EntryKind::Symlink, Some(&long), 0)
    )
    .contains("4095"));
    assert!(invalid(
        &mut f,
        node("/home/alice/x", EntryKind::Symlink, Some("a\0b"), 0)
    )
    .contains("NUL"));
    assert!(
        invalid(&mut f, node("/home/alice/x", EntryKind::Fifo, Some("t"), 0)).contains("no target")
    );
    assert!(
        invalid(&mut f, node("/home/alice/x", EntryKind::Fifo, None, 5)).contains("device number")
    );
    assert!(invalid(&mut f, node("/home/alice/x", EntryKind::File, None, 0)).contains("fs/commit"));
    assert_eq!(
        f.by("alice", node("/home/alice/ln", EntryKind::Fifo, None, 0))
            .unwrap_err()
            .code,
        ErrorCode::AlreadyExists
    );
    denied(f.by("bob", node("/home/alice/b", EntryKind::Fifo, None, 0)));
    // No contents: a put over a link, a commit to it by id, a copy of it.
    let message = invalid(
        &mut f,
        put_command("/home/alice/ln", b"x", OnExists::Replace),
    );
    assert!(message.contains("symbolic link"), "{message}");
    let (link_id, _) = f.stat("/home/alice/ln").unwrap();
    let mut by_id = put_command("/home/alice/ln", b"x", OnExists::Fail);
    if let Command::Commit(req) = &mut by_id {
        req.id = Some(link_id);
    }
    invalid(&mut f, by_id);
    invalid(
        &mut f,
        Command::Copy(mv("/home/alice/fifo", "/home/alice/copy", false)),
    );
    // Renamed, replaced by a rename (as rename(2)) and removed as files are.
    f.by(
        "alice",
        Command::Rename(mv("/home/alice/ln", "/home/alice/ln2", false)),
    )
    .unwrap();
    let mut exact = mv("/home/alice/dangling", "/home/alice/sock", true);
    exact.exact = true;
    f.by("alice", Command::Rename(exact)).unwrap();
    assert_eq!(
        f.stat("/home/alice/sock").unwrap().1.kind,
        EntryKind::Symlink
    );
    for name in ["ln2", "sock", "fifo", "null"] {
        f.by("alice", remove_command(&format!("{home}/{name}"), false))
            .unwrap();
    }
    assert_eq!(f.stat("/home/alice/real").unwrap().1.size_bytes, 4);
    f.check_invariants();
}

#[test]
fn unlink_and_rmdir_check_the_kind_with_the_removal() {
    let mut f = Fixture::new();
    f.mkdir("/d", false).unwrap();
    f.apply(put_command("/f", b"x", OnExists::Fail)).unwrap();
    let remove = |path: &str, kind| {
        Command::Remove(RemoveRequest {
            path: path.into(),
            recursive: false,
            kind: Some(kind),
            hold_open: false,
        })
    };
    use cairn_proto::api::RemoveKind;
    assert_eq!(
        f.code(remove("/d", RemoveKind::NotDir)),
        ErrorCode::IsADirectory
    );
    assert_eq!(
        f.code(remove("/f", RemoveKind::Dir)),
        ErrorCode::NotADirectory
    );
    f.apply(remove("/f", RemoveKind::NotDir)).unwrap();
    f.apply(remove("/d", RemoveKind::Dir)).unwrap();
    assert_eq!(f.stat("/d").map(|_| ()), Err(ErrorCode::NotFound));
    f.check_invariants();
}

#[test]
fn acting_for_a_local_identity_is_an_admins_and_checked_when_applied() {
    use cairn_proto::api::Acting;
    let mut f = Fixture::with_users();
    f.by("admin", mkdir_command("/open", false)).unwrap();
    f.by("admin", chmod("/open", 0o777)).unwrap();
    let apply = |f: &mut Fixture, user: &str, uid: u32, command: Command| {
        let mut txn = f.db.begin_write().unwrap();
        txn.set_durability(redb::Durability::None).unwrap();
        f.clock += 1_000;
        let request =
            Request::new(f.clock, None, Some(user.into()), command).acting(Some(Acting {
                uid,
                gids: vec![uid, 7],
            }));
        // It is written as format 3 and read back whole.
        let json = serde_json::to_string(&request).unwrap();
        assert!(json.contains(r#""format":3"#), "{json}");
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), request);
        let outcome = {
            let mut tables = Tables::open(&txn).unwrap();
            tables.apply_request(&request).unwrap()
        };
        txn.commit().unwrap();
        outcome
    };
    apply(&mut f, "admin", 4242, mkdir_command("/open/mine", false)).unwrap();
    let (_, made) = f.stat("/open/mine").unwrap();
    assert_eq!((made.uid, made.gid), (4242, 4242));
    // As uid 4242: no admin rights.
    let refused = apply(&mut f, "admin", 4242, mkdir_command("/top", false)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::PermissionDenied);
    // Uid 0 is an admin (root on a trusted client).
    apply(&mut f, "admin", 0, mkdir_command("/top", false)).unwrap();
    // A user who is not an admin cannot act for anyone.
    let refused = apply(&mut f, "alice", 1000, mkdir_command("/open/x", false)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::PermissionDenied);
    assert!(
        refused.message.contains("not an admin"),
        "{}",
        refused.message
    );
    f.check_invariants();
}
