//! Provides the request middleware every service route runs through:
//! a request ID (taken from `x-request-id` or made up) carried by every log
//! line of the request, a start line and an end line with status and
//! duration, request metrics, panic capture (a 500, the stack in the log,
//! the service keeps serving) and a whole-request timeout.
//!
//! It is one tower layer with its own future rather than a stack of
//! `from_fn`, `CatchPanic` and `Timeout`: each of those boxes or wraps the
//! request's future and the stack cost more than the handler of a small
//! route. The timeout's timer is armed only when the handler first has to
//! wait: a handler that answers at once never touches the timer wheel.

use std::any::Any;
use std::backtrace::Backtrace;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tracing::Span;

use crate::log::{with_request, RequestContext, RequestLine};
use crate::log::{write_request_line, RequestLogs};
use crate::metrics::{FirstSeries, RequestLabels};
use crate::reply::error_response;
use crate::request_id::RequestId;
use crate::state::Shared;

/// The layer that logs, measures, times out and catches panics of every
/// request to the routes it wraps.
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    pub(crate) shared: Arc<Shared>,
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            route: Arc::new(RouteState {
                shared: self.shared.clone(),
                series: FirstSeries::default(),
            }),
        }
    }
}

/// See [`ObserveLayer`]. One per route (and method): axum applies the
/// layer to each, which is what makes the matched route known.
#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    route: Arc<RouteState>,
}

/// What the requests of one route share.
pub(crate) struct RouteState {
    shared: Arc<Shared>,
    series: FirstSeries,
}

/// Counts a request in flight until dropped, however the request ends.
struct InFlight(Arc<RouteState>);

impl InFlight {
    fn new(route: Arc<RouteState>) -> Self {
        route.shared.metrics.in_flight().inc();
        Self(route)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.shared.metrics.in_flight().dec();
    }
}

impl<S> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let mut route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        // With hammer-diag's logging, a request's lines are named by its
        // context (crate::lines) and a span is made only for a trace
        // capture. Under another subscriber, by a span, made when the logs
        // at info or a capture would see it.
        let ours = crate::log::installed();
        let logged = crate::log::logs_requests();
        let span = if (ours && crate::trace::capturing())
            || (!ours && crate::trace::span_may_be_enabled(tracing::Level::INFO))
        {
            tracing::info_span!(
                "request",
                method = %method,
                route = %route.as_ref().map_or("unmatched", MatchedPath::as_str),
                request_id = tracing::field::Empty,
                status = tracing::field::Empty,
            )
        } else {
            Span::none()
        };
        // A client's ID is always echoed. Otherwise one is made up when the
        // request is logged or traced: it names the request's lines (and an
        // error response), and with no lines written it would name nothing.
        let mut id = RequestId::given(&req);
        if logged || !span.is_disabled() {
            let id = id.get_or_insert_with(RequestId::made);
            if !span.is_disabled() {
                span.record("request_id", tracing::field::display(id.as_str()));
            }
        }
        // A logged request's ID lives in its context until the response
        // header takes it; its route, for the lines and the metrics, too.
        let mut context = logged.then(|| {
            Box::new(RequestContext {
                id: id.take().expect("made above"),
                method: method.clone(),
                route: route.take(),
                status: 0,
            })
        });
        let start = Instant::now();
        let in_flight = InFlight::new(self.route.clone());
        let request_logs = crate::log::request_logs();
        // The path, for the request's end line, only when it is written.
        let path = (request_logs != RequestLogs::None && (logged || !span.is_disabled()))
            .then(|| LinePath::of(req.uri()));
        if request_logs == RequestLogs::Both && path.is_some() {
            let path = req.uri().path();
            let written = context.as_ref().is_some_and(|context| {
                write_request_line(context, RequestLine::Start { path }, start)
            });
            if !written {
                span.in_scope(|| {
                    with_request(&mut context, || {
                        tracing::info!(path = %path, "request start");
                    })
                });
            }
        }
        let handler = span.in_scope(|| {
            with_request(&mut context, || {
                match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
                    Ok(future) => Handler::Running { future },
                    Err(panic) => Handler::Done {
                        response: Some(panic_response(panic)),
                    },
                }
            })
        });
        Observed {
            handler,
            timer: None,
            span,
            context,
            path,
            id,
            route,
            method,
            start,
            in_flight,
        }
    }
}

