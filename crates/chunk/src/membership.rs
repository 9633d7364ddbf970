//! Registration with the metadata service and heartbeats.
//!
//! A node registers with its persisted id and current address (so an
//! address change is absorbed, not a new node), then heartbeats. When the
//! metadata service answers that it does not know the node, it registers
//! again. Failures are retried forever with a capped backoff: a chunk server
//! keeps serving reads while the metadata service is away.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_client::MetaClient;
use cairn_proto::api::{HeartbeatRequest, RegisterRequest};

use crate::store::ChunkStore;

pub struct Registration {
    pub meta: String,
    pub addr: String,
    pub zone: String,
    pub capacity_bytes: u64,
    pub heartbeat_interval: Duration,
}

const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

pub async fn keep_registered(store: Arc<ChunkStore>, registration: Registration) {
    let client = MetaClient::new(&registration.meta);
    let request = RegisterRequest {
        id: store.node_id().clone(),
        addr: registration.addr.clone(),
        zone: registration.zone.clone(),
        capacity_bytes: registration.capacity_bytes,
    };
    let mut registered = false;
    let mut delay = Duration::from_millis(100);
    loop {
        if !registered {
            match client.register(&request).await {
                Ok(map) => {
                    tracing::info!(epoch = map.epoch, "registered with the metadata service");
                    registered = true;
                    delay = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(meta = %registration.meta, "cannot register yet: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                    continue;
                }
            }
        }
        tokio::time::sleep(registration.heartbeat_interval).await;
        let beat = HeartbeatRequest {
            id: store.node_id().clone(),
            used_bytes: store.used_bytes(),
            chunk_count: store.chunk_count(),
        };
        match client.heartbeat(&beat).await {
            Ok(answer) if !answer.registered => registered = false,
            Ok(_) => {}
            Err(e) => tracing::warn!("heartbeat failed: {e}"),
        }
    }
}

/// Total size of the file system holding `dir`: the default placement weight.
pub fn disk_size_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `stats` a valid out-pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stats.f_blocks as u64 * stats.f_frsize as u64)
}
