//! Trace capture: requests sent during a window come back as complete spans
//! in Chrome trace-event JSON, with the handler's own spans inside them.
//! Its own test binary: the capture window is process-wide.

mod support;

use std::time::Duration;

use hammer_diag::Options;
use support::start;
use testkit::{fetch, Client};

#[test]
fn a_trace_has_one_complete_span_per_request_in_the_window() {
    let svc = start(Options::default());
    // Requests before the window must not appear.
    fetch(svc.public, "/work");
    let diag = svc.diag;
    let capture = std::thread::spawn(move || fetch(diag, "/debug/pprof/trace?seconds=2"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fetch(svc.diag, "/debug/pprof/trace?seconds=1").status, 409);
    assert_eq!(fetch(svc.diag, "/debug/pprof/trace?seconds=61").status, 400);
    let mut client = Client::connect(svc.public);
    let sent = 15;
    for i in 0..sent {
        let id = format!("trace-req-{i}");
        assert_eq!(
            client
                .get("/work", &[("X-Request-Id", &id)])
                .unwrap()
                .status,
            200
        );
    }
    let trace = capture.join().unwrap();
    assert_eq!(trace.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&trace.body).expect("the trace is JSON");
    let events = v["traceEvents"].as_array().unwrap();
    let requests: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["name"] == "request" && e["args"]["route"] == "/work")
        .collect();
    assert_eq!(
        requests.len(),
        sent,
        "one span per request sent in the window"
    );
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(r["ph"], "X");
        assert_eq!(r["args"]["status"], "200", "{r}");
        assert!(
            r["args"]["request_id"]
                .as_str()
                .unwrap()
                .starts_with("trace-req-"),
            "{r}"
        );
        assert!(
            r["dur"].as_f64().unwrap() >= 2000.0,
            "request {i} spans the 2 ms of work: {r}"
        );
    }
    // The handler's span lies inside a request span.
    let inner: Vec<&serde_json::Value> = events.iter().filter(|e| e["name"] == "inner").collect();
    assert_eq!(inner.len(), sent);
    for s in &inner {
        let (ts, end) = (
            s["ts"].as_f64().unwrap(),
            s["ts"].as_f64().unwrap() + s["dur"].as_f64().unwrap(),
        );
        assert!(
            requests.iter().any(|r| {
                let rts = r["ts"].as_f64().unwrap();
                rts <= ts && end <= rts + r["dur"].as_f64().unwrap()
            }),
            "inner span {s} is not inside any request span"
        );
    }
    // Flow arrows: into each request from its connection's accept (one
    // connection, so one origin), into each handler span from its request.
    let origin_of = |span: &serde_json::Value| -> f64 {
        let end = events
            .iter()
            .find(|e| e["ph"] == "f" && e["ts"] == span["ts"] && e["tid"] == span["tid"])
            .unwrap_or_else(|| panic!("no flow into {span}"));
        let start = events
            .iter()
            .find(|e| e["ph"] == "s" && e["id"] == end["id"])
            .unwrap_or_else(|| panic!("flow {end} has no start"));
        start["ts"].as_f64().unwrap()
    };
    let accepts: Vec<f64> = requests.iter().map(|r| origin_of(r)).collect();
    assert!(
        accepts.iter().all(|a| *a == accepts[0]),
        "one accept: {accepts:?}"
    );
    assert!(accepts[0] <= requests[0]["ts"].as_f64().unwrap());
    for s in &inner {
        let from = origin_of(s);
        assert!(
            requests.iter().any(|r| r["ts"].as_f64().unwrap() == from),
            "the flow into {s} starts at a request"
        );
    }
    assert!(events
        .iter()
        .any(|e| e["ph"] == "M" && e["name"] == "thread_name"));
    // After the window, nothing is recorded.
    fetch(svc.public, "/work");
    let after = fetch(svc.diag, "/debug/pprof/trace?seconds=1");
    let v: serde_json::Value = serde_json::from_slice(&after.body).unwrap();
    let leftover = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "request")
        .count();
    assert_eq!(leftover, 0, "a request outside any window was recorded");
}
