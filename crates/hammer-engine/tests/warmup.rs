//! A warm-up is the unmeasured lead of one run: its requests go out on the
//! connections the measured part then uses, and only the measured part is
//! recorded, over its own window.

mod support;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use hammer_core::pacer::{Arrivals, Limit, Share};
use hammer_core::plan::RatePlan;
use hammer_core::targets::Target;
use hammer_engine::request::{prepare, Loaded};
use hammer_engine::{Config, Mode, Run};

#[test]
fn warmup_is_sent_on_the_same_connections_but_not_measured() {
    let server = support::server();
    let target = Target {
        method: "GET".into(),
        url: format!("http://{}/", server.addr),
        ..Target::default()
    };
    let (origin, requests) = prepare(
        &[Loaded {
            target,
            body: vec![],
        }],
        true,
    )
    .unwrap();
    let (warmup, measure) = (Duration::from_millis(500), Duration::from_secs(1));
    let config = Config {
        addr: origin.addr,
        requests,
        mode: Mode::Open {
            plan: RatePlan::constant(400.0, Some(warmup + measure)).unwrap(),
            arrivals: Arrivals::Even,
        },
        limit: Limit {
            requests: None,
            window: Some(warmup + measure),
        },
        warmup,
        connections: 100,
        workers: 1,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(3),
        keepalive: true,
        shard: Share::ALL,
        tls: None,
        h2_streams: None,
    };
    let outcome = Run::start(config, Arc::new(AtomicBool::new(false)))
        .unwrap()
        .join()
        .unwrap();
    // 600 sent, the 400 due in the measured second recorded, over that second.
    assert_eq!(outcome.recorder.succeeded(), 400);
    assert!(
        (outcome.window.as_secs_f64() - 1.0).abs() < 0.01,
        "{:?}",
        outcome.window
    );
    // One pool for both parts: every connection the server accepted was
    // opened by this run, and no more than it held at once.
    assert_eq!(server.accepted(), outcome.connections.opened);
    assert_eq!(outcome.connections.opened, outcome.connections.peak_open);
}
