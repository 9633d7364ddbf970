//! The inode record: one file or directory.

use cairn_proto::api::EntryKind;
use cairn_proto::{ChunkId, ChunkRef, FileId};
use serde::{Deserialize, Serialize};

use crate::perm::{Principal, SET_GID};
use crate::records::{Initial, Versioned};

/// `parent` of the root of a removed tree: it left the namespace and its
/// entries are being deleted (see `Command::Purge`). No file has id 0.
pub const DETACHED: FileId = 0;

/// A file, directory, symbolic link or special file (format 6: format 5
/// with a count of hard links).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub kind: EntryKind,
    /// POSIX permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bumped on every change of the record (contents, attributes, and a
    /// directory's entries).
    pub version: u64,
    /// Nanoseconds since the Unix epoch: creation, last change of the
    /// contents (mtime) and last change of contents or attributes (ctime).
    pub created_ns: u64,
    pub modified_ns: u64,
    pub changed_ns: u64,
    /// Last access (atime), as set by `utimensat` through the mount; reads
    /// do not move it (as `noatime`: a read must not cost a Raft write).
    pub accessed_ns: u64,
    /// File: its length. Directory: its number of entries.
    pub size_bytes: u64,
    pub digest: Option<ChunkId>,
    pub chunks: Vec<ChunkRef>,
    /// A directory holding it (one of several for a hard-linked file);
    /// the root's is itself, a removed tree's root's is [`DETACHED`]. Lets
    /// a lookup by id check the path.
    pub parent: FileId,
    /// Bytes (names and values) of its extended attributes, kept in the
    /// `xattrs` table: bounds them without reading them.
    pub xattr_bytes: u32,
    /// A symbolic link's target; `None` for every other kind.
    pub target: Option<String>,
    /// A device node's number; 0 for every other kind.
    pub rdev: u64,
    /// Directory: how many of its entries are directories (its link count
    /// is 2 + this: its name, its `.`, and each child's `..`).
    pub subdirs: u64,
    /// How many directory entries name it: 1, or more for a file with
    /// hard links (whose names are in the `links` table). A directory
    /// has one name.
    pub names: u64,
}

impl Versioned for Inode {
    const NAME: &'static str = "inode";
    const FORMAT: u8 = 6;
    type Previous = InodeV5;
    /// A record from before hard links: one name.
    fn upgrade(v5: InodeV5) -> Inode {
        Inode {
            kind: v5.kind,
            mode: v5.mode,
            uid: v5.uid,
            gid: v5.gid,
            version: v5.version,
            created_ns: v5.created_ns,
            modified_ns: v5.modified_ns,
            changed_ns: v5.changed_ns,
            accessed_ns: v5.accessed_ns,
            size_bytes: v5.size_bytes,
            digest: v5.digest,
            chunks: v5.chunks,
            parent: v5.parent,
            xattr_bytes: v5.xattr_bytes,
            target: v5.target,
            rdev: v5.rdev,
            subdirs: v5.subdirs,
            names: 1,
        }
    }
}

/// The record of format 5 (no hard links).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeV5 {
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub version: u64,
    pub created_ns: u64,
    pub modified_ns: u64,
    pub changed_ns: u64,
    pub accessed_ns: u64,
    pub size_bytes: u64,
    pub digest: Option<ChunkId>,
    pub chunks: Vec<ChunkRef>,
    pub parent: FileId,
    pub xattr_bytes: u32,
    pub target: Option<String>,
    pub rdev: u64,
    pub subdirs: u64,
}

impl Versioned for InodeV5 {
    const NAME: &'static str = "inode";
    const FORMAT: u8 = 5;
    type Previous = InodeV4;
    /// A record from before links and special files: a file or directory.
    fn upgrade(v4: InodeV4) -> InodeV5 {
        InodeV5 {
            kind: v4.kind,
            mode: v4.mode,
            uid: v4.uid,
            gid: v4.gid,
            version: v4.version,
            created_ns: v4.created_ns,
            modified_ns: v4.modified_ns,
            changed_ns: v4.changed_ns,
            accessed_ns: v4.accessed_ns,
            size_bytes: v4.size_bytes,
            digest: v4.digest,
            chunks: v4.chunks,
            parent: v4.parent,
            xattr_bytes: v4.xattr_bytes,
            target: None,
            rdev: 0,
            // Counted by the state upgrade to format 5 (`upgrade.rs`),
            // which rewrites every directory.
            subdirs: 0,
        }
    }
}

/// The record of format 4 (files and directories only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeV4 {
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub version: u64,
    pub created_ns: u64,
    pub modified_ns: u64,
    pub changed_ns: u64,
    pub accessed_ns: u64,
    pub size_bytes: u64,
    pub digest: Option<ChunkId>,
    pub chunks: Vec<ChunkRef>,
    pub parent: FileId,
    pub xattr_bytes: u32,
}

impl Versioned for InodeV4 {
    const NAME: &'static str = "inode";
    const FORMAT: u8 = 4;
    type Previous = InodeV3;
    /// A record from before access times: last accessed when last changed.
    fn upgrade(v3: InodeV3) -> InodeV4 {
        InodeV4 {
            kind: v3.kind,
            mode: v3.mode,
            uid: v3.uid,
            gid: v3.gid,
            version: v3.version,
            created_ns: v3.created_ns,
            modified_ns: v3.modified_ns,
            changed_ns: v3.changed_ns,
            accessed_ns: v3.modified_ns,
            size_bytes: v3.size_bytes,
            digest: v3.digest,
            chunks: v3.chunks,
            parent: v3.parent,
            xattr_bytes: v3.xattr_bytes,
        }
    }
}

