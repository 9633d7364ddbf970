//! Registration with the metadata service, heartbeats, and keeping this
//! node's copy of the cluster map current.
//!
//! A node registers with its persisted id and current address (so an
//! address change is absorbed, not a new node), then heartbeats with its
//! report. Each answer carries the map epoch; a newer one is fetched and
//! handed to the background loops. When the metadata service answers that
//! it does not know the node, it registers again. Failures are retried
//! forever with a capped backoff: a chunk server keeps serving reads while
//! the metadata service is away.

use std::sync::Arc;
use std::time::Duration;

use cairn_proto::api::{HeartbeatRequest, RegisterRequest};
use cairn_proto::ErrorCode;
use cairn_telemetry::counter;

use crate::limits::MAX_RETRY_DELAY;
use crate::node::Node;

pub struct Registration {
    pub addr: String,
    pub zone: String,
    pub capacity_bytes: u64,
    pub heartbeat_interval: Duration,
}

pub async fn keep_registered(node: Arc<Node>, registration: Registration) {
    let request = RegisterRequest {
        id: node.store.node_id().clone(),
        addr: registration.addr.clone(),
        zone: registration.zone.clone(),
        capacity_bytes: registration.capacity_bytes,
    };
    let mut registered = false;
    let mut delay = Duration::from_millis(100);
    loop {
        if !registered {
            match node.meta.register(&request).await {
                Ok(map) => {
                    tracing::info!(epoch = map.epoch, "registered with the metadata service");
                    node.offer_map(map);
                    registered = true;
                    delay = Duration::from_millis(100);
                }
                Err(e) => {
                    if matches!(
                        e.code(),
                        Some(ErrorCode::FailedPrecondition | ErrorCode::Unauthenticated)
                    ) {
                        tracing::error!("the metadata service refuses this node: {e}");
                    } else {
                        tracing::warn!(meta = %node.meta.addr(), "cannot register yet: {e}");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                    continue;
                }
            }
        }
        tokio::time::sleep(registration.heartbeat_interval).await;
        let beat = HeartbeatRequest {
            id: node.store.node_id().clone(),
            report: node.report(),
        };
        match node.meta.heartbeat(&beat).await {
            Ok(answer) if !answer.registered => {
                counter!("cairn_heartbeats_total", "result" => "unknown_node").increment(1);
                registered = false;
            }
            Ok(answer) => {
                counter!("cairn_heartbeats_total", "result" => "ok").increment(1);
                if answer.epoch > node.epoch() {
                    match node.meta.map().await {
                        Ok(map) => node.offer_map(map),
                        Err(e) => tracing::warn!("cannot fetch the new cluster map: {e}"),
                    }
                }
            }
            Err(e) => {
                counter!("cairn_heartbeats_total", "result" => "failed").increment(1);
                tracing::warn!("heartbeat failed: {e}");
            }
        }
    }
}
