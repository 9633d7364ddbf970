//! openraft storage on redb: the replicated log ([`LogStore`]) and the state
//! machine ([`StateMachine`]) share one redb file, `meta.redb`.
//!
//! Durability: log appends and votes commit with `Durability::Immediate`
//! (fsync) before openraft is told they are flushed. State-machine applies
//! commit with `Durability::None`: they become durable with the next log
//! append (a durable commit persists everything before it), and if the
//! process dies first, the applied index rolls back with the data in the
//! same transaction, so openraft re-applies those entries from the log.
//! Snapshots commit durably before openraft may purge the log below them.
//!
//! redb calls block (an fsync takes milliseconds), so every write runs on
//! tokio's blocking pool, not on the runtime's two worker threads.

// openraft's StorageError is large; it is the trait's error type, not ours to shrink.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::auth::AUTH;
use crate::state::{
    self, decode, encode, Output, StateError, Tables, CHUNK_REFS, DIRENTS, INODES, REQUESTS,
    REQUESTS_BY_TIME, SM_META,
};
use crate::TypeConfig;

pub type RaftNodeId = u64;
type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
const KEY_APPLIED: &str = "last_applied";
const KEY_MEMBERSHIP: &str = "membership";
const KEY_SNAPSHOT_META: &str = "meta";
const KEY_SNAPSHOT_DATA: &str = "data";

/// Opens (or creates) the metadata database and makes sure every table and
/// the initial namespace (root directory, default map) exist.
pub fn open_database(path: &std::path::Path) -> Result<Arc<Database>, StateError> {
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    {
        txn.open_table(LOG)?;
        txn.open_table(RAFT_META)?;
        txn.open_table(SNAPSHOT)?;
        let mut tables = Tables::open(&txn)?;
        tables.ensure_initialized()?;
    }
    txn.commit()?;
    Ok(Arc::new(db))
}

fn io_error(
    subject: ErrorSubject<RaftNodeId>,
    verb: ErrorVerb,
    error: impl std::fmt::Display,
) -> StorageError<RaftNodeId> {
    StorageIOError::new(subject, verb, AnyError::error(error.to_string())).into()
}

fn read_logs_error(e: impl std::fmt::Display) -> StorageError<RaftNodeId> {
    io_error(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_logs_error(e: impl std::fmt::Display) -> StorageError<RaftNodeId> {
    io_error(ErrorSubject::Logs, ErrorVerb::Write, e)
}

fn sm_error(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<RaftNodeId> {
    io_error(ErrorSubject::StateMachine, verb, e)
}

// Raft's own records go through JSON: openraft's types are designed for
// self-describing formats, and these records are small and rare.
fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("raft records serialize to JSON")
}

fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("metadata storage task panicked")
}

fn read_raft_meta<T: for<'de> Deserialize<'de>>(
    db: &Database,
    key: &str,
) -> Result<Option<T>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = txn.open_table(RAFT_META).map_err(|e| e.to_string())?;
    let Some(bytes) = table.get(key).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    from_json(bytes.value())
        .map(Some)
        .map_err(|e| e.to_string())
}

fn write_raft_meta<T: Serialize>(
    db: &Database,
    key: &str,
    value: &T,
    durability: Durability,
) -> Result<(), String> {
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(durability).map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(RAFT_META).map_err(|e| e.to_string())?;
        table
            .insert(key, to_json(value).as_slice())
            .map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())
}

