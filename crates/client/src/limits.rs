//! Every limit and timing of the client, in one place, with the assertions
//! that relate them.

use std::time::Duration;

// ---- metadata calls ----

/// Time limit of one attempt of a metadata call. A write waits for a
/// majority's fsync (the leader gives up on it after 8 s and says so).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit of one attempt of a membership change or snapshot, which
/// waits for a new member to catch up.
pub const ADMIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(150);
/// A member that has not answered an attempt after this long is asked
/// whether it is alive at all ([`PROBE_TIMEOUT`] on a new connection); a
/// paused, hung or cut-off member costs a call about the sum of the two,
/// not the whole attempt timeout. A live member that is slow (a write
/// waiting for a majority) answers the probe, and the attempt goes on.
pub const PROBE_AFTER: Duration = Duration::from_millis(1000);
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Time limit to open a TCP connection (a member that is down refuses at once).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one call keeps trying across members and leader changes. An
/// election takes 1-3 s; this covers several failed ones.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// A call gives up this soon when no member answers at all (nothing is
/// running there, or the addresses are wrong), rather than after the
/// whole failover timeout.
pub const NOBODY_ANSWERS_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts while no leader is known: doubles up to the max.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Redirects followed at once before pausing between them.
pub const MAX_FREE_HOPS: u32 = 4;
/// The most member addresses a client takes.
pub const MAX_MEMBERS: usize = 16;

// ---- chunk transfers ----

/// Time limit for moving one chunk (64 MiB at the most) to or from a node.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
/// A replica that has not started answering a read after this long is
/// passed over for the next one (the last is waited for): a paused node
/// must not stall a read for the whole chunk timeout.
pub const READ_HEADERS_TIMEOUT: Duration = Duration::from_secs(2);
/// Once a chunk has the copies a write needs, the targets still writing
/// it get this many times as long as those copies took ...
pub const STRAGGLER_GRACE_FACTOR: u32 = 4;
/// ... but at least this and at most that; then the write goes on and
/// repair makes the missing copies.
pub const STRAGGLER_GRACE_MIN: Duration = Duration::from_secs(2);
pub const STRAGGLER_GRACE_MAX: Duration = Duration::from_secs(10);
/// Chunks in flight at once on a put or a get, per file.
pub const DEFAULT_WINDOW: usize = 4;
/// A capability is renewed when it has less than this left (or a quarter
/// of its life, if shorter; or when a chunk server says it expired), so a
/// transfer may outlive it.
pub const CAPABILITY_RENEW_MARGIN: Duration = Duration::from_secs(300);
/// How long a cluster map fetched for a put is used for the next ones.
pub const MAP_CACHE_TTL: Duration = Duration::from_secs(2);

// ---- listings ----

/// The most files `fsck` walks (bounds its memory: ~100 bytes a chunk).
pub const MAX_FSCK_FILES: usize = 10_000_000;

const _: () = {
    assert!(PROBE_AFTER.as_millis() + PROBE_TIMEOUT.as_millis() < ATTEMPT_TIMEOUT.as_millis());
    // A paused first member must cost less than giving up on everyone.
    assert!(
        PROBE_AFTER.as_millis() + PROBE_TIMEOUT.as_millis() < NOBODY_ANSWERS_TIMEOUT.as_millis()
    );
    assert!(NOBODY_ANSWERS_TIMEOUT.as_millis() < FAILOVER_TIMEOUT.as_millis());
    assert!(BACKOFF_MIN.as_millis() <= BACKOFF_MAX.as_millis());
    assert!(READ_HEADERS_TIMEOUT.as_millis() < CHUNK_TIMEOUT.as_millis());
    assert!(STRAGGLER_GRACE_MIN.as_millis() <= STRAGGLER_GRACE_MAX.as_millis());
    assert!(STRAGGLER_GRACE_MAX.as_millis() < CHUNK_TIMEOUT.as_millis());
    assert!(DEFAULT_WINDOW > 0);
};
