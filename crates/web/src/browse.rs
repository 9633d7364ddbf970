//! Directories and files: a directory's page lists its entries (by name,
//! paged with the API's cursor; by size or time, the first
//! [`MAX_SORTED_ENTRIES`] sorted here), with forms to upload, make a
//! directory, and reach each entry; a file's page shows its metadata, its
//! chunks and where they live, and forms to rename, move or delete it.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cairn_client::{chunk_locations, Grant, Page, Target};
use cairn_proto::api::{DirEntry, EntryKind, Stat};
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{
    breadcrumbs, child_path, download_href, files_href, format_size, format_time_ns, mode_string,
    page, query_value, WebError,
};
use crate::session::Visitor;

/// Entries on one page of a directory.
const PAGE_ENTRIES: usize = 100;
/// Entries read to sort a directory by size or time; past this, the page
/// says the sort covers only these.
const MAX_SORTED_ENTRIES: usize = 10_000;
/// Chunks listed (with where they live) on a file's page.
const MAX_CHUNKS_SHOWN: usize = 100;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    /// `name` (default), `size` or `modified`.
    #[serde(default)]
    sort: Option<String>,
    /// `desc` for descending.
    #[serde(default)]
    order: Option<String>,
    /// By name: the key of the last entry of the previous page.
    #[serde(default)]
    after: Option<String>,
    /// Sorted otherwise: the page number, from 0.
    #[serde(default)]
    page: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Name,
    Size,
    Modified,
}

