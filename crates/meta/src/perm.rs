//! Who may do what to a file or directory: POSIX permission bits checked
//! for a [`Principal`]. Pure functions; the state machine calls them before
//! any write.
//!
//! The rules (as a POSIX file system without the sticky bit):
//! - Exactly one class applies: the owner's bits if the caller owns the
//!   object, else the group's bits if the caller is in its group, else the
//!   others' bits (an owner denied by the owner bits is denied, whatever
//!   the group bits say).
//! - Walking a path needs search (`x`) on every directory along it.
//! - Listing a directory needs read (`r`) on it; reading a file's contents
//!   (its chunk list and the capabilities to fetch them) needs read on it.
//! - Creating, removing or renaming an entry needs write and search on the
//!   directory that holds it; no sticky bit: whoever may write a directory
//!   may remove or rename any entry in it. Moving a directory to another
//!   parent also needs write on the directory itself (its `..` changes).
//! - Replacing a file's contents in place needs write on the file.
//! - Removing a directory with its contents needs read, write and search on
//!   every non-empty directory inside it.
//! - Only the owner (or an admin) may chmod; only an admin may change an
//!   owner; the owner may change the group to one of their own groups.
//! - An admin passes every check (as root does).
//!
//! Owners and groups are numeric ids (the first admin is uid 0, group 0),
//! as on a POSIX disk; names are looked up only to show them.

use cairn_proto::{ApiError, ErrorCode};

pub const READ: u32 = 0o4;
pub const WRITE: u32 = 0o2;
pub const SEARCH: u32 = 0o1;

/// The name of the user a fresh cluster starts with, and its ids.
pub const ADMIN_USER: &str = "admin";
pub const ROOT_UID: u32 = 0;
pub const ROOT_GID: u32 = 0;

/// Default permission bits of new files and directories.
pub const FILE_MODE: u32 = 0o644;
pub const DIR_MODE: u32 = 0o755;
/// Home directories are private to their owner.
pub const HOME_MODE: u32 = 0o700;

/// The caller of an operation: a user, or the cluster itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub uid: u32,
    /// The user's name, for messages.
    pub name: String,
    /// The user's groups; the first is their primary group, given to the
    /// files they create.
    pub gids: Vec<u32>,
    pub admin: bool,
}

impl Principal {
    /// Cluster processes (chunk servers, the liveness watcher) and
    /// commands without a user, such as those logged before users existed:
    /// they act as root, and what they create belongs to uid 0.
    pub fn system() -> Principal {
        Principal {
            uid: ROOT_UID,
            name: "the cluster".to_string(),
            gids: vec![ROOT_GID],
            admin: true,
        }
    }

    pub fn primary_gid(&self) -> u32 {
        self.gids.first().copied().unwrap_or(self.uid)
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gids.contains(&gid)
    }

    /// Whether the caller has every bit of `want` on an object with this
    /// owner, group and mode.
    pub fn may(&self, uid: u32, gid: u32, mode: u32, want: u32) -> bool {
        if self.admin {
            return true;
        }
        let class_bits = if uid == self.uid {
            mode >> 6
        } else if self.in_group(gid) {
            mode >> 3
        } else {
            mode
        } & 0o7;
        class_bits & want == want
    }
}

/// Checks bits given with chmod, mkdir or put.
pub fn validate_mode(mode: u32) -> Result<(), ApiError> {
    if mode <= 0o777 {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::InvalidArgument,
        format!(
            "mode {mode:o} is not a permission mode: cairn keeps the bits 0 to 777 (octal); it has no setuid, \
             setgid or sticky bit"
        ),
    ))
}

/// `rwxr-x---` for 0o750.
pub fn mode_string(mode: u32) -> String {
    let mut out = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        out.push(if bits & READ != 0 { 'r' } else { '-' });
        out.push(if bits & WRITE != 0 { 'w' } else { '-' });
        out.push(if bits & SEARCH != 0 { 'x' } else { '-' });
    }
    out
}

/// `read`, `write`, `search`, or a combination, for messages.
pub fn access_words(want: u32, is_dir: bool) -> String {
    let mut words = Vec::new();
    if want & READ != 0 {
        words.push("read");
    }
    if want & WRITE != 0 {
        words.push("write");
    }
    if want & SEARCH != 0 {
        words.push(if is_dir { "search (x)" } else { "execute" });
    }
    words.join(" and ")
}

/// What a refusal says about the object it refused access to.
pub struct Object<'a> {
    /// `directory /a` or `file /a/b`.
    pub name: &'a str,
    pub owner: &'a str,
    pub group: &'a str,
    pub mode: u32,
    pub is_dir: bool,
}

/// The refusal for a failed check: what was tried, on what, what was
/// missing, and what the object's owner, group and bits are.
pub fn denied(who: &Principal, doing: &str, object: &Object<'_>, want: u32) -> ApiError {
    ApiError::new(
        ErrorCode::PermissionDenied,
        format!(
            "permission denied: {} may not {doing}: it needs {} permission on {} ({}, owner {}, \
             group {}); ask its owner or an admin",
            who.name,
            access_words(want, object.is_dir),
            object.name,
            mode_string(object.mode),
            object.owner,
            object.group,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALICE: u32 = 1000;
    const BOB: u32 = 1001;
    const ENG: u32 = 2000;
    const OPS: u32 = 2001;

    fn alice() -> Principal {
        Principal {
            uid: ALICE,
            name: "alice".into(),
            gids: vec![ALICE, ENG],
            admin: false,
        }
    }

    #[test]
    fn exactly_one_class_applies() {
        let alice = alice();
        // Owner bits only, even when the group or others have more.
        assert!(!alice.may(ALICE, ENG, 0o077, READ));
        assert!(alice.may(ALICE, ENG, 0o400, READ));
        // Group bits for a member who is not the owner.
        assert!(alice.may(BOB, ENG, 0o040, READ));
        assert!(!alice.may(BOB, ENG, 0o407, READ));
        // Others' bits for everyone else.
        assert!(alice.may(BOB, OPS, 0o004, READ));
        assert!(!alice.may(BOB, OPS, 0o770, READ));
        // Every wanted bit is needed.
        assert!(!alice.may(ALICE, 7, 0o600, WRITE | SEARCH));
        assert!(alice.may(ALICE, 7, 0o300, WRITE | SEARCH));
    }

    #[test]
    fn admins_pass_every_check() {
        assert!(Principal::system().may(BOB, BOB, 0, READ | WRITE | SEARCH));
    }

    #[test]
    fn modes_read_as_ls_shows_them() {
        assert_eq!(mode_string(0o750), "rwxr-x---");
        assert_eq!(mode_string(0o644), "rw-r--r--");
        assert!(validate_mode(0o777).is_ok());
        assert!(validate_mode(0o1777).is_err());
    }

    proptest! {
        /// A check passes exactly when the one applicable class has the bits.
        #[test]
        fn matches_the_posix_rule(mode in 0u32..0o1000, want in 1u32..8, owns: bool, in_group: bool) {
            let alice = alice();
            let owner = if owns { ALICE } else { BOB };
            let group = if in_group { ENG } else { OPS };
            let class = if owns { (mode >> 6) & 7 } else if in_group { (mode >> 3) & 7 } else { mode & 7 };
            prop_assert_eq!(alice.may(owner, group, mode, want), class & want == want);
        }
    }
}
