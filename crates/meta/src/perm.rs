//! Who may do what to a file or directory: POSIX permission bits checked
//! for a [`Principal`]. Pure functions; the state machine calls them before
//! any write.
//!
//! The rules (as a POSIX file system, Linux's choices where POSIX leaves
//! them open):
//! - Exactly one class applies: the owner's bits if the caller owns the
//!   object, else the group's bits if the caller is in its group, else the
//!   others' bits (an owner denied by the owner bits is denied, whatever
//!   the group bits say).
//! - Walking a path needs search (`x`) on every directory along it.
//! - Listing a directory needs read (`r`) on it; reading a file's contents
//!   (its chunk list and the capabilities to fetch them) needs read on it.
//! - Creating, removing or renaming an entry needs write and search on the
//!   directory that holds it; in a directory with the sticky bit, only
//!   the entry's owner or the directory's may remove or rename it (`/tmp`).
//!   Moving a directory to another parent also needs write on the
//!   directory itself (its `..` changes).
//! - Set-user-id and set-group-id: a write by anyone but an admin clears
//!   set-uid, and set-gid when group execute is on (an executable's
//!   privileges do not survive a change of its contents); a chown of a
//!   file clears both the same way, whoever makes it; a chmod by an owner
//!   outside the file's group drops set-gid. Entries made in a set-gid
//!   directory take its group, and directories made there its set-gid
//!   bit.
//! - Replacing a file's contents in place needs write on the file.
//! - Removing a directory with its contents needs read, write and search on
//!   every non-empty directory inside it.
//! - Only the owner (or an admin) may chmod; only an admin may change an
//!   owner; the owner may change the group to one of their own groups.
//!   These refusals are `not_owner` (EPERM), the others
//!   `permission_denied` (EACCES).
//! - An admin passes every check (as root does).
//!
//! Owners and groups are numeric ids (the first admin is uid 0, group 0),
//! as on a POSIX disk; names are looked up only to show them.

use cairn_proto::{ApiError, ErrorCode};

pub const READ: u32 = 0o4;
pub const WRITE: u32 = 0o2;
pub const SEARCH: u32 = 0o1;

/// The mode bits beyond the permission bits.
pub const SET_UID: u32 = 0o4000;
pub const SET_GID: u32 = 0o2000;
pub const STICKY: u32 = 0o1000;
const GROUP_EXECUTE: u32 = 0o010;

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

    /// A local process of a trusted client, as an admin's session acts for
    /// it (`cairn mount --allow-other`): its uid and groups, with an
    /// admin's rights for uid 0 (root).
    pub fn acting(acting: &cairn_proto::api::Acting) -> Principal {
        Principal {
            uid: acting.uid,
            name: format!("uid {}", acting.uid),
            gids: acting.gids.clone(),
            admin: acting.uid == ROOT_UID,
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
    if mode <= 0o7777 {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::InvalidArgument,
        format!(
            "mode {mode:o} is not a permission mode: cairn keeps the bits 0 to 7777 (octal: set-uid, set-gid, \
             sticky, and read, write, execute for owner, group and others)"
        ),
    ))
}

/// `mode` after a change of a file's contents by `who`: set-uid goes, and
/// set-gid with group execute (set-gid without it marks mandatory locking
/// and stays), unless an admin made the change (as CAP_FSETID).
pub fn mode_after_write(mode: u32, who: &Principal) -> u32 {
    if who.admin {
        mode
    } else {
        without_set_ids(mode)
    }
}

/// `mode` with set-uid dropped, and set-gid when group execute is on: a
/// file's after a write or a chown.
pub fn without_set_ids(mode: u32) -> u32 {
    let mut mode = mode & !SET_UID;
    if mode & GROUP_EXECUTE != 0 {
        mode &= !SET_GID;
    }
    mode
}

/// Whether `who` may remove or rename an entry owned by `entry_uid` from
/// a directory owned by `dir_uid` with `dir_mode`: always, unless the
/// directory is sticky and `who` owns neither (and is no admin).
pub fn sticky_allows(who: &Principal, dir_uid: u32, dir_mode: u32, entry_uid: u32) -> bool {
    dir_mode & STICKY == 0 || who.admin || who.uid == dir_uid || who.uid == entry_uid
}

/// `rwxr-x---` for 0o750.
pub fn mode_string(mode: u32) -> String {
    let mut out = String::with_capacity(9);
    // As ls: the special bit shows in the execute place, lower case when
    // execute is on too (`rwsr-xr-x`, `rwxrwxrwt`, `rw-r-Sr--`).
    for (shift, special, letter) in [(6, SET_UID, 's'), (3, SET_GID, 's'), (0, STICKY, 't')] {
        let bits = (mode >> shift) & 0o7;
        out.push(if bits & READ != 0 { 'r' } else { '-' });
        out.push(if bits & WRITE != 0 { 'w' } else { '-' });
        out.push(match (bits & SEARCH != 0, mode & special != 0) {
            (true, false) => 'x',
            (false, false) => '-',
            (true, true) => letter,
            (false, true) => letter.to_ascii_uppercase(),
        });
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
    fn special_bits_follow_linux() {
        let alice = alice();
        let admin = Principal::system();
        assert_eq!(mode_string(0o4755), "rwsr-xr-x");
        assert_eq!(mode_string(0o2644), "rw-r-Sr--");
        assert_eq!(mode_string(0o1777), "rwxrwxrwt");
        // A write drops set-uid, and set-gid only with group execute.
        assert_eq!(mode_after_write(0o6755, &alice), 0o0755);
        assert_eq!(mode_after_write(0o6745, &alice), 0o2745);
        assert_eq!(mode_after_write(0o6755, &admin), 0o6755);
        assert_eq!(without_set_ids(0o7777), 0o1777);
        // A sticky directory: the entry's owner, the directory's, an admin.
        assert!(sticky_allows(&alice, BOB, 0o1777, ALICE));
        assert!(sticky_allows(&alice, ALICE, 0o1777, BOB));
        assert!(!sticky_allows(&alice, BOB, 0o1777, BOB));
        assert!(sticky_allows(&alice, BOB, 0o0777, BOB));
        assert!(sticky_allows(&admin, BOB, 0o1777, BOB));
        assert!(validate_mode(0o7777).is_ok() && validate_mode(0o10000).is_err());
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
        assert!(validate_mode(0o1777).is_ok());
    }

    proptest! {
        /// A check passes exactly when the one applicable class has the bits.
        #[test]
        fn matches_the_posix_rule(mode in 0u32..0o10000, want in 1u32..8, owns: bool, in_group: bool) {
            let alice = alice();
            let owner = if owns { ALICE } else { BOB };
            let group = if in_group { ENG } else { OPS };
            let class = if owns { (mode >> 6) & 7 } else if in_group { (mode >> 3) & 7 } else { mode & 7 };
            prop_assert_eq!(alice.may(owner, group, mode, want), class & want == want);
        }
    }
}