pin_project! {
    #[project = HandlerProj]
    enum Handler<F> {
        Running { #[pin] future: F },
        Done { response: Option<Response> },
    }
}

pin_project! {
    /// The future of one observed request.
    #[project = ObservedProj]
    pub(crate) struct Observed<F> {
        #[pin]
        handler: Handler<F>,
        // Armed at the handler's first wait, with the request's deadline.
        timer: Option<Pin<Box<Sleep>>>,
        span: Span,
        // What names the request on its lines, with hammer-diag's logging
        // (boxed: it moves in and out of a thread-local at every poll).
        context: Option<Box<RequestContext>>,
        // The request's path when its end line is written.
        path: Option<LinePath>,
        // The request's ID for its response (see `RequestId::return_in`), unless the
        // context holds it.
        id: Option<RequestId>,
        // The matched route, unless the context holds it.
        route: Option<MatchedPath>,
        method: Method,
        start: Instant,
        in_flight: InFlight,
    }

    impl<F> PinnedDrop for Observed<F> {
        // Dropped before its response: the client went away (or the
        // connection was closed under it). The handler goes first, so its
        // work stops, then the request ends as a 499.
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if matches!(this.handler.as_mut().project(), HandlerProj::Done { response: None }) {
                return;
            }
            this.handler.set(Handler::Done { response: None });
            let status = StatusCode::from_u16(CLIENT_CLOSED_REQUEST).expect("499 is a status code");
            settle(&mut this, status);
        }
    }
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let entered = this.span.enter();
        let polled = with_request(this.context, || match this.handler.as_mut().project() {
            HandlerProj::Done { response } => Poll::Ready(response.take()),
            HandlerProj::Running { future } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Ready(Ok(response))) => Poll::Ready(Some(response)),
                    Ok(Poll::Ready(Err(never))) => match never {},
                    Err(panic) => Poll::Ready(Some(panic_response(panic))),
                    Ok(Poll::Pending) => {
                        let shared = &this.in_flight.0.shared;
                        let deadline = *this.start + shared.options.request_timeout;
                        let timer = this.timer.get_or_insert_with(|| {
                            Box::pin(tokio::time::sleep_until(deadline.into()))
                        });
                        ready!(timer.as_mut().poll(cx));
                        Poll::Ready(Some(timeout_response(shared.options.request_timeout)))
                    }
                }
            }
        });
        drop(entered);
        let response = ready!(polled);
        // Past this point the handler is finished with (or given up on):
        // drop it now, so a timed-out handler stops where it waits.
        this.handler.set(Handler::Done { response: None });
        let mut response = response.expect("the request future is not polled after it completed");
        settle(&mut this, response.status());
        let id = match this.context.take() {
            Some(context) => Some(context.id),
            None => this.id.take(),
        };
        if let Some(id) = id {
            id.return_in(&mut response);
        }
        if this.in_flight.0.shared.connections.is_draining() {
            // The connection's last response: the client will not send
            // another request on it, so closing it after this races nothing.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}

/// A request's path, kept for its end line. A short one is copied: sharing
/// the URI's bytes costs an atomic increment and decrement, more than
/// copying a few dozen bytes.
enum LinePath {
    Copied {
        len: u8,
        bytes: [u8; LinePath::COPIED],
    },
    Shared(Uri),
}

impl LinePath {
    const COPIED: usize = 64;

    fn of(uri: &Uri) -> Self {
        let path = uri.path().as_bytes();
        if path.len() > Self::COPIED {
            return LinePath::Shared(uri.clone());
        }
        let mut bytes = [0; Self::COPIED];
        bytes[..path.len()].copy_from_slice(path);
        LinePath::Copied {
            len: path.len() as u8,
            bytes,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `str`, whole.
            LinePath::Copied { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("?")
            }
            LinePath::Shared(uri) => uri.path(),
        }
    }
}

/// nginx's status for a request whose client closed the connection before
/// the response: its end line and metrics say so (hyper drops the request's
/// future when it reads the client's EOF, and so the handler with it).
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A request's end: its status on the span and context, its end line, its
/// metrics.
fn settle<F>(this: &mut ObservedProj<'_, F>, status: StatusCode) {
    let now = Instant::now();
    let elapsed = now.saturating_duration_since(*this.start);
    this.span.record("status", status.as_u16());
    if let Some(context) = this.context.as_mut() {
        context.status = status.as_u16();
    }
    if let Some(path) = this.path.take() {
        // Method, route, request ID and status are the context's (or
        // the span's) fields.
        let path = path.as_str();
        let written = this.context.as_ref().is_some_and(|context| {
            write_request_line(context, RequestLine::End { path, elapsed }, now)
        });
        if !written {
            let _entered = this.span.enter();
            with_request(this.context, || {
                tracing::info!(
                    path = %path,
                    duration_ms = elapsed.as_secs_f64() * 1000.0,
                    "request end"
                )
            });
        }
    }
    let route_state = &this.in_flight.0;
    let route = match this.context.as_ref() {
        Some(context) => context.route(),
        None => this.route.as_ref().map_or("unmatched", MatchedPath::as_str),
    };
    route_state.shared.metrics.finish(
        &route_state.series,
        RequestLabels {
            route,
            method: this.method,
            status,
        },
        elapsed,
    );
}

/// The response to a handler that panicked. The panic hook has already
/// logged the message and stack, inside the request's span.
fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error: the handler panicked (see the service log)",
    )
}

/// The response to a request that outlived the request timeout.
fn timeout_response(limit: Duration) -> Response {
    tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the request took longer than {limit:?}"),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lines_path_is_the_requests_short_or_long() {
        for path in [
            "/",
            "/hello",
            &format!("/{}", "a".repeat(63)),
            &format!("/{}", "é".repeat(40)),
        ] {
            let uri: Uri = format!("{path}?q=1").parse().unwrap();
            assert_eq!(LinePath::of(&uri).as_str(), path);
        }
    }
}
