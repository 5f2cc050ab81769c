//! SIGTERM drains the service: a request in flight when the signal arrives
//! completes, then `serve` returns. Its own test binary, because the signal
//! goes to the whole process.

mod support;

use std::time::Duration;

use hammer_diag::Options;
use support::start;
use testkit::Client;

#[test]
fn sigterm_drains_and_serve_returns() {
    let svc = start(Options::default());
    let addr = svc.public;
    let in_flight = std::thread::spawn(move || Client::connect(addr).get("/slow/400", &[]));
    std::thread::sleep(Duration::from_millis(100));
    let me = rustix::process::getpid();
    rustix::process::kill_process(me, rustix::process::Signal::TERM).unwrap();
    let response = in_flight
        .join()
        .unwrap()
        .expect("the request in flight completes");
    assert_eq!(response.status, 200);
    let done = svc
        .done
        .recv_timeout(Duration::from_secs(10))
        .expect("serve returns");
    assert!(done.is_ok());
    assert!(support::logs().contains("SIGTERM: draining"));
}
