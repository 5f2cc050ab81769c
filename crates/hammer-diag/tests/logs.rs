//! The request log as a separate process writes it: this test binary runs
//! itself as the service (`service_child`, when `LOGS_CHILD` is set) with
//! `init_logging_with`, its stderr going to a file or a pipe, so that what
//! reaches stderr before the process exits is what is checked. Lines must
//! survive a SIGTERM drain under load, a handler's panic, a client that
//! leaves mid-request and a panic out of `main`; JSON lines must parse and carry the ID the response echoed; a
//! writer that falls behind must count what it dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use hammer_diag::{Diag, LogOptions, Options};
use testkit::Client;

/// The service, when this binary runs as the child: `LOGS_CHILD` is
/// `serve` (return after the drain) or `panic` (panic out of `main` after
/// it); `LOG_FORMAT`, `LOG_REQUESTS`, `LOG_BUFFER` set the log options.
#[test]
fn service_child() {
    let Ok(mode) = std::env::var("LOGS_CHILD") else {
        return;
    };
    let option = |name: &str| std::env::var(name).unwrap_or_default();
    let _logs = hammer_diag::init_logging_with(LogOptions {
        format: option("LOG_FORMAT").parse().unwrap_or_default(),
        requests: option("LOG_REQUESTS").parse().unwrap_or_default(),
        buffer_lines: option("LOG_BUFFER").parse().unwrap_or(128_000),
        ..LogOptions::default()
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(async {
            let public = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let diag = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("listening {} {}", public.local_addr()?, diag.local_addr()?);
            let app = Router::new()
                .route("/hello", get(|| async { "hello\n" }))
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        "late\n"
                    }),
                )
                .route(
                    "/panic",
                    get(|| async {
                        if true {
                            panic!("boom in a handler");
                        }
                        "unreachable\n"
                    }),
                );
            Diag::new("logs-test", Options::default())
                .serve(app, public, Some(diag))
                .await
        })
        .unwrap();
    tracing::info!("drained; leaving main");
    if mode == "panic" {
        panic!("leaving main by a panic");
    }
}

/// A child service: its public and diagnostics addresses.
struct Child_ {
    child: Child,
    public: SocketAddr,
    diag: SocketAddr,
}

impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mode: &str, env: &[(&str, &str)], stderr: Stdio) -> Child_ {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "service_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LOGS_CHILD", mode)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    // libtest prints its own lines first, and `test service_child ... `
    // before the line.
    let line = stdout
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("listening "))
        .expect("the child's listening line");
    // The rest is read, so libtest's last lines in the child find a reader.
    std::thread::spawn(move || stdout.for_each(drop));
    let (_, addrs) = line.split_once("listening ").unwrap();
    let mut addrs = addrs.split_whitespace().map(|a| a.parse().unwrap());
    Child_ {
        public: addrs.next().unwrap(),
        diag: addrs.next().unwrap(),
        child,
    }
}

impl Child_ {
    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        testkit::exit_within(&mut self.child, Duration::from_secs(20), "the child")
    }
}

/// The last lines of a log, for a failure's message.
fn tail(logs: &str) -> String {
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn log_file() -> (tempfile::NamedTempFile, Stdio) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let stdio = Stdio::from(file.reopen().unwrap());
    (file, stdio)
}

