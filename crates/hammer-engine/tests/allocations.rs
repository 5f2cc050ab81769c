//! The engine's hot path does not allocate per request: a run of 20,000
//! requests makes no more allocations than a run of 2,000 (beyond a small
//! slack for timing-dependent set-up). Guards the regression where the
//! response reader allocated a lowercase copy of every `Connection` header.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hammer_core::pacer::{Limit, Share};
use hammer_core::targets::Target;
use hammer_engine::request::{prepare, Loaded};
use hammer_engine::{Config, Mode, Run};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_for(requests: u64, addr: std::net::SocketAddr) -> u64 {
    let target = Target {
        method: "GET".into(),
        url: format!("http://{addr}/"),
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
        tls: None,
    };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let run = Run::start(config, Arc::new(AtomicBool::new(false))).unwrap();
    let outcome = run.join().unwrap();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(outcome.recorder.succeeded(), requests);
    after - before
}

#[test]
fn allocations_do_not_grow_with_requests() {
    let addr = support::server().addr;
    // Warm up the server's connection threads' first use.
    allocations_for(100, addr);
    let small = allocations_for(2_000, addr);
    let large = allocations_for(20_000, addr);
    eprintln!("allocations: {small} for 2,000 requests, {large} for 20,000");
    assert!(
        large < small + 200,
        "{large} allocations for 20,000 requests vs {small} for 2,000: the hot path allocates"
    );
}
