//! The engine's hot path does not allocate per request: a run of 20,000
//! requests makes no more allocations than a run of 2,000 (beyond a small
//! slack for timing-dependent set-up). Guards the regression where the
//! response reader allocated a lowercase copy of every `Connection` header.
//! The test server's own threads are not counted.
//!
//! Over TLS, rustls's buffered API allocates a record buffer each way per
//! request (the outgoing record, the received plaintext): two allocations,
//! and no more, are allowed until the engine moves to its unbuffered API.
//! Over HTTP/2 (h2c, hyper's server), none either: the server has no HPACK
//! table to use (hammer says its size is 0), so a response that opens with
//! a static-table status is not decoded, and nothing else allocates.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hammer_core::pacer::{Limit, Share};
use hammer_core::targets::Target;
use hammer_engine::request::{prepare, Loaded};
use hammer_engine::tls::{Tls, TlsOptions};
use hammer_engine::{Config, Mode, Run};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !support::SERVER_THREAD.try_with(|s| s.get()).unwrap_or(true) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy, PartialEq)]
enum Over {
    Tcp,
    Tls,
    H2c,
}

fn allocations_for(requests: u64, addr: std::net::SocketAddr, over: Over) -> u64 {
    let tls = over == Over::Tls;
    let scheme = if tls { "https" } else { "http" };
    let target = Target {
        method: "GET".into(),
        url: format!("{scheme}://localhost:{}/", addr.port()),
        ..Target::default()
    };
    let (origin, prepared) = prepare(
        &[Loaded {
            target,
            body: vec![],
        }],
        true,
    )
    .unwrap();
    let config = Config {
        addr: origin.addr,
        requests: prepared,
        mode: Mode::Closed,
        limit: Limit {
            requests: Some(requests),
            window: None,
        },
        warmup: Duration::ZERO,
        connections: 4,
        workers: 1,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(3),
        keepalive: true,
        shard: Share::ALL,
        tls: tls.then(|| {
            let options = TlsOptions {
                insecure: true,
                ..TlsOptions::default()
            };
            Tls::new("localhost", &options).unwrap()
        }),
        h2_streams: (over == Over::H2c).then_some(10),
    };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let run = Run::start(config, Arc::new(AtomicBool::new(false))).unwrap();
    let outcome = run.join().unwrap();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(outcome.recorder.succeeded(), requests);
    after - before
}

fn assert_flat(over: Over, per_request: u64) {
    let server = match over {
        Over::Tcp => support::server(),
        Over::Tls => support::tls_server(),
        Over::H2c => support::h2_server(),
    };
    // Warm up the server's connection threads' first use.
    allocations_for(100, server.addr, over);
    let small = allocations_for(2_000, server.addr, over);
    let large = allocations_for(20_000, server.addr, over);
    let over = match over {
        Over::Tcp => "TCP",
        Over::Tls => "TLS",
        Over::H2c => "h2c",
    };
    eprintln!("allocations over {over}: {small} for 2,000 requests, {large} for 20,000");
    assert!(
        large < small + per_request * 18_000 + 200,
        "{large} allocations for 20,000 requests vs {small} for 2,000 over {over}: the hot path allocates"
    );
}

/// One test, so the runs do not count each other's allocations.
#[test]
fn allocations_do_not_grow_with_requests() {
    assert_flat(Over::Tcp, 0);
    assert_flat(Over::Tls, 2);
    assert_flat(Over::H2c, 0);
}
