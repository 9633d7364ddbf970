//! `cairn mount`: Cairn as a directory. A FUSE file system (fuser, which
//! mounts through /dev/fuse without libfuse) over the client file API.
//!
//! - Inode numbers are Cairn file ids (the root is 1 in both).
//! - Names: the mount remembers, for every inode the kernel knows, its
//!   directory and name (`names.rs`), and reaches the metadata service by
//!   path; a file's contents are committed by id.
//! - Open files: one [`contents::Contents`] per open inode, shared by its
//!   handles (`open_file.rs`). Writes change chunks in memory; chunks a
//!   writer has moved past are uploaded behind it; `fsync` and `close`
//!   commit the new chunk list in one step (close-to-open consistency).
//! - Reads fetch and verify whole chunks through a shared cache
//!   (`cache.rs`) and fetch ahead of sequential readers.

pub mod cache;
pub mod contents;
mod errno;
mod fs;
pub mod limits;
mod mount;
mod names;
mod open_file;

pub use mount::{mount, unmount, MountError, MountOptions};
