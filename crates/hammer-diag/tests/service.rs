//! Integration tests of hammer-diag: a real service on loopback, real HTTP.

mod support;

use std::time::{Duration, Instant};

use hammer_diag::Options;
use support::{logs, start};
use testkit::{fetch, Client};

#[test]
fn diagnostics_are_never_served_on_the_public_listener() {
    let svc = start(Options::default());
    for path in [
        "/metrics",
        "/connections",
        "/debug/pprof/profile",
        "/debug/pprof/heap",
    ] {
        assert_eq!(
            fetch(svc.public, path).status,
            404,
            "{path} on the public listener"
        );
    }
    assert_eq!(fetch(svc.diag, "/metrics").status, 200);
    assert_eq!(fetch(svc.diag, "/connections").status, 200);
    // And the service's own routes are not on the diagnostics listener.
    assert_eq!(fetch(svc.diag, "/hello").status, 404);
    assert_eq!(fetch(svc.public, "/hello").text(), "hello\n");
}

#[test]
fn every_log_line_of_a_request_carries_its_id() {
    let svc = start(Options::default());
    let given = get_with_id(svc.public, "/log", "test-id-7f3a");
    assert_eq!(given, "test-id-7f3a", "a given id is kept");
    let made = fetch(svc.public, "/hello");
    assert_eq!(
        made.header("x-request-id"),
        None,
        "a success's made-up ID stays in the log"
    );
    let failed = fetch(svc.public, "/panic");
    assert_eq!(failed.status, 500);
    let id = failed.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 16);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let returned = format!("request_id={id}");
    let logs = wait_for_logs(&returned, 2);
    assert!(
        logs.lines().any(|l| l.contains(&returned)
            && l.contains("request end")
            && l.contains("status=500")),
        "the returned ID names the failed request's end line: {logs}"
    );
    let logs = wait_for_logs("test-id-7f3a", 2);
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("request_id=test-id-7f3a"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("inside the handler")),
        "{lines:#?}"
    );
    // One line per request by default, the end line, with what the start
    // line carried (the path) and the status.
    assert!(
        lines.iter().any(|l| l.contains("request end")
            && l.contains("path=/log")
            && l.contains("status=200")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("request start")),
        "{lines:#?}"
    );
}

fn get_with_id(addr: std::net::SocketAddr, path: &str, id: &str) -> String {
    let r = Client::connect(addr)
        .get(path, &[("X-Request-Id", id)])
        .unwrap();
    r.header("x-request-id").unwrap().to_string()
}

