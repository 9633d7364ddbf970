//! S3 access keys (`/v1/keys/...`): a user makes, lists and removes their
//! own; an admin anyone's. The secret is drawn and sealed here, on the
//! leader, before proposing (`auth::SealingKey`), so that the log and the
//! tables hold it only sealed. Only a cluster process (the S3 gateway) may
//! have a secret opened, to check request signatures; each time is logged.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use cairn_proto::api::{
    validate_access_key_id, validate_user_name, KeyCreateRequest, KeyCreated, KeyInfo,
    KeyRemoveRequest, KeySecret, KeysResponse,
};
use cairn_proto::{ApiError, ErrorCode};
use serde::Deserialize;

use crate::auth::{self, SealingKey};
use crate::limits::MAX_ACCESS_KEYS_LISTED;
use crate::state::{users, Command, Output, AUTH};

use super::caller::Caller;
use super::core::Meta;
use super::http::{ApiJson, ApiQuery, ApiResult, Consistency, RequestId};

pub async fn create_key(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<KeyCreateRequest>,
) -> ApiResult<KeyCreated> {
    let sealing = sealing_key(&meta)?;
    let user = match req.user {
        Some(user) => {
            validate_user_name("user", &user)?;
            user
        }
        None => match caller.user() {
            Some(user) => user,
            None => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "a cluster process must name the user an access key is for",
                )
                .into())
            }
        },
    };
    let id = auth::new_access_key_id();
    let secret = auth::new_secret_access_key();
    let command = Command::CreateAccessKey {
        sealed_secret: sealing.seal(&id, &user, &secret),
        id,
        user,
    };
    let info = match meta.propose(command, request_id, caller.user()).await? {
        Output::Key(info) => info,
        other => return Err(ApiError::internal(format!("key creation answered {other:?}")).into()),
    };
    // A retried call is answered with the key its first attempt made,
    // whose secret this attempt did not draw: read that one back.
    let opened = open_secret(&meta, &sealing, info.access_key_id.clone()).await?;
    tracing::info!(
        by = %caller.principal.name,
        user = %info.user,
        access_key = %info.access_key_id,
        "access key created"
    );
    Ok(Json(KeyCreated {
        access_key_id: info.access_key_id,
        secret_access_key: opened.secret_access_key,
        user: info.user,
        created_ms: info.created_ms,
    }))
}

#[derive(Deserialize)]
pub struct KeysQuery {
    /// Whose keys [default: the caller's]; another user's for admins only.
    #[serde(default)]
    user: Option<String>,
    /// Every user's (admins only).
    #[serde(default)]
    all: bool,
}

pub async fn list_keys(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    consistency: Consistency,
    ApiQuery(query): ApiQuery<KeysQuery>,
) -> ApiResult<KeysResponse> {
    let own = caller.user();
    let user = match (&query.user, query.all) {
        (_, true) => {
            caller.require_admin("list every user's access keys")?;
            None
        }
        (Some(user), false) => {
            validate_user_name("user", user)?;
            if own.as_deref() != Some(user.as_str()) {
                caller.require_admin("list other users' access keys")?;
            }
            Some(user.clone())
        }
        (None, false) => match own {
            Some(own) => Some(own),
            None => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "a cluster process must name the user (user=NAME) or ask for all=true",
                )
                .into())
            }
        },
    };
    let keys = meta
        .read(consistency, move |txn| {
            let table = txn.open_table(AUTH)?;
            let rows = match &user {
                None => users::all_access_keys(&table, MAX_ACCESS_KEYS_LISTED)?,
                Some(user) => {
                    let mut rows = Vec::new();
                    for id in users::user_access_keys(&table, user)? {
                        if let Some(key) = users::get_access_key(&table, &id)? {
                            rows.push((id, key));
                        }
                    }
                    rows
                }
            };
            Ok(rows
                .into_iter()
                .map(|(id, key)| KeyInfo {
                    access_key_id: id,
                    user: key.user,
                    created_ms: key.created_ms,
                })
                .collect())
        })
        .await?;
    Ok(Json(KeysResponse { keys }))
}

pub async fn remove_key(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<KeyRemoveRequest>,
) -> ApiResult<KeyInfo> {
    validate_access_key_id(&req.access_key_id)?;
    let command = Command::RemoveAccessKey {
        id: req.access_key_id,
    };
    match meta.propose(command, request_id, caller.user()).await? {
        Output::Key(info) => {
            tracing::info!(
                by = %caller.principal.name,
                user = %info.user,
                access_key = %info.access_key_id,
                "access key removed"
            );
            Ok(Json(info))
        }
        other => Err(ApiError::internal(format!("key removal answered {other:?}")).into()),
    }
}

#[derive(Deserialize)]
pub struct SecretQuery {
    id: String,
}

/// A key's secret, for a cluster process that checks signatures.
pub async fn key_secret(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SecretQuery>,
) -> ApiResult<KeySecret> {
    if caller.user().is_some() {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "permission denied: only cluster processes (the S3 gateway) may read secret access keys",
        )
        .into());
    }
    validate_access_key_id(&query.id)?;
    let sealing = sealing_key(&meta)?;
    let secret = open_secret(&meta, &sealing, query.id).await?;
    tracing::info!(
        user = %secret.user,
        access_key = %secret.access_key_id,
        "a cluster process read the secret of an access key"
    );
    Ok(Json(secret))
}

fn sealing_key(meta: &Meta) -> Result<SealingKey, ApiError> {
    meta.sealing_key.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::FailedPrecondition,
            "this metadata service has no cluster secret, which access keys are sealed with; \
             start it with --cluster-secret-file",
        )
    })
}

async fn open_secret(meta: &Meta, sealing: &SealingKey, id: String) -> Result<KeySecret, ApiError> {
    let looked_up = id.clone();
    let key = meta
        .read(Consistency::Linearizable, move |txn| {
            users::get_access_key(&txn.open_table(AUTH)?, &looked_up)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("access key {id} (see `cairn key list`)")))?;
    let secret = sealing
        .open(&id, &key.user, &key.sealed_secret)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "access key {id} was sealed under another cluster secret (the secret changed since); \
                     remove it and create a new one"
                ),
            )
        })?;
    Ok(KeySecret {
        access_key_id: id,
        user: key.user,
        secret_access_key: secret,
    })
}
