//! Snapshots: every row of every state-machine table, built in memory and
//! shipped in pieces. Installing one replaces the state whole and upgrades
//! it if an older member built it.
//!
//! The body ([`SnapshotBody`], format 2) lists tables by name with their
//! rows as redb encodes keys and values, so a new table needs only a line
//! in [`for_each_table!`]. Bodies of earlier releases (format 1, with their
//! own inner format 1 to 3 and a field per table) are still read.

use std::borrow::Borrow;

use openraft::SnapshotMeta;
use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    Value, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::records::{decode, encode, encode_raft, Versioned};
use crate::state::{
    Tables, AUTH, CHUNK_REFS, DIRENTS, HELD, HELD_BY_SESSION, INODES, LINKS, ORPHANS, REQUESTS,
    REQUESTS_BY_TIME, SM_META, XATTRS,
};

use super::applied::{
    read_applied, save_snapshot, StoredSnapshot, KEY_APPLIED, KEY_MEMBERSHIP, SNAPSHOT,
};

/// Calls `$f!(definition)` for every table of the state machine.
macro_rules! for_each_table {
    ($f:ident) => {
        $f!(INODES);
        $f!(DIRENTS);
        $f!(XATTRS);
        $f!(LINKS);
        $f!(HELD);
        $f!(HELD_BY_SESSION);
        $f!(ORPHANS);
        $f!(SM_META);
        $f!(CHUNK_REFS);
        $f!(REQUESTS);
        $f!(REQUESTS_BY_TIME);
        $f!(AUTH);
    };
}

/// One table's rows, keys and values as redb encodes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    pub name: String,
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A snapshot's body (format 2): every table, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub tables: Vec<TableRows>,
}

impl Versioned for SnapshotBody {
    const NAME: &'static str = "snapshot";
    const FORMAT: u8 = 2;
    type Previous = SnapshotBodyV1;
    fn upgrade(old: SnapshotBodyV1) -> SnapshotBody {
        let mut tables = Vec::new();
        let mut add = |name: &str, rows: Vec<(Vec<u8>, Vec<u8>)>| {
            tables.push(TableRows {
                name: name.to_string(),
                rows,
            })
        };
        add(
            INODES.name(),
            old.inodes
                .into_iter()
                .map(|(id, value)| (key_bytes::<u64>(&id), value))
                .collect(),
        );
        add(
            DIRENTS.name(),
            old.dirents
                .iter()
                .map(|(parent, name, child)| {
                    (
                        key_bytes::<(u64, &str)>(&(*parent, name.as_str())),
                        key_bytes::<u64>(child),
                    )
                })
                .collect(),
        );
        add(
            SM_META.name(),
            old.meta
                .iter()
                .map(|(k, v)| (key_bytes::<&str>(&k.as_str()), v.clone()))
                .collect(),
        );
        add(
            CHUNK_REFS.name(),
            old.chunk_refs
                .iter()
                .map(|(id, count)| (key_bytes::<[u8; 32]>(id), key_bytes::<u64>(count)))
                .collect(),
        );
        add(
            REQUESTS.name(),
            old.requests
                .iter()
                .map(|(id, _, record)| (key_bytes::<u128>(id), record.clone()))
                .collect(),
        );
        // The legacy outcomes are indexed by milliseconds: the state
        // upgrade that follows the install turns them into nanoseconds.
        add(
            REQUESTS_BY_TIME.name(),
            old.requests
                .iter()
                .map(|(id, at_ms, _)| (key_bytes::<(u64, u128)>(&(*at_ms, *id)), Vec::new()))
                .collect(),
        );
        add(AUTH.name(), old.auth);
        SnapshotBody { tables }
    }
}

fn key_bytes<K: Value + 'static>(value: &K::SelfType<'_>) -> Vec<u8> {
    K::as_bytes(value).as_ref().to_vec()
}

/// The body of earlier releases: marker 1, then its own format (1: no
/// request outcomes; 2: no users; 3: everything) and a field per table.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SnapshotBodyV1 {
    format: u8,
    inodes: Vec<(u64, Vec<u8>)>,
    dirents: Vec<(u64, String, u64)>,
    meta: Vec<(String, Vec<u8>)>,
    chunk_refs: Vec<([u8; 32], u64)>,
    /// (request id, applied ms, outcome record).
    requests: Vec<(u128, u64, Vec<u8>)>,
    auth: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Versioned for SnapshotBodyV1 {
    const NAME: &'static str = "snapshot";
    const FORMAT: u8 = 1;
    type Previous = crate::records::Initial;
    fn upgrade(previous: crate::records::Initial) -> SnapshotBodyV1 {
        match previous {}
    }

    /// Each inner format has the fields before it, and fewer after.
    fn decode_body(body: &[u8]) -> Result<SnapshotBodyV1, String> {
        type Tables1 = (
            u8,
            Vec<(u64, Vec<u8>)>,
            Vec<(u64, String, u64)>,
            Vec<(String, Vec<u8>)>,
            Vec<([u8; 32], u64)>,
        );
        let (format, inodes, dirents, meta, chunk_refs): Tables1 =
            postcard::from_bytes(body).map_err(|e| e.to_string())?;
        let mut old = SnapshotBodyV1 {
            format,
            inodes,
            dirents,
            meta,
            chunk_refs,
            ..SnapshotBodyV1::default()
        };
        match format {
            1 => {}
            2 => {
                let (.., requests): (u8, Tables1Rest, Requests1) =
                    postcard::from_bytes(body).map_err(|e| e.to_string())?;
                old.requests = requests;
            }
            3 => old = postcard::from_bytes(body).map_err(|e| e.to_string())?,
            newer => {
                return Err(format!(
                    "inner format {newer} is newer than this binary understands (3); upgrade cairn"
                ))
            }
        }
        Ok(old)
    }
}

