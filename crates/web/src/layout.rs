//! The page around every view, the error page, and the small formatting
//! every view shares. maud escapes every value it writes into HTML, so a
//! name is shown as text whatever it holds.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use cairn_client::ClientError;
use cairn_proto::ErrorCode;
use maud::{html, Markup, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::session::Visitor;

/// A whole page: title, navigation (for a logged-in visitor), the view.
pub fn page(title: &str, visitor: Option<&Visitor>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx's own indicator styles would be an inline style,
                // which the page's Content-Security-Policy refuses.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false}"#;
                    title { (title) " · Cairn" }
                    link rel="stylesheet" href="/assets/style.css";
                    script src="/assets/htmx-2.0.4.min.js" defer {}
                    script src="/assets/app.js" defer {}
                }
                body {
                    header {
                        nav aria-label="Main" {
                            a.brand href="/files/" { "Cairn" }
                            @if let Some(visitor) = visitor {
                                a href=(files_href(&visitor.who.home)) { "Files" }
                                a href="/keys" { "S3 keys" }
                                @if visitor.who.admin {
                                    a href="/cluster" { "Cluster" }
                                }
                                span.who { "Logged in as " strong { (visitor.who.user) } }
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(visitor.csrf);
                                    button type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// What a handler answers instead of a page.
#[derive(Debug)]
pub enum WebError {
    /// An error page with this status and message.
    Page { status: StatusCode, message: String },
    /// Not logged in (or the session ended): to the login page, then back.
    LogIn { next: String },
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError::Page {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<ClientError> for WebError {
    fn from(error: ClientError) -> WebError {
        let status = match error.code() {
            Some(ErrorCode::Unauthenticated) => {
                return WebError::LogIn { next: "/".into() };
            }
            Some(code) => {
                StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            None => StatusCode::BAD_GATEWAY,
        };
        WebError::new(status, error.to_string())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::LogIn { next } => {
                let href = format!("/login?next={}", utf8_percent_encode(&next, QUERY_VALUE));
                Redirect::to(&href).into_response()
            }
            WebError::Page { status, message } => {
                let body = html! {
                    h1 { (status.canonical_reason().unwrap_or("Error")) }
                    p.error role="alert" { (message) }
                    p { a href="/files/" { "Back to the files" } }
                };
                (status, page("Error", None, body)).into_response()
            }
        }
    }
}

/// Bytes a path segment may not hold as they are in a link.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']')
    .add(b'\'');

/// Bytes a query value may not hold as they are.
pub const QUERY_VALUE: &AsciiSet = &PATH_SEGMENT.add(b'&').add(b'=').add(b'+').add(b'/');

/// `/PREFIX/a/b` for the Cairn path `/a/b`, each name percent-encoded.
fn prefixed_href(prefix: &str, path: &str) -> String {
    let mut href = String::from(prefix);
    for name in path.split('/').filter(|n| !n.is_empty()) {
        href.push('/');
        href.extend(utf8_percent_encode(name, PATH_SEGMENT));
    }
    if href == prefix {
        href.push('/');
    }
    href
}

/// The page of a file or directory.
pub fn files_href(path: &str) -> String {
    prefixed_href("/files", path)
}

/// The download of a file.
pub fn download_href(path: &str) -> String {
    prefixed_href("/download", path)
}

/// A query value, encoded.
pub fn query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// `/a/b` + `c` = `/a/b/c`; `/` + `c` = `/c`.
pub fn child_path(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Links to `/` and each directory above `path`, and its own name.
pub fn breadcrumbs(path: &str) -> Markup {
    let names: Vec<&str> = path.split('/').filter(|n| !n.is_empty()).collect();
    html! {
        nav.breadcrumbs aria-label="Breadcrumb" {
            ol {
                li { a href="/files/" { "/" } }
                @for (i, name) in names.iter().enumerate() {
                    @let here = format!("/{}", names[..=i].join("/"));
                    li {
                        @if i + 1 == names.len() {
                            span aria-current="page" { (name) }
                        } @else {
                            a href=(files_href(&here)) { (name) }
                        }
                    }
                }
            }
        }
    }
}

pub use cairn_proto::units::format_size;

/// Nanoseconds since the epoch as `2026-12-02 11:26:55 UTC`.
pub fn format_time_ns(ns: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "?".into(),
    }
}

/// `0o750` as `rwxr-x---` (with s/S and t/T for the special bits).
pub fn mode_string(mode: u32) -> String {
    let mut out = String::with_capacity(9);
    for (shift, special, special_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        let exec = bits & 1 != 0;
        out.push(match (mode & special != 0, exec) {
            (true, true) => special_char,
            (true, false) => special_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_every_name_and_keep_slashes_between_them() {
        assert_eq!(files_href("/"), "/files/");
        assert_eq!(files_href("/a b/c?d#e%"), "/files/a%20b/c%3Fd%23e%25");
        assert_eq!(download_href("/x/é"), "/download/x/%C3%A9");
        assert_eq!(query_value("/a&b=c+d"), "%2Fa%26b%3Dc%2Bd");
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
    }

    #[test]
    fn sizes_times_and_modes_read_as_people_expect() {
        assert_eq!(format_time_ns(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(mode_string(0o755), "rwxr-xr-x");
        assert_eq!(mode_string(0o4755), "rwsr-xr-x");
        assert_eq!(mode_string(0o1777), "rwxrwxrwt");
        assert_eq!(mode_string(0o2640), "rw-r-S---");
    }

    #[test]
    fn names_are_escaped_in_pages() {
        let markup = breadcrumbs("/<script>alert(1)</script>/x");
        let html = markup.into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
