//! Pins the layout of the text report of a run: what users read, paste into
//! tickets and grep. A deliberate change rewrites the snapshot with
//! `UPDATE_SNAPSHOTS=1 cargo test -p hammer-lab --test it text_snapshot`.

use std::time::Duration;

use hammer_core::recorder::{ErrorKind, Recorder};
use hammer_core::result::{Connections, Pacing, RunResult};
use hammer_core::slo::Slo;

/// A run with every section of the report: rates, status codes, errors,
/// connections, the three rows of percentiles, the latency chart, an SLO.
fn sample() -> RunResult {
    let mut r = Recorder::new();
    for i in 0..2000u64 {
        let latency = Duration::from_micros(200 + (i * 37) % 5000);
        r.record_send(Duration::from_micros(i % 50), 120);
        let status = if i % 200 == 0 { 503 } else { 200 };
        r.record_response(status, latency, latency / 2, 250);
    }
    r.record_send(Duration::ZERO, 120);
    r.record_error(
        ErrorKind::Timeout,
        Some((Duration::from_secs(10), Duration::from_secs(10))),
    );
    let mut run =
        RunResult::from_recorder(&r, Pacing::Open { rate: 200.0 }, Duration::from_secs(10))
            .with_connections(Connections {
                opened: 6,
                peak_open: 5,
                limit: None,
            });
    let slo = Slo::parse("p99<60ms,error-rate<0.1%").unwrap();
    run.slo = Some(run.judge(&slo));
    run
}

#[test]
fn text_report_layout_is_pinned() {
    let text = hammer_lab::text::render(&sample(), "hammer attack GET http://127.0.0.1:8080/\n  open loop, 200.0 req/s mean (evenly spaced), for 10s");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/snapshots/text-report.txt"
    );
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let pinned =
        std::fs::read_to_string(path).expect("the snapshot (UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(
        text, pinned,
        "the text report changed; if on purpose, UPDATE_SNAPSHOTS=1"
    );
}