fn wait_for_logs(needle: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = logs();
        if text.matches(needle).count() >= count || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_panicking_handler_is_a_500_with_its_stack_logged() {
    let svc = start(Options::default());
    let r = Client::connect(svc.public)
        .get("/panic", &[("X-Request-Id", "panic-req-1")])
        .unwrap();
    assert_eq!(r.status, 500);
    assert!(r.text().contains("panicked"), "{}", r.text());
    let logs = wait_for_logs("boom in a handler", 1);
    let line = logs
        .lines()
        .find(|l| l.contains("boom in a handler"))
        .expect("the panic is logged");
    assert!(line.contains("request_id=panic-req-1"), "{line}");
    assert!(
        line.contains("location=") && line.contains("tests/support/mod.rs"),
        "{line}"
    );
    assert!(line.contains("stack="), "{line}");
    // The service keeps serving.
    assert_eq!(fetch(svc.public, "/hello").status, 200);
}

#[test]
fn slow_requests_time_out_with_503() {
    let svc = start(Options {
        request_timeout: Duration::from_millis(200),
        ..Options::default()
    });
    let start = Instant::now();
    assert_eq!(fetch(svc.public, "/slow/2000").status, 503);
    assert!(start.elapsed() < Duration::from_millis(1500));
    assert_eq!(fetch(svc.public, "/slow/10").status, 200);
}

#[test]
fn a_silent_client_is_cut_off_by_the_header_read_timeout() {
    use std::io::{Read, Write};
    let svc = start(Options {
        header_read_timeout: Duration::from_millis(300),
        ..Options::default()
    });
    let mut s = std::net::TcpStream::connect(svc.public).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n").unwrap(); // never finishes the head
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_and_a_slow_download_is_not() {
    use std::io::{Read, Write};
    let svc = start(Options {
        header_read_timeout: Duration::from_millis(300),
        ..Options::default()
    });
    // A response body sent over 1.5 s, five times the idle limit: the
    // connection is busy all along, so it is left alone.
    let started = Instant::now();
    let r = fetch(svc.public, "/drip/1500");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "drip\n".repeat(10));
    assert!(started.elapsed() >= Duration::from_millis(1300));
    // One request on a keep-alive connection, then silence: closed after
    // the limit, not before.
    let mut s = std::net::TcpStream::connect(svc.public).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let answered = Instant::now();
    let n = s.read(&mut buf).unwrap_or(0);
    let waited = answered.elapsed();
    assert_eq!(n, 0, "the server closes the connection");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn info_has_the_uptime_talks_fields() {
    let svc = start(Options::default());
    let r = fetch(svc.public, "/info");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["version"], "1.0.42-abc1234-20261125.101500");
    let (start, now) = (
        v["start_time_epoch_secs"].as_u64().unwrap(),
        v["current_time_epoch_secs"].as_u64().unwrap(),
    );
    assert!(start <= now && now - start < 60);
    assert!(v["uptime"].as_str().unwrap().ends_with('s'));
    assert_eq!(fetch(svc.public, "/healthz").status, 200);
    assert_eq!(fetch(svc.public, "/readyz").status, 200);
}

#[test]
fn connections_lists_each_client_with_its_requests() {
    let svc = start(Options::default());
    let mut client = Client::connect(svc.public);
    for _ in 0..3 {
        assert_eq!(client.get("/hello", &[]).unwrap().status, 200);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&fetch(svc.diag, "/connections").body).unwrap();
    let conns = v["connections"].as_array().unwrap();
    let mine = conns
        .iter()
        .find(|c| c["requests"] == 3)
        .unwrap_or_else(|| panic!("no connection with 3 requests in {v}"));
    assert_eq!(mine["state"], "idle");
    assert!(mine["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    drop(client);
}

#[test]
fn metrics_count_requests_by_route_and_status() {
    let svc = start(Options::default());
    for _ in 0..3 {
        fetch(svc.public, "/hello");
    }
    fetch(svc.public, "/nowhere");
    let text = fetch(svc.diag, "/metrics").text();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/hello",status="200"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/hello",status="200",le="0.06"} 3"#), "{text}");
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "http_connections_open",
        "http_connections_accepted_total",
        "http_requests_in_flight",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    testkit::promtool_check_metrics(&text);
}

/// Under steady load, a drain loses no accepted request: every response a
/// client got is complete, no connection ends mid-response, and requests in
/// flight when the drain began finish.
#[test]
fn drain_finishes_every_accepted_request() {
    let svc = start(Options::default());
    let stop_at = Instant::now() + Duration::from_millis(600);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = svc.public;
            std::thread::spawn(move || {
                let (mut ok, mut refused_or_closed) = (0u32, 0u32);
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    let Ok(stream) = std::net::TcpStream::connect(addr) else {
                        refused_or_closed += 1;
                        break; // the listener has closed
                    };
                    drop(stream);
                    let mut c = Client::connect(addr);
                    loop {
                        match c.get("/slow/50", &[]) {
                            Ok(r) => {
                                assert_eq!(r.status, 200, "a drained request must still succeed");
                                ok += 1;
                            }
                            Err(e) if e == testkit::CLOSED_BEFORE_RESPONSE => {
                                // Closed while idle: the server never read this request.
                                refused_or_closed += 1;
                                break;
                            }
                            Err(e) if e.starts_with("write") => {
                                refused_or_closed += 1;
                                break;
                            }
                            Err(e) => panic!("lost an accepted request: {e}"),
                        }
                    }
                    if refused_or_closed > 0 {
                        break;
                    }
                }
                (ok, refused_or_closed)
            })
        })
        .collect();
    std::thread::sleep(stop_at - Instant::now());
    let open_before = svc.diag_handle.is_ready();
    svc.shutdown.trigger();
    let results: Vec<(u32, u32)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let served: u32 = results.iter().map(|r| r.0).sum();
    assert!(open_before);
    assert!(served >= 40, "{results:?}");
    let done = svc
        .done
        .recv_timeout(Duration::from_secs(10))
        .expect("serve returns after the drain");
    assert!(done.is_ok());
    assert!(!svc.diag_handle.is_ready());
    assert!(
        std::net::TcpStream::connect(svc.public).is_err(),
        "the listener is closed"
    );
}

