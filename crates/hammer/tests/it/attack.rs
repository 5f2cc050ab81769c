//! Integration tests of `hammer attack` and `hammer report`: the real binary
//! against real HTTP servers on loopback.

use std::time::Duration;

use crate::support::{
    assert_analytic_freeze, assert_schema, exclusive, f, hammer, hammer_json, in_one_of, within,
    Behavior, Server,
};

const LIMIT: Duration = Duration::from_secs(60);
/// hammer connects once before a run to check the target answers.
const PREFLIGHT: u64 = 1;

#[test]
fn closed_loop_sends_exactly_n_requests() {
    let server = Server::start(Behavior::Fast);
    let v = hammer_json(&["-c", "4", "-n", "1000", &server.url("/")], LIMIT);
    assert_eq!(server.requests(), 1000);
    assert_eq!(v["requests"], 1000);
    assert_eq!(v["succeeded"], 1000);
    assert_eq!(v["status_codes"]["200"], 1000);
    assert_eq!(v["mode"], "closed");
    // Four connections, plus the one that checks the target before the run:
    // closed loop never opens more.
    assert!(server.connections() <= 4 + PREFLIGHT);
}

/// The server holds every request that arrives in the first 200 ms of each
/// second until 200 ms. Arrivals are uniform over the second, so 20% of
/// requests wait uniformly between 0 and 200 ms: p90 = 100 ms, p99 = 190 ms.
#[test]
fn open_loop_latency_matches_the_analytic_freeze() {
    let _cpu = exclusive();
    let server = Server::start(Behavior::FreezeEachSecond);
    let v = hammer_json(&["-r", "500", "-d", "10s", &server.url("/")], LIMIT);
    assert_analytic_freeze(&v, "");
}

/// With only 4 connections, requests that come due during a freeze wait in
/// the generator. Latency still counts from their intended send time and
/// lands on the analytic values; service time, measured from the actual
/// send as closed-loop tools do, hides the stall.
#[test]
fn capped_connections_expose_coordinated_omission() {
    let _cpu = exclusive();
    let server = Server::start(Behavior::FreezeEachSecond);
    let v = hammer_json(
        &["-r", "500", "-d", "10s", "-c", "4", &server.url("/")],
        LIMIT,
    );
    let (p90, p99) = (f(&v, "latency_ms.p90"), f(&v, "latency_ms.p99"));
    assert!(
        within(p90, 100.0, 0.05),
        "p90 {p90} ms, expected 100 ms ±5%"
    );
    assert!(
        within(p99, 190.0, 0.05),
        "p99 {p99} ms, expected 190 ms ±5%"
    );
    let service_p99 = f(&v, "service_time_ms.p99");
    eprintln!("freeze, -c 4: latency p90 {p90} ms, p99 {p99} ms, service p99 {service_p99} ms");
    assert!(
        service_p99 < 19.0,
        "service p99 {service_p99} ms should be far below 190 ms"
    );
    // The generator waited for connections: its schedule lag shows it.
    assert!(
        f(&v, "schedule_lag_ms.p90") > 50.0,
        "{}",
        v["schedule_lag_ms"]
    );
}

#[test]
fn open_loop_holds_rate_and_schedule() {
    let _cpu = exclusive();
    // The lag is graded in one of three rounds: a 2 ms hiccup of the
    // shared machine (seen once) spoils a round's p99 of 1 ms, and the
    // generator-limited verdict with it.
    in_one_of(3, |_| {
        let server = Server::start(Behavior::Fast);
        let v = hammer_json(&["-r", "5000", "-d", "4s", &server.url("/")], LIMIT);
        let achieved = f(&v, "achieved_rate");
        assert!(within(achieved, 5000.0, 0.005), "achieved {achieved}/s");
        assert_eq!(server.requests(), 20_000);
        let lag = f(&v, "schedule_lag_ms.p99");
        eprintln!("5000/s for 4 s: achieved {achieved}/s, schedule lag p99 {lag} ms");
        // Generator-limited is read from the same lag, so it is graded
        // with it.
        if lag < 1.0 && v["generator_limited"] == false {
            Ok(())
        } else {
            Err(format!(
                "schedule lag p99 {lag} ms: {}",
                v["schedule_lag_ms"]
            ))
        }
    });
}

