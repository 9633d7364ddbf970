//! Reading the namespace: lookups, path resolution with the permission
//! checks on the way, and the names behind uids and gids. Works on a
//! [`View`] from a read transaction (the read routes) or from a command's
//! write transaction, so a command checks exactly what a read would.

use cairn_proto::api::Acting;
use cairn_proto::ids::ROOT_ID;
use cairn_proto::path::{join, split_path, MAX_PATH_DEPTH};
use cairn_proto::{ApiError, ErrorCode, FileId};

use crate::limits::MAX_NAMES_TRIED_BY_ID;
use crate::perm::{self, Principal, READ, SEARCH, WRITE};
use crate::records::{decode, StateError};
use crate::state::held::held;
use crate::state::inode::{Inode, DETACHED};
use crate::state::tables::{entry_key, AuthRows, EntryRows, InodeRows, LinkRows, View, XattrRows};
use crate::state::users;

impl<I: InodeRows, D: EntryRows, A: AuthRows, X: XattrRows, L: LinkRows> View<I, D, A, X, L> {
    /// The record of `id`, which an entry or a parent names: its absence
    /// is corruption.
    pub fn inode(&self, id: FileId) -> Result<Inode, StateError> {
        self.try_inode(id)?
            .ok_or_else(|| StateError::Corrupt(format!("an entry points at missing inode {id}")))
    }

