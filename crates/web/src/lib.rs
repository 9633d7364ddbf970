//! `cairn web`: a web page for people not at a terminal. Stateless (run
//! any number): a visitor logs in with a Cairn user, and the session
//! token the metadata service hands out is the page's cookie; every page
//! then calls the file API as that user, so the metadata service decides
//! every permission, as for the CLI and the mount.
//!
//! - `session.rs`: the cookie, CSRF tokens, log in and out, [`Visitor`]
//! - `layout.rs`: the page around every view, errors, formatting, links
//! - `browse.rs`: directories (paged, sorted), file details, mkdir,
//!   rename, delete
//! - `transfer.rs`: downloads (streamed, with Range) and uploads
//!   (multipart, streamed into chunks, files and folders)
//! - `keys.rs`: the visitor's S3 access keys and buckets
//! - `admin.rs`: the cluster page (nodes, repair, metadata members) and
//!   users, for admins
//! - `assets/`: htmx, the page's script and style, in the binary
//!
//! Works without JavaScript for browsing, downloads and forms; the script
//! adds upload progress, drag and drop, and the cluster page's refresh.

mod admin;
mod browse;
mod keys;
mod layout;
mod session;
mod transfer;

use std::future::Future;

use axum::extract::{DefaultBodyLimit, Path};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use cairn_client::{Files, MetaClient};

pub use session::Visitor;

/// How a web server runs.
pub struct WebConfig {
    pub listen: String,
    /// The metadata service; visitors' calls carry their own session.
    pub meta: MetaClient,
    /// The metadata service with the cluster token, if the server has the
    /// cluster secret: then visitors can make S3 buckets here.
    pub system: Option<MetaClient>,
    pub tls: Option<cairn_transport::ServerTls>,
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    /// The file API with no user: each visitor's view is made from it.
    files: Files,
    /// As a cluster process (buckets), if the server has the secret.
    system: Option<Files>,
    /// Served over TLS: cookies are `Secure`.
    tls: bool,
}

/// Serves the page on `config.listen` until `shutdown` resolves.
pub async fn run(
    config: WebConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    cairn_transport::install_crypto_provider();
    let listener = cairn_transport::bind(&config.listen).await?;
    let addr = listener.local_addr()?;
    let files = Files::new(config.meta);
    let app = App {
        system: config.system.map(|meta| files.acting_as(meta)),
        files,
        tls: config.tls.is_some(),
    };
    if config.tls.is_none() {
        cairn_transport::warn_plain_http(&addr.to_string());
    }
    tracing::info!(%addr, tls = app.tls, "web page listening");
    let limits = cairn_transport::Limits::default();
    cairn_transport::serve(listener, router(app), config.tls, limits, shutdown).await
}

fn router(app: App) -> Router {
    let routes = Router::new()
        .route("/", get(|| async { Redirect::to("/files/") }))
        .route("/login", get(session::login_page).post(session::log_in))
        .route("/logout", post(session::log_out))
        .route("/files", get(browse::show_root))
        .route("/files/", get(browse::show_root))
        .route("/files/{*path}", get(browse::show))
        .route("/mkdir", post(browse::mkdir))
        .route("/rename", post(browse::rename))
        .route("/delete", get(browse::confirm_delete).post(browse::delete))
        .route("/download/{*path}", get(transfer::download))
        .route(
            "/upload",
            // Bodies stream into chunks and are never held whole, so
            // axum's 2 MiB default does not apply (files are bounded by
            // the largest file a chunk list can name).
            post(transfer::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/keys", get(keys::show))
        .route("/keys/create", post(keys::create))
        .route("/keys/revoke", post(keys::revoke))
        .route("/buckets/create", post(keys::create_bucket))
        .route("/cluster", get(admin::show))
        .route("/cluster/health", get(admin::health_fragment))
        .route("/users/add", post(admin::add_user))
        .route("/users/remove", post(admin::remove_user))
        .route("/users/password", post(admin::reset_password))
        .route("/assets/{name}", get(asset))
        .route("/health", get(|| async { "ok" }))
        .with_state(app);
    cairn_telemetry::instrument(routes).layer(axum::middleware::map_response(security_headers))
}

/// Every answer: no framing by other sites, scripts and styles only from
/// here, no guessing of content types.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             media-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The page's own files, in the binary.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx-2.0.4.min.js",
        "text/javascript",
        include_bytes!("../assets/htmx-2.0.4.min.js"),
    ),
    (
        "app.js",
        "text/javascript",
        include_bytes!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css",
        include_bytes!("../assets/style.css"),
    ),
];

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
