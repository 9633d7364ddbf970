//! Files removed while open: POSIX keeps an unlinked file readable and
//! writable until its last close. A mount that removes the last name of a
//! file it has open asks for it to be held (`RemoveRequest::hold_open`):
//! the file leaves the namespace (no name, `parent` [`DETACHED`]) but its
//! record and chunks stay, reachable by id to the holder, until the mount
//! releases it at the last close (`fs/release`) or the session it was
//! held by ends (logout, expiry, its user's removal: a crashed mount's
//! files go with its session).

use cairn_proto::api::MutationResponse;
use cairn_proto::{ApiError, ErrorCode, FileId};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::auth::TokenHash;
use crate::records::{decode, encode, Initial, StateError, Versioned};
use crate::state::inode::{Inode, DETACHED};
use crate::state::tables::{InodeRows, Tables};

/// Who holds a removed file open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The session of the client that removed it while it had it open.
    pub session: TokenHash,
    /// The uid that removed it; with the file's owner and admins, the
    /// only ones who reach it (by id) from then on.
    pub uid: u32,
}

impl Versioned for Held {
    const NAME: &'static str = "held";
    const FORMAT: u8 = 1;
    type Previous = Initial;
    fn upgrade(previous: Initial) -> Held {
        match previous {}
    }
}

/// The hold on file `id`, if it is a file removed while open.
pub fn held(rows: &impl InodeRows, id: FileId) -> Result<Option<Held>, StateError> {
    match rows.get(id)? {
        Some(bytes) => Ok(Some(decode(bytes.value())?)),
        None => Ok(None),
    }
}

impl Tables<'_> {
    /// Keeps file `id` (record `inode`), whose last entry just went, for
    /// `session`, which has it open (see `drop_name`).
    pub fn hold(
        &mut self,
        id: FileId,
        mut inode: Inode,
        session: &TokenHash,
        uid: u32,
        now_ns: u64,
    ) -> Result<(), StateError> {
        assert!(
            inode.is_file() && inode.names == 1,
            "only a file's last name"
        );
        inode.names = 0;
        inode.parent = DETACHED;
        inode.touch_attributes(now_ns);
        self.save_inode(id, &inode)?;
        let held = Held {
            session: *session,
            uid,
        };
        self.ns.held.insert(id, encode(&held).as_slice())?;
        self.held_by_session.insert((*session, id), ())?;
        Ok(())
    }

    /// `fs/release`: `session` closed the held file `id` for the last
    /// time; it goes with its chunk references.
    pub fn release(
        &mut self,
        session: &TokenHash,
        id: FileId,
    ) -> Result<MutationResponse, StateError> {
        match held(&self.ns.held, id)? {
            Some(hold) if hold.session == *session => {}
            _ => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("this session holds no removed file with id {id} (released already, or never held)"),
                )
                .into())
            }
        }
        self.drop_hold(session, id)?;
        Ok(MutationResponse {
            id,
            path: String::new(),
        })
    }

    /// `session` ended: the files it held go.
    pub fn release_session(&mut self, session: &TokenHash) -> Result<(), StateError> {
        let mut ids = Vec::new();
        for row in self
            .held_by_session
            .range((*session, 0)..=(*session, u64::MAX))?
        {
            ids.push(row?.0.value().1);
        }
        for id in ids {
            self.drop_hold(session, id)?;
        }
        Ok(())
    }

    fn drop_hold(&mut self, session: &TokenHash, id: FileId) -> Result<(), StateError> {
        self.held_by_session.remove((*session, id))?;
        self.ns.held.remove(id)?;
        let inode = self.delete_inode(id)?;
        assert_eq!(inode.names, 0, "a held file has no name");
        Ok(())
    }
}
