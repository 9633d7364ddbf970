//! The names of the inodes the kernel knows: for each, its directory and
//! its name there (several for a file with hard links), and how many
//! times the kernel looked it up (it forgets an inode by giving those
//! back). The mount reaches the metadata service by path, built from here.

use std::collections::HashMap;

use cairn_proto::ids::ROOT_ID;
use fuser::Errno;

/// The deepest path Cairn holds (`cairn_proto::path::MAX_PATH_DEPTH`) and
/// then some: a longer walk up means a cycle, which is a bug.
const MAX_WALK_UP: usize = 1024;
/// The most names of one hard-linked file kept (the latest learnt): any
/// one of them reaches it.
const MAX_NAMES_PER_INODE: usize = 16;

#[derive(Default)]
pub struct Names {
    nodes: HashMap<u64, Node>,
    /// (directory, name) -> inode.
    children: HashMap<(u64, String), u64>,
}

struct Node {
    /// Where it is known, the latest learnt last: one place, or for a file
    /// with hard links up to [`MAX_NAMES_PER_INODE`]. Empty: no name now
    /// (removed, or replaced by a rename).
    names: Vec<(u64, String)>,
    lookups: u64,
}

impl Names {
    /// The kernel learnt `ino` as `name` in `parent` (a lookup, a create).
    /// With `shared`, the inode has other names (a file with hard links),
    /// which it keeps; otherwise this is its one name now, wherever the
    /// kernel knew it before (moved by another client since).
    pub fn learn(&mut self, parent: u64, name: &str, ino: u64, shared: bool) {
        assert_ne!(ino, ROOT_ID, "the root has no name");
        let place = (parent, name.to_string());
        let node = self.nodes.entry(ino).or_insert(Node {
            names: Vec::new(),
            lookups: 0,
        });
        node.lookups += 1;
        node.names.retain(|known| *known != place);
        let dropped: Vec<(u64, String)> = if shared {
            let excess = node.names.len().saturating_sub(MAX_NAMES_PER_INODE - 1);
            node.names.drain(..excess).collect()
        } else {
            std::mem::take(&mut node.names)
        };
        node.names.push(place.clone());
        for old in dropped {
            if self.children.get(&old) == Some(&ino) {
                self.children.remove(&old);
            }
        }
        if let Some(previous) = self.children.insert(place.clone(), ino) {
            if previous != ino {
                // That name now names another inode: the old one loses it.
                if let Some(node) = self.nodes.get_mut(&previous) {
                    node.names.retain(|known| *known != place);
                }
            }
        }
    }

