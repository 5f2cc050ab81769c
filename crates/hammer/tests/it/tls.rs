//! `hammer attack` over TLS: the real binary against a hyper server behind
//! rustls on loopback, with certificates from a throwaway CA. Each test
//! holds the CPU lock: handshakes in a debug build are heavy enough to bend
//! the timing test's percentiles when they share the two cores.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::tls::Pki;
use crate::support::{
    assert_analytic_freeze, assert_schema, capacity, exclusive, f, hammer_json, lab, refusal,
    Behavior, Server,
};

const LIMIT: Duration = Duration::from_secs(60);
const H1: &[&[u8]] = &[b"http/1.1"];

#[test]
fn https_with_the_ca_is_served_and_reports_handshake_times() {
    let _cpu = exclusive();
    let pki = Pki::new();
    let server = Server::start_tls(Behavior::Fast, pki.server_config(H1, false));
    let ca = pki.ca_file();
    let url = server.https_url("/tls");
    let v = hammer_json(&["-c", "4", "-n", "500", "--cacert", &ca, &url], LIMIT);
    assert_eq!(v["succeeded"], 500, "{v}");
    assert_eq!(server.requests(), 500);
    assert!(
        v["errors"].as_object().unwrap().values().all(|n| n == 0),
        "{v}"
    );
    assert!(f(&v, "tls_handshake_ms.p50") > 0.0, "{v}");
    assert!(f(&v, "connect_ms.p50") > 0.0, "{v}");
    assert_schema(&v);
}

#[test]
fn an_unknown_ca_is_one_line_and_exit_2_before_any_request() {
    let _cpu = exclusive();
    let pki = Pki::new();
    let server = Server::start_tls(Behavior::Fast, pki.server_config(H1, false));
    let line = refusal(&["-n", "10", &server.https_url("/")]);
    // The system store does not know the test CA (or there is no store).
    assert!(line.contains("--cacert"), "{line}");
    assert!(
        line.contains("UnknownIssuer") || line.contains("system store"),
        "{line}"
    );
    assert_eq!(server.requests(), 0);
}

#[test]
fn insecure_accepts_a_certificate_nobody_vouches_for() {
    let _cpu = exclusive();
    let pki = Pki::new();
    let server = Server::start_tls(Behavior::Fast, pki.server_config(H1, false));
    let v = hammer_json(
        &["-c", "2", "-n", "100", "-k", &server.https_url("/")],
        LIMIT,
    );
    assert_eq!(v["succeeded"], 100, "{v}");
}

#[test]
fn a_server_requiring_a_client_certificate_gets_one() {
    let _cpu = exclusive();
    let pki = Pki::new();
    let server = Server::start_tls(Behavior::Fast, pki.server_config(H1, true));
    let ca = pki.ca_file();
    let url = server.https_url("/");
    let line = refusal(&["-n", "10", "--cacert", &ca, &url]);
    assert!(line.contains("--client-cert"), "{line}");
    assert_eq!(server.requests(), 0);
    let (cert, key) = pki.client_files();
    let v = hammer_json(
        &[
            "-c",
            "2",
            "-n",
            "100",
            "--cacert",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
            &url,
        ],
        LIMIT,
    );
    assert_eq!(v["succeeded"], 100, "{v}");
}

#[test]
fn a_post_body_reaches_the_server_over_tls() {
    let _cpu = exclusive();
    let pki = Pki::new();
    let server = Server::start_tls(Behavior::Fast, pki.server_config(H1, false));
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    // Larger than one TLS record, so the body spans several.
    let payload: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&body, &payload).unwrap();
    let ca = pki.ca_file();
    let v = hammer_json(
        &[
            "-c",
            "1",
            "-n",
            "3",
            "-m",
            "POST",
            "-b",
            body.to_str().unwrap(),
            "--cacert",
            &ca,
            &server.https_url("/post"),
        ],
        LIMIT,
    );
    assert_eq!(v["succeeded"], 3, "{v}");
    let last = server.seen.last.lock().unwrap().clone().unwrap();
    assert_eq!((last.0.as_str(), last.1.as_str()), ("POST", "/post"));
    assert!(
        last.3 == payload,
        "the body arrived altered ({} bytes)",
        last.3.len()
    );
}

