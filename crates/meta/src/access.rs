//! Who is calling, and the calls that manage users and sessions.
//!
//! Every API call but `health`, `auth/login` and the members' own calls
//! names its caller with `Authorization: Bearer TOKEN` (a session opened by
//! `auth/login`), or proves it is a cluster process with the cluster token.
//! [`Caller`] checks that before the handler runs: a missing, unknown
//! (revoked, forged) or expired token is refused with `401 unauthenticated`
//! and a message that says to log in, and the refusal is logged with its
//! source and reason, never with the token.
//!
//! Logins are rate-limited by user and by source address ([`LoginLimiter`])
//! and hash passwords on a bounded pool, so a flood of logins can neither
//! guess passwords quickly nor take every core.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::Json;
use cairn_proto::api::{
    validate_password, validate_user_name, AddUserRequest, LoginRequest, LoginResponse,
    PasswdRequest, UserInfo, UserRequest, UserResponse, UsersResponse, WhoAmI, BEARER_PREFIX,
    CLUSTER_TOKEN_HEADER, DEFAULT_SESSION_SECS, MAX_SESSION_SECS,
};
use cairn_proto::{ApiError, ErrorCode};
use tokio::sync::Semaphore;

use crate::auth::{self, TokenHash, AUTH};
use crate::perm::Principal;
use crate::server::{now_ms, ApiJson, ApiResult, Consistency, Meta, RequestId};
use crate::state::{Command, Output, HOME_DIR};

/// Password hashes computed at once (each ~30 ms of one core, 19 MiB).
pub const MAX_CONCURRENT_HASHES: usize = 2;
/// Failed logins allowed per user, and per source address, within
/// [`LOGIN_WINDOW`]; beyond them logins are refused until the oldest
/// failure leaves the window.
const MAX_FAILURES_PER_USER: usize = 5;
const MAX_FAILURES_PER_SOURCE: usize = 20;
const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Users and sources the limiter remembers (the oldest are dropped).
const MAX_LIMITER_KEYS: usize = 10_000;

/// The caller of a request, as its credentials prove.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The session the caller's token opened; `None` for cluster processes.
    pub session: Option<(TokenHash, u64)>,
}

impl Caller {
    /// The user name proposals carry; `None` for cluster processes, which
    /// the state machine treats as having every right.
    pub fn user(&self) -> Option<String> {
        self.session.as_ref().map(|_| self.principal.name.clone())
    }

    pub fn require_admin(&self, doing: &str) -> Result<(), ApiError> {
        if self.principal.admin {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "permission denied: only an admin may {doing}, and {} is not one",
                self.principal.name
            ),
        ))
    }
}

impl FromRequestParts<Arc<Meta>> for Caller {
    type Rejection = crate::server::HttpError;

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
            crate::server::HttpError(ApiError::new(ErrorCode::Unauthenticated, message))
        };
        match cluster_proof(meta, &parts.headers) {
            ClusterProof::Valid => {
                return Ok(Caller {
                    principal: Principal::system(),
                    session: None,
                })
            }
            ClusterProof::Wrong => {
                return Err(refuse("wrong cluster token", NEEDS_CLUSTER_SECRET.into()))
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
            let Some(session) = auth::get_session(&table, &hash)? else {
                return Ok(None);
            };
            let user = auth::get_user(&table, &session.user)?;
            Ok(Some((session, user)))
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
            Some((session, Some(user))) => Ok(Caller {
                principal: user.principal(&session.user),
                session: Some((hash, session.expires_ms)),
            }),
        }
    }
}

/// What a request's `x-cairn-cluster-token` header proves.
pub(crate) enum ClusterProof {
    Absent,
    Valid,
    /// Present but not this cluster's (or this member has no secret).
    Wrong,
}

pub(crate) fn cluster_proof(meta: &Meta, headers: &axum::http::HeaderMap) -> ClusterProof {
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
pub(crate) const NEEDS_CLUSTER_SECRET: &str =
    "this request needs the cluster secret: start the process with --cluster-secret-file naming \
     the same secret file as the rest of the cluster";

fn source_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or("unknown".to_string(), |c| c.0.to_string())
}