    /// The kernel forgot `count` lookups of `ino`.
    pub fn forget(&mut self, ino: u64, count: u64) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups == 0 {
            let node = self.nodes.remove(&ino).expect("present above");
            for place in node.names {
                if self.children.get(&place) == Some(&ino) {
                    self.children.remove(&place);
                }
            }
        }
    }

    /// `name` in `parent` was renamed to `new_name` in `new_parent`.
    pub fn renamed(&mut self, parent: u64, name: &str, new_parent: u64, new_name: &str) {
        let old = (parent, name.to_string());
        let Some(ino) = self.children.remove(&old) else {
            return;
        };
        self.unlinked(new_parent, new_name);
        let place = (new_parent, new_name.to_string());
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.names.retain(|known| *known != old);
            node.names.push(place.clone());
        }
        self.children.insert(place, ino);
    }

    /// `name` in `parent` is gone: its inode (if known) loses that name.
    pub fn unlinked(&mut self, parent: u64, name: &str) {
        let place = (parent, name.to_string());
        if let Some(ino) = self.children.remove(&place) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.names.retain(|known| *known != place);
            }
        }
    }

    /// The inode named `name` in `parent`, if the kernel knows it.
    pub fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.children.get(&(parent, name.to_string())).copied()
    }

    /// The absolute path of `ino` (by its latest name): ESTALE when it or
    /// a directory above it has no name any more (removed, or forgotten).
    pub fn path(&self, ino: u64) -> Result<String, Errno> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT_ID {
            let node = self.nodes.get(&at).ok_or(Errno::ESTALE)?;
            let (parent, name) = node.names.last().ok_or(Errno::ESTALE)?;
            names.push(name.as_str());
            at = *parent;
            assert!(
                names.len() <= MAX_WALK_UP,
                "a cycle in the names of the mount"
            );
        }
        if names.is_empty() {
            return Ok("/".to_string());
        }
        names.reverse();
        Ok(format!("/{}", names.join("/")))
    }

    /// The path of `name` in directory `parent`.
    pub fn child_path(&self, parent: u64, name: &str) -> Result<String, Errno> {
        let dir = self.path(parent)?;
        Ok(if dir == "/" {
            format!("/{name}")
        } else {
            format!("{dir}/{name}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_lookups_renames_and_removals() {
        let mut names = Names::default();
        names.learn(1, "a", 10, false);
        names.learn(10, "b", 11, false);
        names.learn(11, "f", 12, false);
        assert_eq!(names.path(12).unwrap(), "/a/b/f");
        assert_eq!(names.path(1).unwrap(), "/");
        assert_eq!(names.child_path(1, "x").unwrap(), "/x");
        names.renamed(10, "b", 1, "c");
        assert_eq!(names.path(12).unwrap(), "/c/f");
        assert_eq!(names.child(1, "c"), Some(11));
        // A rename over a known name leaves the replaced inode nameless.
        names.learn(1, "d", 13, false);
        names.renamed(1, "c", 1, "d");
        assert_eq!(names.path(13), Err(Errno::ESTALE));
        assert_eq!(names.path(12).unwrap(), "/d/f");
        names.unlinked(11, "f");
        assert_eq!(names.path(12), Err(Errno::ESTALE));
        assert_eq!(names.path(99), Err(Errno::ESTALE));
    }

    #[test]
    fn an_inode_is_forgotten_after_its_last_lookup() {
        let mut names = Names::default();
        names.learn(1, "a", 10, false);
        names.learn(1, "a", 10, false);
        names.forget(10, 1);
        assert_eq!(names.path(10).unwrap(), "/a");
        names.forget(10, 1);
        assert_eq!(names.path(10), Err(Errno::ESTALE));
        assert_eq!(names.child(1, "a"), None);
        assert!(names.nodes.is_empty());
    }

    #[test]
    fn a_lookup_that_finds_an_inode_elsewhere_moves_it() {
        let mut names = Names::default();
        names.learn(1, "a", 10, false);
        names.learn(1, "b", 10, false);
        assert_eq!(names.path(10).unwrap(), "/b");
        assert_eq!(names.child(1, "a"), None);
    }

    #[test]
    fn a_hard_linked_file_keeps_every_name_until_each_goes() {
        let mut names = Names::default();
        names.learn(1, "d", 5, false);
        names.learn(5, "a", 10, false);
        names.learn(1, "b", 10, true);
        assert_eq!(names.path(10).unwrap(), "/b");
        names.unlinked(1, "b");
        assert_eq!(names.path(10).unwrap(), "/d/a", "the other name");
        names.renamed(5, "a", 1, "c");
        assert_eq!(names.path(10).unwrap(), "/c");
        names.unlinked(1, "c");
        assert_eq!(names.path(10), Err(Errno::ESTALE));
        // Only the latest names are kept.
        for i in 0..(MAX_NAMES_PER_INODE + 4) {
            names.learn(1, &format!("n{i}"), 10, true);
        }
        assert_eq!(names.nodes[&10].names.len(), MAX_NAMES_PER_INODE);
        assert_eq!(names.child(1, "n0"), None);
        assert_eq!(names.child(1, "n19"), Some(10));
        names.forget(10, u64::MAX);
        assert_eq!(names.children.len(), 1, "only /d is left");
    }
}
