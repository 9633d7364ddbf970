//! Middleware in front of the routes: calls that need the leader are sent
//! to it, and the members' own calls need the cluster token.
//!
//! A member that does not lead answers calls that need the leader with a
//! 307 redirect to it (or 503 while no leader is elected), except reads
//! sent with `x-cairn-stale-ok`, which it answers from its own applied
//! state.

use std::sync::Arc;

use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use cairn_proto::api::STALE_OK_HEADER;
use cairn_proto::{ApiError, ErrorCode};

use crate::group;

use super::caller::{cluster_proof, ClusterProof, NEEDS_CLUSTER_SECRET};
use super::core::Meta;
use super::http::{HttpError, LeaderHint};

/// Refuses a request without the cluster token (when this member has one),
/// and logs who tried: joining the cluster or talking Raft needs it.
pub async fn require_cluster_token(
    State(meta): State<Arc<Meta>>,
    request: HttpRequest,
    next: Next,
) -> HttpResponse {
    if meta.cluster_token.is_none() {
        return next.run(request).await;
    }
    let reason = match cluster_proof(&meta, request.headers()) {
        ClusterProof::Valid => return next.run(request).await,
        ClusterProof::Absent => "no cluster token",
        ClusterProof::Wrong => "wrong cluster token",
    };
    let source = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or("unknown".to_string(), |c| c.0.to_string());
    tracing::warn!(
        %source,
        route = request.uri().path(),
        reason,
        "refused a request that needs the cluster secret"
    );
    HttpError(ApiError::new(
        ErrorCode::Unauthenticated,
        NEEDS_CLUSTER_SECRET,
    ))
    .into_response()
}

/// Sends every call that needs the leader to it: a 307 redirect when this
/// member knows the leader (before the call, or when the call found out
/// that leadership moved), a 503 `not_leader` while none is elected.
/// Reads marked stale-ok are served here.
pub async fn route_to_leader(
    State(meta): State<Arc<Meta>>,
    request: HttpRequest,
    next: Next,
) -> HttpResponse {
    if request.method() == Method::GET && request.headers().contains_key(STALE_OK_HEADER) {
        return next.run(request).await;
    }
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let (leader, leader_addr) = {
        let metrics = meta.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader;
        (
            leader,
            leader.and_then(|id| group::member_addr(&metrics, id)),
        )
    };
    if leader != Some(meta.id) {
        return redirect_to_leader(meta.scheme, leader_addr, &path_and_query);
    }
    let response = next.run(request).await;
    match response.extensions().get::<LeaderHint>() {
        Some(LeaderHint(addr)) => redirect_to_leader(meta.scheme, addr.clone(), &path_and_query),
        None => response,
    }
}

/// `scheme` is this cluster's (`https` with TLS): every member speaks the same.
fn redirect_to_leader(
    scheme: &str,
    leader_addr: Option<String>,
    path_and_query: &str,
) -> HttpResponse {
    let error = ApiError::not_leader(leader_addr.clone());
    let Some(addr) = leader_addr else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(error)).into_response();
    };
    let location = format!("{scheme}://{addr}{path_and_query}");
    let mut response = (StatusCode::TEMPORARY_REDIRECT, Json(error)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