#[test]
fn every_request_line_survives_a_sigterm_drain_under_load() {
    let (file, stderr) = log_file();
    let mut child = start("serve", &[], stderr);
    let answered = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (answered, sent, stop) = (answered.clone(), sent.clone(), stop.clone());
            let addr = child.public;
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                // Bounded: 20,000 requests or the drain, whichever is first.
                for _ in 0..5_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                    match client.get("/hello", &[]) {
                        Ok(r) if r.status == 200 => answered.fetch_add(1, Ordering::SeqCst),
                        _ => break,
                    };
                }
            })
        })
        .collect();
    // SIGTERM while requests are arriving.
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.load(Ordering::SeqCst) < 2_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.terminate();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let logs = std::fs::read_to_string(file.path()).unwrap();
    assert!(status.success(), "{status:?}: {}", tail(&logs));
    let ends = logs.lines().filter(|l| l.contains("request end")).count() as u64;
    let (answered, sent) = (answered.load(Ordering::SeqCst), sent.load(Ordering::SeqCst));
    assert!(answered >= 2_000, "{answered} answered");
    // Each answered request wrote its line before its response left; a
    // request sent into the drain may have been served and not read.
    assert!(
        ends >= answered && ends <= sent,
        "{ends} end lines for {answered} answered of {sent} sent"
    );
    assert!(!logs.contains("request start"), "end lines only by default");
    assert!(
        logs.lines()
            .last()
            .unwrap()
            .contains("drained; leaving main"),
        "{}",
        logs.lines().last().unwrap()
    );
    assert!(!logs.contains('\x1b'), "no colours when stderr is a file");
}

