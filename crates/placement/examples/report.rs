//! Prints the placement figures the design asks for: the fraction of copies
//! moved when one node joins N (N = 3, 10, 100) and the max/mean load over
//! 100k chunks. Run: `cargo run --release -p cairn-placement --example report`.

#[path = "../tests/common.rs"]
mod common;

use std::collections::{HashMap, HashSet};

use cairn_placement::Ring;
use cairn_proto::NodeId;
use common::*;

fn main() {
    const CHUNKS: u64 = 100_000;
    for n in [3usize, 10, 100] {
        let before = uniform_map(n, 1, 3);
        let mut grown = before.nodes.clone();
        grown.push(node("node-new", "zone-0", 1 << 40));
        let after = map_of(grown, 3);
        let (rb, ra) = (Ring::new(&before), Ring::new(&after));
        let (mut moved, mut total) = (0usize, 0usize);
        let mut load: HashMap<NodeId, usize> = HashMap::new();
        for i in 0..CHUNKS {
            let c = chunk(i);
            let old: HashSet<&NodeId> = rb.targets(&c, 3).into_iter().map(|n| &n.id).collect();
            for t in rb.targets(&c, 3) {
                *load.entry(t.id.clone()).or_default() += 1;
            }
            let new = ra.targets(&c, 3);
            total += new.len();
            moved += new.iter().filter(|t| !old.contains(&t.id)).count();
        }
        let mean = (CHUNKS * 3) as f64 / n as f64;
        let max = *load.values().max().unwrap() as f64;
        println!(
            "N={n:>3}: join moves {:.4} of copies (ideal 1/(N+1) = {:.4}); max/mean load {:.3}",
            moved as f64 / total as f64,
            1.0 / (n as f64 + 1.0),
            max / mean
        );
        // Lookup cost: the early-stopping targets walk against the full
        // preference walk it replaced, measured in the same run.
        let started = std::time::Instant::now();
        let mut sink = 0usize;
        for i in 0..CHUNKS {
            sink += ra.targets(&chunk(i), 3).len();
        }
        let targets_ns = started.elapsed().as_nanos() as f64 / CHUNKS as f64;
        let started = std::time::Instant::now();
        for i in 0..CHUNKS {
            sink += ra.preference(&chunk(i), 3).len();
        }
        let full_ns = started.elapsed().as_nanos() as f64 / CHUNKS as f64;
        println!(
            "        targets lookup {targets_ns:.0} ns; full preference walk {full_ns:.0} ns ({:.1}x) [{sink}]",
            full_ns / targets_ns
        );
    }
}
