//! Properties of the ring: determinism, distinct targets, zone spread,
//! minimal movement on join, and load balance.

mod common;

use std::collections::{HashMap, HashSet};

use cairn_placement::{targets, Ring};
use cairn_proto::{ChunkId, NodeId, NodeState};
use common::*;
use proptest::prelude::*;

fn ids(ring: &Ring, chunk: &ChunkId, rf: usize) -> Vec<NodeId> {
    ring.targets(chunk, rf)
        .into_iter()
        .map(|n| n.id.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn deterministic_and_independent_of_node_order(
        count in 1usize..20, zones in 1usize..5, rf in 1u32..5, seed in any::<u64>(), shuffle in any::<u64>()
    ) {
        let map = uniform_map(count, zones, rf);
        let mut shuffled = map.clone();
        let len = shuffled.nodes.len();
        shuffled.nodes.rotate_left((shuffle as usize) % len);
        shuffled.nodes.reverse();
        let a = Ring::new(&map);
        let b = Ring::new(&shuffled);
        for i in 0..50 {
            let c = chunk(seed.wrapping_add(i));
            prop_assert_eq!(ids(&a, &c, rf as usize), ids(&b, &c, rf as usize));
            prop_assert_eq!(targets(&c, &map), ids(&a, &c, rf as usize));
        }
    }

    #[test]
    fn targets_are_distinct_up_and_as_many_as_possible(
        count in 1usize..20, zones in 1usize..5, rf in 1u32..6, down_mask in any::<u32>(), seed in any::<u64>()
    ) {
        let mut map = uniform_map(count, zones, rf);
        for (i, n) in map.nodes.iter_mut().enumerate() {
            if down_mask & (1 << i) != 0 {
                n.state = NodeState::Down;
            }
        }
        let up = map.up_count();
        let ring = Ring::new(&map);
        for i in 0..50 {
            let t = ids(&ring, &chunk(seed.wrapping_add(i)), rf as usize);
            prop_assert_eq!(t.len(), up.min(rf as usize));
            let distinct: HashSet<_> = t.iter().collect();
            prop_assert_eq!(distinct.len(), t.len());
            for id in &t {
                prop_assert_eq!(map.node(id).unwrap().state, NodeState::Up);
            }
        }
    }

    #[test]
    fn zones_are_spread_when_possible(count in 3usize..30, zones in 1usize..6, rf in 1u32..5, seed in any::<u64>()) {
        let map = uniform_map(count, zones, rf);
        let ring = Ring::new(&map);
        let zones_available = map.nodes.iter().map(|n| n.zone.as_str()).collect::<HashSet<_>>().len();
        for i in 0..50 {
            let t = ring.targets(&chunk(seed.wrapping_add(i)), rf as usize);
            let used: HashSet<&str> = t.iter().map(|n| n.zone.as_str()).collect();
            prop_assert_eq!(used.len(), zones_available.min(t.len()));
        }
    }

    #[test]
    fn preference_starts_with_targets_and_covers_every_node(count in 1usize..15, rf in 1u32..4, seed in any::<u64>()) {
        let map = uniform_map(count, 2, rf);
        let ring = Ring::new(&map);
        let c = chunk(seed);
        let pref: Vec<NodeId> = ring.preference(&c, rf as usize).into_iter().map(|n| n.id.clone()).collect();
        prop_assert_eq!(pref.len(), count);
        prop_assert_eq!(&pref[..(rf as usize).min(count)], &ids(&ring, &c, rf as usize)[..]);
    }
}

/// Fraction of replica placements that change when one node joins N.
pub fn moved_fraction_on_join(n: usize, chunks: u64) -> f64 {
    let before = uniform_map(n, 1, 3);
    let mut after_nodes = before.nodes.clone();
    after_nodes.push(node("node-new", "zone-0", 1 << 40));
    let after = map_of(after_nodes, 3);
    let (rb, ra) = (Ring::new(&before), Ring::new(&after));
    let mut moved = 0usize;
    let mut total = 0usize;
    for i in 0..chunks {
        let c = chunk(i);
        let old: HashSet<NodeId> = ids(&rb, &c, 3).into_iter().collect();
        let new = ids(&ra, &c, 3);
        total += new.len();
        moved += new.iter().filter(|id| !old.contains(id)).count();
    }
    moved as f64 / total as f64
}

#[test]
fn joining_node_moves_about_its_share() {
    for n in [3usize, 10, 100] {
        let fraction = moved_fraction_on_join(n, 20_000);
        let ideal = 1.0 / (n as f64 + 1.0);
        println!("join 1 node to {n}: moved {fraction:.4} of copies (ideal {ideal:.4})");
        // With 3 nodes and rf 3 every node holds everything, so a 4th takes
        // exactly a quarter of copies; beyond that, vnode noise only.
        assert!(
            fraction <= ideal * 1.35,
            "n={n}: moved {fraction}, ideal {ideal}"
        );
        assert!(
            fraction >= ideal * 0.65,
            "n={n}: moved {fraction}, ideal {ideal}"
        );
    }
}

#[test]
fn load_is_balanced_over_100k_chunks() {
    for n in [10usize, 100] {
        let map = uniform_map(n, 1, 3);
        let ring = Ring::new(&map);
        let mut load: HashMap<NodeId, usize> = HashMap::new();
        for i in 0..100_000 {
            for id in ids(&ring, &chunk(i), 3) {
                *load.entry(id).or_default() += 1;
            }
        }
        let mean = 300_000.0 / n as f64;
        let max = *load.values().max().unwrap() as f64;
        println!(
            "{n} nodes, 100k chunks, rf 3: max/mean load {:.3}",
            max / mean
        );
        assert!(max / mean < 1.35, "max/mean {}", max / mean);
    }
}

#[test]
fn capacity_weights_the_share() {
    let map = map_of(
        vec![
            node("big", "a", 2 << 40),
            node("small-1", "b", 1 << 40),
            node("small-2", "c", 1 << 40),
        ],
        1,
    );
    let ring = Ring::new(&map);
    let mut big = 0;
    for i in 0..40_000 {
        if ring.targets(&chunk(i), 1)[0].id.0 == "big" {
            big += 1;
        }
    }
    let share = big as f64 / 40_000.0;
    assert!((share - 0.5).abs() < 0.06, "big node share {share}");
}

#[test]
fn empty_map_places_nothing() {
    let map = map_of(vec![], 3);
    assert!(targets(&chunk(1), &map).is_empty());
}

#[test]
fn losing_a_node_moves_only_its_chunks() {
    let map = uniform_map(10, 1, 3);
    let mut less = map.clone();
    less.nodes[4].state = NodeState::Down;
    let lost = less.nodes[4].id.clone();
    let (ra, rb) = (Ring::new(&map), Ring::new(&less));
    for i in 0..5_000 {
        let c = chunk(i);
        let before = ids(&ra, &c, 3);
        let after = ids(&rb, &c, 3);
        if !before.contains(&lost) {
            assert_eq!(before, after, "a chunk not on the lost node must not move");
        } else {
            let kept: Vec<_> = before.iter().filter(|id| **id != lost).collect();
            assert!(kept.iter().all(|id| after.contains(id)));
        }
    }
}

fn state_of(code: u32) -> NodeState {
    match code % 4 {
        0 => NodeState::Up,
        1 => NodeState::Down,
        2 => NodeState::Full,
        _ => NodeState::Draining,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Full nodes stay targets but never receive writes; draining nodes are
    /// never targets but readers still find them; without full nodes the
    /// write targets are exactly the targets.
    #[test]
    fn node_states_steer_writes_and_reads(
        count in 1usize..16, zones in 1usize..4, rf in 1u32..5, states in any::<u64>(), seed in any::<u64>()
    ) {
        let mut map = uniform_map(count, zones, rf);
        for (i, n) in map.nodes.iter_mut().enumerate() {
            n.state = state_of((states >> (2 * i)) as u32);
        }
        let ring = Ring::new(&map);
        let rf = rf as usize;
        let writable = map.nodes.iter().filter(|n| n.state == NodeState::Up).count();
        let has_full = map.nodes.iter().any(|n| n.state == NodeState::Full);
        prop_assert_eq!(ring.writable_count(), writable);
        for i in 0..30 {
            let c = chunk(seed.wrapping_add(i));
            let write_targets: Vec<NodeId> =
                ring.write_targets(&c, rf).into_iter().map(|n| n.id.clone()).collect();
            prop_assert_eq!(write_targets.len(), writable.min(rf));
            for id in &write_targets {
                prop_assert_eq!(map.node(id).unwrap().state, NodeState::Up);
            }
            if !has_full {
                prop_assert_eq!(&write_targets, &ids(&ring, &c, rf));
            }
            for n in ring.targets(&c, rf) {
                prop_assert!(n.state.is_placement_target());
            }
            let readers: Vec<NodeId> =
                ring.read_order(&c, rf).into_iter().map(|n| n.id.clone()).collect();
            let serving = map.nodes.iter().filter(|n| n.state.serves_reads()).count();
            prop_assert_eq!(readers.len(), serving);
            let distinct: HashSet<_> = readers.iter().collect();
            prop_assert_eq!(distinct.len(), readers.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The targets walk stops early; it must give exactly the head of the
    /// full preference order, for every mix of zones and states.
    #[test]
    fn targets_are_the_head_of_the_preference_order(
        count in 1usize..24, zones in 1usize..6, rf in 1u32..6, states in any::<u64>(), seed in any::<u64>()
    ) {
        let mut map = uniform_map(count, zones, rf);
        for (i, n) in map.nodes.iter_mut().enumerate() {
            n.state = state_of((states >> (2 * (i % 32))) as u32);
        }
        let ring = Ring::new(&map);
        let rf = rf as usize;
        for i in 0..40 {
            let c = chunk(seed.wrapping_add(i));
            let head = |order: Vec<&cairn_proto::NodeInfo>| -> Vec<NodeId> {
                order.into_iter().take(rf).map(|n| n.id.clone()).collect()
            };
            prop_assert_eq!(ids(&ring, &c, rf), head(ring.preference(&c, rf)));
            let write_targets: Vec<NodeId> =
                ring.write_targets(&c, rf).into_iter().map(|n| n.id.clone()).collect();
            prop_assert_eq!(write_targets, head(ring.write_preference(&c, rf)));
        }
    }
}
