//! Commands on the namespace: mkdir, mknod (links, pipes, sockets,
//! devices), hard links, commit, remove (and purge), rename, copy, chmod,
//! chown, times and extended attributes.
//!
//! Each checks everything that can be refused (names, existence, kinds,
//! permissions) before its first write ("only writes from here on"), so a
//! refused command changes nothing. Writes go through `write.rs`.
//!
//! Times follow POSIX: creating or removing an entry changes its
//! directory's mtime and ctime; new contents change a file's mtime and
//! ctime; mode, owner, attributes and renames change ctime only.

use cairn_proto::api::{
    ChmodRequest, ChownRequest, CommitRequest, CommitResponse, EntryKind, LinkRequest,
    MakeNodeRequest, MkdirRequest, MoveRequest, MutationResponse, OnExists, RemoveKind,
    RemoveRequest, TimeSet, TimesRequest, XattrRemoveRequest, XattrSetMode, XattrSetRequest,
};
use cairn_proto::ids::ROOT_ID;
use cairn_proto::limits::{MAX_SYMLINK_TARGET_BYTES, MAX_XATTR_BYTES_PER_INODE};
use cairn_proto::path::{join, split_path};
use cairn_proto::xattr::{validate_xattr, validate_xattr_name, xattr_cost, Xattr, XattrNamespace};
use cairn_proto::{
    file_digest, ApiError, ErrorCode, FileId, MAX_CHUNKS_PER_FILE, MAX_CHUNK_SIZE_BYTES,
};
use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use crate::auth::TokenHash;
use crate::limits::{MAX_NAMES_PER_FILE, MAX_REMOVE_CHECK_ENTRIES, MAX_RENAME_ATTEMPTS};
use crate::perm::{self, Principal, DIR_MODE, FILE_MODE, READ, SEARCH, WRITE};
use crate::records::{encode, Initial, StateError, Versioned};
use crate::state::accounts::require_admin;
use crate::state::command::Output;
use crate::state::inode::{Inode, DETACHED};
use crate::state::tables::{entry_name, Tables};
use crate::state::users;
use crate::state::view::{child_path, not_found};

/// The root of a removed tree whose entries are still being deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    pub detached_ns: u64,
}

impl Versioned for Orphan {
    const NAME: &'static str = "orphan";
    const FORMAT: u8 = 1;
    type Previous = Initial;
    fn upgrade(previous: Initial) -> Orphan {
        match previous {}
    }
}

/// The directory an operation creates, removes or renames an entry in.
struct ParentDir {
    /// The directory's path.
    path: String,
    id: FileId,
    inode: Inode,
    /// The entry's name in it.
    name: String,
}

struct Source {
    path: String,
    /// Its directory; `parent.name` is its name.
    parent: ParentDir,
    id: FileId,
    inode: Inode,
}

struct Destination {
    path: String,
    /// The directory it goes into; `parent.name` is its name there.
    parent: ParentDir,
    /// What the move or copy replaces at the destination: a file, or (an
    /// exact rename of a directory) an empty directory; and whether it is
    /// a directory.
    replaced: Option<(FileId, bool)>,
}

