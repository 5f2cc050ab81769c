//! CPU profiles under load, judged by their real consumers: `go tool pprof`
//! (Debian golang-go) for the pprof protobuf and `callgrind_annotate`
//! (valgrind) for the callgrind output. Its own test binary: the profiler
//! is process-wide.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hammer_diag::Options;
use support::start;
use testkit::{fetch, Client};

/// Keeps two clients calling the CPU-bound route until dropped.
struct Load(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

fn load(addr: std::net::SocketAddr) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    c.get("/spin/20", &[]).unwrap();
                }
            })
        })
        .collect();
    Load(stop, threads)
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (.ci/run installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn cpu_profiles_name_the_busy_function_for_their_consumers() {
    let svc = start(Options::default());
    let _load = load(svc.public);
    let dir = tempfile::tempdir().unwrap();

    // Only one profile at a time, and bounded.
    let diag = svc.diag;
    let first = std::thread::spawn(move || fetch(diag, "/debug/pprof/profile?seconds=2"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        fetch(svc.diag, "/debug/pprof/profile?seconds=1").status,
        409
    );
    assert_eq!(
        fetch(svc.diag, "/debug/pprof/profile?seconds=301").status,
        400
    );

    let pprof = first.join().unwrap();
    assert_eq!(pprof.status, 200);
    let file = dir.path().join("cpu.pb.gz");
    std::fs::write(&file, &pprof.body).unwrap();
    let top = run(Command::new("go")
        .args(["tool", "pprof", "-top", "-nodecount=30"])
        .arg(&file));
    assert!(
        top.contains("busy_test_function"),
        "go tool pprof -top:\n{top}"
    );

    let callgrind = fetch(svc.diag, "/debug/pprof/profile?seconds=1&format=callgrind");
    assert_eq!(callgrind.status, 200);
    let file = dir.path().join("callgrind.out");
    std::fs::write(&file, &callgrind.body).unwrap();
    let annotated = run(Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg(&file));
    assert!(
        annotated.contains("busy_test_function"),
        "callgrind_annotate:\n{annotated}"
    );
    // Functions come with their source files.
    assert!(
        annotated.contains("support/mod.rs:") && !annotated.contains("???:busy_test_function"),
        "callgrind_annotate names the file:\n{annotated}"
    );

    let svg = fetch(svc.diag, "/debug/pprof/profile?seconds=1&format=flamegraph");
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    let svg = svg.text();
    assert!(
        svg.contains("<svg") && svg.contains("busy_test_function"),
        "flame graph lacks the function"
    );
    // Never on the public listener.
    assert_eq!(
        fetch(svc.public, "/debug/pprof/profile?seconds=1").status,
        404
    );
}
