//! Static files, embedded in the binary (no build step, nothing to deploy beside it).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

pub async fn asset(Path(file): Path<String>) -> Response {
    let (mime, body): (&str, &'static str) = match file.as_str() {
        "ui.css" => ("text/css; charset=utf-8", include_str!("../assets/ui.css")),
        "ui.js" => ("text/javascript; charset=utf-8", include_str!("../assets/ui.js")),
        // Vendored htmx 2.0.4 (0BSD, see htmx.LICENSE).
        "htmx.min.js" => ("text/javascript; charset=utf-8", include_str!("../assets/htmx.min.js")),
        // The wizard's own renderer, so the settings preview matches what users see.
        "markdown.js" => ("text/javascript; charset=utf-8", include_str!("../../edge/assets/markdown.js")),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}
