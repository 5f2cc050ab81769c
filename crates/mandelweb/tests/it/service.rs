//! Integration tests of the `mandelweb` binary: real process, real HTTP.

use std::time::Duration;

use testkit::{fetch, Client};

use crate::support::start;

fn decode_png(bytes: &[u8]) -> (u32, u32) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height)
}

#[test]
fn mandelbrot_is_a_png_of_the_asked_size() {
    let svc = start();
    let r = fetch(svc.public, "/mandelbrot");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(decode_png(&r.body), (512, 512));
    let r = fetch(
        svc.public,
        "/mandelbrot?width=64&height=48&iterations=50&x=-2&y=-1.2&scale=0.05",
    );
    assert_eq!(decode_png(&r.body), (64, 48));
}

#[test]
fn bad_parameters_are_a_400_with_a_json_error() {
    let svc = start();
    for query in [
        "width=0",
        "width=4097",
        "height=abc",
        "iterations=0",
        "iterations=100001",
        "x=NaN",
        "y=inf",
        "scale=0",
        "scale=-1",
        "zoom=3",
        "width=99999999999999999999",
    ] {
        let r = fetch(svc.public, &format!("/mandelbrot?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{query}: {}", r.text()));
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}: {v}"
        );
    }
    assert_eq!(
        fetch(svc.public, "/healthz").status,
        200,
        "still serving after the bad requests"
    );
}

#[test]
fn info_carries_the_build_stamped_version() {
    let svc = start();
    let v: serde_json::Value = serde_json::from_slice(&fetch(svc.public, "/info").body).unwrap();
    let version = v["version"].as_str().unwrap();
    // <major>.<minor>.<commit#>-<sha>-<date>.<time>
    let (numbers, rest) = version.split_once('-').unwrap();
    assert_eq!(numbers.split('.').count(), 3, "{version}");
    assert!(
        numbers.split('.').all(|n| n.parse::<u64>().is_ok()),
        "{version}"
    );
    let (sha, stamp) = rest.rsplit_once('-').unwrap();
    assert!(
        sha == "unknown" || sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "{version}"
    );
    let (date, time) = stamp.split_once('.').unwrap();
    let digits = format!("{date}{time}");
    assert!(
        date.len() == 8 && time.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()),
        "{version}"
    );
}

#[test]
fn the_ready_file_holds_the_readiness_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ready.json");
    let service = crate::support::start_with(&["--ready-file", path.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        match std::fs::read_to_string(&path) {
            Ok(text) => break text,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("no ready file: {e}"),
        }
    };
    assert_eq!(text.trim_end(), service.ready);
    let ready: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        ready["listening"].as_str(),
        Some(format!("http://{}/", service.public).as_str())
    );
    assert_eq!(
        ready["diagnostics"].as_str(),
        Some(format!("http://{}/", service.diag).as_str())
    );
}