/// The replicated log.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let db = self.db.clone();
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        blocking(move || {
            let txn = db.begin_read().map_err(read_logs_error)?;
            let table = txn.open_table(LOG).map_err(read_logs_error)?;
            let mut entries = Vec::new();
            for row in table.range::<u64>(bounds).map_err(read_logs_error)? {
                let (_, value) = row.map_err(read_logs_error)?;
                entries.push(from_json(value.value()).map_err(read_logs_error)?);
            }
            Ok(entries)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let db = self.db.clone();
        blocking(move || {
            let last_purged: Option<LogId<RaftNodeId>> =
                read_raft_meta(&db, KEY_PURGED).map_err(read_logs_error)?;
            let txn = db.begin_read().map_err(read_logs_error)?;
            let table = txn.open_table(LOG).map_err(read_logs_error)?;
            let last = match table.last().map_err(read_logs_error)? {
                Some((_, value)) => {
                    let entry: Entry<TypeConfig> =
                        from_json(value.value()).map_err(read_logs_error)?;
                    Some(entry.log_id)
                }
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> StorageResult<()> {
        let db = self.db.clone();
        let vote = *vote;
        blocking(move || write_raft_meta(&db, KEY_VOTE, &vote, Durability::Immediate))
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<RaftNodeId>>> {
        let db = self.db.clone();
        blocking(move || read_raft_meta(&db, KEY_VOTE))
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    /// Not fsynced: fsyncing it would double the fsyncs of every metadata
    /// write. Losing it in a crash is safe because it only tells a restart how
    /// far to re-apply early; committed entries are in the durable log. A
    /// member that led before a crash resumes leading the same term with
    /// this possibly stale index and no new entry, so a consistent read
    /// (`server.rs`, `confirm_leader`) also waits until the leader's whole
    /// log is applied, as openraft asks of a non-durable committed index.
    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> StorageResult<()> {
        let db = self.db.clone();
        blocking(move || write_raft_meta(&db, KEY_COMMITTED, &committed, Durability::None))
            .await
            .map_err(write_logs_error)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<RaftNodeId>>> {
        let db = self.db.clone();
        let committed: Option<Option<LogId<RaftNodeId>>> =
            blocking(move || read_raft_meta(&db, KEY_COMMITTED))
                .await
                .map_err(read_logs_error)?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let db = self.db.clone();
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, to_json(&e)))
            .collect();
        let result = blocking(move || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LOG)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_logs_error(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        let db = self.db.clone();
        blocking(move || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LOG)?;
                table.retain_in::<u64, _>(log_id.index.., |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(write_logs_error)
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        let db = self.db.clone();
        blocking(move || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut meta = txn.open_table(RAFT_META)?;
                meta.insert(KEY_PURGED, to_json(&Some(log_id)).as_slice())?;
                let mut table = txn.open_table(LOG)?;
                table.retain_in::<u64, _>(..=log_id.index, |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(write_logs_error)
    }
}

/// A snapshot as stored and shipped: every state-machine row.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    /// [`SNAPSHOT_V3`]: the body with `auth` (what this binary writes).
    format: u8,
    inodes: Vec<(u64, Vec<u8>)>,
    dirents: Vec<(u64, String, u64)>,
    meta: Vec<(String, Vec<u8>)>,
    chunk_refs: Vec<([u8; 32], u64)>,
    /// (request id, applied ms, outcome record).
    requests: Vec<(u128, u64, Vec<u8>)>,
    /// Users and sessions: the rows of the `auth` table.
    auth: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The body before users existed (format 2).
#[derive(Deserialize)]
struct SnapshotBodyV2 {
    inodes: Vec<(u64, Vec<u8>)>,
    dirents: Vec<(u64, String, u64)>,
    meta: Vec<(String, Vec<u8>)>,
    chunk_refs: Vec<([u8; 32], u64)>,
    requests: Vec<(u128, u64, Vec<u8>)>,
}

/// The body written before request ids existed (format 1): read so that a
/// snapshot stored by an older binary can still be installed or shipped.
#[derive(Deserialize)]
struct SnapshotBodyV1 {
    inodes: Vec<(u64, Vec<u8>)>,
    dirents: Vec<(u64, String, u64)>,
    meta: Vec<(String, Vec<u8>)>,
    chunk_refs: Vec<([u8; 32], u64)>,
}

const SNAPSHOT_V1: u8 = 1;
const SNAPSHOT_V2: u8 = 2;
const SNAPSHOT_V3: u8 = 3;

impl SnapshotBody {
    /// Decodes either format: the `format` field comes first in both.
    fn decode(bytes: &[u8]) -> Result<SnapshotBody, String> {
        #[derive(Deserialize)]
        struct Head {
            format: u8,
        }
        let head: Head = decode(bytes).map_err(|e| e.to_string())?;
        match head.format {
            SNAPSHOT_V1 => {
                let (_, v1): (u8, SnapshotBodyV1) = decode(bytes).map_err(|e| e.to_string())?;
                Ok(SnapshotBody {
                    format: SNAPSHOT_V3,
                    inodes: v1.inodes,
                    dirents: v1.dirents,
                    meta: v1.meta,
                    chunk_refs: v1.chunk_refs,
                    requests: Vec::new(),
                    auth: Vec::new(),
                })
            }
            SNAPSHOT_V2 => {
                let (_, v2): (u8, SnapshotBodyV2) = decode(bytes).map_err(|e| e.to_string())?;
                Ok(SnapshotBody {
                    format: SNAPSHOT_V3,
                    inodes: v2.inodes,
                    dirents: v2.dirents,
                    meta: v2.meta,
                    chunk_refs: v2.chunk_refs,
                    requests: v2.requests,
                    auth: Vec::new(),
                })
            }
            SNAPSHOT_V3 => decode(bytes).map_err(|e| e.to_string()),
            other => Err(format!(
                "snapshot format {other} is newer than this binary understands ({SNAPSHOT_V3}); upgrade cairn"
            )),
        }
    }
}

struct StoredSnapshot {
    meta: SnapshotMeta<RaftNodeId, BasicNode>,
    data: Vec<u8>,
}

/// The namespace state machine as openraft sees it.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
}

impl StateMachine {
    pub fn new(db: Arc<Database>) -> StateMachine {
        StateMachine { db }
    }
}

type Membership = StoredMembership<RaftNodeId, BasicNode>;

fn read_applied(db: &Database) -> Result<(Option<LogId<RaftNodeId>>, Membership), String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = txn.open_table(SM_META).map_err(|e| e.to_string())?;
    let applied = match table.get(KEY_APPLIED).map_err(|e| e.to_string())? {
        Some(v) => from_json(v.value()).map_err(|e| e.to_string())?,
        None => None,
    };
    let membership = match table.get(KEY_MEMBERSHIP).map_err(|e| e.to_string())? {
        Some(v) => from_json(v.value()).map_err(|e| e.to_string())?,
        None => Membership::default(),
    };
    Ok((applied, membership))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<RaftNodeId>>, Membership)> {
        let db = self.db.clone();
        blocking(move || read_applied(&db))
            .await
            .map_err(|e| sm_error(ErrorVerb::Read, e))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<state::Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let db = self.db.clone();
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        blocking(move || apply_entries(&db, entries))
            .await
            .map_err(|e| sm_error(ErrorVerb::Write, e))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let db = self.db.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let last_index = meta.last_log_id.map(|l| l.index);
        tracing::info!(
            ?last_index,
            size_bytes = stored.data.len(),
            "installing a snapshot from the leader"
        );
        blocking(move || install(&db, &stored)).await.map_err(|e| {
            io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let db = self.db.clone();
        let stored = blocking(move || -> Result<Option<StoredSnapshot>, String> {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let table = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
            let Some(meta) = table.get(KEY_SNAPSHOT_META).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            let meta = from_json(meta.value()).map_err(|e| e.to_string())?;
            let data = table
                .get(KEY_SNAPSHOT_DATA)
                .map_err(|e| e.to_string())?
                .ok_or("snapshot data is missing")?
                .value()
                .to_vec();
            Ok(Some(StoredSnapshot { meta, data }))
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let db = self.db.clone();
        let stored = blocking(move || build(&db))
            .await
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

/// Applies entries in one transaction. A refused command (an `ApiError`)
/// wrote nothing (see `state.rs`), so the batch can go on after it.
fn apply_entries(
    db: &Database,
    entries: Vec<Entry<TypeConfig>>,
) -> Result<Vec<state::Response>, String> {
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::None)
        .map_err(|e| e.to_string())?;
    let mut responses = Vec::with_capacity(entries.len());
    {
        let mut tables = Tables::open(&txn).map_err(|e| e.to_string())?;
        let mut last_applied = None;
        for entry in entries {
            last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(Ok(Output::Nothing)),
                EntryPayload::Normal(request) => responses.push(
                    tables
                        .apply_request(&request)
                        .map_err(|fatal| fatal.to_string())?,
                ),
                EntryPayload::Membership(membership) => {
                    let stored = Membership::new(Some(entry.log_id), membership);
                    tables
                        .meta
                        .insert(KEY_MEMBERSHIP, to_json(&stored).as_slice())
                        .map_err(|e| e.to_string())?;
                    responses.push(Ok(Output::Nothing));
                }
            }
        }
        if let Some(log_id) = last_applied {
            tables
                .meta
                .insert(KEY_APPLIED, to_json(&Some(log_id)).as_slice())
                .map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(responses)
}

fn build(db: &Database) -> Result<StoredSnapshot, String> {
    let (applied, membership) = read_applied(db)?;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let mut body = SnapshotBody {
        format: SNAPSHOT_V3,
        inodes: Vec::new(),
        dirents: Vec::new(),
        meta: Vec::new(),
        chunk_refs: Vec::new(),
        requests: Vec::new(),
        auth: Vec::new(),
    };
    let inodes = txn.open_table(INODES).map_err(|e| e.to_string())?;
    for row in inodes.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        body.inodes.push((k.value(), v.value().to_vec()));
    }
    let dirents = txn.open_table(DIRENTS).map_err(|e| e.to_string())?;
    for row in dirents.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        let (parent, name) = k.value();
        body.dirents.push((parent, name.to_string(), v.value()));
    }
    let meta = txn.open_table(SM_META).map_err(|e| e.to_string())?;
    for row in meta.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        body.meta.push((k.value().to_string(), v.value().to_vec()));
    }
    let chunk_refs = txn.open_table(CHUNK_REFS).map_err(|e| e.to_string())?;
    for row in chunk_refs.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        body.chunk_refs.push((k.value(), v.value()));
    }
    let requests = txn.open_table(REQUESTS).map_err(|e| e.to_string())?;
    let requests_by_time = txn
        .open_table(REQUESTS_BY_TIME)
        .map_err(|e| e.to_string())?;
    for row in requests_by_time.iter().map_err(|e| e.to_string())? {
        let (k, _) = row.map_err(|e| e.to_string())?;
        let (at_ms, id) = k.value();
        let record = requests
            .get(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("request {id:032x} is indexed by time but has no record"))?;
        body.requests.push((id, at_ms, record.value().to_vec()));
    }
    let auth = txn.open_table(AUTH).map_err(|e| e.to_string())?;
    for row in auth.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        body.auth.push((k.value().to_vec(), v.value().to_vec()));
    }
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

fn install(db: &Database, stored: &StoredSnapshot) -> Result<(), String> {
    let body = SnapshotBody::decode(&stored.data)?;
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut inodes = txn.open_table(INODES).map_err(|e| e.to_string())?;
        inodes.retain(|_, _| false).map_err(|e| e.to_string())?;
        for (k, v) in &body.inodes {
            inodes.insert(*k, v.as_slice()).map_err(|e| e.to_string())?;
        }
        let mut dirents = txn.open_table(DIRENTS).map_err(|e| e.to_string())?;
        dirents.retain(|_, _| false).map_err(|e| e.to_string())?;
        for (parent, name, child) in &body.dirents {
            dirents
                .insert((*parent, name.as_str()), *child)
                .map_err(|e| e.to_string())?;
        }
        let mut meta = txn.open_table(SM_META).map_err(|e| e.to_string())?;
        meta.retain(|_, _| false).map_err(|e| e.to_string())?;
        for (k, v) in &body.meta {
            meta.insert(k.as_str(), v.as_slice())
                .map_err(|e| e.to_string())?;
        }
        meta.insert(KEY_APPLIED, to_json(&stored.meta.last_log_id).as_slice())
            .map_err(|e| e.to_string())?;
        meta.insert(
            KEY_MEMBERSHIP,
            to_json(&stored.meta.last_membership).as_slice(),
        )
        .map_err(|e| e.to_string())?;
        let mut chunk_refs = txn.open_table(CHUNK_REFS).map_err(|e| e.to_string())?;
        chunk_refs.retain(|_, _| false).map_err(|e| e.to_string())?;
        for (id, count) in &body.chunk_refs {
            chunk_refs.insert(*id, *count).map_err(|e| e.to_string())?;
        }
        let mut requests = txn.open_table(REQUESTS).map_err(|e| e.to_string())?;
        requests.retain(|_, _| false).map_err(|e| e.to_string())?;
        let mut requests_by_time = txn
            .open_table(REQUESTS_BY_TIME)
            .map_err(|e| e.to_string())?;
        requests_by_time
            .retain(|_, _| false)
            .map_err(|e| e.to_string())?;
        for (id, at_ms, record) in &body.requests {
            requests
                .insert(*id, record.as_slice())
                .map_err(|e| e.to_string())?;
            requests_by_time
                .insert((*at_ms, *id), ())
                .map_err(|e| e.to_string())?;
        }
        let mut auth = txn.open_table(AUTH).map_err(|e| e.to_string())?;
        auth.retain(|_, _| false).map_err(|e| e.to_string())?;
        for (k, v) in &body.auth {
            auth.insert(k.as_slice(), v.as_slice())
                .map_err(|e| e.to_string())?;
        }
        let mut snapshot = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
        save_snapshot(&mut snapshot, stored)?;
    }
    txn.commit().map_err(|e| e.to_string())
}

fn save_snapshot(
    table: &mut redb::Table<&'static str, &'static [u8]>,
    stored: &StoredSnapshot,
) -> Result<(), String> {
    table
        .insert(KEY_SNAPSHOT_META, to_json(&stored.meta).as_slice())
        .map_err(|e| e.to_string())?;
    table
        .insert(KEY_SNAPSHOT_DATA, stored.data.as_slice())
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::api::MkdirRequest;

    fn apply(db: &Database, index: u64, request_id: Option<u128>, path: &str) {
        let command = state::Command::Mkdir(MkdirRequest {
            path: path.into(),
            parents: false,
            mode: None,
        });
        apply_command(db, index, request_id, command);
    }

    fn apply_command(db: &Database, index: u64, request_id: Option<u128>, command: state::Command) {
        let entry = Entry::<TypeConfig> {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(state::Request {
                now_ms: 1_000 + index,
                request_id,
                user: None,
                command,
            }),
        };
        apply_entries(db, vec![entry]).unwrap();
    }

    /// Directory entries, request records and users and sessions.
    type Rows = (
        Vec<(u64, String, u64)>,
        Vec<(u128, Vec<u8>)>,
        Vec<(Vec<u8>, Vec<u8>)>,
    );

    fn rows(db: &Database) -> Rows {
        let txn = db.begin_read().unwrap();
        let dirents = txn.open_table(DIRENTS).unwrap();
        let dirents = dirents
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().0, k.value().1.to_string(), v.value())
            })
            .collect();
        let requests = txn.open_table(REQUESTS).unwrap();
        let requests = requests
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value(), v.value().to_vec())
            })
            .collect();
        let auth = txn.open_table(AUTH).unwrap();
        let auth = auth
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect();
        (dirents, requests, auth)
    }

    #[test]
    fn a_snapshot_carries_the_namespace_the_request_outcomes_and_the_users() {
        let dir = tempfile::tempdir().unwrap();
        let source = open_database(&dir.path().join("a.redb")).unwrap();
        apply(&source, 1, Some(42), "/a");
        let bootstrap = state::Command::BootstrapAdmin {
            password_hash: "$argon2id$stand-in".into(),
        };
        apply_command(&source, 2, None, bootstrap);
        let session = state::Command::CreateSession {
            token_hash: [7; 32],
            name: "admin".into(),
            expires_ms: u64::MAX,
            user_version: 1,
        };
        apply_command(&source, 3, None, session);
        apply(&source, 4, None, "/b");
        let snapshot = build(&source).unwrap();
        assert_eq!(
            rows(&source).2.len(),
            4,
            "a user, a session and its two index rows"
        );

        let target = open_database(&dir.path().join("b.redb")).unwrap();
        apply(&target, 1, Some(7), "/stale");
        install(&target, &snapshot).unwrap();
        assert_eq!(rows(&target), rows(&source));
        assert_eq!(rows(&target).1.len(), 1);
        let (applied, _) = read_applied(&target).unwrap();
        assert_eq!(applied.map(|l| l.index), Some(4));
        // The retried request is answered from the installed table.
        apply(&target, 5, Some(42), "/a");
        assert_eq!(rows(&target), rows(&source));
    }

    #[test]
    fn a_snapshot_of_the_first_format_still_installs() {
        #[derive(Serialize)]
        struct V1 {
            format: u8,
            inodes: Vec<(u64, Vec<u8>)>,
            dirents: Vec<(u64, String, u64)>,
            meta: Vec<(String, Vec<u8>)>,
            chunk_refs: Vec<([u8; 32], u64)>,
        }
        let v1 = V1 {
            format: SNAPSHOT_V1,
            inodes: vec![(1, vec![1, 2])],
            dirents: vec![(1, "x".into(), 2)],
            meta: vec![],
            chunk_refs: vec![],
        };
        let body = SnapshotBody::decode(&encode(&v1)).unwrap();
        assert_eq!(body.dirents, v1.dirents);
        assert!(body.requests.is_empty());
        let mut future = encode(&v1);
        future[1] = 9;
        let refused = SnapshotBody::decode(&future).err().unwrap();
        assert!(refused.contains("newer"), "{refused}");
    }
}