#[test]
fn a_server_that_dies_mid_run_gives_a_report_with_errors() {
    let mut server = Server::start(Behavior::Fast);
    let url = server.url("/");
    let child = crate::support::spawn_hammer(&[
        "attack", "-r", "200", "-d", "3s", "--format", "json", "-q", &url,
    ]);
    std::thread::sleep(Duration::from_millis(1000));
    server.kill();
    let out = crate::support::wait_limited(child, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let refused = v["errors"]["refused"].as_u64().unwrap();
    assert!(v["succeeded"].as_u64().unwrap() > 100, "{v}");
    assert!(refused > 100, "{}", v["errors"]);
    assert_eq!(v["requests"], 600, "every request is accounted for");
}

#[test]
fn method_headers_and_body_reach_the_server() {
    let server = Server::start(Behavior::Fast);
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, br#"{"age": 300}"#).unwrap();
    hammer_json(
        &[
            "-n",
            "3",
            "-c",
            "1",
            "-m",
            "POST",
            "-H",
            "X-Test: yes",
            "-b",
            body.to_str().unwrap(),
            &server.url("/find"),
        ],
        LIMIT,
    );
    let last = server.seen.last.lock().unwrap().clone().unwrap();
    assert_eq!(
        last,
        (
            "POST".into(),
            "/find".into(),
            "yes".into(),
            br#"{"age": 300}"#.to_vec()
        )
    );
}

#[test]
fn targets_file_is_sent_round_robin() {
    let server = Server::start(Behavior::Fast);
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.txt");
    let text = format!(
        "GET {}\nX-Test: a\n\nGET {}\n",
        server.url("/a"),
        server.url("/b")
    );
    std::fs::write(&targets, text).unwrap();
    hammer_json(
        &[
            "--targets",
            targets.to_str().unwrap(),
            "-n",
            "10",
            "-c",
            "1",
            "-w",
            "1",
        ],
        LIMIT,
    );
    let paths = server.seen.paths.lock().unwrap().clone();
    assert_eq!(paths.iter().filter(|p| *p == "/a").count(), 5);
    assert_eq!(paths.iter().filter(|p| *p == "/b").count(), 5);
}

#[test]
fn disable_keepalive_opens_a_connection_per_request() {
    let server = Server::start(Behavior::Fast);
    let v = hammer_json(
        &[
            "-n",
            "50",
            "-c",
            "2",
            "--disable-keepalive",
            &server.url("/"),
        ],
        LIMIT,
    );
    assert_eq!(v["succeeded"], 50);
    assert_eq!(server.connections(), 50 + PREFLIGHT);
}

#[test]
fn timeouts_are_counted_with_their_latency() {
    let server = Server::start(Behavior::Slow(Duration::from_secs(3)));
    let v = hammer_json(
        &["-n", "4", "-c", "4", "--timeout", "300ms", &server.url("/")],
        LIMIT,
    );
    assert_eq!(v["errors"]["timeout"], 4);
    assert_eq!(v["failed"], 4);
    let p50 = f(&v, "latency_ms.p50");
    assert!((300.0..400.0).contains(&p50), "timeout latency {p50} ms");
}

#[test]
fn slo_violation_exits_3_and_status_codes_are_counted() {
    let server = Server::start(Behavior::Unavailable);
    let out = hammer(
        &[
            "attack",
            "-q",
            "-n",
            "20",
            "-c",
            "2",
            "--slo",
            "p99<60ms,error-rate<1%",
            &server.url("/"),
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("503 ×20"), "{text}");
    assert!(text.contains("SLO VIOLATED"), "{text}");
}

#[test]
fn shards_merge_into_the_whole_run() {
    let server = Server::start(Behavior::Fast);
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = (0..2)
        .map(|i| {
            dir.path()
                .join(format!("s{i}.json"))
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for (i, file) in files.iter().enumerate() {
        let shard = format!("{i}/2");
        hammer_json(
            &[
                "-r",
                "400",
                "-n",
                "401",
                "--shard",
                &shard,
                "-o",
                file,
                &server.url("/"),
            ],
            LIMIT,
        );
    }
    let out = hammer(&["report", "--format", "json", &files[0], &files[1]], LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(merged["requests"], 401);
    assert_eq!(server.requests(), 401);
    assert!(within(f(&merged, "target_rate"), 400.0, 1e-9));
    let bad = hammer(&["report", "/nonexistent.json"], LIMIT);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn hdr_log_has_one_histogram_per_second() {
    let server = Server::start(Behavior::Fast);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.hlog");
    hammer_json(
        &[
            "-r",
            "100",
            "-d",
            "3s",
            "--hdr-log",
            log.to_str().unwrap(),
            &server.url("/"),
        ],
        LIMIT,
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("#[StartTime:"), "{text}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('"'))
        .collect();
    assert!((3..=5).contains(&lines.len()), "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.split(',').count() == 4 && l.contains("HISTF")),
        "{text}"
    );
}

#[test]
fn ctrl_c_stops_reports_and_exits_130() {
    let server = Server::start(Behavior::Fast);
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("run.json");
    let child = crate::support::spawn_hammer(&[
        "attack",
        "-q",
        "-r",
        "200",
        "-d",
        "60s",
        "-o",
        out_file.to_str().unwrap(),
        &server.url("/"),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = crate::support::wait_limited(child, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(130));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Requests"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    let n = v["requests"].as_u64().unwrap();
    assert!((200..=400).contains(&n), "{n} requests in 1.5 s at 200/s");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let server = Server::start(Behavior::Fast);
    let url = server.url("/");
    for args in [
        vec!["attack", "-r", "0", url.as_str()],
        vec!["attack", "-r", "-3", url.as_str()],
        vec!["attack", "ftp://127.0.0.1/"],
        vec!["attack", "http//missing-colon"],
        vec!["attack", "-b", "/no/such/file", url.as_str()],
        vec!["attack", "--schedule", "50:fast", url.as_str()],
        vec!["attack", "-c", "100000000", url.as_str()],
        vec!["attack", "http://127.0.0.1:1/"],
    ] {
        let out = hammer(&args, LIMIT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn help_explains_every_flag_with_examples() {
    let out = hammer(&["attack", "--help"], LIMIT);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--rate",
        "--connections",
        "--requests",
        "--duration",
        "--schedule",
        "--ramp",
        "--arrivals",
        "--method",
        "--header",
        "--body",
        "--targets",
        "--timeout",
        "--connect-timeout",
        "--disable-keepalive",
        "--output",
        "--hdr-log",
        "--format",
        "--slo",
        "--shard",
        "--start-at",
        "--quiet",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("Examples:"));
}

/// Regression: `hammer attack ... | head -1` panicked on the closed pipe.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let server = Server::start(Behavior::Fast);
    let mut child = crate::support::spawn_hammer(&["attack", "-q", "-n", "20", &server.url("/")]);
    drop(child.stdout.take());
    let out = crate::support::wait_limited(child, LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// Regression: with more workers than `-c`, each worker used to open one
/// connection of its own, exceeding the cap in open loop.
#[test]
fn open_loop_never_exceeds_the_connection_cap() {
    let server = Server::start(Behavior::Slow(Duration::from_millis(20)));
    let v = hammer_json(
        &[
            "-r",
            "200",
            "-n",
            "40",
            "-c",
            "1",
            "-w",
            "2",
            &server.url("/"),
        ],
        LIMIT,
    );
    assert_eq!(v["succeeded"], 40);
    assert!(
        server.connections() <= 1 + PREFLIGHT,
        "{} connections",
        server.connections()
    );
}

/// The connection policy cannot storm: a server that stalls for 50 ms each
/// second at 5,000 req/s (250 requests come due in each stall) gets a few
/// more connections than a server that never stalls, not one per request
/// due in the stall, as the old policy opened. Counted server-side.
#[test]
fn a_hiccup_does_not_start_a_connection_storm() {
    let _cpu = exclusive();
    let run = |behavior| {
        let server = Server::start(behavior);
        let v = hammer_json(&["-r", "5000", "-d", "3s", &server.url("/")], LIMIT);
        assert_eq!(v["failed"], 0, "{v}");
        assert_eq!(f(&v, "connections.opened"), f(&v, "connections.peak_open"));
        (server.connections() - PREFLIGHT, v)
    };
    let (steady, _) = run(Behavior::Fast);
    let (hiccup, v) = run(Behavior::HiccupEachSecond(Duration::from_millis(50)));
    eprintln!("5000/s: {steady} connections steady, {hiccup} with a 50 ms hiccup each second");
    assert!(
        hiccup <= 2 * steady.max(2),
        "{hiccup} connections vs {steady} steady"
    );
    // Requests that came due in a stall waited for it: latency shows it.
    assert!(f(&v, "latency_ms.max") >= 40.0, "{}", v["latency_ms"]);
}

/// Regression: `-r 100 -d 10s -n 50 --arrivals poisson` reported an achieved
/// rate of 5/s, because the Poisson pacer's send window ignored `-n`.
#[test]
fn poisson_count_limit_keeps_the_rate() {
    let _cpu = exclusive();
    let server = Server::start(Behavior::Fast);
    let v = hammer_json(
        &[
            "-r",
            "100",
            "-d",
            "10s",
            "-n",
            "50",
            "--arrivals",
            "poisson",
            &server.url("/"),
        ],
        LIMIT,
    );
    assert_eq!(v["requests"], 50);
    let achieved = f(&v, "achieved_rate");
    assert!(
        (60.0..170.0).contains(&achieved),
        "achieved {achieved}/s of 100/s"
    );
    assert!(f(&v, "duration_s") < 1.0, "{}", v["duration_s"]);
}

/// Every JSON file hammer writes matches `docs/result.schema.json`: an open
/// loop with an SLO, a closed loop with errors, and their merge.
#[test]
fn results_match_the_schema() {
    let _cpu = exclusive();
    let ok = Server::start(Behavior::Fast);
    let open = hammer_json(
        &["-r", "200", "-d", "1s", "--slo", "p99<1s", &ok.url("/")],
        LIMIT,
    );
    assert_schema(&open);
    assert_eq!(open["kind"], "run");
    let failing = Server::start(Behavior::Unavailable);
    let closed = hammer_json(&["-n", "50", "-c", "2", &failing.url("/")], LIMIT);
    assert_schema(&closed);
    assert_eq!(closed["status_codes"]["503"], 50);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&a, open.to_string()).unwrap();
    std::fs::write(&b, closed.to_string()).unwrap();
    let out = hammer(
        &[
            "report",
            "--format",
            "json",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        LIMIT,
    );
    let merged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_schema(&merged);
    assert_eq!(merged["requests"], 250);
}