impl SortBy {
    fn parse(value: Option<&str>) -> Result<SortBy, WebError> {
        match value.unwrap_or("name") {
            "name" => Ok(SortBy::Name),
            "size" => Ok(SortBy::Size),
            "modified" => Ok(SortBy::Modified),
            other => Err(WebError::bad_request(format!(
                "cannot sort by {other:?}: sort by name, size or modified"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SortBy::Name => "name",
            SortBy::Size => "size",
            SortBy::Modified => "modified",
        }
    }
}

pub async fn show_root(visitor: Visitor, query: Query<ListQuery>) -> Result<Response, WebError> {
    show(visitor, Path(String::new()), query).await
}

pub async fn show(
    visitor: Visitor,
    Path(path): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, WebError> {
    let path = normalize(&path)?;
    let stat = visitor.files.stat(Target::Path(&path)).await?;
    let body = if stat.kind == EntryKind::Dir {
        directory(&visitor, &path, &query).await?
    } else {
        details(&visitor, &path, &stat).await?
    };
    let title = if path == "/" {
        "/"
    } else {
        path.rsplit('/').next().unwrap_or(&path)
    };
    Ok(page(title, Some(&visitor), body).into_response())
}

/// `/a/b` from a URL's path (`a/b`, `/a/b/`), checked as Cairn checks it.
fn normalize(path: &str) -> Result<String, WebError> {
    cairn_proto::path::normalize(&format!("/{path}")).map_err(|e| WebError::bad_request(e.message))
}

async fn directory(visitor: &Visitor, path: &str, query: &ListQuery) -> Result<Markup, WebError> {
    let sort = SortBy::parse(query.sort.as_deref())?;
    let descending = query.order.as_deref() == Some("desc");
    let by_cursor = sort == SortBy::Name && !descending;
    let (entries, next, truncated) = if by_cursor {
        let listing = visitor
            .files
            .list(
                path,
                &Page {
                    after: query.after.clone(),
                    limit: Some(PAGE_ENTRIES as u32),
                },
            )
            .await?;
        (listing.entries, listing.next, false)
    } else {
        let mut all = Vec::new();
        let mut page = Page::default();
        let truncated = loop {
            let listing = visitor.files.list(path, &page).await?;
            all.extend(listing.entries);
            if all.len() >= MAX_SORTED_ENTRIES {
                let more = all.len() > MAX_SORTED_ENTRIES || listing.next.is_some();
                all.truncate(MAX_SORTED_ENTRIES);
                break more;
            }
            match listing.next {
                Some(next) => page.after = Some(next),
                None => break false,
            }
        };
        match sort {
            SortBy::Name => all.sort_by(|a, b| a.name.cmp(&b.name)),
            SortBy::Size => {
                all.sort_by(|a, b| (a.size_bytes, &a.name).cmp(&(b.size_bytes, &b.name)))
            }
            SortBy::Modified => {
                all.sort_by(|a, b| (a.modified_ns, &a.name).cmp(&(b.modified_ns, &b.name)))
            }
        }
        if descending {
            all.reverse();
        }
        let start = query.page.unwrap_or(0).saturating_mul(PAGE_ENTRIES);
        let more = all.len() > start + PAGE_ENTRIES;
        let shown: Vec<DirEntry> = all.into_iter().skip(start).take(PAGE_ENTRIES).collect();
        let next = more.then(|| (query.page.unwrap_or(0) + 1).to_string());
        (shown, next, truncated)
    };
    let here = files_href(path);
    let sort_link = |by: SortBy| -> String {
        let order = if by == sort && !descending {
            "desc"
        } else {
            "asc"
        };
        format!("{here}?sort={}&order={order}", by.as_str())
    };
    let arrow = |by: SortBy| -> &'static str {
        match (by == sort, descending) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        }
    };
    let next_href = next.map(|next| {
        if by_cursor {
            format!("{here}?after={}", query_value(&next))
        } else {
            format!(
                "{here}?sort={}&order={}&page={next}",
                sort.as_str(),
                if descending { "desc" } else { "asc" }
            )
        }
    });
    Ok(html! {
        (breadcrumbs(path))
        h1 { (path) }
        section.actions aria-label="Add" {
            form #upload method="post" enctype="multipart/form-data"
                action={ "/upload?dir=" (query_value(path)) "&csrf=" (visitor.csrf) } {
                // Before the files: the server reads the parts in order.
                label { input type="checkbox" name="replace" value="1"; " replace existing files" }
                label { "Upload files " input type="file" name="file" multiple; }
                label { "or a folder " input type="file" name="folder" webkitdirectory multiple; }
                button type="submit" { "Upload" }
                progress #upload-progress max="100" value="0" hidden {}
                span #upload-status role="status" {}
            }
            div #dropzone hidden {
                "Drop files or folders here to upload them to " (path)
            }
            form method="post" action="/mkdir" {
                input type="hidden" name="csrf" value=(visitor.csrf);
                input type="hidden" name="dir" value=(path);
                label { "New directory " input name="name" required maxlength="255"; }
                button type="submit" { "Make" }
            }
        }
        @if truncated {
            p.note { "This directory holds more than " (MAX_SORTED_ENTRIES) " entries; the sort covers the first "
                (MAX_SORTED_ENTRIES) " by name. Sort by name to page through them all." }
        }
        table.listing {
            caption.visually-hidden { "Entries of " (path) }
            thead {
                tr {
                    th scope="col" { a href=(sort_link(SortBy::Name)) { "Name" (arrow(SortBy::Name)) } }
                    th scope="col" { a href=(sort_link(SortBy::Size)) { "Size" (arrow(SortBy::Size)) } }
                    th scope="col" { a href=(sort_link(SortBy::Modified)) { "Modified" (arrow(SortBy::Modified)) } }
                    th scope="col" { "Owner" }
                    th scope="col" { "Mode" }
                    th scope="col" { span.visually-hidden { "Actions" } }
                }
            }
            tbody {
                @if path != "/" {
                    @let parent = path.rsplit_once('/').map(|(p, _)| if p.is_empty() { "/" } else { p }).unwrap_or("/");
                    tr { td colspan="6" { a href=(files_href(parent)) { ".. (up)" } } }
                }
                @for entry in &entries {
                    @let entry_path = child_path(path, &entry.name);
                    tr {
                        td.name {
                            a href=(files_href(&entry_path)) {
                                (entry.name) @if entry.kind == EntryKind::Dir { "/" }
                            }
                        }
                        td.size { @if entry.kind == EntryKind::Dir { (entry.size_bytes) " entries" } @else { (format_size(entry.size_bytes)) } }
                        td { (format_time_ns(entry.modified_ns)) }
                        td { (entry.owner) ":" (entry.group) }
                        td.mode { (entry.kind_char()) (mode_string(entry.mode)) }
                        td {
                            @if entry.kind == EntryKind::File {
                                a href=(download_href(&entry_path)) download { "Download" }
                            }
                        }
                    }
                }
                @if entries.is_empty() {
                    tr { td colspan="6" { "Empty." } }
                }
            }
        }
        @if let Some(href) = next_href {
            p { a rel="next" href=(href) { "Next page" } }
        }
    })
}

/// `ls -l`'s first letter.
trait KindChar {
    fn kind_char(&self) -> char;
}

impl KindChar for DirEntry {
    fn kind_char(&self) -> char {
        match self.kind {
            EntryKind::Dir => 'd',
            EntryKind::File => '-',
            EntryKind::Symlink => 'l',
            EntryKind::Fifo => 'p',
            EntryKind::Socket => 's',
            EntryKind::CharDevice => 'c',
            EntryKind::BlockDevice => 'b',
        }
    }
}

async fn details(visitor: &Visitor, path: &str, stat: &Stat) -> Result<Markup, WebError> {
    let shown = &stat.chunks[..stat.chunks.len().min(MAX_CHUNKS_SHOWN)];
    // Where each chunk should be (its targets) and, for admins (who may ask
    // the storage nodes), where it is.
    let map = visitor.files.map(false).await?;
    let locations = if visitor.who.admin && !shown.is_empty() {
        let grant = Grant::admin(visitor.files.meta()).await?;
        let chunks = visitor
            .files
            .chunks()
            .clone()
            .with_capability(grant.capability().await?);
        Some(chunk_locations(&chunks, &map, shown).await?)
    } else {
        None
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    Ok(html! {
        (breadcrumbs(path))
        h1 { (name) }
        @if stat.kind == EntryKind::File {
            p {
                a.button href=(download_href(path)) download { "Download" }
                " "
                a href={ (download_href(path)) "?inline=1" } { "Open in the browser" }
            }
        }
        dl.details {
            dt { "Path" } dd { (path) }
            dt { "Kind" } dd { (stat.kind.describe()) }
            dt { "Size" } dd { (format_size(stat.size_bytes)) " (" (stat.size_bytes) " bytes)" }
            @if let Some(target) = &stat.target {
                dt { "Target" } dd { (target) }
            }
            dt { "Owner" } dd { (stat.owner) " (" (stat.uid) ")" }
            dt { "Group" } dd { (stat.group) " (" (stat.gid) ")" }
            dt { "Mode" } dd { (mode_string(stat.mode)) " (" (format!("{:o}", stat.mode)) ")" }
            dt { "Links" } dd { (stat.links) }
            dt { "Version" } dd { (stat.version) }
            dt { "Modified" } dd { (format_time_ns(stat.modified_ns)) }
            dt { "Changed" } dd { (format_time_ns(stat.changed_ns)) }
            dt { "Id" } dd { (stat.id) }
            @if let Some(digest) = stat.digest {
                dt { "Digest (BLAKE3)" } dd.mono { (digest) }
            }
        }
        @if !stat.chunks.is_empty() {
            h2 { "Chunks (" (stat.chunks.len()) ")" }
            table.chunks {
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "Chunk" } th scope="col" { "Size" }
                    th scope="col" { "Placed on" }
                    @if locations.is_some() { th scope="col" { "Held by" } }
                } }
                tbody {
                    @for (i, chunk) in shown.iter().enumerate() {
                        tr {
                            td { (i) }
                            td.mono { (chunk.id.to_string()[..16]) "…" }
                            td { (format_size(u64::from(chunk.length_bytes))) }
                            td { (cairn_placement::targets(&chunk.id, &map).iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")) }
                            @if let Some(locations) = &locations {
                                td { (locations[i].held_by.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")) }
                            }
                        }
                    }
                }
            }
            @if stat.chunks.len() > shown.len() {
                p.note { "The first " (shown.len()) " chunks are shown." }
            }
        }
        h2 { "Rename or move" }
        form method="post" action="/rename" {
            input type="hidden" name="csrf" value=(visitor.csrf);
            input type="hidden" name="from" value=(path);
            label { "New path " input name="to" value=(path) required size="60"; }
            button type="submit" { "Rename" }
        }
        h2 { "Delete" }
        p { a.danger href={ "/delete?path=" (query_value(path)) } { "Delete " (name) "…" } }
    })
}

#[derive(Deserialize)]
pub struct MkdirForm {
    csrf: String,
    dir: String,
    name: String,
}

pub async fn mkdir(visitor: Visitor, Form(form): Form<MkdirForm>) -> Result<Response, WebError> {
    visitor.check_csrf(&form.csrf)?;
    cairn_proto::path::validate_name(&form.name).map_err(|e| WebError::bad_request(e.message))?;
    let path = child_path(&form.dir, &form.name);
    visitor.files.mkdir(&path, false, None).await?;
    Ok(Redirect::to(&files_href(&form.dir)).into_response())
}

#[derive(Deserialize)]
pub struct RenameForm {
    csrf: String,
    from: String,
    to: String,
}

pub async fn rename(visitor: Visitor, Form(form): Form<RenameForm>) -> Result<Response, WebError> {
    visitor.check_csrf(&form.csrf)?;
    let moved = visitor.files.rename(&form.from, &form.to, false).await?;
    Ok(Redirect::to(&files_href(&moved.path)).into_response())
}

#[derive(Deserialize)]
pub struct PathQuery {
    path: String,
}

pub async fn confirm_delete(
    visitor: Visitor,
    Query(query): Query<PathQuery>,
) -> Result<Response, WebError> {
    let stat = visitor.files.stat(Target::Path(&query.path)).await?;
    let is_dir = stat.kind == EntryKind::Dir;
    let body = html! {
        (breadcrumbs(&query.path))
        h1 { "Delete " (query.path) "?" }
        @if is_dir && stat.size_bytes > 0 {
            p.warning { "This directory holds " (stat.size_bytes) " entries; they are deleted with it." }
        }
        p { "This cannot be undone." }
        form method="post" action="/delete" {
            input type="hidden" name="csrf" value=(visitor.csrf);
            input type="hidden" name="path" value=(query.path);
            button.danger type="submit" { "Delete" }
            " "
            a href=(files_href(&query.path)) { "Cancel" }
        }
    };
    Ok(page("Delete?", Some(&visitor), body).into_response())
}

#[derive(Deserialize)]
pub struct DeleteForm {
    csrf: String,
    path: String,
}

pub async fn delete(visitor: Visitor, Form(form): Form<DeleteForm>) -> Result<Response, WebError> {
    visitor.check_csrf(&form.csrf)?;
    if form.path.trim_matches('/').is_empty() {
        return Err(WebError::new(
            StatusCode::BAD_REQUEST,
            "the root directory / cannot be deleted",
        ));
    }
    visitor.files.remove(&form.path, true).await?;
    let parent = match form.path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((parent, _)) => parent.to_string(),
    };
    Ok(Redirect::to(&files_href(&parent)).into_response())
}