#[test]
fn diagnostics_only_on_the_diagnostics_listener() {
    let svc = start();
    fetch(svc.public, "/mandelbrot?width=8&height=8");
    assert_eq!(fetch(svc.public, "/metrics").status, 404);
    let metrics = fetch(svc.diag, "/metrics").text();
    assert!(metrics.contains(r#"route="/mandelbrot""#), "{metrics}");
}

/// Inside the period-3 copy of the set near -1.7549: no pixel escapes and
/// none falls in the renderer's shortcut regions, so every pixel runs all
/// its iterations.
const INSIDE_MINIBROT: &str = "x=-1.7549&y=0&scale=0.000000001";

/// User plus system CPU time of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_hostile_view_is_refused_and_a_timed_out_render_stops() {
    let svc = crate::support::start_with(&["--request-timeout", "300ms"]);
    // Each parameter within its limit, their product far over.
    let hostile = fetch(
        svc.public,
        &format!("/mandelbrot?{INSIDE_MINIBROT}&width=1024&height=1024&iterations=100000"),
    );
    assert_eq!(hostile.status, 400);
    assert!(hostile.text().contains("at most"), "{}", hostile.text());

    // Allowed, and seconds of work: the timeout answers, and the render
    // must stop with it rather than burn both cores on.
    let started = std::time::Instant::now();
    let slow = fetch(
        svc.public,
        &format!("/mandelbrot?{INSIDE_MINIBROT}&width=512&height=512&iterations=100000"),
    );
    assert_eq!(slow.status, 503, "{}", slow.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(100));
    let ticks = cpu_ticks(svc.child.id());
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_ticks(svc.child.id()) - ticks;
    // Clock ticks are 10 ms: a render still running would use ~100.
    assert!(used <= 5, "{used} ticks of CPU in 0.5 s after the timeout");
    let small = fetch(svc.public, "/mandelbrot?width=64&height=64");
    assert_eq!(small.status, 200);
}

/// CPU time of a process so far, in nanoseconds: the sum of its threads'
/// schedstat run times (clock ticks are too coarse to time a stop).
fn cpu_ns(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn a_render_stops_when_its_client_leaves() {
    use std::io::Write as _;
    let svc = crate::support::start();
    let pid = svc.child.id();
    let mut socket = std::net::TcpStream::connect(svc.public).unwrap();
    // Seconds of work, within the limits.
    let request = format!(
        "GET /mandelbrot?{INSIDE_MINIBROT}&width=512&height=512&iterations=100000 HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).unwrap();
    let before = cpu_ns(pid);
    std::thread::sleep(Duration::from_millis(300));
    let rendering = cpu_ns(pid) - before;
    // Running (tests beside it may share the cores: a low bar).
    assert!(
        rendering > 50_000_000,
        "rendering: {rendering} ns of CPU in 300 ms"
    );
    drop(socket);
    let left = std::time::Instant::now();
    // CPU time each millisecond for 400 ms after the client left.
    let mut samples = Vec::new();
    while left.elapsed() < Duration::from_millis(400) {
        samples.push((left.elapsed(), cpu_ns(pid)));
        std::thread::sleep(Duration::from_millis(1));
    }
    let last = samples.last().unwrap().1;
    // Stopped: from then on, less than 2 ms of CPU in all.
    let stopped = samples
        .iter()
        .find(|(_, cpu)| last - cpu < 2_000_000)
        .map(|(at, _)| *at)
        .unwrap();
    eprintln!("the render stopped {stopped:?} after its client left");
    assert!(
        stopped < Duration::from_millis(100),
        "still rendering {stopped:?} after the client left"
    );
    // The request ended as a 499, nginx's "client closed request".
    let metrics = fetch(svc.diag, "/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_total{")
                && l.contains("route=\"/mandelbrot\"")
                && l.contains("status=\"499\"")),
        "{metrics}"
    );
    // And the renderer is free for the next request at once.
    let small = fetch(svc.public, "/mandelbrot?width=64&height=64");
    assert_eq!(small.status, 200);
}

#[test]
fn a_burst_of_connects_waits_in_the_backlog_instead_of_being_dropped() {
    let mut svc = start();
    let pid = rustix::process::Pid::from_child(&svc.child);
    // Stopped, the service accepts nothing: every connect must wait in the
    // kernel's queue. With the default backlog of 128 the 130th SYN is
    // dropped and its client waits a second or more to retry.
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let connected: Result<Vec<std::net::TcpStream>, String> = (0..1_000)
        .map(|i| {
            std::net::TcpStream::connect_timeout(&svc.public, Duration::from_millis(500))
                .map_err(|e| format!("connect {i}: {e}"))
        })
        .collect();
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    let connected = connected.unwrap();
    assert_eq!(connected.len(), 1_000);
    // Served once it runs again.
    assert_eq!(fetch(svc.public, "/healthz").status, 200);
    drop(connected);
    let _ = svc.child.try_wait();
}

#[test]
fn sigterm_drains_then_exits_0() {
    let mut svc = start();
    let addr = svc.public;
    // A render of ~0.4 s on two cores is still in flight when the signal
    // lands 80 ms after it was sent.
    let in_flight = std::thread::spawn(move || {
        let r = Client::connect(addr).get(
            &format!("/mandelbrot?{INSIDE_MINIBROT}&width=256&height=256&iterations=20000"),
            &[],
        );
        (r, std::time::Instant::now())
    });
    std::thread::sleep(Duration::from_millis(80));
    let pid = rustix::process::Pid::from_child(&svc.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let signalled = std::time::Instant::now();
    let (r, answered) = in_flight.join().unwrap();
    let r = r.expect("the request in flight completes");
    assert_eq!(r.status, 200);
    assert!(
        answered > signalled,
        "the render finished before the signal: the test proved nothing"
    );
    let status = testkit::exit_within(
        &mut svc.child,
        Duration::from_secs(10),
        "mandelweb, SIGTERMed,",
    );
    assert!(status.success(), "{status}");
}

/// A CPU profile of `/mandelbrot` under load names the render kernel by its
/// full path, inlined or not, as `go tool pprof -top` prints it: the
/// release profile's debug info carries linkage names (`debug = "limited"`;
/// with `line-tables-only`, inlined frames were `row_avx2`, `shade`).
#[test]
fn a_cpu_profile_names_the_render_kernel_by_its_path() {
    let svc = start();
    let public = svc.public;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut client = Client::connect(public);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client.get("/mandelbrot?width=256&height=256&iterations=2000", &[]);
                assert_eq!(r.map(|r| r.status).unwrap_or(0), 200);
            }
        })
    };
    let profile = fetch(svc.diag, "/debug/pprof/profile?seconds=2&hz=499");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(profile.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cpu.pb.gz");
    std::fs::write(&file, &profile.body).unwrap();
    let out = std::process::Command::new("go")
        .args(["tool", "pprof", "-top", "-cum", "-nodecount=40"])
        .arg(&file)
        .output()
        .expect("go tool pprof (.ci/run installs golang-go)");
    let top = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<&str> = top
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("mandelweb::render::fast::")),
        "the kernel by its path, in go tool pprof -top:\n{top}"
    );
    assert!(
        !names
            .iter()
            .any(|n| ["row_avx2", "shade", "iterate"].contains(n)),
        "a frame without its path, in go tool pprof -top:\n{top}"
    );
}
