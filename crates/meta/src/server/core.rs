//! The running member ([`Meta`]) and the consensus plumbing every route
//! stands on: proposing a command and waiting for it to apply, and reading
//! the applied state after confirming leadership.
//!
//! Writes are Raft proposals: acknowledged only once committed (by a
//! majority) and applied. openraft appends and fsyncs one entry per
//! proposal, one at a time, so proposals that arrive while an entry is
//! being committed wait in [`WriteQueue`] and go together as one entry
//! (`Command::Batch`): one fsync for all of them. Reads first confirm leadership
//! (`ensure_linearizable`), then read the applied state from redb, so a
//! read never misses an acknowledged write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_proto::api::{Acting, CapabilityKey};
use cairn_proto::{ApiError, ClusterMap, ErrorCode};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{Raft, ServerState};
use redb::{Database, ReadTransaction, ReadableDatabase};

use crate::auth::SealingKey;
use crate::limits::{
    CONFIRM_LEADER_TIMEOUT, MAX_BATCHED_COMMIT_CHUNKS, MAX_BATCH_REQUESTS, MAX_QUEUED_PROPOSALS,
    PROPOSE_TIMEOUT,
};
use crate::liveness::{Liveness, Timing};
use crate::records::StateError;
use crate::state::{self, Command, Output, SM_META};
use crate::store::RaftNodeId;
use crate::TypeConfig;

use super::http::{into_api_error, Consistency};
use super::limiter::LoginLimiter;

pub struct Meta {
    pub id: RaftNodeId,
    /// `http` or `https`: how members are reached (redirects name it).
    pub scheme: &'static str,
    pub cluster_token: Option<String>,
    pub capability_key: Option<CapabilityKey>,
    /// Seals the secrets of S3 access keys (derived from the cluster
    /// secret); `None`: access keys cannot be made here.
    pub sealing_key: Option<SealingKey>,
    /// How long the chunk capabilities this member issues are good for.
    pub capability_ttl: Duration,
    pub raft: Raft<TypeConfig>,
    pub db: Arc<Database>,
    pub timing: Timing,
    pub liveness: Mutex<Liveness>,
    pub logins: LoginLimiter,
    /// Bounds the password hashes computed at once.
    pub hashing: tokio::sync::Semaphore,
    /// Wakes the purge loop when a tree was removed.
    pub purge_wanted: tokio::sync::Notify,
    /// The term in which this member, leading, has applied its whole log
    /// once (0: not yet). From then on its commit index is fresh, and a
    /// consistent read needs only openraft's check (see `confirm_leader`).
    pub log_applied_in_term: AtomicU64,
    /// Proposals waiting to go into the next log entry.
    pub writes: Arc<Mutex<WriteQueue>>,
}

/// A proposal waiting for a log entry, with where its outcome goes.
type Queued = (
    state::Request,
    tokio::sync::oneshot::Sender<Result<Output, ApiError>>,
);

/// Proposals waiting for a log entry, and whether a task is proposing
/// them (it drains the queue, a batch at a time, until it is empty).
#[derive(Default)]
pub struct WriteQueue {
    pending: Vec<Queued>,
    proposing: bool,
}

impl WriteQueue {
    /// Queues a proposal; `Ok(true)` if no task is proposing, so the
    /// caller must start one. Refused (`unavailable`) when
    /// [`MAX_QUEUED_PROPOSALS`] are waiting already.
    fn enqueue(&mut self, queued: Queued) -> Result<bool, ApiError> {
        if self.pending.len() >= MAX_QUEUED_PROPOSALS {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("{MAX_QUEUED_PROPOSALS} writes are waiting on this metadata member; retry shortly"),
            ));
        }
        self.pending.push(queued);
        Ok(!std::mem::replace(&mut self.proposing, true))
    }

    /// The oldest proposals, up to [`MAX_BATCH_REQUESTS`], in order; `None`
    /// when none wait, and the proposing task then ends (the next
    /// [`WriteQueue::enqueue`] starts another).
    fn next_batch(&mut self) -> Option<Vec<Queued>> {
        assert!(self.proposing, "only the proposing task takes batches");
        if self.pending.is_empty() {
            self.proposing = false;
            return None;
        }
        let take = self.pending.len().min(MAX_BATCH_REQUESTS);
        Some(self.pending.drain(..take).collect())
    }

    /// Every waiting proposal, to be answered with the failure of the
    /// batch ahead of them (they would meet it too); the proposing task
    /// then finds the queue empty and ends.
    fn take_pending(&mut self) -> Vec<Queued> {
        std::mem::take(&mut self.pending)
    }
}

