//! Test support: real HTTP servers on loopback (hyper on a private tokio
//! runtime) and a runner for the real `hammer` binary with a time limit.

pub mod tls;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Timing-sensitive tests take this lock so they do not share the CPU.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Method, path, `x-test` header and body of a request.
pub type LastRequest = (String, String, String, Vec<u8>);

/// What a test server saw.
#[derive(Default)]
pub struct Seen {
    /// Requests handled.
    pub requests: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// TLS: handshakes that resumed a session (the rest were full).
    pub resumed: AtomicU64,
    /// Requests being handled now, and the most at once.
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// HTTP/2: once this many requests have come, every connection is told
    /// GOAWAY (0: never).
    pub goaway_after: AtomicU64,
    pub goaway: tokio::sync::Notify,
    /// The last request's method, path, `x-test` header and body.
    pub last: Mutex<Option<LastRequest>>,
    /// Every path requested.
    pub paths: Mutex<Vec<String>>,
    /// When the `Capacity` server's queue is free again.
    pub queue: Mutex<Option<Instant>>,
}

/// How a test server answers.
#[derive(Clone, Copy)]
pub enum Behavior {
    /// 200 at once.
    Fast,
    /// Requests arriving in the first 200 ms of each second (since the
    /// server started) are held until 200 ms.
    FreezeEachSecond,
    /// The same with a freeze this long: a hiccup.
    HiccupEachSecond(Duration),
    /// Sleep this long, then 200.
    Slow(Duration),
    /// 503 for every request.
    Unavailable,
    /// One request at a time, each taking 1/R s of a virtual clock: serves
    /// at most R req/s, and a queue builds beyond (timer jitter does not
    /// add up, so the capacity is exactly R).
    Capacity(u32),
    /// Every Nth request fails in the handler: over HTTP/2, hyper resets
    /// its stream (RST_STREAM); the others get 200 after 1 ms.
    ResetEvery(u64),
}

/// Which HTTP the server speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Http {
    /// HTTP/1.1 only.
    One,
    /// HTTP/2 only (h2c on plain TCP).
    Two,
}

/// A running server; dropping it stops it and closes every connection.
pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    pub fn start(behavior: Behavior) -> Server {
        Server::start_with(behavior, None, Http::One)
    }

    /// A server speaking TLS with this configuration (see [`tls::Pki`]).
    pub fn start_tls(behavior: Behavior, config: Arc<rustls::ServerConfig>) -> Server {
        Server::start_with(behavior, Some(config), Http::One)
    }

    /// A server speaking `http`, over TLS when `tls` is given (its ALPN
    /// list should say h2 for HTTP/2).
    pub fn start_with(
        behavior: Behavior,
        tls: Option<Arc<rustls::ServerConfig>>,
        http: Http,
    ) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let start = Instant::now();
        let seen2 = seen.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                seen2.connections.fetch_add(1, Ordering::SeqCst);
                let seen = seen2.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let seen2 = seen.clone();
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, behavior, start, seen2.clone())
                    });
                    match tls {
                        None => serve(stream, service, http, &seen).await,
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            if stream.get_ref().1.handshake_kind()
                                == Some(rustls::HandshakeKind::Resumed)
                            {
                                seen.resumed.fetch_add(1, Ordering::SeqCst);
                            }
                            serve(stream, service, http, &seen).await;
                        }
                    }
                });
            }
        });
        Server {
            addr,
            seen,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An https URL by the name the test certificate carries.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// Stops the server at once, as if the process died.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Serves one connection in `http`; HTTP/2 connections go away gracefully
/// when the test asks (see [`Seen::goaway_after`]).
async fn serve<S, T>(stream: T, service: S, http: Http, seen: &Seen)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<Full<Bytes>>,
            Error = std::io::Error,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(stream);
    match http {
        Http::One => {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        }
        Http::Two => {
            let conn =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .max_concurrent_streams(100)
                    .serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                _ = &mut conn => {}
                _ = seen.goaway.notified() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        }
    }
}

/// Counts a request in flight while it lives.
struct Handling<'a>(&'a Seen);

impl<'a> Handling<'a> {
    fn new(seen: &'a Seen) -> Self {
        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Handling(seen)
    }
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    req: Request<Incoming>,
    behavior: Behavior,
    start: Instant,
    seen: Arc<Seen>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let _handling = Handling::new(&seen);
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let header = req
        .headers()
        .get("x-test")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let n = seen.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if n == seen.goaway_after.load(Ordering::SeqCst) {
        seen.goaway.notify_waiters();
    }
    if !matches!(behavior, Behavior::Capacity(_)) {
        seen.paths.lock().unwrap().push(path.clone());
    }
    *seen.last.lock().unwrap() = Some((method, path, header, body));
    let mut status = 200;
    match behavior {
        Behavior::Fast => {}
        Behavior::FreezeEachSecond => freeze(start, Duration::from_millis(200)).await,
        Behavior::HiccupEachSecond(d) => freeze(start, d).await,
        Behavior::Slow(d) => tokio::time::sleep(d).await,
        Behavior::Unavailable => status = 503,
        Behavior::ResetEvery(every) => {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if n % every == 0 {
                return Err(std::io::Error::other("reset by the test"));
            }
        }
        Behavior::Capacity(per_sec) => {
            let cost = Duration::from_secs_f64(1.0 / f64::from(per_sec));
            let done = {
                let mut queue = seen.queue.lock().unwrap();
                let now = Instant::now();
                let end = queue.map_or(now, |t| t.max(now)) + cost;
                *queue = Some(end);
                end
            };
            tokio::time::sleep_until(done.into()).await;
        }
    }
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(b"ok")))
        .unwrap())
}