fn alive_tasks(diag: std::net::SocketAddr) -> u64 {
    let v: serde_json::Value =
        serde_json::from_slice(&fetch(diag, "/debug/pprof/tasks").body).unwrap();
    v["runtime"]["alive_tasks"]
        .as_u64()
        .unwrap_or_else(|| panic!("no task count in {v}"))
}

/// Each connection holds a task; when every client has gone, the task
/// count returns to its idle value (no leak).
#[test]
fn tasks_return_to_idle_after_connections_close() {
    let svc = start(Options::default());
    let idle = alive_tasks(svc.diag);
    let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(svc.public)).collect();
    for c in &mut clients {
        assert_eq!(c.get("/hello", &[]).unwrap().status, 200);
    }
    let busy = alive_tasks(svc.diag);
    assert!(
        busy >= idle + 20,
        "20 open connections but tasks went from {idle} to {busy}"
    );
    // Like goroutine?debug=2: each connection's task with its trace,
    // suspended in hyper reading the next request.
    #[cfg(tokio_unstable)]
    {
        let v: serde_json::Value =
            serde_json::from_slice(&fetch(svc.diag, "/debug/pprof/tasks").body).unwrap();
        let traces = v["traces"].as_array().expect("per-task traces");
        let serving = traces
            .iter()
            .filter(|t| t["trace"].as_str().unwrap().contains("hyper-1."))
            .count();
        assert!(serving >= 20, "{serving} connection tasks in {v}");
    }
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut now = alive_tasks(svc.diag);
    while now > idle && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        now = alive_tasks(svc.diag);
    }
    assert_eq!(
        now, idle,
        "tasks alive after every connection closed: a leak"
    );
    assert_eq!(fetch(svc.public, "/debug/pprof/tasks").status, 404);
}

/// Without jemalloc profiling, the heap endpoint says how to turn it on.
#[test]
fn heap_without_jemalloc_is_a_501_that_says_how_to_enable_it() {
    let svc = start(Options::default());
    let r = fetch(svc.diag, "/debug/pprof/heap");
    assert_eq!(r.status, 501);
    assert!(r.text().contains("tikv-jemallocator"), "{}", r.text());
}

/// `threads` keep-alive clients sending GET `path` back to back for `how_long`:
/// each one's (status, latency).
fn hammering(
    addr: std::net::SocketAddr,
    path: &'static str,
    threads: usize,
    how_long: Duration,
) -> Vec<std::thread::JoinHandle<Vec<(u16, Duration)>>> {
    let until = Instant::now() + how_long;
    (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut seen = Vec::new();
                while Instant::now() < until {
                    let t0 = Instant::now();
                    let status = client.get(path, &[]).map_or(0, |r| r.status);
                    seen.push((status, t0.elapsed()));
                    if status != 200 && status != 500 {
                        client = Client::connect(addr);
                    }
                }
                seen
            })
        })
        .collect()
}

fn p99(seen: &[(u16, Duration)]) -> Duration {
    let mut l: Vec<Duration> = seen.iter().map(|s| s.1).collect();
    l.sort();
    l[(l.len() * 99 / 100).min(l.len() - 1)]
}

/// A handler panicking under load: those requests are 500s, every other
/// request is served, and their p99 stays what it was without the panics.
#[test]
fn panics_under_load_fail_only_their_requests_and_the_rest_keep_their_p99() {
    let svc = start(Options::default());
    let run = |with_panics: bool| {
        let ok = hammering(svc.public, "/hello", 2, Duration::from_millis(1500));
        let panics =
            with_panics.then(|| hammering(svc.public, "/panic", 1, Duration::from_millis(1500)));
        let ok: Vec<_> = ok.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let panics: Vec<_> = panics
            .into_iter()
            .flatten()
            .flat_map(|h| h.join().unwrap())
            .collect();
        (ok, panics)
    };
    let (before, _) = run(false);
    let (during, panics) = run(true);
    let (p_before, p_during) = (p99(&before), p99(&during));
    println!(
        "/hello p99 {p_before:?} alone, {p_during:?} beside {} panicking requests ({:.0}/s)",
        panics.len(),
        panics.len() as f64 / 1.5
    );
    assert!(panics.len() > 50, "{} panics", panics.len());
    assert!(
        panics.iter().all(|p| p.0 == 500),
        "a panic that was not a 500"
    );
    assert!(
        during.iter().all(|r| r.0 == 200),
        "a healthy request failed"
    );
    assert!(
        p_during <= p_before * 2 + Duration::from_millis(2),
        "p99 {p_before:?} alone, {p_during:?} beside the panics"
    );
}