/// (request id, applied ms, outcome record) of a legacy body.
type Requests1 = Vec<(u128, u64, Vec<u8>)>;

/// The four tables every legacy body has after its format byte.
type Tables1Rest = (
    Vec<(u64, Vec<u8>)>,
    Vec<(u64, String, u64)>,
    Vec<(String, Vec<u8>)>,
    Vec<([u8; 32], u64)>,
);

/// Builds a snapshot of the applied state and stores it.
pub fn build(db: &Database) -> Result<StoredSnapshot, String> {
    let (applied, membership) = read_applied(db)?;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let mut body = SnapshotBody { tables: Vec::new() };
    macro_rules! dump_table {
        ($def:expr) => {
            body.tables.push(dump(&txn, $def)?)
        };
    }
    for_each_table!(dump_table);
    drop(txn);
    let snapshot_id = match &applied {
        Some(id) => format!("{}-{}", id.leader_id, id.index),
        None => "empty".to_string(),
    };
    let stored = StoredSnapshot {
        meta: SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        },
        data: encode(&body),
    };
    // A durable commit: it also makes every applied entry durable, which
    // must hold before openraft purges the log up to this snapshot.
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
        save_snapshot(&mut table, &stored)?;
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(stored)
}

/// Replaces the whole state with a snapshot's, upgrades it if an older
/// member built it, and stores the snapshot, in one transaction.
pub fn install(db: &Database, stored: &StoredSnapshot) -> Result<(), String> {
    let body: SnapshotBody = decode(&stored.data).map_err(|e| e.to_string())?;
    let known = [
        INODES.name(),
        DIRENTS.name(),
        XATTRS.name(),
        LINKS.name(),
        HELD.name(),
        HELD_BY_SESSION.name(),
        ORPHANS.name(),
        SM_META.name(),
        CHUNK_REFS.name(),
        REQUESTS.name(),
        REQUESTS_BY_TIME.name(),
        AUTH.name(),
    ];
    if let Some(unknown) = body
        .tables
        .iter()
        .find(|t| !known.contains(&t.name.as_str()))
    {
        return Err(format!(
            "the snapshot has a table {:?} this binary does not know; upgrade cairn",
            unknown.name
        ));
    }
    let no_rows = Vec::new();
    let rows_of = |name: &str| {
        body.tables
            .iter()
            .find(|t| t.name == name)
            .map_or(&no_rows, |t| &t.rows)
    };
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        macro_rules! restore_table {
            ($def:expr) => {
                restore(&txn, $def, rows_of($def.name()))?
            };
        }
        for_each_table!(restore_table);
        let mut meta = txn.open_table(SM_META).map_err(|e| e.to_string())?;
        meta.insert(
            KEY_APPLIED,
            encode_raft(&stored.meta.last_log_id).as_slice(),
        )
        .map_err(|e| e.to_string())?;
        meta.insert(
            KEY_MEMBERSHIP,
            encode_raft(&stored.meta.last_membership).as_slice(),
        )
        .map_err(|e| e.to_string())?;
        drop(meta);
        Tables::open(&txn)
            .and_then(|mut tables| tables.initialize_or_upgrade())
            .map_err(|e| e.to_string())?;
        let mut snapshot = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
        save_snapshot(&mut snapshot, stored)?;
    }
    txn.commit().map_err(|e| e.to_string())
}

fn dump<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<TableRows, String> {
    let table = txn.open_table(definition).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for row in table.iter().map_err(|e| e.to_string())? {
        let (key, value) = row.map_err(|e| e.to_string())?;
        rows.push((
            K::as_bytes(&key.value()).as_ref().to_vec(),
            V::as_bytes(&value.value()).as_ref().to_vec(),
        ));
    }
    Ok(TableRows {
        name: definition.name().to_string(),
        rows,
    })
}