impl Tables<'_> {
    pub fn mkdir(
        &mut self,
        who: &Principal,
        req: &MkdirRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let mode = req.mode.unwrap_or(DIR_MODE);
        perm::validate_mode(mode)?;
        let names = split_path(&req.path)?;
        let path = join(&names);
        let mut dir = ROOT_ID;
        let mut dir_inode = self.ns.inode(ROOT_ID)?;
        let mut first_missing = names.len();
        for (depth, name) in names.iter().enumerate() {
            let here = join(&names[..depth]);
            self.ns
                .require(&dir_inode, who, SEARCH, &format!("reach {path}"), &here)?;
            match self.ns.lookup(dir, name)? {
                Some((child, true)) => {
                    dir = child;
                    dir_inode = self.ns.inode(child)?;
                }
                Some((_, false)) => {
                    return Err(not_a_directory(&join(&names[..=depth])).into());
                }
                None => {
                    first_missing = depth;
                    break;
                }
            }
        }
        if first_missing == names.len() {
            // Everything exists already.
            if req.parents {
                return Ok(MutationResponse { id: dir, path });
            }
            return Err(
                ApiError::new(ErrorCode::AlreadyExists, format!("{path} already exists")).into(),
            );
        }
        if first_missing + 1 < names.len() && !req.parents {
            let parent = join(&names[..=first_missing]);
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("cannot create {path}: parent directory {parent} does not exist; use mkdir -p to create parents"),
            )
            .into());
        }
        // The directories below are new and the caller's own: only the
        // existing one they go into needs checking.
        self.ns.require(
            &dir_inode,
            who,
            WRITE,
            &format!("create {path}"),
            &join(&names[..first_missing]),
        )?;
        // Only writes from here on: every name below is new.
        let mut parent_inode = dir_inode;
        for (depth, name) in names.iter().enumerate().skip(first_missing) {
            let id = self.alloc_id()?;
            // As mkdir -p -m: the mode is the last directory's; the
            // parents made on the way get the default.
            let this_mode = if depth + 1 == names.len() {
                mode
            } else {
                DIR_MODE
            };
            let inode = Inode::new_dir(now, who, this_mode, dir).made_in(&parent_inode, who);
            self.save_inode(id, &inode)?;
            self.link(dir, name, id, true, now)?;
            dir = id;
            parent_inode = inode;
        }
        Ok(MutationResponse { id: dir, path })
    }

    /// mknod(2) and symlink(2): a node with no contents at a new name.
    pub fn make_node(
        &mut self,
        who: &Principal,
        req: &MakeNodeRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let path = cairn_proto::path::normalize(&req.path)?;
        let invalid = |why: String| -> StateError {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("cannot make {path}: {why}"),
            )
            .into()
        };
        if !req.kind.is_node() {
            return Err(invalid(format!(
                "fs/mknod makes links, pipes, sockets and devices; {} is made with {}",
                req.kind.describe(),
                if req.kind == EntryKind::Dir {
                    "fs/mkdir"
                } else {
                    "fs/commit"
                }
            )));
        }
        let is_device = matches!(req.kind, EntryKind::CharDevice | EntryKind::BlockDevice);
        if req.rdev != 0 && !is_device {
            return Err(invalid(format!(
                "{} has no device number",
                req.kind.describe()
            )));
        }
        let mode = match (&req.target, req.kind) {
            (Some(target), EntryKind::Symlink) => {
                validate_symlink_target(target).map_err(invalid)?;
                // As Linux: a link's own bits are never checked.
                0o777
            }
            (None, EntryKind::Symlink) => {
                return Err(invalid("a symbolic link needs a target".into()));
            }
            (Some(_), kind) => {
                return Err(invalid(format!("{} has no target", kind.describe())));
            }
            (None, _) => {
                let mode = req.mode.unwrap_or(FILE_MODE);
                perm::validate_mode(mode)?;
                mode
            }
        };
        if is_device && !who.admin {
            return Err(ApiError::new(
                ErrorCode::NotOwner,
                format!("permission denied: cannot make {path}: only an admin may make device nodes (as CAP_MKNOD)"),
            )
            .into());
        }
        let parent = self.resolve_parent(who, &path)?;
        if self.ns.lookup(parent.id, &parent.name)?.is_some() {
            return Err(
                ApiError::new(ErrorCode::AlreadyExists, format!("{path} already exists")).into(),
            );
        }
        self.require_write_in(&parent, who, &format!("create {path}"))?;
        // Only writes from here on.
        let id = self.alloc_id()?;
        let inode = Inode::new_node(
            req.kind,
            now,
            who,
            mode,
            parent.id,
            req.target.clone(),
            req.rdev,
        )
        .made_in(&parent.inode, who);
        self.save_inode(id, &inode)?;
        self.link(parent.id, &parent.name, id, false, now)?;
        Ok(MutationResponse { id, path })
    }

    /// link(2): the name `dst` for the file at `src` too. Outside an
    /// admin's, a user links only files they own, or (as Linux's
    /// `protected_hardlinks`) regular files they may read and write that
    /// do not give a set-id.
    pub fn hard_link(
        &mut self,
        who: &Principal,
        req: &LinkRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let src = self.resolve_source(who, &req.src)?;
        refuse_directory(
            &src,
            "hard links name files only (make a symbolic link instead)",
        )?;
        let dst = self.resolve_parent(who, &req.dst)?;
        let path = child_path(&dst.path, &dst.name);
        if self.ns.lookup(dst.id, &dst.name)?.is_some() {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("{path} already exists; a link never replaces: remove it first"),
            )
            .into());
        }
        let doing = format!("link {} as {path}", src.path);
        self.require_write_in(&dst, who, &doing)?;
        if !may_link(who, &src.inode) {
            return Err(ApiError::new(
                ErrorCode::NotOwner,
                format!(
                    "permission denied: cannot {doing}: only its owner ({}) or an admin may, \
                     or anyone who may read and write a regular file without set-ids",
                    self.ns.user_name(src.inode.uid)?
                ),
            )
            .into());
        }
        if src.inode.names >= MAX_NAMES_PER_FILE {
            return Err(ApiError::new(
                ErrorCode::TooManyLinks,
                format!(
                    "cannot {doing}: {} has {MAX_NAMES_PER_FILE} names, the most a file may have; copy it instead",
                    src.path
                ),
            )
            .into());
        }
        // Only writes from here on.
        let mut inode = src.inode;
        self.add_name(
            src.id,
            &mut inode,
            (src.parent.id, &src.parent.name),
            dst.id,
            &dst.name,
        )?;
        inode.touch_attributes(now);
        self.save_inode(src.id, &inode)?;
        self.link(dst.id, &dst.name, src.id, false, now)?;
        Ok(MutationResponse { id: src.id, path })
    }

    pub fn commit(
        &mut self,
        who: &Principal,
        req: &CommitRequest,
        now: u64,
    ) -> Result<CommitResponse, StateError> {
        validate_chunk_list(req)?;
        let mode = req.mode.unwrap_or(FILE_MODE);
        perm::validate_mode(mode)?;
        if let Some(xattrs) = &req.xattrs {
            validate_xattr_set(who, xattrs, &req.path)?;
        }
        if let Some(id) = req.id {
            return self.commit_to(who, id, req, now);
        }
        let parent = self.resolve_parent(who, &req.path)?;
        let mut name = parent.name.clone();
        let replace = match self.ns.lookup(parent.id, &name)? {
            None => None,
            Some((_, true)) => {
                let path = child_path(&parent.path, &name);
                return Err(ApiError::new(
                    ErrorCode::IsADirectory,
                    format!("{path} is a directory; give a file name inside it, as in {path}/NAME"),
                )
                .into());
            }
            Some((id, false)) => {
                let path = child_path(&parent.path, &name);
                match req.on_exists {
                    OnExists::Fail => return Err(already_exists_file(&path).into()),
                    OnExists::Replace => {
                        // Rewriting a file in place needs write on it, not
                        // on its directory (as open(2) with O_TRUNC).
                        let inode = self.ns.inode(id)?;
                        require_contents(&inode, &path)?;
                        self.ns
                            .require(&inode, who, WRITE, &format!("replace {path}"), &path)?;
                        Some((id, inode))
                    }
                    OnExists::Rename => {
                        name = self.unique_name(parent.id, &name)?;
                        None
                    }
                }
            }
        };
        let path = child_path(&parent.path, &name);
        if replace.is_none() {
            self.require_write_in(&parent, who, &format!("create {path}"))?;
        }
        // Only writes from here on.
        let is_new = replace.is_none();
        let (id, mut inode) = match replace {
            Some((id, mut old)) => {
                old.touch_contents(now);
                old.mode = perm::mode_after_write(old.mode, who);
                (id, old)
            }
            None => (
                self.alloc_id()?,
                Inode::new_file(now, who, mode, parent.id).made_in(&parent.inode, who),
            ),
        };
        inode = inode.with_contents(req.size_bytes, Some(req.digest), req.chunks.clone());
        if let Some(xattrs) = &req.xattrs {
            self.replace_xattrs(id, &mut inode, xattrs)?;
        }
        self.save_inode(id, &inode)?;
        if is_new {
            self.link(parent.id, &name, id, false, now)?;
        }
        Ok(CommitResponse {
            id,
            path,
            version: inode.version,
            stat: None,
        })
    }

    /// Makes `xattrs` the only extended attributes of `id`.
    fn replace_xattrs(
        &mut self,
        id: FileId,
        inode: &mut Inode,
        xattrs: &[Xattr],
    ) -> Result<(), StateError> {
        if inode.xattr_bytes > 0 {
            self.clear_xattrs(id)?;
            inode.xattr_bytes = 0;
        }
        for xattr in xattrs {
            self.write_xattr(id, inode, &xattr.name, &xattr.value)?;
        }
        Ok(())
    }

    /// A commit of new contents for the file `id`, wherever it is now.
    fn commit_to(
        &mut self,
        who: &Principal,
        id: FileId,
        req: &CommitRequest,
        now: u64,
    ) -> Result<CommitResponse, StateError> {
        let mut inode = self.ns.resolve_id(who, id)?;
        let path = &req.path;
        if inode.is_dir() {
            return Err(ApiError::new(
                ErrorCode::IsADirectory,
                format!("{path} (id {id}) is a directory, which has no contents to commit"),
            )
            .into());
        }
        require_contents(&inode, path)?;
        self.ns
            .require(&inode, who, WRITE, &format!("write {path}"), path)?;
        // Only writes from here on.
        inode.touch_contents(now);
        inode.mode = perm::mode_after_write(inode.mode, who);
        inode = inode.with_contents(req.size_bytes, Some(req.digest), req.chunks.clone());
        if let Some(xattrs) = &req.xattrs {
            self.replace_xattrs(id, &mut inode, xattrs)?;
        }
        self.save_inode(id, &inode)?;
        Ok(CommitResponse {
            id,
            path: path.clone(),
            version: inode.version,
            stat: None,
        })
    }

    /// rm, unlink(2), rmdir(2); with `holder`, a file whose last name
    /// goes is held for that session (`held.rs`).
    pub fn remove(
        &mut self,
        who: &Principal,
        req: &RemoveRequest,
        holder: Option<&TokenHash>,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let names = split_path(&req.path)?;
        let path = join(&names);
        if names.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "cannot remove the root directory /",
            )
            .into());
        }
        let parent = self.resolve_parent(who, &path)?;
        let (id, is_dir) = self
            .ns
            .lookup(parent.id, &parent.name)?
            .ok_or_else(|| not_found(&path))?;
        match (req.kind, is_dir) {
            (Some(RemoveKind::NotDir), true) => {
                return Err(ApiError::new(
                    ErrorCode::IsADirectory,
                    format!("{path} is a directory; remove it as one (rmdir, or rm -r)"),
                )
                .into());
            }
            (Some(RemoveKind::Dir), false) => return Err(not_a_directory(&path).into()),
            _ => {}
        }
        let mut inode = self.ns.inode(id)?;
        let tree = is_dir && inode.size_bytes > 0;
        if tree && !req.recursive {
            return Err(ApiError::new(
                ErrorCode::DirectoryNotEmpty,
                format!("{path} is a directory with {} entries; use rm -r to remove it and everything in it", inode.size_bytes),
            )
            .into());
        }
        self.require_write_in(&parent, who, &format!("remove {path}"))?;
        self.require_sticky(&parent, who, &inode, &format!("remove {path}"))?;
        if tree && !who.admin {
            self.check_tree_removable(who, id, &inode, &path)?;
        }
        // Only writes from here on. A tree leaves the namespace now, whole:
        // nothing in it can be reached by path or id from this entry on.
        // Its entries are deleted by purges, a bounded number per log entry.
        self.unlink(parent.id, &parent.name, is_dir, now)?;
        if tree {
            inode.parent = DETACHED;
            inode.touch_attributes(now);
            self.save_inode(id, &inode)?;
            let orphan = Orphan { detached_ns: now };
            self.orphans.insert(id, encode(&orphan).as_slice())?;
        } else {
            let holder = holder.map(|session| (session, who.uid));
            self.drop_name(id, parent.id, &parent.name, holder, now)?;
        }
        Ok(MutationResponse { id, path })
    }

    /// `rm -r` empties every directory below: each non-empty one needs
    /// read (to list it), write and search (to remove its entries). Reads
    /// only the directories' records (an entry's key says whether it is
    /// one), at most [`MAX_REMOVE_CHECK_ENTRIES`] entries.
    fn check_tree_removable(
        &self,
        who: &Principal,
        id: FileId,
        inode: &Inode,
        path: &str,
    ) -> Result<(), StateError> {
        const PAGE: usize = 1024;
        let doing = format!("remove {path} and everything in it");
        let mut scanned = 0u64;
        let mut stack = vec![(id, inode.clone(), path.to_string())];
        while let Some((dir, dir_inode, dir_path)) = stack.pop() {
            if dir_inode.size_bytes == 0 {
                continue;
            }
            self.ns
                .require(&dir_inode, who, READ | WRITE | SEARCH, &doing, &dir_path)?;
            let mut after = String::new();
            loop {
                let page = self.ns.entries(dir, &after, PAGE)?;
                for (key, child) in &page {
                    scanned += 1;
                    let (name, is_dir) = entry_name(key);
                    if is_dir {
                        stack.push((*child, self.ns.inode(*child)?, child_path(&dir_path, name)));
                    }
                }
                if scanned > MAX_REMOVE_CHECK_ENTRIES {
                    return Err(ApiError::new(
                        ErrorCode::TooLarge,
                        format!(
                            "{path} holds more than {MAX_REMOVE_CHECK_ENTRIES} entries, too many to check your \
                             permissions in one step; remove its subdirectories one by one, or ask an admin"
                        ),
                    )
                    .into());
                }
                match page.last() {
                    Some((key, _)) if page.len() == PAGE => after = key.clone(),
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// Deletes up to `max_entries` entries of removed trees, depth first
    /// from the oldest tree: files and empty directories go at once; a
    /// directory with entries becomes the root of a removed tree itself.
    pub fn purge(&mut self, max_entries: u64, now: u64) -> Result<Output, StateError> {
        let mut budget = max_entries;
        let mut deleted = 0;
        while budget > 0 {
            let Some(root) = self.orphans.first()?.map(|(id, _)| id.value()) else {
                break;
            };
            let inode = self.ns.inode(root)?;
            assert_eq!(inode.parent, DETACHED, "orphan {root} is still linked");
            if !inode.is_dir() || inode.size_bytes == 0 {
                self.orphans.remove(root)?;
                self.delete_inode(root)?;
                deleted += 1;
                budget -= 1;
                continue;
            }
            let page = self.ns.entries(root, "", budget as usize)?;
            assert!(
                !page.is_empty(),
                "directory {root} counts entries it does not have"
            );
            let keys: Vec<&str> = page.iter().map(|(key, _)| key.as_str()).collect();
            self.unlink_entries(root, &keys, now)?;
            for (key, child) in &page {
                let mut child_inode = self.ns.inode(*child)?;
                if entry_name(key).1 && child_inode.size_bytes > 0 {
                    child_inode.parent = DETACHED;
                    self.save_inode(*child, &child_inode)?;
                    let orphan = Orphan { detached_ns: now };
                    self.orphans.insert(*child, encode(&orphan).as_slice())?;
                } else {
                    // A file with names outside the tree stays.
                    self.drop_name(*child, root, entry_name(key).0, None, now)?;
                    deleted += 1;
                }
                budget -= 1;
            }
        }
        Ok(Output::Purged {
            entries: deleted,
            trees_left: self.orphans.len()?,
        })
    }

    /// rename(2) and mv; with `holder`, a file replaced that loses its last
    /// name is held for that session (`held.rs`).
    pub fn rename(
        &mut self,
        who: &Principal,
        req: &MoveRequest,
        holder: Option<&TokenHash>,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let src = self.resolve_source(who, &req.src)?;
        let dst = if req.exact {
            self.resolve_exact_destination(who, &req.dst, &src, req.replace)?
        } else {
            self.resolve_destination(who, &req.dst, &src, req.replace)?
        };
        let unchanged = MutationResponse {
            id: src.id,
            path: src.path.clone(),
        };
        // Two names of one file: rename(2) does nothing.
        if dst.path == src.path || dst.replaced.is_some_and(|(id, _)| id == src.id) {
            return Ok(unchanged);
        }
        if src.inode.is_dir() && dst.path.starts_with(&format!("{}/", src.path)) {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "cannot move directory {} into itself ({})",
                    src.path, dst.path
                ),
            )
            .into());
        }
        let doing = format!("move {} to {}", src.path, dst.path);
        self.require_write_in(&src.parent, who, &doing)?;
        self.require_write_in(&dst.parent, who, &doing)?;
        self.require_sticky(&src.parent, who, &src.inode, &doing)?;
        if let Some((replaced, _)) = dst.replaced {
            let replaced = self.ns.inode(replaced)?;
            self.require_sticky(&dst.parent, who, &replaced, &doing)?;
        }
        let is_dir = src.inode.is_dir();
        if is_dir && dst.parent.id != src.parent.id {
            // Its ".." changes: POSIX asks write on the directory itself.
            self.ns.require(&src.inode, who, WRITE, &doing, &src.path)?;
        }
        // Only writes from here on.
        if let Some((old, old_is_dir)) = dst.replaced {
            self.unlink(dst.parent.id, &dst.parent.name, old_is_dir, now)?;
            let holder = holder.map(|session| (session, who.uid));
            self.drop_name(old, dst.parent.id, &dst.parent.name, holder, now)?;
        }
        self.unlink(src.parent.id, &src.parent.name, is_dir, now)?;
        let mut moved = src.inode;
        self.move_name(
            src.id,
            &mut moved,
            (src.parent.id, &src.parent.name),
            (dst.parent.id, &dst.parent.name),
        )?;
        moved.touch_attributes(now);
        self.save_inode(src.id, &moved)?;
        self.link(dst.parent.id, &dst.parent.name, src.id, is_dir, now)?;
        Ok(MutationResponse {
            id: src.id,
            path: dst.path,
        })
    }

    pub fn copy(
        &mut self,
        who: &Principal,
        req: &MoveRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let src = self.resolve_source(who, &req.src)?;
        refuse_directory(
            &src,
            "cp copies files (copy the files inside it one by one)",
        )?;
        require_contents(&src.inode, &src.path)?;
        let dst = self.resolve_destination(who, &req.dst, &src, req.replace)?;
        if dst.path == src.path || dst.replaced.is_some_and(|(id, _)| id == src.id) {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("cannot copy {} onto itself ({})", src.path, dst.path),
            )
            .into());
        }
        let doing = format!("copy {} to {}", src.path, dst.path);
        self.ns.require(&src.inode, who, READ, &doing, &src.path)?;
        self.require_write_in(&dst.parent, who, &doing)?;
        if let Some((replaced, _)) = dst.replaced {
            let replaced = self.ns.inode(replaced)?;
            self.require_sticky(&dst.parent, who, &replaced, &doing)?;
        }
        // Only writes from here on. The copy shares the chunk list: no data
        // moves. As cp(1) without -p: the caller owns the copy, which keeps
        // the source's bits but its set-ids, and no extended attributes.
        if let Some((old, old_is_dir)) = dst.replaced {
            self.unlink(dst.parent.id, &dst.parent.name, old_is_dir, now)?;
            self.drop_name(old, dst.parent.id, &dst.parent.name, None, now)?;
        }
        let id = self.alloc_id()?;
        let mode = src.inode.mode & !(perm::SET_UID | perm::SET_GID);
        let inode = Inode::new_file(now, who, mode, dst.parent.id)
            .made_in(&dst.parent.inode, who)
            .with_contents(
                src.inode.size_bytes,
                src.inode.digest,
                src.inode.chunks.clone(),
            );
        self.save_inode(id, &inode)?;
        self.link(dst.parent.id, &dst.parent.name, id, false, now)?;
        Ok(MutationResponse { id, path: dst.path })
    }

    pub fn chmod(
        &mut self,
        who: &Principal,
        req: &ChmodRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        perm::validate_mode(req.mode)?;
        let (id, mut inode) = self.ns.resolve(who, &req.path)?;
        let path = cairn_proto::path::normalize(&req.path)?;
        if !who.admin && inode.uid != who.uid {
            return Err(ApiError::new(
                ErrorCode::NotOwner,
                format!(
                    "permission denied: only the owner of {path} ({}) or an admin may change its mode",
                    self.ns.user_name(inode.uid)?
                ),
            )
            .into());
        }
        // Only writes from here on. An owner outside the group cannot
        // give the group's privileges (as Linux: set-gid dropped).
        inode.mode = if who.admin || who.in_group(inode.gid) {
            req.mode
        } else {
            req.mode & !perm::SET_GID
        };
        inode.touch_attributes(now);
        self.save_inode(id, &inode)?;
        Ok(MutationResponse { id, path })
    }

    pub fn chown(
        &mut self,
        who: &Principal,
        req: &ChownRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let new_uid = self.owner_id(req)?;
        let new_gid = self.group_id(req)?;
        if new_uid.is_none() && new_gid.is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "chown needs a new owner, a new group, or both (OWNER, OWNER:GROUP or :GROUP)",
            )
            .into());
        }
        let (id, mut inode) = self.ns.resolve(who, &req.path)?;
        let path = cairn_proto::path::normalize(&req.path)?;
        if let Some(uid) = new_uid {
            if !who.admin && uid != inode.uid {
                return Err(ApiError::new(
                    ErrorCode::NotOwner,
                    format!("permission denied: only an admin may give {path} to another owner"),
                )
                .into());
            }
        }
        if let Some(gid) = new_gid {
            let owns = inode.uid == who.uid;
            if !(who.admin || owns && who.in_group(gid)) {
                let mut own_groups = Vec::new();
                for gid in &who.gids {
                    own_groups.push(self.ns.group_name(*gid)?);
                }
                return Err(ApiError::new(
                    ErrorCode::NotOwner,
                    format!(
                        "permission denied: the owner of {path} may set its group only to one of their own groups \
                         ({}); an admin may set any",
                        own_groups.join(", ")
                    ),
                )
                .into());
            }
        }
        // Only writes from here on.
        if let Some(uid) = new_uid {
            inode.uid = uid;
        }
        if let Some(gid) = new_gid {
            inode.gid = gid;
        }
        if !inode.is_dir() {
            // A file given away keeps no set-id privileges (Linux clears
            // them on every chown of a file, an admin's too).
            inode.mode = perm::without_set_ids(inode.mode);
        }
        inode.touch_attributes(now);
        self.save_inode(id, &inode)?;
        Ok(MutationResponse { id, path })
    }

    /// utimensat(2): given times need the owner (or an admin), "now"
    /// needs write permission; the change time becomes now unless both
    /// are left alone.
    pub fn set_times(
        &mut self,
        who: &Principal,
        req: &TimesRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let (id, mut inode) = self.ns.resolve(who, &req.path)?;
        let path = cairn_proto::path::normalize(&req.path)?;
        let given = |set: Option<TimeSet>| matches!(set, Some(TimeSet::At(_)));
        let owns = who.admin || inode.uid == who.uid;
        if (given(req.accessed) || given(req.modified)) && !owns {
            return Err(ApiError::new(
                ErrorCode::NotOwner,
                format!(
                    "permission denied: only the owner of {path} ({}) or an admin may set its times to given \
                     values; whoever may write it may set them to now",
                    self.ns.user_name(inode.uid)?
                ),
            )
            .into());
        }
        if !owns {
            self.ns.require(
                &inode,
                who,
                WRITE,
                &format!("set the times of {path}"),
                &path,
            )?;
        }
        if req.accessed.is_none() && req.modified.is_none() {
            return Ok(MutationResponse { id, path });
        }
        // Only writes from here on.
        let at = |set: TimeSet| match set {
            TimeSet::Now => now,
            TimeSet::At(ns) => ns,
        };
        if let Some(set) = req.accessed {
            inode.accessed_ns = at(set);
        }
        if let Some(set) = req.modified {
            inode.modified_ns = at(set);
        }
        inode.touch_attributes(now);
        self.save_inode(id, &inode)?;
        Ok(MutationResponse { id, path })
    }

    /// The uid a chown names, by name (which must exist) or number.
    fn owner_id(&self, req: &ChownRequest) -> Result<Option<u32>, StateError> {
        let by_name = |name: &str| Ok(users::get_user(&self.ns.auth, name)?.map(|u| u.uid));
        named_id(
            "user",
            "uid",
            req.owner.as_deref(),
            req.uid,
            by_name,
            "see `cairn user list`",
        )
    }

    /// The gid a chown names, by name (which must exist) or number.
    fn group_id(&self, req: &ChownRequest) -> Result<Option<u32>, StateError> {
        let by_name = |name: &str| Ok(users::get_group(&self.ns.auth, name)?.map(|g| g.gid));
        let hint = "groups come with `cairn user add --groups`";
        named_id("group", "gid", req.group.as_deref(), req.gid, by_name, hint)
    }

    pub fn set_xattr(
        &mut self,
        who: &Principal,
        req: &XattrSetRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        validate_xattr(&req.xattr)?;
        let (id, mut inode) = self.ns.resolve(who, &req.path)?;
        let path = cairn_proto::path::normalize(&req.path)?;
        let name = &req.xattr.name;
        self.require_xattr_write(who, &inode, name, &path)?;
        let old_len = self
            .ns
            .xattrs
            .get((id, name.as_str()))?
            .map(|v| v.value().len());
        match (req.mode, old_len) {
            (XattrSetMode::Create, Some(_)) => {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("{path} already has the extended attribute {name}"),
                )
                .into())
            }
            (XattrSetMode::Replace, None) => return Err(no_such_xattr(&path, name).into()),
            _ => {}
        }
        let after = inode.xattr_bytes as usize - old_len.map_or(0, |len| xattr_cost(name, len))
            + xattr_cost(name, req.xattr.value.len());
        if after > MAX_XATTR_BYTES_PER_INODE {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "{path} has no room for extended attribute {name}: its attributes would take {after} bytes, \
                     over the {MAX_XATTR_BYTES_PER_INODE} a file or directory may have"
                ),
            )
            .into());
        }
        // Only writes from here on.
        self.write_xattr(id, &mut inode, name, &req.xattr.value)?;
        inode.touch_attributes(now);
        self.save_inode(id, &inode)?;
        Ok(MutationResponse { id, path })
    }

    pub fn remove_xattr(
        &mut self,
        who: &Principal,
        req: &XattrRemoveRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        validate_xattr_name(&req.name)?;
        let (id, mut inode) = self.ns.resolve(who, &req.path)?;
        let path = cairn_proto::path::normalize(&req.path)?;
        self.require_xattr_write(who, &inode, &req.name, &path)?;
        if self.ns.xattrs.get((id, req.name.as_str()))?.is_none() {
            return Err(no_such_xattr(&path, &req.name).into());
        }
        // Only writes from here on.
        self.erase_xattr(id, &mut inode, &req.name)?;
        inode.touch_attributes(now);
        self.save_inode(id, &inode)?;
        Ok(MutationResponse { id, path })
    }

    /// `user.` attributes need write on the object; the others, an admin.
    fn require_xattr_write(
        &self,
        who: &Principal,
        inode: &Inode,
        name: &str,
        path: &str,
    ) -> Result<(), StateError> {
        match XattrNamespace::of(name) {
            XattrNamespace::User => self.ns.require(
                inode,
                who,
                WRITE,
                &format!("change extended attribute {name} of {path}"),
                path,
            ),
            XattrNamespace::Trusted | XattrNamespace::Security => Ok(require_admin(
                who,
                &format!("change extended attribute {name}"),
            )?),
        }
    }

    // ---- resolution of the objects a command works on ----

    /// Resolves the directory that holds `path`'s last name, checking
    /// search on every directory on the way.
    fn resolve_parent(&self, who: &Principal, path: &str) -> Result<ParentDir, StateError> {
        let names = split_path(path)?;
        let Some((name, parents)) = names.split_last() else {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "the root directory / cannot be the target",
            )
            .into());
        };
        let (id, inode) = self.ns.walk_dirs(who, parents, &join(&names))?;
        Ok(ParentDir {
            path: join(parents),
            id,
            inode,
            name: name.to_string(),
        })
    }

    /// Adding or removing an entry needs write and search on the directory.
    fn require_write_in(
        &self,
        dir: &ParentDir,
        who: &Principal,
        doing: &str,
    ) -> Result<(), StateError> {
        self.ns
            .require(&dir.inode, who, WRITE | SEARCH, doing, &dir.path)
    }

    /// In a sticky directory (`/tmp`), an entry is removed, renamed or
    /// replaced only by its owner, the directory's owner or an admin.
    fn require_sticky(
        &self,
        dir: &ParentDir,
        who: &Principal,
        entry: &Inode,
        doing: &str,
    ) -> Result<(), StateError> {
        if perm::sticky_allows(who, dir.inode.uid, dir.inode.mode, entry.uid) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::NotOwner,
            format!(
                "permission denied: cannot {doing}: {} is sticky (mode {:o}), so only the entry's owner ({}), \
                 the directory's ({}) or an admin may remove or rename its entries",
                if dir.path.is_empty() { "/" } else { &dir.path },
                dir.inode.mode,
                self.ns.user_name(entry.uid)?,
                self.ns.user_name(dir.inode.uid)?,
            ),
        )
        .into())
    }

    fn resolve_source(&self, who: &Principal, path: &str) -> Result<Source, StateError> {
        let parent = self.resolve_parent(who, path)?;
        let path = child_path(&parent.path, &parent.name);
        let (id, _) = self
            .ns
            .lookup(parent.id, &parent.name)?
            .ok_or_else(|| not_found(&path))?;
        let inode = self.ns.inode(id)?;
        Ok(Source {
            path,
            parent,
            id,
            inode,
        })
    }

    /// Where `src` goes when moved or copied to `dst`: into `dst` if it is a
    /// directory, else at `dst`, replacing a file there only with `replace`.
    fn resolve_destination(
        &self,
        who: &Principal,
        dst: &str,
        src: &Source,
        replace: bool,
    ) -> Result<Destination, StateError> {
        let names = split_path(dst)?;
        let mut dst_path = join(&names);
        let (mut parent, mut existing) = match names.split_last() {
            None => {
                let root = ParentDir {
                    path: "/".to_string(),
                    id: ROOT_ID,
                    inode: self.ns.inode(ROOT_ID)?,
                    name: src.parent.name.clone(),
                };
                (root, Some((ROOT_ID, true)))
            }
            Some((last, parents)) => {
                let (id, inode) = self.ns.walk_dirs(who, parents, &dst_path)?;
                let existing = self.ns.lookup(id, last)?;
                let parent = ParentDir {
                    path: join(parents),
                    id,
                    inode,
                    name: last.to_string(),
                };
                (parent, existing)
            }
        };
        if let Some((id, true)) = existing {
            if id != src.id {
                // "into it"
                let inode = self.ns.inode(id)?;
                self.ns.require(
                    &inode,
                    who,
                    SEARCH,
                    &format!("move or copy into {dst_path}"),
                    &dst_path,
                )?;
                parent = ParentDir {
                    path: dst_path.clone(),
                    id,
                    inode,
                    name: src.parent.name.clone(),
                };
                dst_path = child_path(&dst_path, &parent.name);
                existing = self.ns.lookup(parent.id, &parent.name)?;
            }
        }
        let mut replaced = None;
        match existing {
            // The source itself, or another name of it (a hard link).
            Some((id, is_dir)) if id == src.id => replaced = Some((id, is_dir)),
            None => {}
            Some((_, true)) => {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("{dst_path} already exists and is a directory; remove it first or choose another name"),
                )
                .into());
            }
            Some((id, false)) => {
                if src.inode.is_dir() {
                    return Err(ApiError::new(
                        ErrorCode::AlreadyExists,
                        format!(
                            "{dst_path} already exists and is a file; a directory cannot replace it"
                        ),
                    )
                    .into());
                }
                if !replace {
                    return Err(ApiError::new(
                        ErrorCode::AlreadyExists,
                        format!("{dst_path} already exists; use --force to replace it"),
                    )
                    .into());
                }
                replaced = Some((id, false));
            }
        }
        Ok(Destination {
            path: dst_path,
            parent,
            replaced,
        })
    }

    /// Where `src` goes when renamed to exactly `dst` (rename(2)): `dst`
    /// is the new name, whatever is there.
    fn resolve_exact_destination(
        &self,
        who: &Principal,
        dst: &str,
        src: &Source,
        replace: bool,
    ) -> Result<Destination, StateError> {
        let parent = self.resolve_parent(who, dst)?;
        let path = child_path(&parent.path, &parent.name);
        let replaced = match self.ns.lookup(parent.id, &parent.name)? {
            None => None,
            // The source itself, or another name of it (a hard link).
            Some((id, is_dir)) if id == src.id => Some((id, is_dir)),
            Some(_) if !replace => {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("{path} already exists and may not be replaced"),
                )
                .into())
            }
            Some((id, true)) => {
                if !src.inode.is_dir() {
                    return Err(ApiError::new(
                        ErrorCode::IsADirectory,
                        format!("{path} is a directory; a file cannot replace it"),
                    )
                    .into());
                }
                if self.ns.inode(id)?.size_bytes > 0 {
                    return Err(ApiError::new(
                        ErrorCode::DirectoryNotEmpty,
                        format!("{path} is a directory that is not empty; only an empty one can be replaced"),
                    )
                    .into());
                }
                Some((id, true))
            }
            Some((id, false)) => {
                if src.inode.is_dir() {
                    return Err(not_a_directory(&path).into());
                }
                Some((id, false))
            }
        };
        Ok(Destination {
            path,
            parent,
            replaced,
        })
    }

    fn unique_name(&self, parent: FileId, name: &str) -> Result<String, StateError> {
        let (stem, ext) = match name.rfind('.') {
            Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
            _ => (name, ""),
        };
        for n in 1..=MAX_RENAME_ATTEMPTS {
            let candidate = format!("{stem}-{n}{ext}");
            if cairn_proto::path::validate_name(&candidate).is_err() {
                break;
            }
            if self.ns.lookup(parent, &candidate)?.is_none() {
                return Ok(candidate);
            }
        }
        Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!("found no free name like {name:?} in its directory; choose a name yourself"),
        )
        .into())
    }
}