    pub fn try_inode(&self, id: FileId) -> Result<Option<Inode>, StateError> {
        match self.inodes.get(id)? {
            Some(bytes) => Ok(Some(decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// The entry `name` in directory `dir`: its id and whether it is a
    /// directory (a name is under one of two keys: see `tables.rs`).
    pub fn lookup(&self, dir: FileId, name: &str) -> Result<Option<(FileId, bool)>, StateError> {
        self.lookup_as(dir, name, false)
    }

    /// As [`View::lookup`], trying the key of a directory first when one is
    /// expected (the names on the way down a path): one probe, not two.
    fn lookup_as(
        &self,
        dir: FileId,
        name: &str,
        likely_dir: bool,
    ) -> Result<Option<(FileId, bool)>, StateError> {
        let probe = |is_dir: bool| -> Result<Option<(FileId, bool)>, StateError> {
            let key = entry_key(name, is_dir);
            Ok(self
                .dirents
                .get((dir, &*key))?
                .map(|id| (id.value(), is_dir)))
        };
        match probe(likely_dir)? {
            Some(found) => Ok(Some(found)),
            None => probe(!likely_dir),
        }
    }

    /// Up to `limit` entries of `dir` whose keys sort after `after` ("" for
    /// the first), in key order: (key, child id).
    pub fn entries(
        &self,
        dir: FileId,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, FileId)>, StateError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for row in self.dirents.range((dir, after)..)? {
            let (key, value) = row?;
            let (parent, name) = key.value();
            if parent != dir {
                break;
            }
            if name == after {
                continue;
            }
            out.push((name.to_string(), value.value()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// The name of user `uid`, or the number when no user has it.
    pub fn user_name(&self, uid: u32) -> Result<String, StateError> {
        Ok(users::user_name(&self.auth, uid)?.unwrap_or_else(|| uid.to_string()))
    }

    /// The name of group `gid`, or the number when no group has it.
    pub fn group_name(&self, gid: u32) -> Result<String, StateError> {
        Ok(users::group_name(&self.auth, gid)?.unwrap_or_else(|| gid.to_string()))
    }

    /// The caller of a request: the named user (refused if unknown), or
    /// the cluster itself.
    pub fn principal(&self, user: Option<&str>) -> Result<Principal, StateError> {
        let Some(name) = user else {
            return Ok(Principal::system());
        };
        users::principal(&self.auth, name)?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                format!("user {name} no longer exists; log in as another user"),
            )
            .into()
        })
    }

    /// The identity an admin's session acts as for a trusted client's
    /// local process: checked again here, as the log is applied (the
    /// user may have lost admin since the call was made). Uid 0 is an
    /// admin, as root on a trusted NFS client.
    pub fn acting_principal(
        &self,
        user: Option<&str>,
        acting: &Acting,
    ) -> Result<Principal, StateError> {
        let delegate = self.principal(user)?;
        if !delegate.admin {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{} is not an admin, so cannot act for local users (uid {}); mount without --allow-other",
                    delegate.name, acting.uid
                ),
            )
            .into());
        }
        Ok(Principal::acting(acting))
    }

    /// `Ok` if `who` has `want` on `inode` (named `path`), else the refusal
    /// saying what `doing` needed, with the object's owner and bits.
    pub fn require(
        &self,
        inode: &Inode,
        who: &Principal,
        want: u32,
        doing: &str,
        path: &str,
    ) -> Result<(), StateError> {
        if inode.allows(who, want) {
            return Ok(());
        }
        let name = if inode.is_dir() {
            format!("directory {path}")
        } else {
            format!("file {path}")
        };
        let owner = self.user_name(inode.uid)?;
        let group = self.group_name(inode.gid)?;
        let object = perm::Object {
            name: &name,
            owner: &owner,
            group: &group,
            mode: inode.mode,
            is_dir: inode.is_dir(),
        };
        Err(perm::denied(who, doing, &object, want).into())
    }

    /// `Ok` if `who` may read `inode`'s contents (named `path`).
    pub fn require_read(
        &self,
        inode: &Inode,
        who: &Principal,
        path: &str,
    ) -> Result<(), StateError> {
        self.require(inode, who, READ, &format!("read {path}"), path)
    }

    /// Walks `dirs` from the root: each must exist and be a directory, and
    /// `who` needs search on the root and on each. Returns the last one.
    /// `full_path` names the operation's target in errors.
    pub fn walk_dirs(
        &self,
        who: &Principal,
        dirs: &[&str],
        full_path: &str,
    ) -> Result<(FileId, Inode), StateError> {
        let doing = format!("reach {full_path}");
        let mut dir = ROOT_ID;
        let mut inode = self.inode(ROOT_ID)?;
        self.require(&inode, who, SEARCH, &doing, "/")?;
        for (depth, name) in dirs.iter().enumerate() {
            let prefix = join(&dirs[..=depth]);
            let (child, is_dir) = self.lookup_as(dir, name, true)?.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!(
                        "parent directory {prefix} of {full_path} does not exist; create it with `cairn mkdir -p {}`",
                        join(dirs)
                    ),
                )
            })?;
            if !is_dir {
                return Err(ApiError::new(
                    ErrorCode::NotADirectory,
                    format!("{prefix} is a file, so {full_path} cannot be inside it"),
                )
                .into());
            }
            let child_inode = self.inode(child)?;
            self.require(&child_inode, who, SEARCH, &doing, &prefix)?;
            dir = child;
            inode = child_inode;
        }
        Ok((dir, inode))
    }

    /// Resolves a path to its id and record, checking search on the way.
    pub fn resolve(&self, who: &Principal, path: &str) -> Result<(FileId, Inode), StateError> {
        let (_, id, inode) = self.resolve_in(who, path)?;
        Ok((id, inode))
    }

    /// [`View::resolve`] with the directory the path went through last
    /// (for a file with several names, the one this path names it in;
    /// the root's is itself).
    pub fn resolve_in(
        &self,
        who: &Principal,
        path: &str,
    ) -> Result<(FileId, FileId, Inode), StateError> {
        let names = split_path(path)?;
        let Some((name, parents)) = names.split_last() else {
            return Ok((ROOT_ID, ROOT_ID, self.inode(ROOT_ID)?));
        };
        let full = join(&names);
        let (parent, _) = self.walk_dirs(who, parents, &full)?;
        let (id, _) = self.lookup(parent, name)?.ok_or_else(|| not_found(&full))?;
        Ok((parent, id, self.inode(id)?))
    }

    /// The record of `id`, if it is in the namespace and `who` could reach
    /// it by a path: search on every directory above it (found through
    /// the records' parents, and for a hard-linked file through the
    /// directories of its other names). A removed tree's records are not
    /// found.
    pub fn resolve_id(&self, who: &Principal, id: FileId) -> Result<Inode, StateError> {
        let inode = self.try_inode(id)?.ok_or_else(|| no_such_id(id))?;
        if id == ROOT_ID {
            return Ok(inode);
        }
        if inode.names == 0 {
            // Removed while open: only its holder, owner and admins.
            let hold = held(&self.held, id)?.ok_or_else(|| {
                StateError::Corrupt(format!("inode {id} has no name and no hold"))
            })?;
            if who.admin || who.uid == hold.uid || who.uid == inode.uid {
                return Ok(inode);
            }
            return Err(no_such_id(id).into());
        }
        let first = match self.reaches_root(who, id, inode.parent) {
            Ok(()) => return Ok(inode),
            Err(e) if inode.names <= 1 => return Err(e),
            Err(e) => e,
        };
        // Its record names a directory of a removed tree not yet purged,
        // or one the caller may not search: another name may do.
        for row in self
            .links
            .range((id, 0, "")..(id + 1, 0, ""))?
            .take(MAX_NAMES_TRIED_BY_ID)
        {
            let (key, _) = row?;
            let (_, dir, _) = key.value();
            if dir != inode.parent && self.reaches_root(who, id, dir).is_ok() {
                return Ok(inode);
            }
        }
        Err(first)
    }

    /// `Ok` if the directory `dir` (holding `id`) is in the namespace and
    /// `who` may search it and every directory above it.
    fn reaches_root(&self, who: &Principal, id: FileId, mut dir: FileId) -> Result<(), StateError> {
        // The walk up is bounded by the deepest path.
        for _ in 0..=MAX_PATH_DEPTH {
            if dir == DETACHED {
                return Err(no_such_id(id).into());
            }
            let dir_inode = self.inode(dir)?;
            if !who.admin {
                self.require(
                    &dir_inode,
                    who,
                    SEARCH,
                    &format!("reach file id {id}"),
                    &format!("id {dir}"),
                )?;
            }
            if dir == ROOT_ID {
                return Ok(());
            }
            dir = dir_inode.parent;
        }
        Err(StateError::Corrupt(format!(
            "the parents of inode {id} go deeper than {MAX_PATH_DEPTH} levels"
        )))
    }

    /// `Ok` if `who` may store a file at `path`: create it in its directory
    /// (write there), or replace the file that is there (write on it); and,
    /// with `exists_is_an_error`, if no file is there.
    pub fn check_writable(
        &self,
        who: &Principal,
        path: &str,
        exists_is_an_error: bool,
    ) -> Result<(), StateError> {
        let names = split_path(path)?;
        let Some((name, parents)) = names.split_last() else {
            return Err(ApiError::new(ErrorCode::IsADirectory, "/ is a directory").into());
        };
        let full = join(&names);
        let (parent, parent_inode) = self.walk_dirs(who, parents, &full)?;
        let doing = format!("write {full}");
        let in_dir = self.require(&parent_inode, who, WRITE | SEARCH, &doing, &join(parents));
        match self.lookup(parent, name)? {
            Some((_, true)) => Err(ApiError::new(
                ErrorCode::IsADirectory,
                format!("{full} is a directory; give a file name inside it, as in {full}/NAME"),
            )
            .into()),
            Some(_) if exists_is_an_error => Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("{full} already exists; use --force to replace it or --rename to store under a new name"),
            )
            .into()),
            Some((id, false)) => {
                if in_dir.is_ok() {
                    return Ok(());
                }
                self.require(&self.inode(id)?, who, WRITE, &doing, &full)
            }
            None => in_dir,
        }
    }
}

fn no_such_id(id: FileId) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no file or directory has id {id}"),
    )
}

pub fn not_found(path: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("{path} does not exist"))
}

/// `/a` + `b` = `/a/b`; `/` + `b` = `/b`.
pub fn child_path(parent_path: &str, name: &str) -> String {
    if parent_path == "/" {
        format!("/{name}")
    } else {
        format!("{parent_path}/{name}")
    }
}
