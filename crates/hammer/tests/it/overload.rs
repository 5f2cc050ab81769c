//! Overload as seed 000 shows it (1 vs 5 queries a second): mandelweb at 5x
//! its capacity, or under a closed loop retrying at once, sheds what it
//! cannot serve in time with 503s, so the requests it admits keep p99 <
//! 60 ms and goodput stays near capacity; `/metrics` counts every refusal
//! and the log says so once a second.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{exclusive, f, hammer_json, http_get, in_one_of, mandelweb_logging};

const LIMIT: Duration = Duration::from_secs(60);

/// The service's own count of 200s on /mandelbrot, and of those within 60 ms.
fn admitted(diag: SocketAddr) -> (f64, f64) {
    let (status, text) = http_get(diag, "/metrics");
    assert_eq!(status, 200);
    let series = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix) && l.contains("route=\"/mandelbrot\""))
            .filter(|l| l.contains("status=\"200\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let within = text
        .lines()
        .filter(|l| l.starts_with("http_request_duration_seconds_bucket{"))
        .filter(|l| l.contains("route=\"/mandelbrot\"") && l.contains("status=\"200\""))
        .filter(|l| l.contains("le=\"0.06\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    (series("http_request_duration_seconds_count{"), within)
}

fn shed(diag: SocketAddr) -> f64 {
    let text = http_get(diag, "/metrics").1;
    text.lines()
        .find(|l| l.starts_with("http_requests_shed_total{gate=\"render\"}"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .expect("the render gate's shed count")
}

#[test]
fn at_five_times_capacity_mandelweb_sheds_and_keeps_what_it_admits_within_the_slo() {
    let _x = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mandelweb.log");
    let (_svc, public, diag) = mandelweb_logging(&[], Some(&log));
    let url = format!("http://{public}/mandelbrot");
    assert_eq!(shed(diag), 0.0);

    // Capacity: one connection per render slot (one per core), no queue.
    let slots = mandelweb::service::render_slots();
    let closed = hammer_json(&["-c", &slots.to_string(), "-d", "3s", &url], LIMIT);
    let capacity = f(&closed, "achieved_rate");
    assert_eq!(
        closed["status_codes"]["503"],
        serde_json::Value::Null,
        "{closed}"
    );

    // Five times that, open loop.
    let (count_before, within_before) = admitted(diag);
    let rate = format!("{:.0}", 5.0 * capacity);
    let over = hammer_json(&["-r", &rate, "-d", "4s", &url], LIMIT);
    let ok = over["status_codes"]["200"].as_f64().unwrap_or(0.0);
    let refused = over["status_codes"]["503"].as_f64().unwrap_or(0.0);
    let goodput = ok / f(&over, "duration_s");
    let (count, within) = admitted(diag);
    let admitted_within = (within - within_before) / (count - count_before);
    println!(
        "capacity {capacity:.0} req/s; at {rate} req/s: goodput {goodput:.0} req/s ({:.0}%), {refused} refused, hammer's p99 {:.1} ms, admitted within 60 ms {:.2}%",
        100.0 * goodput / capacity,
        f(&over, "latency_ms.p99"),
        100.0 * admitted_within
    );
    assert!(refused > 0.0, "nothing shed at 5x: {over}");
    assert_eq!(f(&over, "failed"), refused, "only fast 503s: {over}");
    // What it admits keeps the SLO, by the service's clock and by hammer's
    // (which counts the 503s too, and any wait before the handler).
    assert!(admitted_within >= 0.99, "{admitted_within}");
    // hammer's p99 counts the 503s too, which now wait up to what the
    // budget leaves before their answer, on cores the renders keep busy
    // (49.6 ms on the dev VM, 83 ms once on CI): bounded, not the seconds
    // of an unbounded queue.
    assert!(f(&over, "latency_ms.p99") < 150.0, "{over}");
    // Goodput: the renderer stays busy.
    assert!(goodput >= 0.8 * capacity, "goodput {goodput} of {capacity}");
    // Every refusal counted, and logged once a second, not once each.
    assert_eq!(shed(diag), refused);
    let warnings = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("overloaded"))
        .count();
    assert!(
        (1..=6).contains(&warnings),
        "{warnings} overload warnings in 4 s"
    );

    // A closed loop of 32 connections, each retrying at once: the gate
    // answers a refusal when the wait it could afford runs out, so the
    // storm of 503s stays small and goodput stays at capacity (the gate's
    // first version, which refused at once, gave 27,000 503s a second and
    // lost a third of the goodput to them at 4 connections).
    // The SLO on what it admits is graded in one of three rounds: a stall
    // of the shared machine (CI once: 98.96% within 60 ms) spoils a round.
    in_one_of(3, |_| {
        let (count_before, within_before) = admitted(diag);
        let storm = hammer_json(&["-c", "32", "-d", "3s", &url], LIMIT);
        let ok = storm["status_codes"]["200"].as_f64().unwrap_or(0.0);
        let refused = storm["status_codes"]["503"].as_f64().unwrap_or(0.0);
        let seconds = f(&storm, "duration_s");
        let goodput = ok / seconds;
        let (count, within) = admitted(diag);
        let admitted_within = (within - within_before) / (count - count_before);
        println!(
            "closed loop, 32 connections retrying at once: goodput {goodput:.0} req/s ({:.0}% of capacity), {:.0} 503s a second, admitted within 60 ms {:.2}%",
            100.0 * goodput / capacity,
            refused / seconds,
            100.0 * admitted_within
        );
        assert_eq!(f(&storm, "failed"), refused, "only 503s: {storm}");
        // Each connection waits for its refusal: at most a few a second
        // each (one per affordable wait, 10 ms and more), not thousands.
        assert!(
            refused / seconds <= 100.0 * 32.0,
            "{refused} 503s in {seconds:.1} s"
        );
        if goodput < 0.8 * capacity {
            Err(format!("goodput {goodput:.0} of {capacity:.0}"))
        } else if admitted_within < 0.99 {
            Err(format!("admitted within 60 ms {admitted_within:.4}"))
        } else {
            Ok(())
        }
    });
}

/// The Uptime seed's drain, under load: SIGTERM while hammer sends at 80%
/// of capacity. Every request mandelweb accepted is answered in full and
/// it exits 0; the only failures hammer sees are connects refused once
/// the listener has closed. (`bench/drain_soak.py` does it 20 times, with
/// a supervisor restarting the service.)
#[test]
fn a_sigterm_under_load_answers_every_accepted_request_and_exits_0() {
    let _x = exclusive();
    // The gate off: a 503 here could only be the drain's (a CPU stall of
    // ~50 ms on a shared 2-core machine lets the gate shed a few at 80%
    // of capacity, which is the gate's business, tested above).
    let (mut svc, public, _diag) = crate::support::mandelweb(&["--render-budget", "10s"]);
    let url = format!("http://{public}/mandelbrot?width=128&height=128&iterations=500");
    let slots = mandelweb::service::render_slots();
    let capacity = f(
        &hammer_json(&["-c", &slots.to_string(), "-d", "2s", &url], LIMIT),
        "achieved_rate",
    );
    let rate = format!("{:.0}", 0.8 * capacity);
    let load = crate::support::spawn_hammer(&[
        "attack",
        "-q",
        "--format",
        "json",
        "-r",
        &rate,
        "-d",
        "4s",
        "--timeout",
        "5s",
        &url,
    ]);
    std::thread::sleep(Duration::from_secs(2));
    let pid = rustix::process::Pid::from_child(&svc.0);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = testkit::exit_within(&mut svc.0, Duration::from_secs(15), "mandelweb, SIGTERMed,");
    assert!(status.success(), "{status}");
    let out = crate::support::wait_limited(load, LIMIT);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = &result["errors"];
    println!(
        "at {rate} req/s: {} answered, errors {errors}",
        result["succeeded"]
    );
    for kind in [
        "closed",
        "reset",
        "bad_response",
        "timeout",
        "canceled",
        "io",
    ] {
        assert_eq!(errors[kind], 0, "{kind}: {result}");
    }
    assert!(f(&result, "succeeded") > 0.8 * capacity, "{result}");
    assert_eq!(
        result["status_codes"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["200"],
        "{result}"
    );
    // The rest of the plan found no listener: refused, not lost.
    assert!(errors["refused"].as_u64().unwrap() > 0, "{result}");
}
