//! Provides the serving loop: accept on the public listener, track each
//! connection for `/connections`, bound how long a client may take to send
//! its request head, and drain on SIGTERM/SIGINT (or a [`Shutdown`] handle):
//! readiness goes false, the listeners close, requests in flight finish
//! within the drain timeout, then `serve` returns.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::routing::future::RouteFuture;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::Service as _;
use tracing::Instrument;

use crate::connections::{ConnStats, InFlight, TrackedBody, Watched};
use crate::state::Shared;

/// Starts a drain from code, as SIGTERM does.
#[derive(Clone, Debug)]
pub struct Shutdown(pub(crate) watch::Sender<bool>);

impl Shutdown {
    /// Begins draining every `serve` of this [`crate::Diag`].
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// Resolves when a drain is asked for: SIGTERM, SIGINT or [`Shutdown::trigger`].
async fn drain_requested(mut rx: watch::Receiver<bool>) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let sigterm = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let sigterm = std::future::pending::<()>();
    tokio::select! {
        _ = sigterm => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        _ = rx.wait_for(|&stop| stop) => tracing::info!("shutdown requested: draining"),
    }
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    app: Router,
    public: TcpListener,
    diag: Option<(TcpListener, Router)>,
) -> io::Result<()> {
    let requested = drain_requested(shared.shutdown.subscribe());
    tokio::pin!(requested);
    let diag_task = diag.map(|(listener, router)| {
        let rx = shared.shutdown.subscribe();
        tokio::spawn(async move {
            let stop = async move {
                let mut rx = rx;
                let _ = rx.wait_for(|&stop| stop).await;
            };
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        })
    });
    let sweeper = {
        let connections = shared.connections.clone();
        let limit = shared.options.header_read_timeout;
        tokio::spawn(async move { connections.close_idle(limit).await })
    };
    shared.ready.store(true, Ordering::SeqCst);
    loop {
        tokio::select! {
            accepted = public.accept() => match accepted {
                Ok((stream, peer)) => spawn_connection(&shared, &app, stream, peer),
                Err(e) => {
                    // Out of descriptors and the like: keep serving those we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = &mut requested => break,
        }
    }
    shared.ready.store(false, Ordering::SeqCst);
    // Whoever asked (a signal or the handle), every listener drains together.
    shared.shutdown.send_replace(true);
    drop(public);
    let open = shared.connections.open_count();
    tracing::info!(
        open_connections = open,
        "listener closed, finishing requests in flight"
    );
    match tokio::time::timeout(shared.options.drain_timeout, shared.connections.drain()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            still_open = shared.connections.open_count(),
            "drain timeout: closing the remaining connections"
        ),
    }
    sweeper.abort();
    if let Some(task) = diag_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    Ok(())
}

/// What hyper calls for each request of one connection: the router, and
/// the connection's counts. The router is the connection's own (a
/// `RefCell`, as hyper calls with `&self`), so a request does not clone it:
/// two atomic operations less on every request.
struct ConnectionService {
    app: RefCell<Router>,
    stats: Arc<ConnStats>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = axum::response::Response<TrackedBody<Body>>;
    type Error = Infallible;
    type Future = TrackedResponse;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let in_flight = self.stats.begin();
        // A router is always ready (its `poll_ready` is `Ready`), so it is
        // called directly: `oneshot` would hold and move the request until
        // its first poll.
        let response = self.app.borrow_mut().call(req.map(Body::new));
        TrackedResponse {
            response,
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response on its way, whose body keeps the request counted in
    /// flight.
    struct TrackedResponse {
        #[pin]
        response: RouteFuture<Infallible>,
        in_flight: Option<InFlight>,
    }
}

impl Future for TrackedResponse {
    type Output = Result<axum::response::Response<TrackedBody<Body>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.response.poll(cx))?;
        let in_flight = this.in_flight.take().expect("polled after completion");
        Poll::Ready(Ok(response.map(|body| TrackedBody::new(body, in_flight))))
    }
}

fn spawn_connection(shared: &Arc<Shared>, app: &Router, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let registered = shared.connections.register(peer);
    shared.metrics.accepted();
    let service = ConnectionService {
        app: RefCell::new(app.clone()),
        stats: registered.stats.clone(),
    };
    // No hyper timer: the header-read and idle timeouts are the sweeper's
    // (see `Connections::close_idle`), not a timer per request.
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let conn = Watched::new(conn, registered.stats.clone());
    // Seen only by a trace capture (debug level is below the logs' default
    // filter): the parent of the connection's request spans, so the trace
    // draws a flow from the accept to each request.
    let span = tracing::debug_span!("connection", %peer);
    tokio::spawn(
        async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(registered);
        }
        .instrument(span),
    );
}
