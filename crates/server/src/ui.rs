//! The web UI: one page and its script and style sheet, embedded in the binary (no CDN, no build
//! step) and served at `/`. The page reads the same JSON APIs any client uses, so it shows what
//! they show; with tokens on it asks for one and sends it as a bearer token. The assets hold no
//! data, so they are served without a token; a strict content security policy keeps the page to
//! its own origin.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/app.css");

/// Paths the UI's assets live at; the auth layer lets them through.
pub fn is_asset(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The assets change with the binary; revalidate rather than serve a stale UI.
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                 frame-src 'self' blob:; object-src 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn assets_are_the_ui_and_nothing_else() {
        assert!(super::is_asset("/"));
        assert!(super::is_asset("/ui/app.js"));
        assert!(!super::is_asset("/api/2.0/mlflow/runs/get"));
        assert!(!super::is_asset("/uix"));
    }
}
