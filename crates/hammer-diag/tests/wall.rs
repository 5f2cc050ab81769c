//! The wall profile: a handler that waits 50 ms in one span and spins 5 ms
//! in another shows them at 10:1 of wall time, read back by `go tool pprof`
//! (Debian golang-go). Its own test binary: the capture window is
//! process-wide.

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use hammer_diag::Options;
use support::start;
use testkit::{fetch, Client};

/// The window is process-wide: the tests take turns.
static WINDOW: Mutex<()> = Mutex::new(());

/// The flat value, in ms, of the row naming `name` in `go tool pprof -top`.
fn flat_ms(top: &str, name: &str) -> f64 {
    let row = top
        .lines()
        .find(|l| l.split_whitespace().last() == Some(name))
        .unwrap_or_else(|| panic!("no {name} row in:\n{top}"));
    let flat = row.split_whitespace().next().unwrap();
    let (number, unit) = flat.split_at(flat.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let scale = match unit {
        "s" => 1000.0,
        "ms" => 1.0,
        "us" => 0.001,
        other => panic!("unit {other} in {row}"),
    };
    number.parse::<f64>().unwrap() * scale
}

#[test]
fn wall_time_by_span_is_read_back_by_go_tool_pprof() {
    let _turn = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    let svc = start(Options::default());
    let diag = svc.diag;
    let capture = std::thread::spawn(move || fetch(diag, "/debug/pprof/wall?seconds=3"));
    std::thread::sleep(Duration::from_millis(300));
    // One window at a time, shared with the trace.
    assert_eq!(fetch(svc.diag, "/debug/pprof/trace?seconds=1").status, 409);
    assert_eq!(fetch(svc.diag, "/debug/pprof/wall?format=png").status, 400);
    let mut client = Client::connect(svc.public);
    for _ in 0..20 {
        assert_eq!(client.get("/wait-and-spin", &[]).unwrap().status, 200);
    }
    let profile = capture.join().unwrap();
    assert_eq!(profile.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wall.pb.gz");
    std::fs::write(&file, &profile.body).unwrap();
    let out = Command::new("go")
        .args(["tool", "pprof", "-top", "-unit=ms"])
        .arg(&file)
        .output()
        .expect("go tool pprof (.ci/run installs golang-go)");
    let top = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "go tool pprof failed:\n{top}");
    assert!(top.contains("Type: wall"), "{top}");
    let (wait, spin) = (flat_ms(&top, "wait_50ms"), flat_ms(&top, "spin_5ms"));
    eprintln!("wall profile: wait_50ms {wait} ms, spin_5ms {spin} ms\n{top}");
    let ratio = wait / spin;
    assert!(
        (8.0..=12.0).contains(&ratio),
        "wait:spin = {ratio:.2}, expected 10 ± 20%\n{top}"
    );
    // 20 requests of 50 ms waiting.
    assert!((900.0..=1300.0).contains(&wait), "{wait} ms waited\n{top}");
    // The stacks are the request's: the handler's spans sit under it.
    let tree = Command::new("go")
        .args(["tool", "pprof", "-traces"])
        .arg(&file)
        .output()
        .unwrap();
    let traces = String::from_utf8_lossy(&tree.stdout);
    assert!(
        traces.contains("wait_50ms\n") && traces.contains("request"),
        "{traces}"
    );
}

#[test]
fn wall_profile_comes_as_a_flame_graph_and_folded_stacks() {
    let _turn = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    let svc = start(Options::default());
    let diag = svc.diag;
    let folded =
        std::thread::spawn(move || fetch(diag, "/debug/pprof/wall?seconds=1&format=folded"));
    std::thread::sleep(Duration::from_millis(200));
    let mut client = Client::connect(svc.public);
    for _ in 0..3 {
        assert_eq!(client.get("/wait-and-spin", &[]).unwrap().status, 200);
    }
    let folded = folded.join().unwrap();
    let text = String::from_utf8_lossy(&folded.body);
    assert!(
        text.lines().any(|l| l.starts_with("request;wait_50ms ")),
        "{text}"
    );
    let diag = svc.diag;
    let svg =
        std::thread::spawn(move || fetch(diag, "/debug/pprof/wall?seconds=1&format=flamegraph"));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(client.get("/wait-and-spin", &[]).unwrap().status, 200);
    let svg = svg.join().unwrap();
    assert_eq!(svg.status, 200);
    let svg = String::from_utf8_lossy(&svg.body);
    assert!(
        svg.contains("<svg") && svg.contains("wait_50ms"),
        "{svg:.300}"
    );
}
