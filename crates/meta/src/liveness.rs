//! Node liveness: what the leader remembers of each storage node's
//! heartbeats, and the pure rule that turns it into state changes.
//!
//! Heartbeats are soft state on the leader; only the resulting state
//! changes go through the log. The rule ([`judge`]):
//! - `up`/`full` -> `down`: silent for longer than `down_after` (a new
//!   leader counts silence from when it started leading, so every node gets
//!   a fresh grace period).
//! - `down` -> `up` (or `full`): damping. The node must have heartbeat
//!   without a gap over `down_after` for `up_after` before it is trusted
//!   again, so a flapping node does not make data move back and forth.
//! - `up` <-> `full`: the node's own report of its free space.
//! - `draining` is left alone: only an operator changes it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_proto::api::NodeReport;
use cairn_proto::{NodeId, NodeInfo, NodeState};

/// What the leader knows of the nodes' heartbeats.
#[derive(Default)]
pub struct Liveness {
    /// When this server last became leader; `None` while it is not leader.
    pub leader_since: Option<Instant>,
    pub beats: HashMap<NodeId, Beat>,
}

pub struct Beat {
    /// When the last heartbeat arrived.
    pub at: Instant,
    /// Start of the current unbroken run of heartbeats.
    pub healthy_since: Instant,
    pub report: NodeReport,
}

/// Timing rules of the liveness watcher.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub down_after: Duration,
    pub up_after: Duration,
}

impl Liveness {
    /// Records a heartbeat that arrived `now`.
    pub fn record(&mut self, id: &NodeId, report: NodeReport, now: Instant, timing: Timing) {
        match self.beats.get_mut(id) {
            Some(beat) => {
                if now.saturating_duration_since(beat.at) > timing.down_after {
                    beat.healthy_since = now;
                }
                beat.at = now;
                beat.report = report;
            }
            None => {
                self.beats.insert(
                    id.clone(),
                    Beat {
                        at: now,
                        healthy_since: now,
                        report,
                    },
                );
            }
        }
    }
}

/// The state `node` should move to, if any, and why (for the log).
pub fn judge(
    node: &NodeInfo,
    beat: Option<&Beat>,
    leader_since: Instant,
    now: Instant,
    timing: Timing,
) -> Option<(NodeState, &'static str)> {
    let last_heard = beat.map_or(leader_since, |b| b.at.max(leader_since));
    let silent_for = now.saturating_duration_since(last_heard);
    match node.state {
        NodeState::Up | NodeState::Full if silent_for > timing.down_after => {
            Some((NodeState::Down, "no heartbeat"))
        }
        NodeState::Up => beat
            .filter(|b| b.report.full)
            .map(|_| (NodeState::Full, "its disk is full")),
        NodeState::Full => beat
            .filter(|b| !b.report.full)
            .map(|_| (NodeState::Up, "it has room again")),
        NodeState::Down => {
            let beat = beat?;
            let fresh = now.saturating_duration_since(beat.at) <= timing.down_after;
            let steady = now.saturating_duration_since(beat.healthy_since) >= timing.up_after;
            if !(fresh && steady) {
                return None;
            }
            if beat.report.full {
                Some((NodeState::Full, "heartbeats steady again, disk full"))
            } else {
                Some((NodeState::Up, "heartbeats steady again"))
            }
        }
        NodeState::Draining => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        down_after: Duration::from_secs(10),
        up_after: Duration::from_secs(5),
    };

    fn node(state: NodeState) -> NodeInfo {
        NodeInfo {
            id: NodeId("n".into()),
            addr: "127.0.0.1:1".into(),
            zone: String::new(),
            capacity_bytes: 1,
            state,
            state_changed_ms: 0,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn silent_nodes_go_down_counting_from_leadership() {
        let t0 = Instant::now();
        let up = node(NodeState::Up);
        assert_eq!(judge(&up, None, t0, t0 + secs(9), TIMING), None);
        assert_eq!(
            judge(&up, None, t0, t0 + secs(11), TIMING).map(|j| j.0),
            Some(NodeState::Down)
        );
        let mut live = Liveness::default();
        live.record(&up.id, NodeReport::default(), t0, TIMING);
        let beat = live.beats.get(&up.id);
        // A beat before this server led does not count against the node.
        assert_eq!(judge(&up, beat, t0 + secs(5), t0 + secs(14), TIMING), None);
        let full = node(NodeState::Full);
        assert_eq!(
            judge(&full, beat, t0, t0 + secs(11), TIMING).map(|j| j.0),
            Some(NodeState::Down)
        );
    }

    #[test]
    fn a_returning_node_must_stay_healthy_before_it_is_up() {
        let t0 = Instant::now();
        let down = node(NodeState::Down);
        let mut live = Liveness::default();
        live.record(&down.id, NodeReport::default(), t0, TIMING);
        for s in 1..=4 {
            live.record(&down.id, NodeReport::default(), t0 + secs(s), TIMING);
            let beat = live.beats.get(&down.id);
            assert_eq!(judge(&down, beat, t0, t0 + secs(s), TIMING), None, "{s}s");
        }
        live.record(&down.id, NodeReport::default(), t0 + secs(5), TIMING);
        let beat = live.beats.get(&down.id);
        assert_eq!(
            judge(&down, beat, t0, t0 + secs(5), TIMING).map(|j| j.0),
            Some(NodeState::Up)
        );
        // A gap longer than down_after starts the count again.
        live.record(&down.id, NodeReport::default(), t0 + secs(17), TIMING);
        let beat = live.beats.get(&down.id);
        assert_eq!(judge(&down, beat, t0, t0 + secs(18), TIMING), None);
        assert_eq!(
            judge(&down, beat, t0, t0 + secs(22), TIMING).map(|j| j.0),
            Some(NodeState::Up)
        );
    }

    #[test]
    fn full_follows_the_report_and_draining_is_left_alone() {
        let t0 = Instant::now();
        let full_report = NodeReport {
            full: true,
            ..NodeReport::default()
        };
        let mut live = Liveness::default();
        let up = node(NodeState::Up);
        live.record(&up.id, full_report.clone(), t0, TIMING);
        let beat = live.beats.get(&up.id);
        assert_eq!(
            judge(&up, beat, t0, t0, TIMING).map(|j| j.0),
            Some(NodeState::Full)
        );
        assert_eq!(judge(&node(NodeState::Full), beat, t0, t0, TIMING), None);
        assert_eq!(
            judge(&node(NodeState::Draining), beat, t0, t0 + secs(60), TIMING),
            None
        );
        live.record(&up.id, NodeReport::default(), t0 + secs(1), TIMING);
        let beat = live.beats.get(&up.id);
        assert_eq!(
            judge(&node(NodeState::Full), beat, t0, t0 + secs(1), TIMING).map(|j| j.0),
            Some(NodeState::Up)
        );
    }
}