/// Holds a request that arrives in the first `freeze` of a second (since
/// `start`) until that part of the second has passed.
async fn freeze(start: Instant, freeze: Duration) {
    let phase = Duration::from_nanos((start.elapsed().as_nanos() % 1_000_000_000) as u64);
    if phase < freeze {
        tokio::time::sleep(freeze - phase).await;
    }
}

/// Checks a JSON file hammer wrote against `docs/result.schema.json`, the
/// contract users' tooling relies on.
pub fn assert_schema(value: &serde_json::Value) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/result.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the schema"))
            .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "does not match the schema:\n{}",
        errors.join("\n")
    );
}

/// Runs `hammer` with `args`, killing it (and failing) after `limit`.
pub fn hammer(args: &[&str], limit: Duration) -> Output {
    wait_limited(spawn_hammer(args), limit)
}

/// Starts `hammer` with `args`, its output piped.
pub fn spawn_hammer(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_hammer"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hammer binary runs")
}

/// Waits for a child, killing it and failing the test after `limit`.
pub fn wait_limited(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hammer did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs hammer with `--format json -q` and parses the result.
pub fn hammer_json(args: &[&str], limit: Duration) -> serde_json::Value {
    let mut all = vec!["attack", "--format", "json", "-q"];
    all.extend_from_slice(args);
    let out = hammer(&all, limit);
    assert!(
        out.status.success(),
        "hammer failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is the JSON result")
}

/// A float field of a JSON value by path, e.g. `f(&v, "latency_ms.p99")`.
pub fn f(v: &serde_json::Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}

/// A timing check measured up to `rounds` times: it passes on the first
/// round whose `check` holds and fails, with every round's reason, when
/// none does. A shared machine's hiccup (another VM, the test harness)
/// can spoil one round of a few seconds; a defect in hammer spoils them
/// all. `check` gets the round's number, from 1.
pub fn in_one_of(rounds: usize, mut check: impl FnMut(usize) -> Result<(), String>) {
    let mut reasons = Vec::new();
    for round in 1..=rounds {
        match check(round) {
            Ok(()) => return,
            Err(why) => {
                eprintln!("round {round} of {rounds} missed: {why}");
                reasons.push(format!("round {round}: {why}"));
            }
        }
    }
    panic!("missed in all {rounds} rounds:\n{}", reasons.join("\n"));
}

pub fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= expected * tolerance
}

/// Flags that keep a lab short in tests: short steps, fewer requests.
pub const QUICK: &[&str] = &[
    "--step",
    "2s",
    "--warmup",
    "300ms",
    "--min-requests",
    "100",
    "--budget",
    "4m",
    "-q",
];

pub fn lab(extra: &[&str], dir: &Path) -> serde_json::Value {
    let mut args = vec!["lab", "-o", dir.to_str().unwrap()];
    args.extend_from_slice(QUICK);
    args.extend_from_slice(extra);
    let out = hammer(&args, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "hammer lab failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("capacity:"), "{stdout}");
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    let report = serde_json::from_str(&text).expect("report.json parses");
    assert_schema(&report);
    report
}

pub fn capacity(target: &serde_json::Value) -> f64 {
    target["capacity"]["rate"].as_f64().expect("a capacity")
}

/// Runs `hammer attack -q ARGS`, which must refuse: exit 2, one line on
/// stderr, no report. Returns the line.
pub fn refusal(args: &[&str]) -> String {
    let mut all = vec!["attack", "-q"];
    all.extend_from_slice(args);
    let out = hammer(&all, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2, stderr: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "no report for a run that did not start"
    );
    stderr
}

/// A 10 s open loop at 500 req/s against [`Behavior::FreezeEachSecond`]:
/// 20% of requests wait uniformly between 0 and 200 ms, so p90 = 100 ms and
/// p99 = 190 ms (within 5%), none failed. `over` names the transport.
pub fn assert_analytic_freeze(v: &serde_json::Value, over: &str) {
    let (p90, p99) = (f(v, "latency_ms.p90"), f(v, "latency_ms.p99"));
    eprintln!("freeze{over}, open loop: latency p90 {p90} ms, p99 {p99} ms");
    assert!(
        within(p90, 100.0, 0.05),
        "p90 {p90} ms, expected 100 ms ±5%"
    );
    assert!(
        within(p99, 190.0, 0.05),
        "p99 {p99} ms, expected 190 ms ±5%"
    );
    assert_eq!(v["requests"], 5000);
    assert_eq!(v["failed"], 0);
}

/// A child process killed when the test ends, passed or not.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hammer mandelweb` on free ports: the child and its public and
/// diagnostics addresses (from its readiness line).
pub fn mandelweb(extra: &[&str]) -> (Killed, SocketAddr, SocketAddr) {
    mandelweb_logging(extra, None)
}

/// [`mandelweb`], its warnings and errors written to `log`.
pub fn mandelweb_logging(extra: &[&str], log: Option<&Path>) -> (Killed, SocketAddr, SocketAddr) {
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_hammer"))
        .args([
            "mandelweb",
            "--listen",
            "127.0.0.1:0",
            "--diag-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("mandelweb's readiness line");
    let addr = |key: &str| -> SocketAddr {
        ready[key]
            .as_str()
            .unwrap()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap()
    };
    (Killed(child), addr("listening"), addr("diagnostics"))
}

/// GET `path` from `addr`: the status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_get(addr, path).unwrap_or_else(|| panic!("GET {path} from {addr} failed"))
}

/// GET `path` from `addr` (testkit's client, which reads chunked bodies
/// such as Prometheus's API answers), or `None` when nothing answers.
pub fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    testkit::try_fetch(addr, path).map(|r| (r.status, r.text()))
}
