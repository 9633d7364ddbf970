//! Who is calling. Every API call but `health`, `auth/login` and the
//! members' own calls names its caller with `Authorization: Bearer TOKEN`
//! (a session opened by `auth/login`), or proves it is a cluster process
//! with the cluster token. [`Caller`] checks that before the handler runs:
//! a missing, unknown (revoked, forged) or expired token is refused with
//! `401 unauthenticated` and a message that says to log in, and the refusal
//! is logged with its source and reason, never with the token.
//!
//! A cluster process may act for a user: the S3 gateway sends the cluster
//! token with `x-cairn-access-key: ID`, and the call is that key's user's,
//! under their permissions. The key must exist (a removed key stops
//! working at once, whatever the gateway caches); each such call is logged
//! at debug level with the key and the user, and a refusal at warn level.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use cairn_proto::api::{
    Acting, ACCESS_KEY_HEADER, ACT_AS_HEADER, BEARER_PREFIX, CLUSTER_TOKEN_HEADER,
};
use cairn_proto::{ApiError, ErrorCode};

use crate::auth::{self, TokenHash};
use crate::perm::Principal;
use crate::state::{users, AUTH};

use super::core::{now_ms, Meta};
use super::http::HttpError;

/// The caller of a request, as its credentials prove.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The session the caller's token opened, and when it expires; `None`
    /// for cluster processes.
    pub session: Option<(TokenHash, u64)>,
    /// The access key a cluster process (the S3 gateway) acts by.
    pub access_key: Option<String>,
    /// The local identity an admin's session acts as (`x-cairn-act-as`),
    /// and that admin's name: `principal` is then the identity's.
    pub acting: Option<(Acting, String)>,
}

impl Caller {
    /// The user name proposals carry; `None` for cluster processes, which
    /// the state machine treats as having every right.
    pub fn user(&self) -> Option<String> {
        if let Some((_, delegate)) = &self.acting {
            return Some(delegate.clone());
        }
        (self.session.is_some() || self.access_key.is_some()).then(|| self.principal.name.clone())
    }

    /// Proposes `command` as this caller (acting for a local identity when
    /// it does).
    pub async fn propose(
        &self,
        meta: &Meta,
        command: crate::state::Command,
        request_id: Option<u128>,
    ) -> Result<crate::state::Output, ApiError> {
        meta.propose_acting(command, request_id, self.user(), self.acting())
            .await
    }

    /// The local identity the caller acts as, if any.
    pub fn acting(&self) -> Option<Acting> {
        self.acting.as_ref().map(|(acting, _)| acting.clone())
    }

    pub fn require_admin(&self, doing: &str) -> Result<(), ApiError> {
        crate::state::require_admin(&self.principal, doing)
    }
}

impl FromRequestParts<Arc<Meta>> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        meta: &Arc<Meta>,
    ) -> Result<Self, Self::Rejection> {
        let refuse = |reason: &str, message: String| {
            tracing::warn!(
                source = %source_of(parts),
                route = parts.uri.path(),
                reason,
                "refused a request"
            );
            HttpError(ApiError::new(ErrorCode::Unauthenticated, message))
        };
        let access_key = parts
            .headers
            .get(ACCESS_KEY_HEADER)
            .map(|v| v.to_str().unwrap_or_default().to_string());
        match cluster_proof(meta, &parts.headers) {
            ClusterProof::Valid => {
                return match access_key {
                    None => Ok(Caller {
                        principal: Principal::system(),
                        session: None,
                        access_key: None,
                        acting: None,
                    }),
                    Some(id) => acting_for_key(meta, parts, id).await,
                }
            }
            ClusterProof::Wrong => {
                return Err(refuse("wrong cluster token", NEEDS_CLUSTER_SECRET.into()))
            }
            ClusterProof::Absent if access_key.is_some() => {
                return Err(refuse(
                    "access key without the cluster token",
                    "only a cluster process (the S3 gateway) may act by an access key".into(),
                ))
            }
            ClusterProof::Absent => {}
        }
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(refuse(
                "no token",
                "this request needs a login: run `cairn login` (or pass a token in CAIRN_TOKEN)"
                    .into(),
            ));
        };
        let Some(token) = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix(BEARER_PREFIX))
        else {
            return Err(refuse(
                "malformed authorization header",
                "the Authorization header must be `Bearer TOKEN`; run `cairn login` for a token"
                    .into(),
            ));
        };
        let hash = auth::token_hash(token.trim());
        meta.sessions_current().await?;
        // Two point reads of small, hot records: done on this thread, as a
        // hop to the blocking pool would cost more than the reads
        // (bench/meta_ops.sh: stat throughput).
        let found = meta.read_inline(|txn| {
            let table = txn.open_table(AUTH)?;
            let Some(session) = users::get_session(&table, &hash)? else {
                return Ok(None);
            };
            let principal = users::principal(&table, &session.user)?;
            Ok(Some((session, principal)))
        })?;
        let now = now_ms();
        match found {
            None => Err(refuse(
                "unknown token",
                "this login token is not valid here (it was revoked, ended by a password change or logout, \
                 or belongs to another cluster); run `cairn login` again"
                    .into(),
            )),
            Some((session, _)) if session.expires_ms <= now => Err(refuse(
                "expired token",
                format!(
                    "your login as {} expired {} s ago; run `cairn login` again",
                    session.user,
                    (now - session.expires_ms) / 1000
                ),
            )),
            Some((session, None)) => Err(refuse(
                "token of a removed user",
                format!(
                    "user {} no longer exists; log in as another user",
                    session.user
                ),
            )),
            Some((session, Some(principal))) => {
                let acting = acting_for_local(parts, &principal)?;
                Ok(Caller {
                    principal: acting.as_ref().map_or(principal, Principal::acting),
                    session: Some((hash, session.expires_ms)),
                    access_key: None,
                    acting: acting.map(|acting| (acting, session.user)),
                })
            }
        }
    }
}

