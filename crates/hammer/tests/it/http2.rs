//! `hammer attack --http2`: the real binary against hyper's HTTP/2 server
//! on loopback, h2c (prior knowledge) and h2 over TLS (ALPN).

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::tls::Pki;
use crate::support::{
    assert_analytic_freeze, capacity, exclusive, f, hammer, hammer_json, lab, refusal, Behavior,
    Http, Server,
};

const LIMIT: Duration = Duration::from_secs(60);

fn h2c(behavior: Behavior) -> Server {
    Server::start_with(behavior, None, Http::Two)
}

/// Two connections carry 20 requests at once: the server sees more
/// requests in flight than there are connections.
#[test]
fn h2c_multiplexes_requests_over_few_connections() {
    let _cpu = exclusive();
    let server = h2c(Behavior::Slow(Duration::from_millis(20)));
    let url = server.url("/");
    let v = hammer_json(
        &["--http2", "-c", "2", "--streams", "10", "-n", "1000", &url],
        LIMIT,
    );
    assert_eq!(v["succeeded"], 1000, "{v}");
    assert_eq!(server.requests(), 1000);
    let most = server.seen.max_in_flight.load(Ordering::SeqCst);
    assert!(
        most > 10,
        "at most {most} requests in flight over 2 connections"
    );
    assert!(most <= 20, "{most} in flight: more than 2 × 10 streams");
    // Two connections and the pre-flight's probe.
    assert!(
        server.connections() <= 3,
        "{} connections",
        server.connections()
    );
    assert!(f(&v, "h2_settings_ms.p50") > 0.0, "{v}");
    let rate = f(&v, "achieved_rate");
    assert!(
        rate > 500.0,
        "20 streams at 20 ms each should pass 500 req/s: {rate}"
    );
}

#[test]
fn h2_over_tls_is_chosen_by_alpn() {
    let _cpu = exclusive();
    let pki = Pki::new();
    let config = pki.server_config(&[b"h2"], false);
    let server = Server::start_with(Behavior::Fast, Some(config), Http::Two);
    let ca = pki.ca_file();
    let url = server.https_url("/");
    let out = hammer(
        &[
            "attack", "--http2", "-c", "2", "-n", "500", "--cacert", &ca, &url,
        ],
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ALPN h2") && stdout.contains("HTTP/2"),
        "{stdout}"
    );
    assert!(stdout.contains("500 succeeded"), "{stdout}");
    assert_eq!(server.requests(), 500);
}

#[test]
fn a_server_that_refuses_http2_is_an_error_unless_auto() {
    let _cpu = exclusive();
    let pki = Pki::new();
    let ca = pki.ca_file();
    let tls_h1 = Server::start_tls(Behavior::Fast, pki.server_config(&[b"http/1.1"], false));
    let url = tls_h1.https_url("/");
    let line = refusal(&["--http2", "-n", "10", "--cacert", &ca, &url]);
    assert!(
        line.contains("HTTP/2") && line.contains("--http2=auto"),
        "{line}"
    );
    let out = hammer(
        &["attack", "--http2=auto", "-n", "10", "--cacert", &ca, &url],
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("fell back"),
        "{stdout}"
    );
    assert!(stdout.contains("10 succeeded"), "{stdout}");

    let plain_h1 = Server::start(Behavior::Fast);
    let line = refusal(&["--http2", "-n", "10", &plain_h1.url("/")]);
    assert!(line.contains("does not speak HTTP/2"), "{line}");
    assert_eq!(plain_h1.requests(), 0);
    let v = hammer_json(&["--http2=auto", "-n", "10", &plain_h1.url("/")], LIMIT);
    assert_eq!(v["succeeded"], 10);
}

/// hyper resets the stream of a request whose handler fails: that request
/// is an `rst_stream` error, and the run goes on over the same connections.
#[test]
fn reset_streams_are_counted_and_the_run_goes_on() {
    let _cpu = exclusive();
    let server = h2c(Behavior::ResetEvery(10));
    let v = hammer_json(
        &["--http2", "-c", "2", "-n", "1000", &server.url("/")],
        LIMIT,
    );
    assert_eq!(v["requests"], 1000, "{v}");
    assert_eq!(v["errors"]["rst_stream"], 100, "{v}");
    assert_eq!(v["succeeded"], 900, "{v}");
    assert!(
        server.connections() <= 3,
        "{} connections",
        server.connections()
    );
}

/// The server says GOAWAY to every connection after 500 requests: requests
/// it processed all count, those it will not are `goaway` errors, and
/// hammer carries on over new connections.
#[test]
fn goaway_mid_run_loses_nothing_the_server_processed() {
    let _cpu = exclusive();
    let server = h2c(Behavior::Slow(Duration::from_millis(2)));
    server.seen.goaway_after.store(500, Ordering::SeqCst);
    let v = hammer_json(
        &[
            "--http2",
            "-c",
            "2",
            "--streams",
            "8",
            "-n",
            "2000",
            &server.url("/"),
        ],
        LIMIT,
    );
    assert_eq!(v["requests"], 2000, "{v}");
    let goaway = v["errors"]["goaway"].as_u64().unwrap();
    let succeeded = v["succeeded"].as_u64().unwrap();
    assert_eq!(succeeded + goaway, 2000, "{v}");
    assert_eq!(
        succeeded,
        server.requests(),
        "every request the server handled succeeded"
    );
    assert!(
        server.connections() > 3,
        "new connections after GOAWAY: {}",
        server.connections()
    );
}

/// The open-loop accuracy test of `attack.rs`, over h2c: requests that come
/// due during a freeze are multiplexed, not queued behind one another.
#[test]
fn open_loop_latency_over_h2_matches_the_analytic_freeze() {
    let _cpu = exclusive();
    let server = h2c(Behavior::FreezeEachSecond);
    let v = hammer_json(
        &["--http2", "-r", "500", "-d", "10s", &server.url("/")],
        LIMIT,
    );
    assert_analytic_freeze(&v, " over h2c");
}

/// The lab over h2c finds a known capacity as it does over HTTP/1.1.
#[test]
fn the_lab_finds_a_known_capacity_over_h2c() {
    let _cpu = exclusive();
    let server = h2c(Behavior::Capacity(400));
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let report = lab(
        // No sweep: its closed loops open a connection each.
        &[
            "--target",
            &url,
            "--http2",
            "--start-rate",
            "100",
            "--no-sweep",
        ],
        dir.path(),
    );
    let found = capacity(&report["targets"][0]);
    assert!(
        (found - 400.0).abs() <= 40.0,
        "found {found} req/s, true capacity 400"
    );
    // Requests shared connections: far fewer than one per request in flight.
    assert!(
        server.connections() < 50,
        "{} connections",
        server.connections()
    );
}
