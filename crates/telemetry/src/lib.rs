//! Metrics for Cairn's servers, in Prometheus text format at `/metrics`.
//!
//! Each server process installs one recorder ([`install`]) and wraps its
//! router with [`layer`], which counts requests and bytes and times them per
//! route. Server code records its own figures with the `metrics` macros
//! (re-exported here), named `cairn_<what>_<unit>`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use metrics::{counter, gauge, histogram};

/// Latency buckets in seconds: 0.5 ms to 30 s.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls reuse it).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".to_string()),
                    LATENCY_BUCKETS_SECONDS,
                )
                .expect("latency buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first (a test
            // running two servers in one process); the figures then go to
            // that one and this handle renders an empty page.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Adds `GET /metrics` and the per-request metrics layer to `router`.
pub fn instrument<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    let handle = install();
    router
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                        .into_response()
                }
            }),
        )
        .layer(axum::middleware::from_fn(record_request))
}

/// Why a server refused a request: set on an error response by the
/// server's error type, logged by [`instrument`]'s layer. It must carry no
/// secret (the servers' error messages never quote a token or password).
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The API error code (`permission_denied`, ...).
    pub code: String,
    pub message: String,
}

/// Counts and times every request by route pattern (never by raw path, so
/// chunk ids do not explode the label set) and status class, and logs every
/// refused one with its source and reason.
async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let source = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let method = request.method().as_str().to_string();
    let bytes_in = content_length(request.headers());
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed_seconds = started.elapsed().as_secs_f64();
    let status = response.status();
    let class = match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!("cairn_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => class).increment(1);
    if status.is_client_error() || status.is_server_error() {
        counter!("cairn_http_errors_total", "route" => route.clone(), "method" => method.clone())
            .increment(1);
        let (code, reason) = response
            .extensions()
            .get::<Rejection>()
            .map_or(("", ""), |r| (r.code.as_str(), r.message.as_str()));
        let source = source.map_or("unknown".to_string(), |s| s.to_string());
        // A 404 is an answer (`put` stats every new name first), not worth
        // a line each; a 503 is an election or a lost majority, not a bug.
        let status_code = status.as_u16();
        match status_code {
            404 => {
                tracing::debug!(%source, %method, %route, status = status_code, code, reason, "rejected a request")
            }
            500..=599 if code == "internal" => {
                tracing::error!(%source, %method, %route, status = status_code, code, reason, "request failed")
            }
            500..=599 => {
                tracing::warn!(%source, %method, %route, status = status_code, code, reason, "request failed")
            }
            _ => {
                tracing::info!(%source, %method, %route, status = status_code, code, reason, "rejected a request")
            }
        }
    }
    histogram!("cairn_http_request_duration_seconds", "route" => route.clone(), "method" => method)
        .record(elapsed_seconds);
    counter!("cairn_http_received_bytes_total", "route" => route.clone()).increment(bytes_in);
    counter!("cairn_http_sent_bytes_total", "route" => route)
        .increment(content_length(response.headers()));
    response
}

fn content_length(headers: &axum::http::HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
