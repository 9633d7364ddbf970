//! A linearizability checker for histories of reads and writes on
//! registers (files whose whole content is the value), after Wing & Gong's
//! search with Lowe's memoization, as in Knossos and Porcupine.
//!
//! Linearizability is local: a history is linearizable if and only if each
//! key's sub-history is, so each key is checked on its own.
//!
//! An operation whose outcome is unknown (a write the client saw fail: it
//! may have been applied) gets no return time, so the search may place it
//! anywhere after its call, including after everything else (never).

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Set the value.
    Write(String),
    /// Observed this value (`None`: the file did not exist).
    Read(Option<String>),
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub key: String,
    pub action: Action,
    pub called: Instant,
    /// `None`: the outcome is unknown.
    pub returned: Option<Instant>,
}

/// Checks every key's history; returns the keys whose history is not
/// linearizable (empty: the whole history is).
pub fn non_linearizable_keys(history: &[Operation]) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    by_key
        .into_iter()
        .filter(|(_, ops)| !linearizable(ops))
        .map(|(key, _)| key.to_string())
        .collect()
}

/// One event of the time-ordered list: an operation's call or return.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// Index of the matching return event (for a call).
    partner: usize,
    prev: usize,
    next: usize,
}

const HEAD: usize = 0;
const NONE: usize = usize::MAX;

/// The search for one key: the register starts absent.
fn linearizable(ops: &[&Operation]) -> bool {
    // Events sorted by time; a call before a return at the same instant
    // (the safe order: it lets the two overlap). Unknown returns go last.
    let mut times: Vec<(Instant, bool, bool, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        times.push((op.called, false, false, i));
        match op.returned {
            Some(t) => times.push((t, false, true, i)),
            None => times.push((op.called, true, true, i)),
        }
    }
    times.sort_by_key(|&(t, unknown, is_return, _)| (unknown, t, is_return));
    // Index 0 is the head sentinel.
    let mut events = vec![Event {
        op: NONE,
        is_call: false,
        partner: NONE,
        prev: NONE,
        next: NONE,
    }];
    let mut call_at = vec![NONE; ops.len()];
    for &(_, _, is_return, op) in &times {
        let index = events.len();
        events.push(Event {
            op,
            is_call: !is_return,
            partner: NONE,
            prev: index - 1,
            next: NONE,
        });
        events[index - 1].next = index;
        if is_return {
            events[call_at[op]].partner = index;
        } else {
            call_at[op] = index;
        }
    }

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state: Option<String> = None;
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut entry = events[HEAD].next;
    while events[HEAD].next != NONE {
        let event = events[entry];
        if event.is_call {
            let next_state = match &ops[event.op].action {
                Action::Write(value) => Some(Some(value.clone())),
                Action::Read(observed) => (observed == &state).then(|| state.clone()),
            };
            if let Some(next_state) = next_state {
                let mut next_linearized = linearized.clone();
                next_linearized[event.op / 64] |= 1 << (event.op % 64);
                if seen.insert((next_linearized.clone(), next_state.clone())) {
                    stack.push((entry, state));
                    state = next_state;
                    linearized = next_linearized;
                    lift(&mut events, entry);
                    entry = events[HEAD].next;
                    continue;
                }
            }
            entry = event.next;
        } else {
            // A return whose call is not linearized yet: undo the last step.
            let Some((call, previous)) = stack.pop() else {
                return false;
            };
            state = previous;
            let op = events[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut events, call);
            entry = events[call].next;
        }
    }
    true
}

/// Takes a call and its return out of the list.
fn lift(events: &mut [Event], call: usize) {
    for index in [call, events[call].partner] {
        let Event { prev, next, .. } = events[index];
        events[prev].next = next;
        if next != NONE {
            events[next].prev = prev;
        }
    }
}

/// Puts them back, in the reverse order of `lift`.
fn unlift(events: &mut [Event], call: usize) {
    for index in [events[call].partner, call] {
        let Event { prev, next, .. } = events[index];
        events[prev].next = index;
        if next != NONE {
            events[next].prev = index;
        }
    }
}
