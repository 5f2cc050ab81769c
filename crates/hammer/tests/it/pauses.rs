//! Exact under pauses: a target that pauses on a schedule (testkit's pause
//! server, which keeps reading requests during a pause and measures each
//! one's residence itself) gets hammer's latency quantiles equal to the
//! analytic truth (requests due in a pause wait in hammer's pool, keeping
//! their intended times, and drain when it ends: the server sees only
//! those in flight, so its own figure is printed, not graded); hammer's
//! own pause shows up as schedule lag, not as the target's latency; and a
//! stall of seconds keeps the pool it had and is reported as the target's.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{exclusive, f, hammer_json, in_one_of, spawn_hammer, wait_limited};
use testkit::pause_server::{PauseServer, Pauses};

const LIMIT: Duration = Duration::from_secs(60);
const MS: Duration = Duration::from_millis(1);

fn pause_server(pause: Duration, every: Duration) -> PauseServer {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    PauseServer::start(any, Pauses { pause, every }).expect("pause server starts")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Within 5% + 1 ms: the issue's 2% + 0.5 ms is the benchmark's bar
/// (bench/accuracy.sh); a test shares two cores with the rest of the suite.
fn near(got: f64, truth: f64) -> bool {
    (got - truth).abs() <= 0.05 * truth + 1.0
}

#[test]
fn a_targets_pauses_are_reported_as_they_were() {
    let _cpu = exclusive();
    for (rate, pause, every, arrivals) in [
        (2000, 10, 500, "even"),
        (4000, 2, 100, "poisson"),
        (1000, 50, 1000, "even"),
    ] {
        let pauses = Pauses {
            pause: pause * MS,
            every: every * MS,
        };
        let cell = format!("{rate}/s, {pause} ms every {every} ms, {arrivals}");
        // Graded in one of three rounds: one hiccup of the shared machine
        // in 4 s moves the p99.9 of 16,000 requests by milliseconds (CI
        // once saw 4.4 ms against 1.9 with the server's own 1.96).
        in_one_of(3, |_| {
            let server = pause_server(pauses.pause, pauses.every);
            let url = format!("http://{}/", server.addr());
            let v = hammer_json(
                &[
                    "-r",
                    &rate.to_string(),
                    "-d",
                    "4s",
                    "--arrivals",
                    arrivals,
                    // One thread: the suite's two cores also run the server.
                    "-w",
                    "1",
                    &url,
                ],
                LIMIT,
            );
            assert_eq!(v["failed"], 0, "{cell}: {v}");
            assert_eq!(v["connections"]["limit"]["reason"], "littles_law", "{v}");
            let base = ms(server.residence(0.5));
            let mut missed = Vec::new();
            for (q, key) in [(0.99, "p99"), (0.999, "p99_9")] {
                let got = f(&v, &format!("latency_ms.{key}"));
                let truth = ms(pauses.quantile(q)) + base;
                let seen = ms(server.residence(q));
                eprintln!(
                    "{cell}: {key} hammer {got:.2} ms, analytic {truth:.2}, server {seen:.2}"
                );
                if !near(got, truth) {
                    missed.push(format!("{key} {got:.2} ms, truth {truth:.2} ms"));
                }
            }
            // The pauses are not hammer's lag: had hammer counted the
            // requests due in a pause as its own late sends, its lag p99
            // would be the pause wait's p99 (5 ms in the first cell). Half
            // that, or 1 ms, leaves room for a shared CI machine's own
            // hiccups (1.6 ms seen once at 2,000/s on one worker beside the
            // server).
            let pause_p99 = ms(pauses.quantile(0.99));
            let lag_p99 = f(&v, "schedule_lag_ms.p99");
            if lag_p99 >= (0.5 * pause_p99).max(1.0) {
                missed.push(format!(
                    "lag p99 {lag_p99} ms against a pause wait p99 of {pause_p99} ms: {}",
                    v["schedule_lag_ms"]
                ));
            }
            if missed.is_empty() {
                Ok(())
            } else {
                Err(format!("{cell}: {}", missed.join("; ")))
            }
        });
    }
}

/// hammer stopped for 50 ms (SIGSTOP) while the target answers at once:
/// the requests due meanwhile go out late, and that is hammer's lag.
#[test]
fn hammers_own_pause_is_lag_not_the_targets_latency() {
    let _cpu = exclusive();
    let server = pause_server(Duration::ZERO, Duration::ZERO);
    let url = format!("http://{}/", server.addr());
    let child = spawn_hammer(&[
        "attack", "--format", "json", "-q", "-r", "1000", "-d", "3s", &url,
    ]);
    let pid = rustix::process::Pid::from_child(&child);
    std::thread::sleep(Duration::from_millis(1500));
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    std::thread::sleep(50 * MS);
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    let out = wait_limited(child, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lag_max = f(&v, "schedule_lag_ms.max");
    eprintln!(
        "SIGSTOP 50 ms: lag {} / service {} / server p99.9 {:.2} ms",
        v["schedule_lag_ms"],
        v["service_time_ms"],
        ms(server.residence(0.999))
    );
    assert!(lag_max >= 35.0, "the stop is not in the lag: {lag_max} ms");
    // The target answered at once throughout.
    assert!(ms(server.residence(1.0)) < 10.0);
    assert!(
        f(&v, "service_time_ms.p99") < 10.0,
        "{}",
        v["service_time_ms"]
    );
}

/// No storm, and the stall is the target's: a target that stalls for 2 s
/// at 2,000 req/s (4,000 requests come due) keeps the pool it had, each
/// connection opened once; the requests wait in hammer, and that wait,
/// spent waiting on the target, is its latency, not hammer's lag.
#[test]
fn a_long_stall_keeps_the_pool_and_is_the_targets() {
    let _cpu = exclusive();
    let server = pause_server(2000 * MS, 60_000 * MS);
    let url = format!("http://{}/", server.addr());
    let v = hammer_json(&["-r", "2000", "-d", "3s", "-w", "1", &url], LIMIT);
    let opened = f(&v, "connections.opened");
    eprintln!("2 s stall at 2000/s: {}", v["connections"]);
    assert_eq!(v["connections"]["limit"]["reason"], "littles_law", "{v}");
    assert!(opened <= 16.0, "{} opened", opened);
    assert_eq!(
        opened,
        f(&v, "connections.peak_open"),
        "connections churned"
    );
    assert_eq!(v["failed"], 0, "{v}");
    assert!(f(&v, "latency_ms.max") >= 1500.0, "{}", v["latency_ms"]);
    assert!(
        f(&v, "schedule_lag_ms.p99") < 5.0,
        "{}",
        v["schedule_lag_ms"]
    );
}
