//! The web UI, served on the admin listener at `/ui/`: hand-written HTML, CSS and JavaScript
//! embedded in the binary (no network, no build step). The page itself holds nothing secret,
//! so it is served without the admin token; everything it shows comes from the admin API,
//! to which it sends the token typed into its token field.

use crate::plane::DataPlane;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub const UI_PATH: &str = "/ui/";

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const STYLE_CSS: &str = include_str!("../../ui/style.css");

pub(super) fn router() -> Router<Arc<DataPlane>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent(UI_PATH) }))
        .route(
            UI_PATH,
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The page and its API calls share the admin origin and nothing else.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}
