//! The cluster page, for admins: health, storage nodes (state, capacity
//! and use, repair and scrub progress), under-replicated chunks, the
//! metadata members (leader, lag); and the users (add, remove, reset a
//! password). The health part refreshes itself every few seconds (htmx),
//! and is a plain page without JavaScript.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use cairn_client::Page;
use cairn_proto::api::{AddUserRequest, NodeStatus, PasswdRequest, StatusResponse, UserRequest};
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{format_size, page, WebError};
use crate::session::Visitor;

/// Users shown (one page).
const MAX_USERS_SHOWN: u32 = 1000;

fn require_admin(visitor: &Visitor) -> Result<(), WebError> {
    if visitor.who.admin {
        Ok(())
    } else {
        Err(WebError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not an admin: the cluster page is for admins",
                visitor.who.user
            ),
        ))
    }
}

pub async fn page_view(visitor: Visitor) -> Result<Response, WebError> {
    require_admin(&visitor)?;
    let status = visitor.files.meta().status().await?;
    let users = visitor
        .files
        .meta()
        .users_page(&Page {
            after: None,
            limit: Some(MAX_USERS_SHOWN),
        })
        .await?;
    let body = html! {
        h1 { "Cluster" }
        (health(&status))
        h2 { "Users" }
        table.users {
            thead { tr {
                th scope="col" { "User" } th scope="col" { "Uid" } th scope="col" { "Groups" }
                th scope="col" { "Sessions" } th scope="col" { "Reset password" } th scope="col" { span.visually-hidden { "Remove" } }
            } }
            tbody {
                @for user in &users.users {
                    tr {
                        td { (user.name) @if user.admin { " (admin)" } }
                        td { (user.uid) }
                        td { (user.groups.join(", ")) }
                        td { (user.sessions) }
                        td {
                            form.inline method="post" action="/users/password" {
                                input type="hidden" name="csrf" value=(visitor.csrf);
                                input type="hidden" name="name" value=(user.name);
                                label.visually-hidden for={ "pw-" (user.name) } { "New password for " (user.name) }
                                input id={ "pw-" (user.name) } name="password" type="password" minlength="8" required autocomplete="new-password";
                                button type="submit" { "Set" }
                            }
                        }
                        td {
                            @if user.name != visitor.who.user {
                                form.inline method="post" action="/users/remove" {
                                    input type="hidden" name="csrf" value=(visitor.csrf);
                                    input type="hidden" name="name" value=(user.name);
                                    button.danger type="submit"
                                        data-confirm={ "Remove user " (user.name) " and end their sessions? Their files stay." } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if users.next.is_some() {
            p.note { "The first " (MAX_USERS_SHOWN) " users are shown; `cairn user list` shows them all." }
        }
        h3 { "Add a user" }
        form method="post" action="/users/add" {
            input type="hidden" name="csrf" value=(visitor.csrf);
            label { "Name " input name="name" required maxlength="32" autocomplete="off"; }
            label { "Password " input name="password" type="password" minlength="8" required autocomplete="new-password"; }
            label { "Groups " input name="groups" placeholder="eng, ops"; }
            label { input type="checkbox" name="admin" value="1"; " admin" }
            button type="submit" { "Add" }
        }
    };
    Ok(page("Cluster", Some(&visitor), body).into_response())
}

pub async fn show(visitor: Visitor) -> Result<Response, WebError> {
    page_view(visitor).await
}

/// The health part alone, for the page's refresh.
pub async fn health_fragment(visitor: Visitor) -> Result<Response, WebError> {
    require_admin(&visitor)?;
    let status = visitor.files.meta().status().await?;
    Ok(Html(health(&status).into_string()).into_response())
}

fn health(status: &StatusResponse) -> Markup {
    html! {
        section #health hx-get="/cluster/health" hx-trigger="every 5s" hx-swap="outerHTML" aria-live="polite" {
            p.summary {
                @if status.healthy {
                    span.ok { "Healthy" }
                } @else {
                    span.bad { "Not healthy" }
                }
                " · " (status.nodes_up) " of " (status.nodes.len()) " storage nodes up · replication "
                (status.replication) " · " (status.file_count) " files, " (status.dir_count) " directories"
                @if status.trees_being_deleted > 0 { " · " (status.trees_being_deleted) " removed trees being deleted" }
            }
            p {
                "Under-replicated chunks: " strong { (status.under_replicated_chunks) }
                @if status.repair_settled { " (repair settled at map epoch " (status.epoch) ")" }
                @else { " (repair passes under way at map epoch " (status.epoch) ")" }
                " · moved by repair: " (format_size(status.moved_bytes_total))
            }
            h2 { "Storage nodes" }
            table.nodes {
                thead { tr {
                    th scope="col" { "Node" } th scope="col" { "Address" } th scope="col" { "Zone" }
                    th scope="col" { "State" } th scope="col" { "Use" } th scope="col" { "Chunks" }
                    th scope="col" { "Repair" } th scope="col" { "Scrub" } th scope="col" { "Last heartbeat" }
                } }
                tbody { @for node in &status.nodes { (node_row(node)) } }
            }
            h2 { "Metadata members" }
            table.members {
                thead { tr {
                    th scope="col" { "Id" } th scope="col" { "Address" } th scope="col" { "Role" } th scope="col" { "Lag (entries)" }
                } }
                tbody {
                    @for member in &status.members {
                        tr {
                            td { (member.id) }
                            td { (member.addr) }
                            td {
                                @if member.leader { strong { "leader" } }
                                @else if member.voter { "voter" }
                                @else { "learner" }
                            }
                            td { @match member.lag { Some(lag) => (lag), None => "?" } }
                        }
                    }
                }
            }
            p.note { "Term " (status.term) @if let Some(index) = status.commit_index { " · applied log index " (index) } }
        }
    }
}

fn node_row(node: &NodeStatus) -> Markup {
    let used = node
        .report
        .as_ref()
        .map_or(node.used_bytes, |r| r.used_bytes);
    let capacity = node.capacity_bytes.max(1);
    let percent = (used as f64 * 100.0 / capacity as f64).min(100.0);
    let state = node.state.as_str();
    html! {
        tr {
            td { (node.id) }
            td { (node.addr) }
            td { (node.zone) }
            td { span class={ "state " (state) } { (state) } }
            td {
                meter min="0" max=(capacity) value=(used) title={ (format!("{percent:.0}")) "%" } {}
                " " (format_size(used)) " of " (format_size(node.capacity_bytes))
            }
            td { (node.chunk_count) }
            td { @if let Some(r) = &node.report { (progress(r.repair.pass_done_chunks, r.repair.pass_total_chunks, r.repair.passes_total)) } }
            td { @if let Some(r) = &node.report { (progress(r.scrub.pass_done_chunks, r.scrub.pass_total_chunks, r.scrub.passes_total)) } }
            td { @match node.last_heartbeat_ago_ms { Some(ms) => { (format!("{:.1}", ms as f64 / 1000.0)) " s ago" }, None => "none yet" } }
        }
    }
}

/// A pass's progress, or how many passes finished between passes.
fn progress(done: u64, total: u64, passes: u64) -> Markup {
    html! {
        @if total > 0 {
            progress max=(total) value=(done) {} " " (done) "/" (total)
        } @else {
            (passes) " passes"
        }
    }
}

#[derive(Deserialize)]
pub struct AddUserForm {
    csrf: String,
    name: String,
    password: String,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    admin: Option<String>,
}

pub async fn add_user(
    visitor: Visitor,
    Form(form): Form<AddUserForm>,
) -> Result<Response, WebError> {
    visitor.check_csrf(&form.csrf)?;
    require_admin(&visitor)?;
    let request = AddUserRequest {
        name: form.name.trim().to_string(),
        password: form.password,
        groups: form
            .groups
            .split([',', ' '])
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        admin: form.admin.is_some(),
    };
    visitor.files.meta().add_user(&request).await?;
    Ok(Redirect::to("/cluster").into_response())
}

#[derive(Deserialize)]
pub struct UserForm {
    csrf: String,
    name: String,
}

pub async fn remove_user(
    visitor: Visitor,
    Form(form): Form<UserForm>,
) -> Result<Response, WebError> {
    visitor.check_csrf(&form.csrf)?;
    require_admin(&visitor)?;
    visitor
        .files
        .meta()
        .remove_user(&UserRequest { name: form.name })
        .await?;
    Ok(Redirect::to("/cluster").into_response())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    name: String,
    password: String,
}

pub async fn reset_password(
    visitor: Visitor,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    visitor.check_csrf(&form.csrf)?;
    require_admin(&visitor)?;
    let request = PasswdRequest {
        name: form.name,
        password: form.password,
    };
    visitor.files.meta().passwd(&request).await?;
    Ok(Redirect::to("/cluster").into_response())
}