fn restore<K: Key + 'static, V: Value + 'static>(
    txn: &WriteTransaction,
    definition: TableDefinition<K, V>,
    rows: &[(Vec<u8>, Vec<u8>)],
) -> Result<(), String> {
    let mut table = txn.open_table(definition).map_err(|e| e.to_string())?;
    table.retain(|_, _| false).map_err(|e| e.to_string())?;
    for (key, value) in rows {
        let key = K::from_bytes(key);
        let value = V::from_bytes(value);
        table
            .insert(key.borrow(), value.borrow())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Request};
    use cairn_proto::api::MkdirRequest;
    use openraft::{Entry, EntryPayload, LogId};

    fn apply_command(db: &Database, index: u64, request_id: Option<u128>, command: Command) {
        let entry = Entry::<crate::TypeConfig> {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request::new(
                1_000_000_000 + index,
                request_id,
                None,
                command,
            )),
        };
        super::super::apply_entries(db, vec![entry]).unwrap();
    }

    fn mkdir(db: &Database, index: u64, request_id: Option<u128>, path: &str) {
        let command = Command::Mkdir(MkdirRequest {
            path: path.into(),
            parents: false,
            mode: None,
        });
        apply_command(db, index, request_id, command);
    }

    /// Every table's rows but the Raft bookkeeping in `sm_meta` (which a
    /// snapshot carries in its description, not in its body).
    fn rows(db: &Database) -> Vec<TableRows> {
        let txn = db.begin_read().unwrap();
        let mut tables = Vec::new();
        macro_rules! dump_table {
            ($def:expr) => {
                tables.push(dump(&txn, $def).unwrap())
            };
        }
        for_each_table!(dump_table);
        let raft_keys = [KEY_APPLIED.as_bytes(), KEY_MEMBERSHIP.as_bytes()];
        for table in &mut tables {
            table
                .rows
                .retain(|(key, _)| !raft_keys.contains(&key.as_slice()));
        }
        tables
    }

    #[test]
    fn a_snapshot_carries_every_table() {
        let dir = tempfile::tempdir().unwrap();
        let source = crate::store::open_database(&dir.path().join("a.redb")).unwrap();
        mkdir(&source, 1, Some(42), "/a");
        let bootstrap = Command::BootstrapAdmin {
            password_hash: "$argon2id$stand-in".into(),
        };
        apply_command(&source, 2, None, bootstrap);
        let session = Command::CreateSession {
            token_hash: [7; 32],
            name: "admin".into(),
            expires_ms: u64::MAX,
            user_version: 1,
        };
        apply_command(&source, 3, None, session);
        mkdir(&source, 4, None, "/b");
        let snapshot = build(&source).unwrap();

        let target = crate::store::open_database(&dir.path().join("b.redb")).unwrap();
        mkdir(&target, 1, Some(7), "/stale");
        install(&target, &snapshot).unwrap();
        assert_eq!(rows(&target), rows(&source));
        let requests = rows(&target)
            .into_iter()
            .find(|t| t.name == REQUESTS.name())
            .unwrap();
        assert_eq!(requests.rows.len(), 1, "the outcome of request 42 only");
        let (applied, _) = read_applied(&target).unwrap();
        assert_eq!(applied.map(|l| l.index), Some(4));
        // A retried request is answered from the installed table.
        mkdir(&target, 5, Some(42), "/a");
        let (applied, _) = read_applied(&target).unwrap();
        assert_eq!(applied.map(|l| l.index), Some(5));
        let dirents = |db: &Database| {
            rows(db)
                .into_iter()
                .find(|t| t.name == DIRENTS.name())
                .unwrap()
        };
        assert_eq!(dirents(&target), dirents(&source));
    }

    #[test]
    fn bodies_of_the_earlier_format_are_read_and_newer_ones_refused() {
        #[derive(Serialize)]
        struct V1 {
            format: u8,
            inodes: Vec<(u64, Vec<u8>)>,
            dirents: Vec<(u64, String, u64)>,
            meta: Vec<(String, Vec<u8>)>,
            chunk_refs: Vec<([u8; 32], u64)>,
        }
        let v1 = V1 {
            format: 1,
            inodes: vec![(1, vec![1, 2])],
            dirents: vec![(1, "x".into(), 2)],
            meta: vec![],
            chunk_refs: vec![],
        };
        let mut bytes = vec![1u8];
        bytes.extend(postcard::to_stdvec(&v1).unwrap());
        let body: SnapshotBody = decode(&bytes).unwrap();
        let dirents = body.tables.iter().find(|t| t.name == "dirents").unwrap();
        assert_eq!(dirents.rows.len(), 1);
        let inodes = body.tables.iter().find(|t| t.name == "inodes").unwrap();
        assert_eq!(inodes.rows, vec![(1u64.to_le_bytes().to_vec(), vec![1, 2])]);
        // An inner format from the future.
        bytes[1] = 9;
        let refused = decode::<SnapshotBody>(&bytes).unwrap_err().to_string();
        assert!(refused.contains("newer"), "{refused}");
        // A body format from the future.
        let mut future = encode(&SnapshotBody { tables: vec![] });
        future[0] = 3;
        assert!(decode::<SnapshotBody>(&future)
            .unwrap_err()
            .to_string()
            .contains("newer"));
    }
}
