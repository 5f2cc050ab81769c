//! Provides the request middleware every service route runs through:
//! a request ID (taken from `x-request-id` or made up) carried by every log
//! line of the request, a start line and an end line with status and
//! duration, request metrics, panic capture (a 500, the stack in the log,
//! the service keeps serving) and a whole-request timeout.

use std::any::Any;
use std::backtrace::Backtrace;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tracing::Instrument;

use crate::metrics::RequestLabels;
use crate::Shared;

/// The header that carries request IDs in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// A semi-unique request ID: 16 hex digits, different across restarts.
pub fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
    });
    // splitmix64: consecutive counters give unrelated-looking IDs.
    let mut z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:016x}", z ^ (z >> 31))
}

fn acceptable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Logs, measures and labels one request.
pub(crate) async fn observe(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    // Nothing here allocates but the request ID: the route is the router's
    // shared pattern, the method and status labels are static strings.
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_id(v))
        .map_or_else(new_request_id, str::to_owned);
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route_label = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route_label,
        status = tracing::field::Empty,
    );
    let in_flight = shared.metrics.start();
    let start = Instant::now();
    let request_span = span.clone();
    async move {
        tracing::info!(path = %req.uri().path(), "request start");
        let mut response = next.run(req).await;
        let elapsed = start.elapsed();
        let status = response.status();
        request_span.record("status", status.as_u16());
        tracing::info!(
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request end"
        );
        if let Ok(value) = HeaderValue::try_from(id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
        shared.metrics.finish(
            RequestLabels {
                route,
                method: method.as_str(),
                status: status.as_str(),
            },
            elapsed,
        );
        drop(in_flight);
        response
    }
    .instrument(span)
    .await
}

/// The response to a handler that panicked. The panic hook has already
/// logged the message and stack, inside the request's span.
pub(crate) fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error: the handler panicked (see the service log)",
    )
}

/// The response to a request that outlived the request timeout.
pub(crate) fn timeout_status() -> StatusCode {
    StatusCode::SERVICE_UNAVAILABLE
}

/// A JSON error body `{"error": message}` with a status.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Logs panics with their stack through `tracing`, so a handler's panic
/// carries its request ID, and still runs the previous hook, so no panic
/// (a failed assertion, a panic outside any request) goes unreported.
/// Installed once per process.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if tracing::dispatcher::has_been_set() {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(non-text panic payload)");
                let location = info.location().map(ToString::to_string).unwrap_or_default();
                let stack = Backtrace::force_capture();
                tracing::error!(message, location, stack = %stack, "panic");
            }
            previous(info);
        }));
    });
}

/// The default whole-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