/// The record of format 3 (no access time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeV3 {
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub version: u64,
    pub created_ns: u64,
    pub modified_ns: u64,
    pub changed_ns: u64,
    pub size_bytes: u64,
    pub digest: Option<ChunkId>,
    pub chunks: Vec<ChunkRef>,
    pub parent: FileId,
    pub xattr_bytes: u32,
}

impl Versioned for InodeV3 {
    const NAME: &'static str = "inode";
    const FORMAT: u8 = 3;
    // Formats 1 and 2 named owners by name; turning names into ids needs
    // the user table, so they are upgraded with the whole state when the
    // database is opened (`upgrade.rs`).
    type Previous = Initial;
    fn upgrade(previous: Initial) -> InodeV3 {
        match previous {}
    }
}

impl Inode {
    pub fn new_dir(now_ns: u64, who: &Principal, mode: u32, parent: FileId) -> Inode {
        Inode::new(EntryKind::Dir, now_ns, who, mode, parent)
    }

    pub fn new_file(now_ns: u64, who: &Principal, mode: u32, parent: FileId) -> Inode {
        Inode::new(EntryKind::File, now_ns, who, mode, parent)
    }

    /// A symbolic link, named pipe, socket or device node (no contents; a
    /// link's size is its target's length).
    pub fn new_node(
        kind: EntryKind,
        now_ns: u64,
        who: &Principal,
        mode: u32,
        parent: FileId,
        target: Option<String>,
        rdev: u64,
    ) -> Inode {
        assert!(
            kind.is_node(),
            "files and directories have their own makers"
        );
        assert_eq!(kind == EntryKind::Symlink, target.is_some());
        let mut inode = Inode::new(kind, now_ns, who, mode, parent);
        inode.size_bytes = target.as_ref().map_or(0, |t| t.len() as u64);
        inode.target = target;
        inode.rdev = rdev;
        inode
    }

    fn new(kind: EntryKind, now_ns: u64, who: &Principal, mode: u32, parent: FileId) -> Inode {
        Inode {
            kind,
            mode,
            uid: who.uid,
            gid: who.primary_gid(),
            version: 1,
            created_ns: now_ns,
            modified_ns: now_ns,
            changed_ns: now_ns,
            accessed_ns: now_ns,
            size_bytes: 0,
            digest: None,
            chunks: Vec::new(),
            parent,
            xattr_bytes: 0,
            target: None,
            rdev: 0,
            subdirs: 0,
            names: 1,
        }
    }

    /// As made in directory `parent` by `who`: in a set-gid directory, the
    /// directory's group, and for a directory its set-gid bit too (a
    /// file's set-gid bit stays only if `who` is in that group).
    pub fn made_in(mut self, parent: &Inode, who: &Principal) -> Inode {
        if parent.mode & SET_GID == 0 {
            return self;
        }
        self.gid = parent.gid;
        if self.is_dir() {
            self.mode |= SET_GID;
        } else if self.mode & SET_GID != 0 && !who.admin && !who.in_group(self.gid) {
            self.mode &= !SET_GID;
        }
        self
    }

    /// With these contents (a file).
    pub fn with_contents(
        mut self,
        size_bytes: u64,
        digest: Option<ChunkId>,
        chunks: Vec<ChunkRef>,
    ) -> Inode {
        self.size_bytes = size_bytes;
        self.digest = digest;
        self.chunks = chunks;
        self
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    /// The POSIX link count: a directory's 2 + its subdirectories, the
    /// number of names of everything else.
    pub fn links(&self) -> u64 {
        if self.is_dir() {
            2 + self.subdirs
        } else {
            self.names
        }
    }

    /// A regular file: the only kind with contents.
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }

    /// Whether `who` has every bit of `want` on this object.
    pub fn allows(&self, who: &Principal, want: u32) -> bool {
        who.may(self.uid, self.gid, self.mode, want)
    }

    /// Records a change of the contents at `now_ns`: mtime and ctime.
    pub fn touch_contents(&mut self, now_ns: u64) {
        self.version += 1;
        self.modified_ns = now_ns;
        self.changed_ns = now_ns;
    }

    /// Records a change of attributes only (mode, owner, xattrs, links):
    /// ctime, not mtime.
    pub fn touch_attributes(&mut self, now_ns: u64) {
        self.version += 1;
        self.changed_ns = now_ns;
    }
}

/// Milliseconds for the API fields kept from before nanoseconds.
pub fn ns_to_ms(ns: u64) -> u64 {
    ns / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{decode, encode};

    #[test]
    fn a_format_4_record_reads_as_a_file_or_directory_without_target() {
        let v4 = InodeV4 {
            kind: EntryKind::File,
            mode: 0o640,
            uid: 1000,
            gid: 1000,
            version: 3,
            created_ns: 1,
            modified_ns: 2,
            changed_ns: 3,
            accessed_ns: 4,
            size_bytes: 5,
            digest: None,
            chunks: Vec::new(),
            parent: 1,
            xattr_bytes: 0,
        };
        let inode: Inode = decode(&encode(&v4)).unwrap();
        assert_eq!((inode.target, inode.rdev), (None, 0));
        assert_eq!(
            (inode.mode, inode.accessed_ns, inode.size_bytes),
            (0o640, 4, 5)
        );
        // And what is written now is format 6, read back whole.
        let link = Inode::new_node(
            EntryKind::Symlink,
            7,
            &Principal::system(),
            0o777,
            1,
            Some("../t".into()),
            0,
        );
        assert_eq!(encode(&link)[0], 6);
        assert_eq!(decode::<Inode>(&encode(&link)).unwrap(), link);
        assert_eq!(link.size_bytes, 4);
    }
}
