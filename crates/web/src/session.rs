//! Sessions: the cookie holds the Cairn session token a login returned
//! (HttpOnly, SameSite=Strict, Secure under TLS), so any `cairn web`
//! process serves any visitor and a logout ends the session everywhere.
//! Every form that changes something carries a CSRF token derived from the
//! session token (which a page of another site cannot read), and is
//! refused without it.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cairn_client::{ClientError, Files};
use cairn_proto::api::{LoginRequest, WhoAmI};
use cairn_proto::ErrorCode;
use maud::html;
use serde::Deserialize;

use crate::layout::{page, WebError};
use crate::App;

const COOKIE: &str = "cairn_session";
/// The longest session token accepted from a cookie.
const MAX_TOKEN_BYTES: usize = 256;

/// A logged-in visitor: the file API as their user.
pub struct Visitor {
    pub files: Files,
    pub who: WhoAmI,
    /// The token every form of this visitor carries.
    pub csrf: String,
}

impl Visitor {
    /// Refuses a change whose form does not carry this visitor's token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), WebError> {
        let matches = sent.len() == self.csrf.len()
            && sent
                .bytes()
                .zip(self.csrf.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        if matches {
            Ok(())
        } else {
            Err(WebError::new(
                StatusCode::FORBIDDEN,
                "this form is out of date or came from another site; reload the page and try again",
            ))
        }
    }
}

impl FromRequestParts<App> for Visitor {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Visitor, WebError> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(WebError::LogIn { next });
        };
        let meta = app.files.meta().clone().with_token(Some(token.clone()));
        let files = app.files.acting_as(meta);
        match files.meta().whoami().await {
            Ok(who) => Ok(Visitor {
                files,
                who,
                csrf: csrf_of(&token),
            }),
            Err(e) if e.code() == Some(ErrorCode::Unauthenticated) => Err(WebError::LogIn { next }),
            Err(e) => Err(e.into()),
        }
    }
}

/// The session token in the request's cookies, if any.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|token| !token.is_empty() && token.len() <= MAX_TOKEN_BYTES)
}

/// The CSRF token of a session: a keyed hash of its token.
fn csrf_of(token: &str) -> String {
    let key = blake3::derive_key("cairn web 2026 csrf token", token.as_bytes());
    blake3::Hash::from(key).to_hex()[..32].to_string()
}

fn session_cookie(app: &App, token: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if app.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .expect("session tokens are cookie-safe")
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

pub async fn login_page(Query(query): Query<NextQuery>) -> Response {
    login_form(query.next.as_deref(), None, StatusCode::OK)
}

fn login_form(next: Option<&str>, error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        h1 { "Log in to Cairn" }
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        form.login method="post" action="/login" {
            input type="hidden" name="next" value=(next.unwrap_or("/"));
            label { "User " input name="user" autocomplete="username" required autofocus; }
            label { "Password " input name="password" type="password" autocomplete="current-password" required; }
            button type="submit" { "Log in" }
        }
    };
    (status, page("Log in", None, body)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

pub async fn log_in(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    // A login form posted from another site would log the visitor in as
    // someone else: browsers say where a form came from.
    if !same_origin(&headers) {
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            "this login form came from another site; open the login page here",
        ));
    }
    let request = LoginRequest {
        user: form.user.clone(),
        password: form.password,
        expires_in_secs: None,
    };
    let login = match app.files.meta().login(&request).await {
        Ok(login) => login,
        Err(e)
            if matches!(
                e.code(),
                Some(ErrorCode::Unauthenticated | ErrorCode::NotFound)
            ) =>
        {
            return Ok(login_form(
                form.next.as_deref(),
                Some("Wrong user name or password."),
                StatusCode::UNAUTHORIZED,
            ))
        }
        Err(e) if e.code() == Some(ErrorCode::TooManyRequests) => {
            return Ok(login_form(
                form.next.as_deref(),
                Some(&e.to_string()),
                StatusCode::TOO_MANY_REQUESTS,
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let max_age_secs = login.expires_ms.saturating_sub(now_ms) / 1000;
    let next = match form.next.as_deref() {
        Some(next) if is_local_page(next) && next != "/" => next.to_string(),
        _ => crate::layout::files_href(&login.home),
    };
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&app, &login.token, max_age_secs),
    );
    Ok(response)
}

/// Whether `next` names a page of this site: a path, not `//other.site`
/// nor `/\other.site` (which browsers read as one), in the printable
/// ASCII every link of these pages is made of.
fn is_local_page(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether the request's `Origin` (or else `Referer`) is this site, or
/// absent (not a browser's cross-site form).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match source {
        None | Some("null") => source.is_none(),
        Some(source) => {
            let rest = source
                .strip_prefix("https://")
                .or_else(|| source.strip_prefix("http://"))
                .unwrap_or(source);
            rest.split('/').next() == Some(host)
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

pub async fn log_out(
    State(app): State<App>,
    visitor: Visitor,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    visitor.check_csrf(&form.csrf)?;
    match visitor.files.meta().logout().await {
        Ok(_) => {}
        // Ended already: the cookie goes all the same.
        Err(ClientError::Api(e)) if e.code == ErrorCode::Unauthenticated => {}
        Err(e) => return Err(e.into()),
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&app, "", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; cairn_session=tok123; b=2"),
        );
        assert_eq!(cookie_token(&headers).as_deref(), Some("tok123"));
        let long = format!("cairn_session={}", "x".repeat(MAX_TOKEN_BYTES + 1));
        headers.insert(header::COOKIE, HeaderValue::from_str(&long).unwrap());
        assert_eq!(cookie_token(&headers), None);
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a").len(), 32);
    }

    #[test]
    fn the_cookie_is_secure_under_tls() {
        let app = |tls| App {
            files: Files::new(cairn_client::MetaClient::new("127.0.0.1:1")),
            system: None,
            tls,
        };
        let plain = session_cookie(&app(false), "tok", 60);
        let secure = session_cookie(&app(true), "tok", 60);
        assert_eq!(
            plain.to_str().unwrap(),
            "cairn_session=tok; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn a_login_returns_only_to_pages_of_this_site() {
        assert!(is_local_page("/files/home/alice?sort=size"));
        for elsewhere in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/a\r\nSet-Cookie: x",
            "/a b",
        ] {
            assert!(!is_local_page(elsewhere), "{elsewhere}");
        }
    }

    #[test]
    fn forms_from_other_sites_are_told_apart() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7790"));
        assert!(same_origin(&headers), "no Origin: not a browser form");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7790"),
        );
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers));
    }
}
