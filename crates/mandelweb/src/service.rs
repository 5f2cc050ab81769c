//! Provides mandelweb's HTTP routes. `GET /mandelbrot` renders off the async
//! workers (on the blocking pool, at most a few renders at once) so the
//! server stays responsive under overload; bad parameters are a 400 with a
//! JSON error, never a panic or an unbounded allocation. `POST /find-by-age`
//! runs one SELECT through [`Db`]: a bad body is a 400, an unreachable
//! database a fast 503.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hammer_diag::error_response;
use hammer_diag::gate::Gate;
use serde::Deserialize;
use tracing::Instrument;

use crate::db::{Db, DbError};

use crate::render::render_png_until;
use crate::view::View;

/// The build version, `<major>.<minor>.<commit#>-<sha>-<date>.<time>`.
pub const VERSION: &str = env!("MANDELWEB_VERSION");

#[derive(Clone)]
struct AppState {
    /// Renders running at once (each already uses every core), and how
    /// long a request may wait for one before a fast 503.
    renders: Arc<Gate>,
    /// None: started without `--database-url`.
    db: Option<Db>,
}

/// The largest `POST /find-by-age` body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The gate in front of the renderer: one render per core at once (each
/// spreads its rows over every core, so more at once only stretches each
/// one), admitting a request only while its wait and render fit `budget`
/// (see [`hammer_diag::gate`]).
pub fn render_gate(budget: Duration) -> Arc<Gate> {
    Arc::new(Gate::new("render", render_slots(), budget))
}

/// Renders at once: one per core.
pub fn render_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The service's routes (hammer-diag adds `/info`, `/healthz`, `/readyz`).
/// Without a database `/find-by-age` answers 503 saying how to give one.
pub fn router(db: Option<Db>, renders: Arc<Gate>) -> Router {
    Router::new()
        .route("/mandelbrot", get(mandelbrot))
        .route("/find-by-age", post(find_by_age))
        .with_state(AppState { renders, db })
}

#[derive(Deserialize)]
struct FindByAge {
    age: i64,
}

/// The age in a `{"age": N}` body, or what is wrong with the body.
pub fn parse_age(body: &[u8]) -> Result<i32, String> {
    const SHAPE: &str = "body must be a JSON object {\"age\": <integer>}";
    // serde would also take a struct from an array (`[42]`); only an object will do.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(SHAPE.to_string());
    }
    let request: FindByAge = serde_json::from_slice(body).map_err(|e| format!("{SHAPE}: {e}"))?;
    i32::try_from(request.age).map_err(|_| format!("age {} is out of range", request.age))
}

async fn find_by_age(State(state): State<AppState>, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("body unreadable or over {} KiB", MAX_BODY / 1024),
            )
        }
    };
    let age = match parse_age(&bytes) {
        Ok(age) => age,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e),
    };
    let Some(db) = &state.db else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no database: start mandelweb with --database-url (and seed it with `mandelweb seed-db`)",
        );
    };
    let found = db
        .find_by_age(age)
        .instrument(tracing::info_span!("find_by_age", age))
        .await;
    match found {
        Ok(rows) => Json(rows).into_response(),
        Err(e @ DbError::Unavailable(_)) => {
            tracing::warn!(error = %e, "find-by-age");
            error_response(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "find-by-age");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

/// Sets its flag when dropped: the render it was given to stops.
#[derive(Default)]
struct Abandoned(Arc<AtomicBool>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn parse_query(query: Option<&str>) -> Result<View, String> {
    View::from_params(hammer_diag::query::pairs(query)).map_err(|e| e.to_string())
}

async fn mandelbrot(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let view = match parse_query(query.as_deref()) {
        Ok(v) => v,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e),
    };
    let _slot = match state
        .renders
        .enter()
        .instrument(tracing::info_span!("render.queue"))
        .await
    {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    // Dropped with this future: when the request times out, or its client
    // leaves (hyper reads the EOF and drops the request), the render stops
    // within a band of pixels (1-7 ms after the client left, measured).
    let abandoned = Abandoned::default();
    let stop = abandoned.0.clone();
    // The render runs on a blocking thread; its span stays the request's child.
    let request = tracing::Span::current();
    let rendered = tokio::task::spawn_blocking(move || {
        let _span = tracing::info_span!(parent: &request, "render", width = view.width, height = view.height)
            .entered();
        render_png_until(&view, &|| stop.load(Ordering::Relaxed))
    })
    .await;
    drop(abandoned);
    match rendered {
        Ok(Ok(Some(png))) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Ok(Ok(None)) => error_response(StatusCode::SERVICE_UNAVAILABLE, "render abandoned"),
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
