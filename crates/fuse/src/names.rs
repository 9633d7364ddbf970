//! The names of the inodes the kernel knows: for each, its directory and
//! its name there, and how many times the kernel looked it up (it forgets
//! an inode by giving those back). The mount reaches the metadata service
//! by path, built from here.

use std::collections::HashMap;

use cairn_proto::ids::ROOT_ID;
use fuser::Errno;

/// The deepest path Cairn holds (`cairn_proto::path::MAX_PATH_DEPTH`) and
/// then some: a longer walk up means a cycle, which is a bug.
const MAX_WALK_UP: usize = 1024;

#[derive(Default)]
pub struct Names {
    nodes: HashMap<u64, Node>,
    /// (directory, name) -> inode.
    children: HashMap<(u64, String), u64>,
}

struct Node {
    parent: u64,
    name: String,
    lookups: u64,
}

impl Names {
    /// The kernel learnt `ino` as `name` in `parent` (a lookup, a create).
    pub fn learn(&mut self, parent: u64, name: &str, ino: u64) {
        assert_ne!(ino, ROOT_ID, "the root has no name");
        match self.nodes.get_mut(&ino) {
            Some(node) => {
                node.lookups += 1;
                if node.parent != parent || node.name != name {
                    // Moved by another client since: its new place.
                    let old = (node.parent, std::mem::take(&mut node.name));
                    node.parent = parent;
                    node.name = name.to_string();
                    if self.children.get(&old) == Some(&ino) {
                        self.children.remove(&old);
                    }
                }
            }
            None => {
                self.nodes.insert(
                    ino,
                    Node {
                        parent,
                        name: name.to_string(),
                        lookups: 1,
                    },
                );
            }
        }
        if let Some(previous) = self.children.insert((parent, name.to_string()), ino) {
            if previous != ino {
                // That name now names another inode: the old one is nameless
                // until looked up again.
                if let Some(node) = self.nodes.get_mut(&previous) {
                    node.name.clear();
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
            let key = (node.parent, node.name);
            if self.children.get(&key) == Some(&ino) {
                self.children.remove(&key);
            }
        }
    }

    /// `name` in `parent` was renamed to `new_name` in `new_parent`.
    pub fn renamed(&mut self, parent: u64, name: &str, new_parent: u64, new_name: &str) {
        let Some(ino) = self.children.remove(&(parent, name.to_string())) else {
            return;
        };
        self.unlinked(new_parent, new_name);
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.parent = new_parent;
            node.name = new_name.to_string();
        }
        self.children
            .insert((new_parent, new_name.to_string()), ino);
    }

    /// `name` in `parent` is gone: its inode (if known) has no path now.
    pub fn unlinked(&mut self, parent: u64, name: &str) {
        if let Some(ino) = self.children.remove(&(parent, name.to_string())) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.name.clear();
            }
        }
    }

    /// The inode named `name` in `parent`, if the kernel knows it.
    #[cfg(test)]
    pub fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.children.get(&(parent, name.to_string())).copied()
    }

    /// The absolute path of `ino`: ESTALE when it or a directory above it
    /// has no name any more (removed, or forgotten).
    pub fn path(&self, ino: u64) -> Result<String, Errno> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT_ID {
            let node = self.nodes.get(&at).ok_or(Errno::ESTALE)?;
            if node.name.is_empty() {
                return Err(Errno::ESTALE);
            }
            names.push(node.name.as_str());
            at = node.parent;
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
        names.learn(1, "a", 10);
        names.learn(10, "b", 11);
        names.learn(11, "f", 12);
        assert_eq!(names.path(12).unwrap(), "/a/b/f");
        assert_eq!(names.path(1).unwrap(), "/");
        assert_eq!(names.child_path(1, "x").unwrap(), "/x");
        names.renamed(10, "b", 1, "c");
        assert_eq!(names.path(12).unwrap(), "/c/f");
        assert_eq!(names.child(1, "c"), Some(11));
        // A rename over a known name leaves the replaced inode nameless.
        names.learn(1, "d", 13);
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
        names.learn(1, "a", 10);
        names.learn(1, "a", 10);
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
        names.learn(1, "a", 10);
        names.learn(1, "b", 10);
        assert_eq!(names.path(10).unwrap(), "/b");
        assert_eq!(names.child(1, "a"), None);
    }
}
