//! HTTP plumbing shared by every route: errors as JSON responses, body
//! and query extractors whose rejections are JSON too, and the request
//! headers a route may read (consistency, request id).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request as HttpRequest};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use cairn_proto::api::{REQUEST_ID_HEADER, STALE_OK_HEADER};
use cairn_proto::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;

use crate::records::StateError;

/// An [`ApiError`] as an HTTP response: its code's status and a JSON body.
pub struct HttpError(pub ApiError);

/// Marks a `not_leader` error response with the leader's address, for
/// the routing middleware to turn into a redirect.
#[derive(Clone)]
pub struct LeaderHint(pub Option<String>);

impl IntoResponse for HttpError {
    fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let hint = (self.0.code == ErrorCode::NotLeader).then(|| LeaderHint(self.0.leader.clone()));
        let rejection = cairn_telemetry::Rejection {
            code: self.0.code.as_str().to_string(),
            message: self.0.message.clone(),
        };
        let mut response = (status, Json(self.0)).into_response();
        response.extensions_mut().insert(rejection);
        if let Some(hint) = hint {
            response.extensions_mut().insert(hint);
        }
        response
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

pub type ApiResult<T> = Result<Json<T>, HttpError>;

/// A state error as the API answers it: a refusal as it is, a storage
/// fault logged and answered as internal.
pub fn into_api_error(error: StateError) -> ApiError {
    match error {
        StateError::Api(e) => e,
        other => {
            tracing::error!(%other, "metadata read failed");
            ApiError::internal(other)
        }
    }
}

/// A JSON body whose rejections come back as JSON `ApiError`s.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = HttpError;

    async fn from_request(req: HttpRequest, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(HttpError(json_rejection(rejection))),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ErrorCode::TooLarge
    } else {
        ErrorCode::InvalidArgument
    };
    ApiError::new(code, format!("bad request body: {}", rejection.body_text()))
}

/// Query parameters whose rejections come back as JSON `ApiError`s.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // serde's query decoding replaces invalid UTF-8 with U+FFFD; a path
        // must arrive as sent, so such a query is refused instead.
        if !percent_decodes_to_utf8(parts.uri.query().unwrap_or_default()) {
            return Err(HttpError(ApiError::new(
                ErrorCode::InvalidArgument,
                "bad query string: its percent-encoded bytes are not valid UTF-8",
            )));
        }
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(HttpError(query_rejection(rejection))),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidArgument,
        format!("bad query string: {}", rejection.body_text()),
    )
}

/// Whether a raw query string (`a=%2Fx&b=y`) decodes to UTF-8.
fn percent_decodes_to_utf8(query: &str) -> bool {
    let bytes = query.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|hex| bytes[i] == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// How a read is served: confirmed with a majority, or from this
/// member's applied state as it is (the `x-cairn-stale-ok` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Stale,
}

impl<S: Send + Sync> FromRequestParts<S> for Consistency {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(if parts.headers.contains_key(STALE_OK_HEADER) {
            Consistency::Stale
        } else {
            Consistency::Linearizable
        })
    }
}

/// The client's id for this operation (`x-cairn-request-id`, 32 hex
/// digits), if it sent one.
pub struct RequestId(pub Option<u128>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(REQUEST_ID_HEADER) else {
            return Ok(RequestId(None));
        };
        let parsed = value
            .to_str()
            .ok()
            .filter(|text| text.len() == 32)
            .and_then(|text| u128::from_str_radix(text, 16).ok());
        match parsed {
            Some(id) => Ok(RequestId(Some(id))),
            None => Err(HttpError(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("header {REQUEST_ID_HEADER} must be 32 hex digits"),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decodes_to_utf8;

    #[test]
    fn queries_must_decode_to_utf8() {
        assert!(percent_decodes_to_utf8("path=%2Fa%20b&x=%C3%A9"));
        assert!(percent_decodes_to_utf8("path=100%"));
        assert!(!percent_decodes_to_utf8("path=%FF%FE"));
        assert!(!percent_decodes_to_utf8("path=%C3"));
    }
}
