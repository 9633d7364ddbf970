//! Request de-duplication: the outcome of every write that carried a
//! request id is kept for [`REQUEST_RETENTION_NS`], so that a client
//! retrying it (across a leader change, a timeout) gets the first outcome
//! instead of a second application.

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_REMEMBERED_REQUESTS, REQUEST_RETENTION_NS};
use crate::records::{decode, encode, Codec, Initial, StateError, Versioned};
use crate::state::command::Response;
use crate::state::tables::Tables;

/// What a request id applied to, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOutcome {
    pub applied_ns: u64,
    pub response: Response,
}

impl Versioned for RequestOutcome {
    const NAME: &'static str = "request outcome";
    const FORMAT: u8 = 1;
    // Responses hold API types that skip absent fields: JSON.
    const CODEC: Codec = Codec::Json;
    type Previous = Initial;
    fn upgrade(previous: Initial) -> RequestOutcome {
        match previous {}
    }
}

impl Tables<'_> {
    /// The first outcome of request `id`, if it applied before.
    pub fn remembered(&self, id: u128) -> Result<Option<Response>, StateError> {
        match self.requests.get(id)? {
            Some(bytes) => Ok(Some(decode::<RequestOutcome>(bytes.value())?.response)),
            None => Ok(None),
        }
    }

    /// Keeps the outcome of request `id` (applied at `now_ns`).
    pub fn remember(
        &mut self,
        id: u128,
        now_ns: u64,
        response: &Response,
    ) -> Result<(), StateError> {
        let record = RequestOutcome {
            applied_ns: now_ns,
            response: response.clone(),
        };
        self.requests.insert(id, encode(&record).as_slice())?;
        self.requests_by_time.insert((now_ns, id), ())?;
        Ok(())
    }

    /// Forgets outcomes older than the retention, and the oldest beyond
    /// the count limit.
    pub fn forget_requests(&mut self, now_ns: u64) -> Result<(), StateError> {
        let horizon_ns = now_ns.saturating_sub(REQUEST_RETENTION_NS);
        let excess = self
            .requests_by_time
            .len()?
            .saturating_sub(MAX_REMEMBERED_REQUESTS - 1);
        let mut forget = Vec::new();
        for row in self.requests_by_time.iter()? {
            let (key, _) = row?;
            let (at_ns, id) = key.value();
            if at_ns >= horizon_ns && forget.len() as u64 >= excess {
                break;
            }
            forget.push((at_ns, id));
        }
        for (at_ns, id) in forget {
            self.requests_by_time.remove((at_ns, id))?;
            self.requests.remove(id)?;
        }
        Ok(())
    }
}