/// The id of a user or group named by `name` (which `by_name` must find)
/// or given as `number`; not both.
fn named_id(
    kind: &str,
    id_kind: &str,
    name: Option<&str>,
    number: Option<u32>,
    by_name: impl FnOnce(&str) -> Result<Option<u32>, StateError>,
    hint: &str,
) -> Result<Option<u32>, StateError> {
    match (name, number) {
        (Some(_), Some(_)) => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("give the new {kind} by name or by {id_kind}, not both"),
        )
        .into()),
        (Some(name), None) => {
            cairn_proto::api::validate_user_name(kind, name)?;
            let id = by_name(name)?
                .ok_or_else(|| ApiError::not_found(format!("{kind} {name} ({hint})")))?;
            Ok(Some(id))
        }
        (None, number) => Ok(number),
    }
}

/// The attributes a commit sets: each valid, each name once, within the
/// per-inode budget, and only in namespaces the caller may write.
fn validate_xattr_set(who: &Principal, xattrs: &[Xattr], path: &str) -> Result<(), ApiError> {
    let mut total = 0;
    let mut names = std::collections::BTreeSet::new();
    for xattr in xattrs {
        validate_xattr(xattr)?;
        if !names.insert(xattr.name.as_str()) {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "extended attribute {} is given twice for {path}",
                    xattr.name
                ),
            ));
        }
        if XattrNamespace::of(&xattr.name) != XattrNamespace::User {
            require_admin(who, &format!("set extended attribute {}", xattr.name))?;
        }
        total += xattr_cost(&xattr.name, xattr.value.len());
    }
    if total > MAX_XATTR_BYTES_PER_INODE {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "the extended attributes given for {path} take {total} bytes; a file may have {MAX_XATTR_BYTES_PER_INODE}"
            ),
        ));
    }
    Ok(())
}

