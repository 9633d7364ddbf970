//! openraft storage on redb: the replicated log ([`LogStore`]) and the state
//! machine ([`StateMachine`]) share one redb file, `meta.redb`. Snapshots
//! are in `snapshot.rs`.
//!
//! Raft's own records (log entries, vote, committed and purged ids, the
//! applied id and membership) are JSON after a format marker
//! (`records::encode_raft`); those of earlier releases, plain JSON, are
//! still read.
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
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

mod applied;
mod snapshot;

use applied::{read_applied, Membership, StoredSnapshot, KEY_APPLIED, KEY_MEMBERSHIP, SNAPSHOT};

use crate::records::{decode_raft, encode_raft, StateError};
use crate::state::{self, Output, Tables};
use crate::TypeConfig;

pub type RaftNodeId = u64;
type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

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
        tables.initialize_or_upgrade()?;
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
    decode_raft(bytes.value())
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
            .insert(key, encode_raft(value).as_slice())
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
                entries.push(decode_raft(value.value()).map_err(read_logs_error)?);
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
                        decode_raft(value.value()).map_err(read_logs_error)?;
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
    /// (`server/core.rs`, `confirm_leader`) also waits until the leader's whole
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
            .map(|e| (e.log_id.index, encode_raft(&e)))
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
                meta.insert(KEY_PURGED, encode_raft(&Some(log_id)).as_slice())?;
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
        blocking(move || snapshot::install(&db, &stored))
            .await
            .map_err(|e| {
                io_error(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                    e,
                )
            })
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let db = self.db.clone();
        let stored = blocking(move || applied::load_snapshot(&db))
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
        let stored = blocking(move || snapshot::build(&db))
            .await
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

/// Applies entries in one transaction. A refused command (an `ApiError`)
/// wrote nothing (see `state/mod.rs`), so the batch can go on after it.
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
                        .insert(KEY_MEMBERSHIP, encode_raft(&stored).as_slice())
                        .map_err(|e| e.to_string())?;
                    responses.push(Ok(Output::Nothing));
                }
            }
        }
        if let Some(log_id) = last_applied {
            tables
                .meta
                .insert(KEY_APPLIED, encode_raft(&Some(log_id)).as_slice())
                .map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(responses)
}