/// The local identity an admin's session acts as (`x-cairn-act-as`, sent
/// by `cairn mount --allow-other` for each calling process), if any;
/// refused for a session that is not an admin's. Each such call is logged
/// at debug level; the state machine checks the delegation again.
fn acting_for_local(parts: &Parts, session: &Principal) -> Result<Option<Acting>, HttpError> {
    let Some(value) = parts.headers.get(ACT_AS_HEADER) else {
        return Ok(None);
    };
    let acting = Acting::parse(value.to_str().unwrap_or_default()).map_err(HttpError)?;
    if !session.admin {
        tracing::warn!(
            source = %source_of(parts),
            route = parts.uri.path(),
            user = %session.name,
            reason = "acting for a local user without being an admin",
            "refused a request"
        );
        return Err(HttpError(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "{} is not an admin, so cannot act for local users (uid {}); mount without --allow-other",
                session.name, acting.uid
            ),
        )));
    }
    tracing::debug!(
        source = %source_of(parts),
        route = parts.uri.path(),
        user = %session.name,
        uid = acting.uid,
        gids = ?acting.gids,
        "acting for a local user"
    );
    Ok(Some(acting))
}

/// The caller a cluster process names by an access key: the key's user,
/// if the key exists.
async fn acting_for_key(meta: &Meta, parts: &Parts, id: String) -> Result<Caller, HttpError> {
    let looked_up = id.clone();
    let found = meta.read_inline(move |txn| {
        let table = txn.open_table(AUTH)?;
        let Some(key) = users::get_access_key(&table, &looked_up)? else {
            return Ok(None);
        };
        Ok(Some(users::principal(&table, &key.user)?))
    })?;
    match found {
        Some(Some(principal)) => {
            tracing::debug!(
                source = %source_of(parts),
                route = parts.uri.path(),
                access_key = %id,
                user = %principal.name,
                "acting for the user of an access key"
            );
            Ok(Caller {
                principal,
                session: None,
                access_key: Some(id),
                acting: None,
            })
        }
        _ => {
            let shown: String = id.chars().take(40).collect();
            tracing::warn!(
                source = %source_of(parts),
                route = parts.uri.path(),
                access_key = %shown,
                reason = "unknown access key",
                "refused a request"
            );
            Err(HttpError(ApiError::new(
                ErrorCode::Unauthenticated,
                format!("access key {shown} does not exist (it was removed, or its user was); see `cairn key list`"),
            )))
        }
    }
}

/// What a request's `x-cairn-cluster-token` header proves.
pub enum ClusterProof {
    Absent,
    Valid,
    /// Present but not this cluster's (or this member has no secret).
    Wrong,
}

pub fn cluster_proof(meta: &Meta, headers: &axum::http::HeaderMap) -> ClusterProof {
    let Some(presented) = headers.get(CLUSTER_TOKEN_HEADER) else {
        return ClusterProof::Absent;
    };
    match (presented.to_str(), &meta.cluster_token) {
        (Ok(token), Some(expected)) if cairn_proto::api::token_matches(token, expected) => {
            ClusterProof::Valid
        }
        _ => ClusterProof::Wrong,
    }
}

/// The refusal of a request that needs the cluster secret.
pub const NEEDS_CLUSTER_SECRET: &str =
    "this request needs the cluster secret: start the process with --cluster-secret-file naming \
     the same secret file as the rest of the cluster";

pub fn source_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or("unknown".to_string(), |c| c.0.to_string())
}