fn validate_chunk_list(req: &CommitRequest) -> Result<(), ApiError> {
    if req.chunks.len() > MAX_CHUNKS_PER_FILE {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "{} has {} chunks; the limit is {MAX_CHUNKS_PER_FILE}",
                req.path,
                req.chunks.len()
            ),
        ));
    }
    let total: u64 = req.chunks.iter().map(|c| u64::from(c.length_bytes)).sum();
    let bad_length = req
        .chunks
        .iter()
        .any(|c| c.length_bytes == 0 || u64::from(c.length_bytes) > MAX_CHUNK_SIZE_BYTES);
    if total != req.size_bytes || bad_length {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "commit of {}: chunk lengths add up to {total} bytes but the size is {}, or a chunk is empty or over {} MiB",
                req.path,
                req.size_bytes,
                MAX_CHUNK_SIZE_BYTES >> 20
            ),
        ));
    }
    if file_digest(&req.chunks) != req.digest {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "commit of {}: the digest does not match the chunk list",
                req.path
            ),
        ));
    }
    Ok(())
}

/// A symbolic link's target: text of 1 to 4095 bytes without NUL.
fn validate_symlink_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("a symbolic link's target cannot be empty".into());
    }
    if target.len() > MAX_SYMLINK_TARGET_BYTES {
        return Err(format!(
            "the target is {} bytes; a symbolic link holds at most {MAX_SYMLINK_TARGET_BYTES}",
            target.len()
        ));
    }
    if target.contains('\0') {
        return Err("the target contains a NUL byte".into());
    }
    Ok(())
}

