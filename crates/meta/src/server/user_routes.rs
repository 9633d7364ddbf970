//! The user and session routes (`/v1/auth/...`, `/v1/users/...`), and the
//! first admin of a new cluster.
//!
//! Logins are rate-limited by user and by source address (`limiter.rs`)
//! and hash passwords on a bounded pool, so a flood of logins can neither
//! guess passwords quickly nor take every core.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::Json;
use cairn_proto::api::{
    validate_password, validate_user_name, AddUserRequest, LoginRequest, LoginResponse,
    PasswdRequest, UserRequest, UserResponse, UsersResponse, WhoAmI, DEFAULT_SESSION_SECS,
    MAX_SESSION_SECS,
};
use cairn_proto::{ApiError, ErrorCode};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::auth;
use crate::state::{self, home_of, users, Command, Output, AUTH};

use super::caller::Caller;
use super::core::{now_ms, Meta};
use super::http::{ApiJson, ApiQuery, ApiResult, Consistency, RequestId};

/// Hashes a password on the blocking pool, at most
/// [`MAX_CONCURRENT_HASHES`] at once.
pub async fn hash_password(meta: &Meta, password: String) -> Result<String, ApiError> {
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
            Ok((users::get_user(&table, &name)?, users::has_users(&table)?))
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
        uid: caller.principal.uid,
        sessions_ended: 1,
    }))
}

pub async fn whoami(State(meta): State<Arc<Meta>>, caller: Caller) -> ApiResult<WhoAmI> {
    let principal = caller.principal;
    let gids = principal.gids.clone();
    let groups = meta.read_inline(move |txn| {
        let table = txn.open_table(AUTH)?;
        let mut names = Vec::with_capacity(gids.len());
        for gid in &gids {
            names.push(users::group_name(&table, *gid)?.unwrap_or_else(|| gid.to_string()));
        }
        Ok(names)
    })?;
    Ok(Json(WhoAmI {
        home: home_of(&principal.name),
        user: principal.name,
        uid: principal.uid,
        admin: principal.admin,
        groups,
        gids: principal.gids,
        expires_ms: caller.session.map(|(_, expires)| expires),
    }))
}

#[derive(Deserialize)]
pub struct UsersQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// One page of users, by name (admins only).
pub async fn list_users(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    consistency: Consistency,
    ApiQuery(query): ApiQuery<UsersQuery>,
) -> ApiResult<UsersResponse> {
    caller.require_admin("list users")?;
    let now = now_ms();
    let page = meta
        .read(consistency, move |txn| {
            state::users_page(
                &txn.open_table(AUTH)?,
                query.after.as_deref(),
                query.limit,
                now,
            )
        })
        .await?;
    Ok(Json(page))
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
            users::has_users(&txn.open_table(AUTH)?)
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