/// Failed logins by user and by source, in a sliding window.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// `Err(seconds to wait)` when `user` or `source` has failed too often.
    fn check(&self, user: &str, source: IpAddr, now: Instant) -> Result<(), u64> {
        let mut failures = self.failures.lock().expect("limiter lock");
        let mut wait = None;
        for (key, limit) in [
            (format!("user:{user}"), MAX_FAILURES_PER_USER),
            (format!("source:{source}"), MAX_FAILURES_PER_SOURCE),
        ] {
            if let Some(times) = failures.get_mut(&key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
                {
                    times.pop_front();
                }
                if times.len() >= limit {
                    let oldest = *times.front().expect("over the limit means not empty");
                    let left = LOGIN_WINDOW.saturating_sub(now.duration_since(oldest));
                    wait = Some(wait.unwrap_or(0).max(left.as_secs() + 1));
                }
            }
        }
        match wait {
            Some(seconds) => Err(seconds),
            None => Ok(()),
        }
    }

    fn record_failure(&self, user: &str, source: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().expect("limiter lock");
        if failures.len() >= MAX_LIMITER_KEYS {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < LOGIN_WINDOW)
            });
            if failures.len() >= MAX_LIMITER_KEYS {
                failures.clear();
            }
        }
        for key in [format!("user:{user}"), format!("source:{source}")] {
            let times = failures.entry(key).or_default();
            times.push_back(now);
            while times.len() > MAX_FAILURES_PER_SOURCE {
                times.pop_front();
            }
        }
    }

    fn record_success(&self, user: &str) {
        self.failures
            .lock()
            .expect("limiter lock")
            .remove(&format!("user:{user}"));
    }
}

/// Hashes a password on the blocking pool, at most
/// [`MAX_CONCURRENT_HASHES`] at once.
async fn hash_password(meta: &Meta, password: String) -> Result<String, ApiError> {
    let _permit = acquire(&meta.hashing).await;
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(format!("hashing task failed: {e}")))?
        .map_err(ApiError::internal)
}

/// Checks `password` against `hash` on the blocking pool; with no hash
/// (no such user), against a hash nobody's password matches, so that a
/// wrong user name costs as much as a wrong password.
async fn verify_password(
    meta: &Meta,
    password: String,
    hash: Option<String>,
) -> Result<bool, ApiError> {
    let _permit = acquire(&meta.hashing).await;
    tokio::task::spawn_blocking(move || {
        let matches = match &hash {
            Some(hash) => auth::verify_password(&password, hash),
            None => {
                let dummy = DUMMY_HASH
                    .get_or_init(|| auth::hash_password("no such user").unwrap_or_default());
                auth::verify_password(&password, dummy);
                false
            }
        };
        matches
    })
    .await
    .map_err(|e| ApiError::internal(format!("hashing task failed: {e}")))
}

async fn acquire(semaphore: &Semaphore) -> tokio::sync::SemaphorePermit<'_> {
    semaphore
        .acquire()
        .await
        .expect("semaphore is never closed")
}

/// A hash of a password nobody has (see `verify_password`).
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn home_of(name: &str) -> String {
    format!("/{HOME_DIR}/{name}")
}