/// Linux's `protected_hardlinks`: the owner, an admin, or a caller who
/// may read and write a regular file that gives no set-id (set-gid
/// counts only with group execute, as without it it marks locking).
fn may_link(who: &Principal, inode: &Inode) -> bool {
    let set_gid_exec = perm::SET_GID | 0o010;
    who.admin
        || who.uid == inode.uid
        || (inode.is_file()
            && inode.mode & perm::SET_UID == 0
            && inode.mode & set_gid_exec != set_gid_exec
            && inode.allows(who, READ | WRITE))
}

/// Refuses a directory as the source of a command on files (`why` says
/// what to do instead).
fn refuse_directory(src: &Source, why: &str) -> Result<(), ApiError> {
    if src.inode.is_dir() {
        return Err(ApiError::new(
            ErrorCode::IsADirectory,
            format!("{} is a directory; {why}", src.path),
        ));
    }
    Ok(())
}

/// Only regular files have contents to commit.
fn require_contents(inode: &Inode, path: &str) -> Result<(), ApiError> {
    if inode.is_file() {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::InvalidArgument,
        format!(
            "{path} is {}, which has no contents to write; remove it first to put a file there",
            inode.kind.describe()
        ),
    ))
}

fn not_a_directory(path: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotADirectory,
        format!("{path} is a file, not a directory"),
    )
}

fn already_exists_file(path: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AlreadyExists,
        format!("{path} already exists; use --force to replace it or --rename to store under a new name"),
    )
}

pub fn no_such_xattr(path: &str, name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("{path} has no extended attribute {name}"),
    )
}
