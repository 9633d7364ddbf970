//! The one write path of the namespace. Every command writes inodes,
//! directory entries and extended attributes through these functions, and
//! they keep the derived state in step in one place:
//! - chunk reference counts follow the chunk lists of file records;
//! - the file and directory counters follow records created and deleted;
//! - a directory's entry count, mtime and ctime follow links and unlinks;
//! - an inode's `xattr_bytes` follows its attributes, which go with it;
//! - a file's `names` and `parent` follow its names (hard links), which
//!   the `links` table lists while it has more than one.

use cairn_proto::{ChunkRef, FileId};

use crate::auth::TokenHash;
use crate::records::{encode, StateError};
use crate::state::inode::Inode;
use crate::state::tables::{entry_key, entry_name, get_counter, keys, put_counter, Tables};
use redb::ReadableTable;

impl Tables<'_> {
    /// Writes record `id`: creates it (counting it) or replaces it (the
    /// kind stays), moving chunk references from the old chunk list to the
    /// new one.
    pub fn save_inode(&mut self, id: FileId, inode: &Inode) -> Result<(), StateError> {
        let old = self.ns.try_inode(id)?;
        self.replace_inode(id, old.as_ref(), inode)
    }

    /// [`Tables::save_inode`] for a caller that holds the record as it is
    /// stored (`old`; `None` for a new one): one read less on a hot path.
    fn replace_inode(
        &mut self,
        id: FileId,
        old: Option<&Inode>,
        inode: &Inode,
    ) -> Result<(), StateError> {
        match old {
            None => {
                let counter = if inode.is_dir() {
                    keys::DIR_COUNT
                } else {
                    keys::FILE_COUNT
                };
                self.add_counter(counter, 1)?;
                self.add_refs(&inode.chunks, 1)?;
            }
            Some(old) => {
                assert_eq!(old.kind, inode.kind, "inode {id} changed its kind");
                if old.chunks != inode.chunks {
                    self.add_refs(&inode.chunks, 1)?;
                    self.add_refs(&old.chunks, -1)?;
                }
            }
        }
        self.ns.inodes.insert(id, encode(inode).as_slice())?;
        Ok(())
    }

    /// Deletes record `id` with its extended attributes, dropping its chunk
    /// references and uncounting it. Its directory entry must be gone.
    pub fn delete_inode(&mut self, id: FileId) -> Result<Inode, StateError> {
        let inode = self.ns.inode(id)?;
        self.add_refs(&inode.chunks, -1)?;
        let counter = if inode.is_dir() {
            keys::DIR_COUNT
        } else {
            keys::FILE_COUNT
        };
        self.add_counter(counter, -1)?;
        if inode.xattr_bytes > 0 {
            self.clear_xattrs(id)?;
        }
        self.ns.inodes.remove(id)?;
        Ok(inode)
    }

    /// A new file id (never reused).
    pub fn alloc_id(&mut self) -> Result<FileId, StateError> {
        let id = get_counter(&self.meta, keys::NEXT_ID)?;
        put_counter(&mut self.meta, keys::NEXT_ID, id + 1)?;
        Ok(id)
    }

    /// Adds the entry `name` -> `child` to directory `dir`, whose entry
    /// count, mtime and ctime change. The child's record names `dir` as
    /// its parent already.
    pub fn link(
        &mut self,
        dir: FileId,
        name: &str,
        child: FileId,
        child_is_dir: bool,
        now_ns: u64,
    ) -> Result<(), StateError> {
        let key = entry_key(name, child_is_dir);
        let previous = self.ns.dirents.insert((dir, &*key), child)?;
        assert!(
            previous.is_none(),
            "link over an existing entry {key:?} in {dir}"
        );
        drop(previous);
        self.adjust_dir(dir, 1, i64::from(child_is_dir), now_ns)
    }

    /// Removes the entry `name` from directory `dir` (its entry count,
    /// mtime and ctime change); the child's record is left alone.
    pub fn unlink(
        &mut self,
        dir: FileId,
        name: &str,
        child_is_dir: bool,
        now_ns: u64,
    ) -> Result<(), StateError> {
        let key = entry_key(name, child_is_dir);
        let removed = self.ns.dirents.remove((dir, &*key))?;
        assert!(
            removed.is_some(),
            "unlink of a missing entry {key:?} in {dir}"
        );
        drop(removed);
        self.adjust_dir(dir, -1, -i64::from(child_is_dir), now_ns)
    }

    /// Removes the entries with `keys` from directory `dir` at once (one
    /// change of its record), as a purge does.
    pub fn unlink_entries(
        &mut self,
        dir: FileId,
        keys: &[&str],
        now_ns: u64,
    ) -> Result<(), StateError> {
        for key in keys {
            let removed = self.ns.dirents.remove((dir, *key))?;
            assert!(
                removed.is_some(),
                "unlink of a missing entry {key:?} in {dir}"
            );
        }
        let subdirs = keys.iter().filter(|key| entry_name(key).1).count() as i64;
        self.adjust_dir(dir, -(keys.len() as i64), -subdirs, now_ns)
    }

    /// Changes a directory's entry count by `delta`, `subdirs_delta` of
    /// them directories; its contents changed.
    fn adjust_dir(
        &mut self,
        dir: FileId,
        delta: i64,
        subdirs_delta: i64,
        now_ns: u64,
    ) -> Result<(), StateError> {
        let old = self.ns.inode(dir)?;
        assert!(old.is_dir(), "entry count change on a file ({dir})");
        let mut inode = old.clone();
        inode.size_bytes = inode
            .size_bytes
            .checked_add_signed(delta)
            .expect("directory entry count stays non-negative");
        inode.subdirs = inode
            .subdirs
            .checked_add_signed(subdirs_delta)
            .expect("subdirectory count stays non-negative");
        debug_assert!(inode.subdirs <= inode.size_bytes);
        inode.touch_contents(now_ns);
        self.replace_inode(dir, Some(&old), &inode)
    }

    /// Gives the file `id` (record `inode`, saved by the caller) the new
    /// name `name` in directory `dir`; `current` is a name it has now,
    /// recorded too when it had only that one.
    pub fn add_name(
        &mut self,
        id: FileId,
        inode: &mut Inode,
        current: (FileId, &str),
        dir: FileId,
        name: &str,
    ) -> Result<(), StateError> {
        assert!(!inode.is_dir(), "a directory has one name ({id})");
        if inode.names == 1 {
            self.ns.links.insert((id, current.0, current.1), ())?;
        }
        let previous = self.ns.links.insert((id, dir, name), ())?;
        assert!(previous.is_none(), "name {name:?} of {id} in {dir} twice");
        inode.names += 1;
        Ok(())
    }

    /// The entry `name` in `dir` naming `id` is gone: the record goes with
    /// its last name, unless it is a file `holder` (a session, and the uid
    /// acting in it) has open, which keeps it (`held.rs`); otherwise it
    /// has one name less (a change of its attributes) and names a
    /// directory that still holds it.
    pub fn drop_name(
        &mut self,
        id: FileId,
        dir: FileId,
        name: &str,
        holder: Option<(&TokenHash, u32)>,
        now_ns: u64,
    ) -> Result<(), StateError> {
        let mut inode = self.ns.inode(id)?;
        if inode.names <= 1 {
            assert_eq!(inode.names, 1, "inode {id} has no name to drop");
            match holder {
                Some((session, uid)) if inode.is_file() => {
                    self.hold(id, inode, session, uid, now_ns)?
                }
                _ => {
                    self.delete_inode(id)?;
                }
            }
            return Ok(());
        }
        let removed = self.ns.links.remove((id, dir, name))?;
        assert!(removed.is_some(), "{id} has no name {name:?} in {dir}");
        drop(removed);
        inode.names -= 1;
        if inode.names == 1 {
            // One name left: it needs no row.
            let (left_dir, left_name) = self.first_name(id)?;
            self.ns.links.remove((id, left_dir, left_name.as_str()))?;
            inode.parent = left_dir;
        } else if inode.parent == dir {
            inode.parent = match self.name_from(id, dir)? {
                Some((same, _)) if same == dir => dir,
                _ => self.first_name(id)?.0,
            };
        }
        inode.touch_attributes(now_ns);
        self.save_inode(id, &inode)
    }

    /// A name of `id` moved from `from` to `to` (a rename): `inode` (saved
    /// by the caller) names the new directory.
    pub fn move_name(
        &mut self,
        id: FileId,
        inode: &mut Inode,
        from: (FileId, &str),
        to: (FileId, &str),
    ) -> Result<(), StateError> {
        inode.parent = to.0;
        if inode.names > 1 {
            let removed = self.ns.links.remove((id, from.0, from.1))?;
            assert!(
                removed.is_some(),
                "{id} has no name {:?} in {}",
                from.1,
                from.0
            );
            drop(removed);
            self.ns.links.insert((id, to.0, to.1), ())?;
        }
        Ok(())
    }

    /// The first name of hard-linked `id`, by directory id.
    fn first_name(&self, id: FileId) -> Result<(FileId, String), StateError> {
        self.name_from(id, 0)?.ok_or_else(|| {
            StateError::Corrupt(format!(
                "inode {id} counts names the links table does not hold"
            ))
        })
    }

    /// The first name of hard-linked `id` in a directory numbered `dir` or
    /// above.
    fn name_from(&self, id: FileId, dir: FileId) -> Result<Option<(FileId, String)>, StateError> {
        let mut rows = self.ns.links.range((id, dir, "")..)?;
        Ok(match rows.next().transpose()? {
            Some((key, _)) if key.value().0 == id => {
                let (_, dir, name) = key.value();
                Some((dir, name.to_string()))
            }
            _ => None,
        })
    }

    /// Sets attribute `name` of `inode` (record `id`, saved by the caller)
    /// to `value`, keeping `inode.xattr_bytes` in step. The caller checked
    /// the per-inode budget.
    pub fn write_xattr(
        &mut self,
        id: FileId,
        inode: &mut Inode,
        name: &str,
        value: &[u8],
    ) -> Result<(), StateError> {
        let previous = self.ns.xattrs.insert((id, name), value)?;
        let old_cost = previous
            .map(|old| cairn_proto::xattr::xattr_cost(name, old.value().len()))
            .unwrap_or(0);
        let new_cost = cairn_proto::xattr::xattr_cost(name, value.len());
        inode.xattr_bytes = (inode.xattr_bytes as usize - old_cost + new_cost)
            .try_into()
            .expect("xattr bytes fit in u32 (bounded by the per-inode limit)");
        Ok(())
    }

    /// Removes attribute `name` of `inode` (record `id`, saved by the
    /// caller); `false` if it had none of that name.
    pub fn erase_xattr(
        &mut self,
        id: FileId,
        inode: &mut Inode,
        name: &str,
    ) -> Result<bool, StateError> {
        let Some(old) = self.ns.xattrs.remove((id, name))? else {
            return Ok(false);
        };
        let cost = cairn_proto::xattr::xattr_cost(name, old.value().len());
        inode.xattr_bytes -= u32::try_from(cost).expect("xattr cost fits in u32");
        Ok(true)
    }

    /// Removes every attribute of record `id` (its `xattr_bytes` become 0
    /// when the caller saves it, or the record goes).
    pub fn clear_xattrs(&mut self, id: FileId) -> Result<(), StateError> {
        self.ns
            .xattrs
            .retain_in((id, "")..(id + 1, ""), |_, _| false)?;
        Ok(())
    }

    /// Adds `delta` (+1 or -1) to the reference count of each chunk in
    /// `chunks`; a count that reaches zero is deleted.
    fn add_refs(&mut self, chunks: &[ChunkRef], delta: i64) -> Result<(), StateError> {
        for chunk in chunks {
            let current = self.chunk_refs.get(chunk.id.0)?.map_or(0, |v| v.value());
            let next = current
                .checked_add_signed(delta)
                .expect("chunk reference count stays non-negative");
            if next == 0 {
                self.chunk_refs.remove(chunk.id.0)?;
            } else {
                self.chunk_refs.insert(chunk.id.0, next)?;
            }
        }
        Ok(())
    }

    pub fn add_counter(&mut self, key: &str, delta: i64) -> Result<(), StateError> {
        let value = get_counter(&self.meta, key)?;
        let next = value
            .checked_add_signed(delta)
            .expect("counter stays non-negative");
        put_counter(&mut self.meta, key, next)
    }
}
