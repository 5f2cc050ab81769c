//! Provides mandelweb's HTTP routes. `GET /mandelbrot` renders off the async
//! workers (on the blocking pool, at most a few renders at once) so the
//! server stays responsive under overload; bad parameters are a 400 with a
//! JSON error, never a panic or an unbounded allocation.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hammer_diag::error_response;
use tokio::sync::Semaphore;

use crate::render::render_png;
use crate::view::View;

/// The build version, `<major>.<minor>.<commit#>-<sha>-<date>.<time>`.
pub const VERSION: &str = env!("MANDELWEB_VERSION");

#[derive(Clone)]
struct AppState {
    /// Renders running at once; each already uses every core.
    renders: Arc<Semaphore>,
}

/// The service's routes (hammer-diag adds `/info`, `/healthz`, `/readyz`).
pub fn router() -> Router {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Router::new()
        .route("/mandelbrot", get(mandelbrot))
        .with_state(AppState {
            renders: Arc::new(Semaphore::new(2 * cores)),
        })
}

fn parse_query(query: Option<&str>) -> Result<View, String> {
    View::from_params(hammer_diag::query::pairs(query)).map_err(|e| e.to_string())
}

async fn mandelbrot(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let view = match parse_query(query.as_deref()) {
        Ok(v) => v,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e),
    };
    let Ok(_permit) = state.renders.acquire().await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let rendered = tokio::task::spawn_blocking(move || {
        let _span =
            tracing::info_span!("render", width = view.width, height = view.height).entered();
        render_png(&view)
    })
    .await;
    match rendered {
        Ok(Ok(png)) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Ok(Err(e)) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("PNG encoding failed: {e}"),
        ),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("render failed: {e}"),
        ),
    }
}
