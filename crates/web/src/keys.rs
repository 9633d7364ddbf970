//! The visitor's S3 side: their access keys (made here, the secret shown
//! once; revoked here) and the buckets they own (made here when the server
//! has the cluster secret, as only cluster processes add to `/buckets`;
//! otherwise the page says to make them through S3).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cairn_client::buckets::{self, CreateBucketError, BUCKETS_DIR};
use cairn_client::Page;
use cairn_proto::api::EntryKind;
use cairn_proto::ErrorCode;
use maud::html;
use serde::Deserialize;

use crate::layout::{child_path, files_href, format_time_ns, page, WebError};
use crate::session::{CsrfForm, Visitor};
use crate::App;

/// Buckets listed (one page of `/buckets`).
const MAX_BUCKETS_SHOWN: u32 = 1000;

pub async fn page_view(
    app: &App,
    visitor: &Visitor,
    created: Option<(String, String)>,
) -> Result<Response, WebError> {
    let keys = visitor.files.meta().keys(None, false).await?.keys;
    let buckets = match visitor
        .files
        .list(
            BUCKETS_DIR,
            &Page {
                after: None,
                limit: Some(MAX_BUCKETS_SHOWN),
            },
        )
        .await
    {
        Ok(listing) => listing
            .entries
            .into_iter()
            .filter(|e| e.kind == EntryKind::Dir && (e.uid == visitor.who.uid || visitor.who.admin))
            .collect(),
        // No gateway has run yet: no buckets.
        Err(e) if e.code() == Some(ErrorCode::NotFound) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let body = html! {
        h1 { "S3 access keys" }
        @if let Some((id, secret)) = &created {
            section.created role="status" {
                h2 { "New key" }
                p { "Copy the secret now: it is not shown again." }
                dl.details {
                    dt { "Access key id" } dd.mono { (id) }
                    dt { "Secret access key" } dd.mono { (secret) }
                }
            }
        }
        p { "A key signs S3 requests as " strong { (visitor.who.user) } ", with your permissions." }
        table {
            thead { tr { th scope="col" { "Access key id" } th scope="col" { "Created" } th scope="col" { span.visually-hidden { "Actions" } } } }
            tbody {
                @for key in &keys {
                    tr {
                        td.mono { (key.access_key_id) }
                        td { (format_time_ns(key.created_ms.saturating_mul(1_000_000))) }
                        td {
                            form.inline method="post" action="/keys/revoke" {
                                input type="hidden" name="csrf" value=(visitor.csrf);
                                input type="hidden" name="id" value=(key.access_key_id);
                                button.danger type="submit"
                                    data-confirm={ "Revoke key " (key.access_key_id) "? Clients using it stop working." } { "Revoke" }
                            }
                        }
                    }
                }
                @if keys.is_empty() { tr { td colspan="3" { "No keys yet." } } }
            }
        }
        form method="post" action="/keys/create" {
            input type="hidden" name="csrf" value=(visitor.csrf);
            button type="submit" { "Create a key" }
        }
        h2 { "Buckets" }
        p { "A bucket is a directory under " (BUCKETS_DIR) ", yours alone (mode 700)." }
        @if app.system.is_some() {
            form method="post" action="/buckets/create" {
                input type="hidden" name="csrf" value=(visitor.csrf);
                label { "New bucket " input name="name" required minlength="3" maxlength="63"; }
                button type="submit" { "Make" }
            }
        } @else {
            p { "Make one with an S3 client (" code { "aws s3 mb s3://NAME" } ")." }
        }
        ul {
            @for bucket in &buckets {
                li { a href=(files_href(&child_path(BUCKETS_DIR, &bucket.name))) { (bucket.name) } " (" (bucket.owner) ")" }
            }
            @if buckets.is_empty() { li { "No buckets." } }
        }
    };
    Ok(page("S3 keys", Some(visitor), body).into_response())
}

pub async fn show(State(app): State<App>, visitor: Visitor) -> Result<Response, WebError> {
    page_view(&app, &visitor, None).await
}

pub async fn create(
    State(app): State<App>,
    visitor: Visitor,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    visitor.check_csrf(&form.csrf)?;
    let created = visitor.files.meta().create_key(None).await?;
    page_view(
        &app,
        &visitor,
        Some((created.access_key_id, created.secret_access_key)),
    )
    .await
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf: String,
    id: String,
}

#[derive(Deserialize)]
pub struct BucketForm {
    csrf: String,
    name: String,
}

/// Makes a bucket for the visitor, as the S3 gateway does.
pub async fn create_bucket(
    State(app): State<App>,
    visitor: Visitor,
    Form(form): Form<BucketForm>,
) -> Result<Response, WebError> {
    visitor.check_csrf(&form.csrf)?;
    let Some(system) = &app.system else {
        return Err(WebError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this web server has no cluster secret, so it cannot make buckets: make them with an S3 client",
        ));
    };
    let name = form.name.trim();
    match buckets::create_bucket(system, name, &visitor.who).await {
        Ok(()) => Ok(Redirect::to("/keys").into_response()),
        Err(CreateBucketError::Client(e)) => Err(e.into()),
        Err(CreateBucketError::InvalidName(problem)) => Err(WebError::bad_request(problem)),
        Err(e) => Err(WebError::new(
            StatusCode::CONFLICT,
            format!("cannot make bucket {name}: {e}"),
        )),
    }
}

pub async fn revoke(visitor: Visitor, Form(form): Form<RevokeForm>) -> Result<Response, WebError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.files.meta().remove_key(&form.id).await?;
    Ok(Redirect::to("/keys").into_response())
}
