//! What the state machine has applied (the last log id and membership,
//! kept in `sm_meta` in the same transaction as the state), and the stored
//! snapshot (table `raft_snapshot`).

use openraft::{BasicNode, LogId, SnapshotMeta, StoredMembership};
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::records::{decode_raft, encode_raft};
use crate::state::SM_META;

use super::RaftNodeId;

pub const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const KEY_SNAPSHOT_META: &str = "meta";
const KEY_SNAPSHOT_DATA: &str = "data";
/// Keys in `sm_meta`, written with the state they describe.
pub const KEY_APPLIED: &str = "last_applied";
pub const KEY_MEMBERSHIP: &str = "membership";

pub type Membership = StoredMembership<RaftNodeId, BasicNode>;

pub fn read_applied(db: &Database) -> Result<(Option<LogId<RaftNodeId>>, Membership), String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = txn.open_table(SM_META).map_err(|e| e.to_string())?;
    let applied = match table.get(KEY_APPLIED).map_err(|e| e.to_string())? {
        Some(v) => decode_raft(v.value())?,
        None => None,
    };
    let membership = match table.get(KEY_MEMBERSHIP).map_err(|e| e.to_string())? {
        Some(v) => decode_raft(v.value())?,
        None => Membership::default(),
    };
    Ok((applied, membership))
}

/// A snapshot as stored: openraft's description and the body.
pub struct StoredSnapshot {
    pub meta: SnapshotMeta<RaftNodeId, BasicNode>,
    pub data: Vec<u8>,
}

pub fn save_snapshot(
    table: &mut redb::Table<&'static str, &'static [u8]>,
    stored: &StoredSnapshot,
) -> Result<(), String> {
    table
        .insert(KEY_SNAPSHOT_META, encode_raft(&stored.meta).as_slice())
        .map_err(|e| e.to_string())?;
    table
        .insert(KEY_SNAPSHOT_DATA, stored.data.as_slice())
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The stored snapshot, if one was built or installed.
pub fn load_snapshot(db: &Database) -> Result<Option<StoredSnapshot>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
    let Some(meta) = table.get(KEY_SNAPSHOT_META).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let meta = decode_raft(meta.value())?;
    let data = table
        .get(KEY_SNAPSHOT_DATA)
        .map_err(|e| e.to_string())?
        .ok_or("snapshot data is missing")?
        .value()
        .to_vec();
    Ok(Some(StoredSnapshot { meta, data }))
}
