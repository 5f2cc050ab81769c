//! Test support: a real service on loopback built with hammer-diag, a
//! raw HTTP/1.1 client over TCP, and a log capture.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use hammer_diag::{Diag, Options, Shutdown};

/// Every log line written by this test process.
pub fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || Capture(writer.clone())),
            )
            .with(hammer_diag::trace::layer())
            .with(hammer_diag::trace::gate(
                tracing_subscriber::filter::LevelFilter::TRACE,
            ))
            .init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running service.
pub struct Service {
    pub public: SocketAddr,
    pub diag: SocketAddr,
    pub shutdown: Shutdown,
    pub diag_handle: Diag,
    pub done: std::sync::mpsc::Receiver<std::io::Result<()>>,
}

/// Burns CPU for `ms` milliseconds under a name a profile must show.
#[inline(never)]
pub fn busy_test_function(ms: u64) -> u64 {
    let start = std::time::Instant::now();
    let mut x = 0u64;
    while start.elapsed() < Duration::from_millis(ms) {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

/// The service's own routes: fast, slow, CPU-bound, panicking, logging.
pub fn app() -> Router {
    Router::new()
        .route(
            "/spin/{ms}",
            get(
                |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                    tokio::task::spawn_blocking(move || busy_test_function(ms.min(1000)))
                        .await
                        .map(|x| x.to_string())
                        .unwrap_or_default()
                },
            ),
        )
        .route("/hello", get(|| async { "hello\n" }))
        .route(
            "/wait-and-spin",
            get(|| async {
                use tracing::Instrument as _;
                tokio::time::sleep(Duration::from_millis(50))
                    .instrument(tracing::info_span!("wait_50ms"))
                    .await;
                let spin = tracing::info_span!("spin_5ms");
                let _entered = spin.enter();
                busy_test_function(5).to_string()
            }),
        )
        .route(
            "/drip/{ms}",
            get(
                |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                    axum::body::Body::new(Drip::new(10, Duration::from_millis(ms / 10)))
                },
            ),
        )
        .route(
            "/slow/{ms}",
            get(
                |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "slow\n"
                },
            ),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom in a handler");
                }
                "unreachable\n"
            }),
        )
        .route(
            "/work",
            get(|| async {
                let inner = tracing::info_span!("inner", step = "compute");
                let _entered = inner.enter();
                busy_test_function(2).to_string()
            }),
        )
        .route(
            "/log",
            get(|| async {
                tracing::info!("inside the handler");
                "logged\n"
            }),
        )
}

/// Starts the service on its own runtime thread.
pub fn start(options: Options) -> Service {
    log_buffer();
    let (tx, rx) = std::sync::mpsc::channel();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let diag = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let d = Diag::new("1.0.42-abc1234-20261125.101500", options);
            addr_tx
                .send((
                    public.local_addr().unwrap(),
                    diag.local_addr().unwrap(),
                    d.clone(),
                ))
                .unwrap();
            let _ = tx.send(d.serve(app(), public, Some(diag)).await);
        });
    });
    let (public, diag, d) = addr_rx.recv().unwrap();
    // Wait until the accept loop runs.
    for _ in 0..200 {
        if d.is_ready() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Service {
        public,
        diag,
        shutdown: d.shutdown_handle(),
        diag_handle: d,
        done: rx,
    }
}

/// A response body of `chunks` lines, one every `every`: a slow download.
pub struct Drip {
    left: u32,
    every: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Drip {
    pub fn new(chunks: u32, every: Duration) -> Self {
        Self {
            left: chunks,
            every,
            sleep: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl http_body::Body for Drip {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::future::Future as _;
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.left -= 1;
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"drip\n",
        )))))
    }
}
