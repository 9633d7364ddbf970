//! The namespace as the read routes show it: stat, listing pages, walk
//! pages, extended attributes, users. Permission checks as a command's.

use std::collections::HashMap;

use cairn_proto::api::{
    DirEntry, ListResponse, Stat, UserInfo, UsersResponse, WalkEntry, WalkResponse,
};
use cairn_proto::limits::{DEFAULT_PAGE_ENTRIES, MAX_PAGE_ENTRIES, MAX_WALK_SKIPPED_NAMED};
use cairn_proto::path::validate_name;
use cairn_proto::xattr::{validate_xattr_name, Xattr, XattrNamespace};
use cairn_proto::{ApiError, ChunkId, ErrorCode, FileId};
use redb::ReadableTable;

use crate::perm::{Principal, READ, SEARCH};
use crate::records::StateError;
use crate::state::inode::{ns_to_ms, Inode};
use crate::state::namespace::no_such_xattr;
use crate::state::tables::{
    entry_name, get_counter, keys, AuthRows, EntryRows, InodeRows, LinkRows, MetaRows, View,
    XattrRows,
};
use crate::state::users;
use crate::state::view::child_path;

/// Looks up and remembers the names of uids and gids for one answer.
pub struct Names<'v, I, D, A, X, L> {
    view: &'v View<I, D, A, X, L>,
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl<'v, I: InodeRows, D: EntryRows, A: AuthRows, X: XattrRows, L: LinkRows>
    Names<'v, I, D, A, X, L>
{
    pub fn new(view: &'v View<I, D, A, X, L>) -> Self {
        Names {
            view,
            users: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    fn user(&mut self, uid: u32) -> Result<String, StateError> {
        let view = self.view;
        cached(&mut self.users, uid, |uid| view.user_name(uid))
    }

    fn group(&mut self, gid: u32) -> Result<String, StateError> {
        let view = self.view;
        cached(&mut self.groups, gid, |gid| view.group_name(gid))
    }

    /// The record as `stat` shows it; a file's chunk list and digest only
    /// to a caller who may read it.
    pub fn stat(&mut self, id: FileId, inode: &Inode, who: &Principal) -> Result<Stat, StateError> {
        let readable = inode.is_dir() || inode.allows(who, READ);
        Ok(Stat {
            id,
            kind: inode.kind,
            size_bytes: inode.size_bytes,
            mode: inode.mode,
            owner: self.user(inode.uid)?,
            group: self.group(inode.gid)?,
            uid: inode.uid,
            gid: inode.gid,
            parent: inode.parent,
            target: inode.target.clone(),
            rdev: inode.rdev,
            links: inode.links(),
            version: inode.version,
            created_ms: ns_to_ms(inode.created_ns),
            modified_ms: ns_to_ms(inode.modified_ns),
            created_ns: inode.created_ns,
            modified_ns: inode.modified_ns,
            changed_ns: inode.changed_ns,
            accessed_ns: inode.accessed_ns,
            digest: if readable { inode.digest } else { None },
            chunks: if readable {
                inode.chunks.clone()
            } else {
                Vec::new()
            },
            capabilities: Vec::new(),
            capabilities_expire_ms: 0,
            xattrs: None,
        })
    }

    pub fn entry(&mut self, name: &str, id: FileId, inode: &Inode) -> Result<DirEntry, StateError> {
        Ok(DirEntry {
            name: name.to_string(),
            id,
            kind: inode.kind,
            size_bytes: inode.size_bytes,
            mode: inode.mode,
            owner: self.user(inode.uid)?,
            group: self.group(inode.gid)?,
            uid: inode.uid,
            gid: inode.gid,
            version: inode.version,
            modified_ms: ns_to_ms(inode.modified_ns),
            modified_ns: inode.modified_ns,
            changed_ns: inode.changed_ns,
            rdev: inode.rdev,
            links: inode.links(),
            digest: None,
        })
    }

    /// [`Names::entry`] as `who` sees it: with the digest of a file they
    /// may read.
    pub fn entry_for(
        &mut self,
        who: &Principal,
        name: &str,
        id: FileId,
        inode: &Inode,
    ) -> Result<DirEntry, StateError> {
        let mut entry = self.entry(name, id, inode)?;
        if !inode.is_dir() && inode.allows(who, READ) {
            entry.digest = inode.digest;
        }
        Ok(entry)
    }
}

/// The name of `id` from `cache`, looked up once.
fn cached(
    cache: &mut HashMap<u32, String>,
    id: u32,
    look_up: impl FnOnce(u32) -> Result<String, StateError>,
) -> Result<String, StateError> {
    if let Some(name) = cache.get(&id) {
        return Ok(name.clone());
    }
    let name = look_up(id)?;
    cache.insert(id, name.clone());
    Ok(name)
}

/// A page size asked for: the default when none, at most the maximum.
pub fn page_limit(asked: Option<u32>) -> usize {
    asked
        .unwrap_or(DEFAULT_PAGE_ENTRIES)
        .clamp(1, MAX_PAGE_ENTRIES) as usize
}

/// Checks one entry key of a cursor: a name, with a `/` for a directory.
fn validate_key(key: &str, cursor: &str) -> Result<(), ApiError> {
    validate_name(entry_name(key).0).map_err(|_| bad_cursor(cursor))
}

fn bad_cursor(cursor: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidArgument,
        format!(
            "bad cursor {:?}: pass back the `next` of the previous page",
            cursor.chars().take(80).collect::<String>()
        ),
    )
}

impl<I: InodeRows, D: EntryRows, A: AuthRows, X: XattrRows, L: LinkRows> View<I, D, A, X, L> {
    /// One page of the directory `path` (or the file itself, as ls(1)
    /// lists a file): up to `limit` entries after the key `after`.
    pub fn list(
        &self,
        who: &Principal,
        path: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ListResponse, StateError> {
        let (id, inode) = self.resolve(who, path)?;
        let path = cairn_proto::path::normalize(path)?;
        let mut names = Names::new(self);
        if !inode.is_dir() {
            let name = path.rsplit('/').next().unwrap_or_default();
            return Ok(ListResponse {
                entries: vec![names.entry(name, id, &inode)?],
                path,
                next: None,
            });
        }
        self.require(&inode, who, READ, &format!("list {path}"), &path)?;
        let after = after.unwrap_or_default();
        if !after.is_empty() {
            validate_key(after, after)?;
        }
        let limit = page_limit(limit);
        let mut page = self.entries(id, after, limit + 1)?;
        let more = page.len() > limit;
        page.truncate(limit);
        let mut entries = Vec::with_capacity(page.len());
        for (key, child) in &page {
            entries.push(names.entry_for(who, entry_name(key).0, *child, &self.inode(*child)?)?);
        }
        Ok(ListResponse {
            path,
            entries,
            next: if more {
                page.last().map(|(key, _)| key.clone())
            } else {
                None
            },
        })
    }

    /// One page of every entry below `path`, in byte order of their full
    /// paths (a directory's with a trailing `/`), after the cursor `after`
    /// (the relative key path of the last entry of the previous page).
    /// Directories the caller may not list are named in `skipped` and
    /// their contents left out.
    pub fn walk(
        &self,
        who: &Principal,
        path: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<WalkResponse, StateError> {
        let (id, inode) = self.resolve(who, path)?;
        let path = cairn_proto::path::normalize(path)?;
        let mut names = Names::new(self);
        let mut response = WalkResponse {
            path: path.clone(),
            entries: Vec::new(),
            next: None,
            skipped: Vec::new(),
        };
        if !inode.is_dir() {
            if after.is_none() {
                let name = path.rsplit('/').next().unwrap_or_default();
                response.entries.push(WalkEntry {
                    path: path.clone(),
                    entry: names.entry(name, id, &inode)?,
                });
            }
            return Ok(response);
        }
        self.require(&inode, who, READ | SEARCH, &format!("walk {path}"), &path)?;
        let limit = page_limit(limit);
        let mut frames = vec![Frame {
            dir: id,
            path: path.clone(),
            rel: String::new(),
            after: String::new(),
        }];
        if let Some(cursor) = after.filter(|c| !c.is_empty()) {
            self.resume(who, &mut frames, cursor)?;
        }
        let mut last_cursor = String::new();
        let mut more = false;
        while let Some(frame) = frames.last_mut() {
            let Some((key, child)) = self.entries(frame.dir, &frame.after, 1)?.pop() else {
                frames.pop();
                continue;
            };
            frame.after = key.clone();
            if response.entries.len() == limit {
                more = true;
                break;
            }
            let (name, is_dir) = entry_name(&key);
            let child_inode = self.inode(child)?;
            let child_path = child_path(&frame.path, name);
            last_cursor = format!("{}{key}", frame.rel);
            response.entries.push(WalkEntry {
                path: child_path.clone(),
                entry: names.entry_for(who, name, child, &child_inode)?,
            });
            if is_dir {
                if child_inode.allows(who, READ | SEARCH) {
                    let rel = last_cursor.clone();
                    frames.push(Frame {
                        dir: child,
                        path: child_path,
                        rel,
                        after: String::new(),
                    });
                } else if response.skipped.len() < MAX_WALK_SKIPPED_NAMED {
                    response.skipped.push(child_path);
                }
            }
        }
        if more {
            response.next = Some(last_cursor);
        }
        Ok(response)
    }

    /// Sets up the walk's frames to continue after `cursor`: in each
    /// directory it names, after the name it names there.
    fn resume(
        &self,
        who: &Principal,
        frames: &mut Vec<Frame>,
        cursor: &str,
    ) -> Result<(), StateError> {
        let mut rest = cursor;
        while !rest.is_empty() {
            let (key, tail) = match rest.find('/') {
                Some(slash) => (&rest[..=slash], &rest[slash + 1..]),
                None => (rest, ""),
            };
            validate_key(key, cursor)?;
            let frame = frames.last_mut().expect("the walk's root frame stays");
            frame.after = key.to_string();
            let (name, is_dir) = entry_name(key);
            if !is_dir {
                // A file's key ends a cursor: nothing is below a file.
                if !tail.is_empty() {
                    return Err(bad_cursor(cursor).into());
                }
                break;
            }
            // A directory that went away since the last page, or that the
            // caller may no longer list, is passed over.
            let Some(child) = self.dirents.get((frame.dir, key))?.map(|v| v.value()) else {
                break;
            };
            let child_inode = self.inode(child)?;
            if !child_inode.allows(who, READ | SEARCH) {
                break;
            }
            let frame = Frame {
                dir: child,
                path: child_path(&frame.path, name),
                rel: format!("{}{key}", frame.rel),
                after: String::new(),
            };
            frames.push(frame);
            rest = tail;
        }
        Ok(())
    }

    /// The extended attributes of `inode` (named `path`) the caller may
    /// read: `user.` with read on it, `security.` always, `trusted.` for
    /// admins. With `name`, that one only (refused if unreadable, absent if
    /// it does not exist).
    pub fn xattrs(
        &self,
        who: &Principal,
        id: FileId,
        inode: &Inode,
        path: &str,
        name: Option<&str>,
    ) -> Result<Vec<Xattr>, StateError> {
        let may_read = |name: &str| match XattrNamespace::of(name) {
            XattrNamespace::User => inode.allows(who, READ),
            XattrNamespace::Security => true,
            XattrNamespace::Trusted => who.admin,
        };
        if let Some(name) = name {
            validate_xattr_name(name)?;
            if !may_read(name) {
                if XattrNamespace::of(name) == XattrNamespace::User {
                    self.require_read(inode, who, path)?;
                }
                return Err(ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!("permission denied: only an admin may read extended attribute {name}"),
                )
                .into());
            }
            return match self.xattrs.get((id, name))? {
                Some(value) => Ok(vec![Xattr {
                    name: name.to_string(),
                    value: value.value().to_vec(),
                }]),
                None => Err(no_such_xattr(path, name).into()),
            };
        }
        let mut out = Vec::new();
        if inode.xattr_bytes == 0 {
            return Ok(out);
        }
        for row in self.xattrs.range((id, "")..(id + 1, ""))? {
            let (key, value) = row?;
            let (_, name) = key.value();
            if may_read(name) {
                out.push(Xattr {
                    name: name.to_string(),
                    value: value.value().to_vec(),
                });
            }
        }
        Ok(out)
    }
}

/// A directory the walk is in: where it is, and the last key it took.
struct Frame {
    dir: FileId,
    /// The directory's full path.
    path: String,
    /// Its key path relative to the walk's root (`a/b/`; empty at the root).
    rel: String,
    after: String,
}

/// One page of users after the name `after`.
pub fn users(
    auth: &impl AuthRows,
    after: Option<&str>,
    limit: Option<u32>,
    now_ms: u64,
) -> Result<UsersResponse, StateError> {
    let (page, more) = users::users_page(auth, after, page_limit(limit))?;
    let mut out = Vec::with_capacity(page.len());
    for (name, user) in &page {
        let mut groups = Vec::with_capacity(user.gids.len());
        for gid in &user.gids {
            groups.push(users::group_name(auth, *gid)?.unwrap_or_else(|| gid.to_string()));
        }
        out.push(UserInfo {
            name: name.clone(),
            uid: user.uid,
            admin: user.admin,
            groups,
            created_ms: ns_to_ms(user.created_ns),
            sessions: live_sessions(auth, name, now_ms)?,
        });
    }
    Ok(UsersResponse {
        next: if more {
            out.last().map(|u| u.name.clone())
        } else {
            None
        },
        users: out,
    })
}

/// Sessions of `name` that have not expired by `now_ms`.
fn live_sessions(auth: &impl AuthRows, name: &str, now_ms: u64) -> Result<u64, StateError> {
    let mut live = 0;
    for hash in users::user_sessions(auth, name)? {
        if users::get_session(auth, &hash)?.is_some_and(|s| s.expires_ms > now_ms) {
            live += 1;
        }
    }
    Ok(live)
}

/// (files, directories) in the namespace, counting those of removed trees
/// not yet deleted.
pub fn counts(meta: &impl MetaRows) -> Result<(u64, u64), StateError> {
    Ok((
        get_counter(meta, keys::FILE_COUNT)?,
        get_counter(meta, keys::DIR_COUNT)?,
    ))
}

/// Whether some file references each of `ids`.
pub fn referenced(
    chunk_refs: &impl ReadableTable<[u8; 32], u64>,
    ids: &[ChunkId],
) -> Result<Vec<bool>, StateError> {
    ids.iter()
        .map(|id| Ok(chunk_refs.get(id.0)?.is_some()))
        .collect()
}

/// The reference count of `id` (0 if no file references it).
pub fn reference_count(
    chunk_refs: &impl ReadableTable<[u8; 32], u64>,
    id: &ChunkId,
) -> Result<u64, StateError> {
    Ok(chunk_refs.get(id.0)?.map_or(0, |v| v.value()))
}
