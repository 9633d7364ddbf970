//! The state machine's redb tables, and the two ways to hold them: all of
//! them in a write transaction ([`Tables`]), or the namespace's in either
//! kind of transaction ([`View`], for path resolution and reads).
//!
//! Tables (every value record is [`crate::records`]-encoded unless said):
//! - `inodes`: id -> `Inode`
//! - `dirents`: (parent id, entry key) -> child id. The entry key is the
//!   name, with a `/` appended for a directory: entries then sort in the
//!   byte order of their full paths, the order S3 lists keys in, and a
//!   directory's key says it is one. Names never hold `/`, so a file and
//!   a directory can never share a key.
//! - `xattrs`: (inode id, attribute name) -> value bytes (raw)
//! - `links`: (inode id, directory id, name) -> (): every name of a file
//!   with more than one (hard links); no rows for a file with one name.
//!   Finds the names left when one goes, so `parent` can follow them.
//! - `orphans`: id -> `Orphan`: roots of removed trees still being deleted
//! - `held`: id -> `Held`: files removed while a client had them open,
//!   kept (nameless) until it releases them or its session ends;
//!   `held_by_session`: (session token hash, id) -> (), to end them
//! - `chunk_refs`: chunk id -> number of file records listing it (absent:
//!   none; chunk servers may collect it after their grace period)
//! - `requests`: request id -> `RequestOutcome`; `requests_by_time`:
//!   (applied ns, id) -> (), to forget old ones
//! - `auth`: users, groups and sessions (`users.rs`)
//! - `sm_meta`: name -> counters (8 little-endian bytes), the cluster map,
//!   removed node ids, the state format, and the Raft bookkeeping kept by
//!   `store.rs`

use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction,
};

use crate::records::StateError;

pub const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
pub const DIRENTS: TableDefinition<(u64, &str), u64> = TableDefinition::new("dirents");
pub const XATTRS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("xattrs");
pub const LINKS: TableDefinition<(u64, u64, &str), ()> = TableDefinition::new("links");
pub const ORPHANS: TableDefinition<u64, &[u8]> = TableDefinition::new("orphans");
pub const HELD: TableDefinition<u64, &[u8]> = TableDefinition::new("held");
pub const HELD_BY_SESSION: TableDefinition<([u8; 32], u64), ()> =
    TableDefinition::new("held_by_session");
pub const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
pub const CHUNK_REFS: TableDefinition<[u8; 32], u64> = TableDefinition::new("chunk_refs");
pub const REQUESTS: TableDefinition<u128, &[u8]> = TableDefinition::new("requests");
pub const REQUESTS_BY_TIME: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("requests_by_time");
pub const AUTH: TableDefinition<&[u8], &[u8]> = TableDefinition::new("auth");

