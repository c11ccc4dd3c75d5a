//! The web dashboard: one page (`web/` in this crate) embedded in the binary and served at
//! `/`, its assets under `/dashboard/`, and `/dashboard/config.json` telling the page where the
//! market-data WebSocket listens. No build step: the files are served as checked in.
//!
//! Every URL in the page is relative, so the page also works behind a reverse proxy that
//! serves oa under a path prefix (docs/dashboard.md).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX_HTML: &[u8] = include_bytes!("../web/index.html");

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// The [`Asset`] of the file `web/<path>`, served at `/dashboard/<path>`.
macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../web/", $path)),
        }
    };
}

/// Everything under `/dashboard/` (paths relative to it).
const ASSETS: &[Asset] = &[
    asset!("app.js", JAVASCRIPT),
    asset!("style.css", CSS),
    asset!("vendor/socket.io.min.js", JAVASCRIPT),
    asset!(
        "vendor/lightweight-charts.standalone.production.js",
        JAVASCRIPT
    ),
    asset!("vendor/socket.io-client.LICENSE", TEXT),
    asset!("vendor/lightweight-charts.LICENSE", TEXT),
];

/// Scripts, styles and connections only from oa itself; the page is never framed. Styles
/// allow inline `style` attributes, which the chart library sets on its elements.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; \
     frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// What the page needs to know about this server.
#[derive(Debug, Clone)]
pub struct DashboardInfo {
    /// Port of the market-data WebSocket (the page connects to the host it was loaded from).
    pub websocket_port: u16,
    /// A full WebSocket URL that overrides host and port (behind a reverse proxy).
    pub websocket_url: Option<String>,
}

/// `/`, `/dashboard/config.json` and `/dashboard/<asset>`.
pub fn router(info: DashboardInfo) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/config.json", get(config))
        .route("/dashboard/{*path}", get(asset))
        .with_state(info)
}

async fn index() -> Response {
    page_response("text/html; charset=utf-8", INDEX_HTML)
}

async fn config(State(info): State<DashboardInfo>) -> Response {
    let body = json!({
        "websocket_port": info.websocket_port,
        "websocket_url": info.websocket_url,
    });
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(body),
    )
        .into_response()
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.path == path) {
        Some(asset) => page_response(asset.content_type, asset.body),
        None => crate::http::not_found().await,
    }
}

/// A file with the page's security headers. `no-cache`: the browser revalidates, so a new
/// binary's page is picked up at once.
fn page_response(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
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
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the page loads is embedded: a renamed asset fails here, not in a browser.
    #[test]
    fn every_asset_the_page_references_is_served() {
        let html = std::str::from_utf8(INDEX_HTML).unwrap();
        let referenced: Vec<&str> = html
            .split(['"', '\''])
            .filter_map(|part| part.strip_prefix("dashboard/"))
            .collect();
        assert!(referenced.len() >= 4, "{referenced:?}");
        for path in referenced {
            assert!(
                ASSETS.iter().any(|asset| asset.path == path),
                "index.html loads dashboard/{path}, which is not embedded"
            );
        }
    }

    /// The page must not reach outside oa (no CDN, no web fonts): no absolute URLs.
    #[test]
    fn the_page_and_its_own_scripts_load_nothing_from_elsewhere() {
        for (name, body) in [
            ("index.html", INDEX_HTML),
            ("app.js", ASSETS[0].body),
            ("style.css", ASSETS[1].body),
        ] {
            let text = std::str::from_utf8(body).unwrap();
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(scheme), "{name} contains {scheme:?}");
            }
        }
    }
}