pub async fn login(
    State(meta): State<Arc<Meta>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<LoginResponse> {
    validate_user_name("user", &req.user)?;
    let now = Instant::now();
    if let Err(seconds) = meta.logins.check(&req.user, source.ip(), now) {
        tracing::warn!(%source, user = %req.user, reason = "too many failed logins", "refused a login");
        return Err(ApiError::new(
            ErrorCode::TooManyRequests,
            format!(
                "too many failed logins for {} or from {}; wait {seconds} s and try again",
                req.user,
                source.ip()
            ),
        )
        .into());
    }
    let secs = req.expires_in_secs.unwrap_or(DEFAULT_SESSION_SECS);
    if !(1..=MAX_SESSION_SECS).contains(&secs) {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "a session lasts 1 s to {} days; asked for {secs} s",
                MAX_SESSION_SECS / 86_400
            ),
        )
        .into());
    }
    if req.password.len() > cairn_proto::api::MAX_PASSWORD_BYTES {
        return Err(ApiError::new(ErrorCode::InvalidArgument, "the password is too long").into());
    }
    let name = req.user.clone();
    let (user, has_users) = meta
        .read(Consistency::Linearizable, move |txn| {
            let table = txn.open_table(AUTH)?;
            Ok((auth::get_user(&table, &name)?, auth::has_users(&table)?))
        })
        .await?;
    if !has_users {
        // A new cluster whose leader has not created `admin` yet: clients
        // retry a 503 (not counted as a failed login).
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "this cluster is creating its first user (admin); retry in a moment",
        )
        .into());
    }
    let (hash, version, admin) = match &user {
        Some(user) => (Some(user.password_hash.clone()), user.version, user.admin),
        None => (None, 0, false),
    };
    let matches = verify_password(&meta, req.password, hash).await?;
    if user.is_none() || !matches {
        meta.logins.record_failure(&req.user, source.ip(), now);
        tracing::warn!(%source, user = %req.user, reason = "wrong user name or password", "refused a login");
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            format!(
                "wrong user name or password for {}; check both and try again",
                req.user
            ),
        )
        .into());
    }
    meta.logins.record_success(&req.user);
    let token = auth::new_token();
    let expires_ms = now_ms() + secs * 1000;
    let command = Command::CreateSession {
        token_hash: auth::token_hash(&token),
        name: req.user.clone(),
        expires_ms,
        user_version: version,
    };
    meta.propose(command, None, None).await?;
    tracing::info!(%source, user = %req.user, "logged in");
    Ok(Json(LoginResponse {
        home: home_of(&req.user),
        user: req.user,
        token,
        expires_ms,
        admin,
    }))
}

/// Ends the caller's own session.
pub async fn logout(State(meta): State<Arc<Meta>>, caller: Caller) -> ApiResult<UserResponse> {
    let Some((token_hash, _)) = caller.session else {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "a cluster process has no session to end",
        )
        .into());
    };
    meta.propose(Command::EndSession { token_hash }, None, None)
        .await?;
    Ok(Json(UserResponse {
        name: caller.principal.name,
        sessions_ended: 1,
    }))
}

pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        home: home_of(&caller.principal.name),
        user: caller.principal.name,
        admin: caller.principal.admin,
        groups: caller.principal.groups,
        expires_ms: caller.session.map(|(_, expires)| expires),
    })
}

pub async fn list_users(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    consistency: Consistency,
) -> ApiResult<UsersResponse> {
    caller.require_admin("list users")?;
    let now = now_ms();
    let users = meta
        .read(consistency, move |txn| {
            let table = txn.open_table(AUTH)?;
            let mut out = Vec::new();
            for (name, user) in auth::list_users(&table)? {
                let mut sessions = 0;
                for hash in auth::user_sessions(&table, &name)? {
                    if auth::get_session(&table, &hash)?.is_some_and(|s| s.expires_ms > now) {
                        sessions += 1;
                    }
                }
                out.push(UserInfo {
                    name,
                    admin: user.admin,
                    groups: user.groups,
                    created_ms: user.created_ms,
                    sessions,
                });
            }
            Ok(out)
        })
        .await?;
    Ok(Json(UsersResponse { users }))
}

pub async fn add_user(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<AddUserRequest>,
) -> ApiResult<UserResponse> {
    // Checked before hashing too, so that a refusal costs no hashing.
    caller.require_admin("add users")?;
    validate_user_name("user", &req.name)?;
    validate_password(&req.password)?;
    let password_hash = hash_password(&meta, req.password).await?;
    let command = Command::AddUser {
        name: req.name.clone(),
        password_hash,
        groups: req.groups,
        admin: req.admin,
    };
    let answer = user_command(&meta, &caller, command, request_id).await?;
    tracing::info!(by = %caller.principal.name, user = %req.name, admin = req.admin, "user added");
    Ok(answer)
}

pub async fn passwd(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<PasswdRequest>,
) -> ApiResult<UserResponse> {
    if caller.principal.name != req.name {
        caller.require_admin("set another user's password")?;
    }
    validate_password(&req.password)?;
    let password_hash = hash_password(&meta, req.password).await?;
    let command = Command::SetPassword {
        name: req.name.clone(),
        password_hash,
    };
    let answer = user_command(&meta, &caller, command, request_id).await?;
    tracing::info!(by = %caller.principal.name, user = %req.name, "password changed; sessions ended");
    Ok(answer)
}