/// Rows of each namespace table, from a read or a write transaction.
pub trait InodeRows: ReadableTable<u64, &'static [u8]> {}
impl<T: ReadableTable<u64, &'static [u8]>> InodeRows for T {}
pub trait EntryRows: ReadableTable<(u64, &'static str), u64> {}
impl<T: ReadableTable<(u64, &'static str), u64>> EntryRows for T {}
pub trait AuthRows: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> AuthRows for T {}
pub trait XattrRows: ReadableTable<(u64, &'static str), &'static [u8]> {}
impl<T: ReadableTable<(u64, &'static str), &'static [u8]>> XattrRows for T {}
pub trait LinkRows: ReadableTable<(u64, u64, &'static str), ()> {}
impl<T: ReadableTable<(u64, u64, &'static str), ()>> LinkRows for T {}
pub trait MetaRows: ReadableTable<&'static str, &'static [u8]> {}
impl<T: ReadableTable<&'static str, &'static [u8]>> MetaRows for T {}

/// The tables a path resolution or a namespace read needs. Its methods
/// (`view.rs`) work the same in a read transaction and inside a command.
pub struct View<I, D, A, X, L> {
    pub inodes: I,
    pub dirents: D,
    pub auth: A,
    pub xattrs: X,
    pub links: L,
    /// `held`: the same shape of rows as `inodes`.
    pub held: I,
}

/// The namespace in a read transaction.
pub type ReadView = View<
    ReadOnlyTable<u64, &'static [u8]>,
    ReadOnlyTable<(u64, &'static str), u64>,
    ReadOnlyTable<&'static [u8], &'static [u8]>,
    ReadOnlyTable<(u64, &'static str), &'static [u8]>,
    ReadOnlyTable<(u64, u64, &'static str), ()>,
>;

/// The namespace in a write transaction.
pub type WriteView<'txn> = View<
    Table<'txn, u64, &'static [u8]>,
    Table<'txn, (u64, &'static str), u64>,
    Table<'txn, &'static [u8], &'static [u8]>,
    Table<'txn, (u64, &'static str), &'static [u8]>,
    Table<'txn, (u64, u64, &'static str), ()>,
>;

impl ReadView {
    pub fn open(txn: &ReadTransaction) -> Result<ReadView, StateError> {
        Ok(View {
            inodes: txn.open_table(INODES)?,
            dirents: txn.open_table(DIRENTS)?,
            auth: txn.open_table(AUTH)?,
            xattrs: txn.open_table(XATTRS)?,
            links: txn.open_table(LINKS)?,
            held: txn.open_table(HELD)?,
        })
    }
}

/// Every state-machine table, opened in one write transaction: what a
/// command applies to.
pub struct Tables<'txn> {
    pub ns: WriteView<'txn>,
    pub orphans: Table<'txn, u64, &'static [u8]>,
    pub held_by_session: Table<'txn, ([u8; 32], u64), ()>,
    pub meta: Table<'txn, &'static str, &'static [u8]>,
    pub chunk_refs: Table<'txn, [u8; 32], u64>,
    pub requests: Table<'txn, u128, &'static [u8]>,
    pub requests_by_time: Table<'txn, (u64, u128), ()>,
}

impl<'txn> Tables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, StateError> {
        Ok(Tables {
            ns: View {
                inodes: txn.open_table(INODES)?,
                dirents: txn.open_table(DIRENTS)?,
                auth: txn.open_table(AUTH)?,
                xattrs: txn.open_table(XATTRS)?,
                links: txn.open_table(LINKS)?,
                held: txn.open_table(HELD)?,
            },
            held_by_session: txn.open_table(HELD_BY_SESSION)?,
            orphans: txn.open_table(ORPHANS)?,
            meta: txn.open_table(SM_META)?,
            chunk_refs: txn.open_table(CHUNK_REFS)?,
            requests: txn.open_table(REQUESTS)?,
            requests_by_time: txn.open_table(REQUESTS_BY_TIME)?,
        })
    }
}

/// The key of an entry named `name` in its directory's rows.
pub fn entry_key(name: &str, is_dir: bool) -> std::borrow::Cow<'_, str> {
    if is_dir {
        std::borrow::Cow::Owned(format!("{name}/"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// The name in an entry key, and whether it names a directory.
pub fn entry_name(key: &str) -> (&str, bool) {
    match key.strip_suffix('/') {
        Some(name) => (name, true),
        None => (key, false),
    }
}

/// A counter in `sm_meta` (8 little-endian bytes).
pub fn get_counter(meta: &impl MetaRows, key: &str) -> Result<u64, StateError> {
    let guard = meta
        .get(key)?
        .ok_or_else(|| StateError::Corrupt(format!("counter {key} is missing")))?;
    let bytes: [u8; 8] = guard
        .value()
        .try_into()
        .map_err(|_| StateError::Corrupt(format!("counter {key} is not 8 bytes")))?;
    Ok(u64::from_le_bytes(bytes))
}

/// A counter that may be absent (as in a database from before it): 0.
pub fn get_counter_or_zero(meta: &impl MetaRows, key: &str) -> Result<u64, StateError> {
    match meta.get(key)? {
        Some(_) => get_counter(meta, key),
        None => Ok(0),
    }
}

pub fn put_counter(
    meta: &mut Table<'_, &'static str, &'static [u8]>,
    key: &str,
    value: u64,
) -> Result<(), StateError> {
    meta.insert(key, value.to_le_bytes().as_slice())?;
    Ok(())
}

/// Names of the counters and singletons in `sm_meta`.
pub mod keys {
    pub const NEXT_ID: &str = "next_id";
    pub const FILE_COUNT: &str = "file_count";
    pub const DIR_COUNT: &str = "dir_count";
    pub const USER_COUNT: &str = "user_count";
    pub const GROUP_COUNT: &str = "group_count";
    pub const NEXT_UID: &str = "next_uid";
    pub const NEXT_GID: &str = "next_gid";
    pub const MAP: &str = "cluster_map";
    /// Ids of nodes removed from the map: they may not register again.
    pub const REMOVED_NODES: &str = "removed_nodes";
    /// The state's format (`upgrade.rs`); absent in databases from before it.
    pub const STATE_FORMAT: &str = "state_format";
}
