//! The web page: `GET /` and its two assets, embedded in the binary (no CDN: it works
//! air-gapped). The page holds no cluster data: it reads `/v1/pairs` from the browser with
//! the same authentication as any other caller (a token it asks for when the agent says 401),
//! so these three routes need none. Nothing is vendored: the page is plain HTML, CSS and JS.
//!
//! Every value from the cluster reaches the DOM as text, never as HTML, and the Content
//! Security Policy allows only this origin's script, style and fetches.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Only this origin: no inline script or style, no framing, fetches to the agent alone.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary brings a new page: revalidate rather than run an old script on new JSON.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The page and its assets on `router` (the agent's, or `netreach ui`'s own).
pub fn routes<S: Clone + Send + Sync + 'static>(router: axum::Router<S>) -> axum::Router<S> {
    router
        .route("/", axum::routing::get(index))
        .route("/ui/app.js", axum::routing::get(script))
        .route("/ui/app.css", axum::routing::get(style))
}

/// The bytes the page is made of, for the size check.
pub fn assets() -> [(&'static str, usize); 3] {
    [
        ("index.html", INDEX.len()),
        ("app.js", SCRIPT.len()),
        ("app.css", STYLE.len()),
    ]
}