/// Whether a request may share a log entry: all but commits of many
/// chunks (which would make the entry large).
fn batchable(request: &state::Request) -> bool {
    match &request.command {
        Command::Commit(commit) => commit.chunks.len() <= MAX_BATCHED_COMMIT_CHUNKS,
        Command::Batch(_) => false,
        _ => true,
    }
}

/// Proposes what waits in `queue`, a batch per log entry, until nothing
/// waits. A failure to commit (no majority, not the leader) is every
/// waiting proposal's answer: they would meet it too.
async fn propose_queued(raft: Raft<TypeConfig>, queue: Arc<Mutex<WriteQueue>>) {
    loop {
        let Some(batch) = queue.lock().expect("write queue lock").next_batch() else {
            return;
        };
        let (mut requests, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let results = if requests.len() == 1 {
            let request = requests.pop().expect("one request");
            write_entry(&raft, request)
                .await
                .map(|outcome| vec![outcome])
        } else {
            let count = requests.len();
            let entry = state::Request::new(now_ns(), None, None, Command::Batch(requests));
            match write_entry(&raft, entry).await {
                Ok(Ok(Output::Batch(responses))) if responses.len() == count => Ok(responses),
                Ok(other) => Err(ApiError::internal(format!(
                    "a batch of {count} requests answered {other:?}"
                ))),
                Err(e) => Err(e),
            }
        };
        match results {
            Ok(responses) => {
                for (answer, response) in answers.into_iter().zip(responses) {
                    let _ = answer.send(response);
                }
            }
            Err(e) => {
                let waiting = queue.lock().expect("write queue lock").take_pending();
                for answer in answers
                    .into_iter()
                    .chain(waiting.into_iter().map(|(_, a)| a))
                {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Proposes one log entry and waits until it is committed and applied:
/// its outcome, or why it could not be committed.
async fn write_entry(
    raft: &Raft<TypeConfig>,
    request: state::Request,
) -> Result<state::Response, ApiError> {
    let write = tokio::time::timeout(PROPOSE_TIMEOUT, raft.client_write(request));
    match write.await {
        Ok(Ok(response)) => Ok(response.data),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
            Err(ApiError::not_leader(forward.leader_node.map(|n| n.addr)))
        }
        Ok(Err(e)) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("the metadata service cannot commit: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "the write was not committed within {}s: this member cannot reach a majority of the \
                 metadata members. It may still commit; retrying it with the same request id applies it once",
                PROPOSE_TIMEOUT.as_secs()
            ),
        )),
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

impl Meta {
    /// Proposes a command and waits until it is committed by a majority
    /// and applied. `request_id` makes a retried proposal apply once.
    /// `user` is who the command runs as (`None`: the cluster itself).
    pub async fn propose(
        &self,
        command: Command,
        request_id: Option<u128>,
        user: Option<String>,
    ) -> Result<Output, ApiError> {
        self.propose_acting(command, request_id, user, None).await
    }

    /// [`Meta::propose`], run as `acting` by `user` (an admin acting for a
    /// trusted client's local process; the state machine checks).
    pub async fn propose_acting(
        &self,
        command: Command,
        request_id: Option<u128>,
        user: Option<String>,
        acting: Option<Acting>,
    ) -> Result<Output, ApiError> {
        let request = state::Request::new(now_ns(), request_id, user, command).acting(acting);
        if !batchable(&request) {
            return write_entry(&self.raft, request).await?;
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        let start = self
            .writes
            .lock()
            .expect("write queue lock")
            .enqueue((request, answer))?;
        if start {
            tokio::spawn(propose_queued(self.raft.clone(), self.writes.clone()));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(ApiError::internal("the proposing task stopped")))
    }

    /// Runs `read` on the applied state after confirming leadership, or
    /// at once on a stale-ok read.
    pub async fn read<T: Send + 'static>(
        &self,
        consistency: Consistency,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.confirm_for(consistency).await?;
        self.read_local(read).await
    }

    /// [`Meta::read`] for a lookup of a few records (a path's resolution,
    /// an inode, its attributes), run on the calling task rather than
    /// handed to the blocking pool: such a read takes microseconds, and the
    /// hand-off (a thread wake-up each way) cost a small S3 put 12% of the
    /// metadata service's CPU. redb's readers never wait for a writer, so
    /// this cannot block on a commit's fsync. The largest record, a file of
    /// `MAX_CHUNKS_PER_FILE` chunks (9 MiB), decoded in 11 ms here (release
    /// build): less than answering its stat as JSON takes on the same task.
    /// Listings and walks, pages of up to thousands of entries, stay on the
    /// pool ([`Meta::read`]).
    pub async fn read_bounded<T>(
        &self,
        consistency: Consistency,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StateError>,
    ) -> Result<T, ApiError> {
        self.confirm_for(consistency).await?;
        self.read_inline(read)
    }

    /// What a read of `consistency` waits for first: a confirmed leader
    /// with its log applied, or nothing for a stale-ok read.
    async fn confirm_for(&self, consistency: Consistency) -> Result<(), ApiError> {
        match consistency {
            Consistency::Linearizable => self.confirm_leader().await,
            Consistency::Stale => Ok(()),
        }
    }

    /// Waits until a majority confirms this member leads and everything
    /// committed before the read is applied here.
    ///
    /// openraft's check waits for the leader's commit index, which may be
    /// behind after a restart: the commit index is not fsynced, and a
    /// member that led before a crash resumes leading the same term without
    /// a new entry. So, once per term, a read also waits until every entry
    /// in this leader's log is applied: that log holds every committed
    /// entry, and from then on the commit index only advances by real
    /// commits. (A term has one leader, and a restart forgets the flag.)
    async fn confirm_leader(&self) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + CONFIRM_LEADER_TIMEOUT;
        let confirm = async {
            self.raft.ensure_linearizable().await?;
            Ok(self.log_applied(deadline).await)
        };
        match tokio::time::timeout_at(deadline, confirm).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) | Err(_) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "a majority of the metadata members did not confirm this leader, or its log did not \
                     apply, within {}s; is a majority running and reachable? (stale reads: --stale-ok)",
                    CONFIRM_LEADER_TIMEOUT.as_secs()
                ),
            )),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)))) => {
                Err(ApiError::not_leader(forward.leader_node.map(|n| n.addr)))
            }
            Ok(Err(e)) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("this metadata member cannot serve a consistent read: {e}"),
            )),
        }
    }

    /// Once per term, waits until this member has applied every entry of
    /// its log (see `confirm_leader`); `false` if that did not happen by
    /// `deadline`.
    async fn log_applied(&self, deadline: tokio::time::Instant) -> bool {
        let (term, last_log_index) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            (metrics.current_term, metrics.last_log_index)
        };
        if self.log_applied_in_term.load(Ordering::Acquire) == term {
            return true;
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let applied = self
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(last_log_index, "this leader's log is applied")
            .await
            .is_ok();
        if applied {
            self.log_applied_in_term.store(term, Ordering::Release);
        }
        applied
    }

    /// Before a leader trusts its applied sessions and users (a logout or a
    /// password change committed under the previous leader must count),
    /// it applies its whole log, once per term.
    pub async fn sessions_current(&self) -> Result<(), ApiError> {
        if self.raft.metrics().borrow().state != ServerState::Leader {
            // Followers answer only stale reads, stale by request.
            return Ok(());
        }
        if self
            .log_applied(tokio::time::Instant::now() + CONFIRM_LEADER_TIMEOUT)
            .await
        {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "this new leader did not apply its log within {}s; retry shortly",
                CONFIRM_LEADER_TIMEOUT.as_secs()
            ),
        ))
    }

    /// Runs a short `read` on this member's applied state on the calling
    /// thread: for a few point lookups only.
    pub fn read_inline<T>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StateError>,
    ) -> Result<T, ApiError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| into_api_error(StateError::from(e)))?;
        read(&txn).map_err(into_api_error)
    }

    /// Runs `read` on this member's applied state, as it is.
    pub async fn read_local<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(StateError::from)?;
            read(&txn)
        })
        .await
        .map_err(|e| ApiError::internal(format!("read task failed: {e}")))?
        .map_err(into_api_error)
    }

    pub async fn map(&self, consistency: Consistency) -> Result<ClusterMap, ApiError> {
        self.read(consistency, |txn| {
            state::read_map(&txn.open_table(SM_META)?)
        })
        .await
    }

    /// Whether this member leads now (as far as it knows).
    pub fn leads(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(n: u128) -> Queued {
        let command = Command::Purge { max_entries: 1 };
        (
            state::Request::new(0, Some(n), None, command),
            tokio::sync::oneshot::channel().0,
        )
    }

    #[test]
    fn the_first_write_starts_a_proposer_and_a_drained_queue_stops_it() {
        let mut queue = WriteQueue::default();
        assert_eq!(queue.enqueue(proposal(1)).ok(), Some(true));
        assert_eq!(queue.enqueue(proposal(2)).ok(), Some(false));
        let batch = queue.next_batch().unwrap();
        let ids: Vec<_> = batch.iter().map(|(r, _)| r.request_id).collect();
        assert_eq!(ids, [Some(1), Some(2)]);
        assert!(queue.next_batch().is_none());
        assert_eq!(queue.enqueue(proposal(3)).ok(), Some(true));
    }

    #[test]
    fn a_failed_batch_takes_every_waiting_write_and_the_proposer_then_stops() {
        let mut queue = WriteQueue::default();
        for n in 0..3 {
            queue.enqueue(proposal(n)).unwrap();
        }
        let waiting = queue.take_pending();
        assert_eq!(waiting.len(), 3);
        assert!(queue.next_batch().is_none());
        assert_eq!(queue.enqueue(proposal(4)).ok(), Some(true));
    }

    #[test]
    fn batches_are_bounded_and_keep_the_order_of_arrival() {
        let mut queue = WriteQueue::default();
        let count = MAX_BATCH_REQUESTS * 2 + 1;
        for n in 0..count {
            queue.enqueue(proposal(n as u128)).unwrap();
        }
        let mut seen = Vec::new();
        while let Some(batch) = queue.next_batch() {
            assert!(!batch.is_empty() && batch.len() <= MAX_BATCH_REQUESTS);
            seen.extend(batch.iter().map(|(r, _)| r.request_id.unwrap()));
        }
        assert_eq!(seen, (0..count as u128).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_refuses_a_write_with_what_to_do_and_takes_it_once_drained() {
        let mut queue = WriteQueue::default();
        for n in 0..MAX_QUEUED_PROPOSALS {
            queue.enqueue(proposal(n as u128)).unwrap();
        }
        let refused = queue.enqueue(proposal(u128::MAX)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Unavailable);
        assert!(
            refused.message.contains("retry shortly"),
            "{}",
            refused.message
        );
        assert_eq!(queue.pending.len(), MAX_QUEUED_PROPOSALS);
        queue.next_batch().unwrap();
        assert_eq!(queue.enqueue(proposal(u128::MAX)).ok(), Some(false));
    }
}