/// A client that closes its connection while the handler waits: hyper
/// reads the EOF and drops the request, and the request still ends on the
/// record, as nginx's 499 (client closed request), in its end line and its
/// metrics, and is no longer in flight.
#[test]
fn a_client_that_leaves_mid_request_is_a_499_in_the_log_and_metrics() {
    use std::io::Write as _;
    let (file, stderr) = log_file();
    let mut child = start("serve", &[("LOG_REQUESTS", "both")], stderr);
    let mut socket = std::net::TcpStream::connect(child.public).unwrap();
    socket
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Request-Id: leaves-early\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(socket);
    // The request's end, once the service has read the EOF.
    let metrics = || testkit::fetch(child.diag, "/metrics").text();
    let deadline = Instant::now() + Duration::from_secs(5);
    let ended = loop {
        let text = metrics();
        if let Some(line) = text
            .lines()
            .find(|l| l.starts_with("http_requests_total{") && l.contains("route=\"/slow\""))
        {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no /slow series: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(ended.contains("status=\"499\""), "{ended}");
    assert!(ended.ends_with(" 1"), "{ended}");
    assert!(
        metrics().contains("\nhttp_requests_in_flight 0\n"),
        "{}",
        metrics()
    );
    assert!(child.terminate().success());

    let logs = std::fs::read_to_string(file.path()).unwrap();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("leaves-early"))
        .collect();
    assert_eq!(lines.len(), 2, "a start and an end line: {}", tail(&logs));
    assert!(lines[0].contains("request start"), "{}", lines[0]);
    let end = lines[1];
    assert!(
        end.contains("request end") && end.contains("status=499"),
        "{end}"
    );
    let ms: f64 = end
        .rsplit_once("duration_ms=")
        .unwrap()
        .1
        .trim()
        .parse()
        .unwrap();
    // Ended when the client left (300 ms in), not at the handler's 30 s.
    assert!((250.0..3_000.0).contains(&ms), "{end}");
}

#[test]
fn json_lines_parse_and_carry_the_id_the_response_echoed() {
    let (file, stderr) = log_file();
    let mut child = start(
        "serve",
        &[("LOG_FORMAT", "json"), ("LOG_REQUESTS", "both")],
        stderr,
    );
    let mut client = Client::connect(child.public);
    let given = client.get("/hello?x=%22q%22", &[("X-Request-Id", "given-id-1")]);
    assert_eq!(given.unwrap().header("x-request-id"), Some("given-id-1"));
    let made = client.get("/hello", &[]).unwrap();
    assert_eq!(
        made.header("x-request-id"),
        None,
        "a success keeps its made-up ID in the log"
    );
    let missing = client.get("/nowhere", &[]).unwrap();
    assert_eq!(missing.status, 404);
    let made_id = missing
        .header("x-request-id")
        .expect("an error returns its made-up ID")
        .to_string();
    assert!(child.terminate().success());

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(file.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for (id, path, route, status) in [
        ("given-id-1", "/hello", "/hello", 200),
        (made_id.as_str(), "/nowhere", "unmatched", 404),
    ] {
        let of_request: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["request_id"] == id).collect();
        let messages: Vec<&str> = of_request
            .iter()
            .map(|l| l["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages, ["request start", "request end"], "{id}");
        let end = of_request[1];
        assert_eq!(end["level"], "INFO");
        assert_eq!(end["method"], "GET");
        assert_eq!(end["route"], route);
        assert_eq!(end["path"], path);
        assert_eq!(end["status"], status);
        assert!(end["duration_ms"].as_f64().unwrap() >= 0.0, "{end}");
        assert!(
            end["timestamp"].as_str().unwrap().starts_with("20"),
            "{end}"
        );
    }
}

#[test]
fn a_handler_panic_and_a_panic_out_of_main_keep_their_lines() {
    let (file, stderr) = log_file();
    let mut child = start("panic", &[], stderr);
    let r = Client::connect(child.public)
        .get("/panic", &[("X-Request-Id", "panic-7")])
        .unwrap();
    assert_eq!(r.status, 500);
    let status = child.terminate();
    assert!(!status.success(), "main panicked: {status:?}");
    let logs = std::fs::read_to_string(file.path()).unwrap();
    let of_request: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("request_id=panic-7"))
        .collect();
    assert!(
        of_request
            .iter()
            .any(|l| l.contains("boom in a handler") && l.contains("stack=")),
        "{logs}"
    );
    assert!(
        of_request
            .iter()
            .any(|l| l.contains("request end") && l.contains("status=500")),
        "{logs}"
    );
    // Written before main's panic unwound through the log guard.
    assert!(logs.contains("drained; leaving main"), "{logs}");
}

#[test]
fn a_writer_that_falls_behind_drops_and_counts_lines_without_stalling_requests() {
    // stderr is a pipe nobody reads: the writer blocks once the pipe is
    // full, and the 100-line buffer fills behind it.
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = start("serve", &[("LOG_BUFFER", "100")], Stdio::from(writer));
    let mut client = Client::connect(child.public);
    let started = Instant::now();
    for _ in 0..3_000 {
        assert_eq!(client.get("/hello", &[]).unwrap().status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "requests stalled: {:?}",
        started.elapsed()
    );
    let metrics = Client::connect(child.diag)
        .get("/metrics", &[])
        .unwrap()
        .text();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("log_lines_dropped_total "))
        .expect("the dropped-lines metric")
        .trim()
        .parse()
        .unwrap();
    // 3,000 end lines (~200 bytes each) cannot fit in a 64 KiB pipe, the
    // batch the writer is stuck writing (at most 100 lines) and 100 queued
    // lines.
    assert!(dropped > 1_000, "{dropped} dropped");
    drop(reader);
    child.terminate();
}

/// The request lines are written without a `tracing` event, so `RUST_LOG`
/// is asked once at start: a directive for their target still turns them
/// off, and one the filter decides per line still decides them.
#[test]
fn rust_log_still_decides_the_request_lines() {
    let run = |rust_log: &str| {
        let (file, stderr) = log_file();
        let mut child = start("serve", &[("RUST_LOG", rust_log)], stderr);
        let mut client = Client::connect(child.public);
        for _ in 0..3 {
            assert_eq!(client.get("/hello", &[]).unwrap().status, 200);
        }
        assert!(child.terminate().success());
        let logs = std::fs::read_to_string(file.path()).unwrap();
        let ends = logs.lines().filter(|l| l.contains("request end")).count();
        assert!(logs.contains("drained"), "other lines stay: {logs}");
        ends
    };
    assert_eq!(run("info"), 3);
    assert_eq!(run("info,hammer_diag::middleware=warn"), 0);
    // A span-field directive: the filter decides per event.
    assert_eq!(run("info,[request]=info"), 3);
}
