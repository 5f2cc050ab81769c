//! The heap profile of a service running on jemalloc with profiling on,
//! judged by `go tool pprof`: the function holding memory shows up. Its own
//! test binary: the allocator and its configuration are process-wide.

#![allow(unsafe_code)]

mod support;

use std::process::Command;
use std::sync::Mutex;

use hammer_diag::Options;
use support::start;
use testkit::fetch;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start.
// SAFETY: a NUL-terminated static string, read once by jemalloc.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:16\0";

static HELD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Allocates and keeps 32 MiB in 1 MiB blocks, under a name the profile must show.
#[inline(never)]
fn hold_memory_test_function() {
    let mut held = HELD.lock().unwrap();
    for i in 0..32 {
        held.push(std::hint::black_box(vec![i as u8; 1 << 20]));
    }
}

#[test]
fn heap_profile_shows_who_holds_memory() {
    let svc = start(Options::default());
    hold_memory_test_function();
    let r = fetch(svc.diag, "/debug/pprof/heap");
    assert_eq!(r.status, 200, "{}", r.text());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("heap.pb.gz");
    std::fs::write(&file, &r.body).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("go")
        .args(["tool", "pprof", "-top", "-nodecount=40"])
        .arg(&exe)
        .arg(&file)
        .output()
        .expect("go tool pprof (.ci/run installs golang-go)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "go tool pprof failed:\n{text}");
    assert!(
        text.contains("hold_memory_test_function"),
        "go tool pprof -top:\n{text}"
    );
    assert_eq!(fetch(svc.public, "/debug/pprof/heap").status, 404);
}
