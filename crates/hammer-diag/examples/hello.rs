//! Run with `cargo run -p hammer-diag --example hello`.
//!
//! A service with hammer-diag switched on: the public listener on
//! 127.0.0.1:8080 (`/hello`, `/info`, `/healthz`, `/readyz`) and the
//! diagnostics listener on 127.0.0.1:6060 (`/metrics`, `/connections`).
//! Ctrl-C or SIGTERM drains it.

use axum::routing::get;
use axum::Router;
use hammer_diag::{Diag, Options};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let _logs = hammer_diag::init_logging();
    let app = Router::new().route(
        "/hello",
        get(|| async {
            tracing::info!("saying hello");
            "hello\n"
        }),
    );
    let public = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    let diag = tokio::net::TcpListener::bind("127.0.0.1:6060").await?;
    tracing::info!(
        "serving http://127.0.0.1:8080/hello, diagnostics on http://127.0.0.1:6060/metrics"
    );
    Diag::new(env!("CARGO_PKG_VERSION"), Options::default())
        .serve(app, public, Some(diag))
        .await
}