/// Without keep-alive every request is a new connection and a handshake:
/// resumed by default, full with --no-tls-resume (the cost users want to see).
#[test]
fn handshakes_per_request_resume_unless_told_not_to() {
    let _cpu = exclusive();
    let pki = Pki::new();
    let ca = pki.ca_file();
    let server = Server::start_tls(Behavior::Fast, pki.server_config(H1, false));
    let url = server.https_url("/");
    let args = [
        "-c",
        "1",
        "-n",
        "40",
        "--disable-keepalive",
        "--cacert",
        &ca,
        &url,
    ];
    let v = hammer_json(&args, LIMIT);
    assert_eq!(v["succeeded"], 40, "{v}");
    let resumed = server.seen.resumed.load(Ordering::SeqCst);
    assert!(resumed >= 39, "{resumed} of 40 handshakes resumed");
    assert!(server.connections() >= 40);

    let full = Server::start_tls(Behavior::Fast, pki.server_config(H1, false));
    let url = full.https_url("/");
    let mut args = vec![
        "-c",
        "1",
        "-n",
        "40",
        "--disable-keepalive",
        "--no-tls-resume",
        "--cacert",
        &ca,
    ];
    args.push(&url);
    let v = hammer_json(&args, LIMIT);
    assert_eq!(v["succeeded"], 40, "{v}");
    assert_eq!(full.seen.resumed.load(Ordering::SeqCst), 0);
    assert_eq!(
        full.connections(),
        41,
        "one connection per request and the pre-flight's"
    );
}

#[test]
fn https_to_a_plain_http_port_says_so() {
    let _cpu = exclusive();
    let server = Server::start(Behavior::Fast);
    let line = refusal(&["-n", "10", "-k", &server.https_url("/")]);
    assert!(line.contains("plain HTTP"), "{line}");
}

/// The open-loop accuracy test of `attack.rs`, over TLS: the handshake must
/// not bend the latency distribution.
#[test]
fn open_loop_latency_over_tls_matches_the_analytic_freeze() {
    let _cpu = exclusive();
    let pki = Pki::new();
    let server = Server::start_tls(Behavior::FreezeEachSecond, pki.server_config(H1, false));
    let ca = pki.ca_file();
    let v = hammer_json(
        &[
            "-r",
            "500",
            "-d",
            "10s",
            "--cacert",
            &ca,
            &server.https_url("/"),
        ],
        LIMIT,
    );
    assert_analytic_freeze(&v, " over TLS");
}

/// The lab over https: it finds a known capacity as it does over TCP.
#[test]
fn the_lab_finds_a_known_capacity_over_tls() {
    let _cpu = exclusive();
    let pki = Pki::new();
    let server = Server::start_tls(Behavior::Capacity(400), pki.server_config(H1, false));
    let dir = tempfile::tempdir().unwrap();
    let (ca, url) = (pki.ca_file(), server.https_url("/"));
    let report = lab(
        &["--target", &url, "--cacert", &ca, "--start-rate", "100"],
        dir.path(),
    );
    let found = capacity(&report["targets"][0]);
    assert!(
        (found - 400.0).abs() <= 40.0,
        "found {found} req/s, true capacity 400"
    );
}

/// The lab's diagnostics fetches trust what the engine trusts.
#[test]
fn diagnostics_fetches_over_https_trust_the_given_ca() {
    let _cpu = exclusive();
    use hammer_engine::tls::TlsOptions;
    use hammer_lab::diag_client::{get, Trust};
    let pki = Pki::new();
    let server = Server::start_tls(Behavior::Fast, pki.server_config(H1, false));
    let url = server.https_url("/metrics");
    let limit = Duration::from_secs(5);
    let with_ca = TlsOptions {
        ca_file: Some(pki.ca_file().into()),
        ..TlsOptions::default()
    };
    assert_eq!(
        get(&url, limit, &Trust::new(&with_ca).unwrap()).unwrap(),
        b"ok"
    );
    let insecure = TlsOptions {
        insecure: true,
        ..TlsOptions::default()
    };
    assert_eq!(
        get(&url, limit, &Trust::new(&insecure).unwrap()).unwrap(),
        b"ok"
    );
    // The system store (if any) does not know the test CA.
    if let Ok(system) = Trust::new(&TlsOptions::default()) {
        let e = get(&url, limit, &system).unwrap_err().to_string();
        assert!(
            e.to_lowercase().contains("certificate") || e.contains("issuer"),
            "{e}"
        );
    }
}
