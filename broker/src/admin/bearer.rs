//! The admin API's bearer token: compared in constant time, so response timing does not
//! reveal how much of a guess was right.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

pub(super) async fn require(token: &str, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if bool::from(p.as_bytes().ct_eq(token.as_bytes())) => next.run(request).await,
        Some(_) => (StatusCode::FORBIDDEN, "the admin token is not valid\n").into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "the admin API requires `Authorization: Bearer <token>` (herald --token, HERALD_ADMIN_TOKEN)\n",
        )
            .into_response(),
    }
}
