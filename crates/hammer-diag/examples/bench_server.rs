//! Run with `cargo run --release -p hammer-diag --example bench_server -- MODE ADDR [DIAG_ADDR]`.
//!
//! The same `/hello` handler served two ways, for `bench/diag-overhead.sh`:
//! MODE `plain` is bare `axum::serve`; MODE `layered` the same with a
//! do-nothing `Router::layer` (what axum's per-route layering costs any
//! middleware); MODE `diag` is hammer-diag's server
//! with all its middleware (logging filtered by `RUST_LOG`), and its
//! diagnostics listener on DIAG_ADDR when given.

use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mode, addr) = match (args.next(), args.next()) {
        (Some(m), Some(a)) => (m, a),
        _ => {
            eprintln!("usage: bench_server plain|layered|diag ADDR [DIAG_ADDR]");
            std::process::exit(2);
        }
    };
    let app = Router::new().route("/hello", get(|| async { "hello\n" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    match mode.as_str() {
        "plain" => axum::serve(listener, app).await,
        "layered" => axum::serve(listener, app.layer(tower::layer::layer_fn(|s| s))).await,
        "diag" => {
            // LOG_FORMAT=text|json, LOG_REQUESTS=end|both|none.
            let option = |name: &str| std::env::var(name).unwrap_or_default();
            let _logs = hammer_diag::init_logging_with(hammer_diag::LogOptions {
                format: option("LOG_FORMAT").parse().unwrap_or_default(),
                requests: option("LOG_REQUESTS").parse().unwrap_or_default(),
                ..Default::default()
            });
            let diag = match args.next() {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
                None => None,
            };
            hammer_diag::Diag::new("bench", hammer_diag::Options::default())
                .serve(app, listener, diag)
                .await
        }
        other => {
            eprintln!("unknown mode {other:?}: use plain, layered or diag");
            std::process::exit(2);
        }
    }
}