pub async fn remove_user(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<UserRequest>,
) -> ApiResult<UserResponse> {
    let command = Command::RemoveUser {
        name: req.name.clone(),
    };
    let answer = user_command(&meta, &caller, command, request_id).await?;
    tracing::info!(by = %caller.principal.name, user = %req.name, "user removed");
    Ok(answer)
}

/// Ends every session of a user (their own, or anyone's for an admin).
pub async fn revoke(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<UserRequest>,
) -> ApiResult<UserResponse> {
    let command = Command::EndUserSessions {
        name: req.name.clone(),
    };
    let answer = user_command(&meta, &caller, command, request_id).await?;
    tracing::info!(by = %caller.principal.name, user = %req.name, "sessions ended");
    Ok(answer)
}

async fn user_command(
    meta: &Meta,
    caller: &Caller,
    command: Command,
    request_id: Option<u128>,
) -> ApiResult<UserResponse> {
    match meta.propose(command, request_id, caller.user()).await? {
        Output::User(answer) => Ok(Json(answer)),
        other => Err(ApiError::internal(format!("user command answered {other:?}")).into()),
    }
}

/// Creates the user `admin` on a cluster that has no user yet. Its
/// password is read from `password_file`, or made and written there (mode
/// 0600) if the file does not exist: every member may be given the same
/// file, and a member that retries after a crash reuses the password.
pub async fn bootstrap_admin(meta: &Meta, password_file: &std::path::Path) -> anyhow::Result<()> {
    let has_users = meta
        .read(Consistency::Linearizable, |txn| {
            auth::has_users(&txn.open_table(AUTH)?)
        })
        .await
        .map_err(anyhow::Error::msg)?;
    if has_users {
        return Ok(());
    }
    let (password, created_file) = read_or_create_password(password_file)?;
    let password_hash = hash_password(meta, password.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let output = meta
        .propose(Command::BootstrapAdmin { password_hash }, None, None)
        .await
        .map_err(anyhow::Error::msg)?;
    match output {
        Output::User(_) if created_file => {
            // Printed once, as the issue of first start asks; it is also in the file.
            tracing::warn!(
                file = %password_file.display(),
                "created user admin with the password {password}; it is also in the file (mode 0600). \
                 Log in with `cairn login --user admin`, then change it with `cairn user passwd`"
            );
        }
        Output::User(_) => tracing::info!(
            file = %password_file.display(),
            "created user admin with the password in the file"
        ),
        _ if created_file => {
            // Another member created the first user first: this file's
            // password belongs to nobody.
            let _ = std::fs::remove_file(password_file);
        }
        _ => {}
    }
    Ok(())
}

/// The password in `path`, or a new one written there; and whether it was
/// written now.
fn read_or_create_password(path: &std::path::Path) -> anyhow::Result<(String, bool)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok((text.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot read the admin password file {}: {e}",
                path.display()
            ))
        }
    }
    let password = auth::new_password();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot write the admin password file {}: {e}",
                path.display()
            )
        })?;
    file.write_all(format!("{password}\n").as_bytes())?;
    file.sync_all()?;
    Ok((password, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_stops_a_user_after_five_failures_for_a_minute() {
        let limiter = LoginLimiter::default();
        let source: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES_PER_USER {
            assert!(limiter.check("alice", source, start).is_ok());
            limiter.record_failure("alice", source, start);
        }
        let wait = limiter.check("alice", other, start).unwrap_err();
        assert!((59..=61).contains(&wait), "{wait}");
        assert!(limiter.check("bob", source, start).is_ok(), "per user");
        assert!(limiter.check("alice", source, start + LOGIN_WINDOW).is_ok());
        limiter.record_success("alice");
        assert!(limiter.check("alice", source, start).is_ok());
    }

    #[test]
    fn the_limiter_stops_a_source_that_tries_many_users() {
        let limiter = LoginLimiter::default();
        let source: IpAddr = "127.0.0.1".parse().unwrap();
        let start = Instant::now();
        for i in 0..MAX_FAILURES_PER_SOURCE {
            limiter.record_failure(&format!("user{i}"), source, start);
        }
        assert!(limiter.check("fresh", source, start).is_err());
        assert!(limiter
            .check("fresh", "127.0.0.9".parse().unwrap(), start)
            .is_ok());
    }
}
