//! `hammer lab` end to end: a service of known capacity, the built-in
//! mandelweb with its HTML report judged by headless Chromium, and the
//! seed's pool experiment against a real PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{
    capacity, exclusive, hammer, lab, spawn_hammer, try_get, wait_limited, Behavior, Server,
};

#[test]
fn finds_a_known_capacity_within_10_percent() {
    let _x = exclusive();
    let server = Server::start(Behavior::Capacity(400));
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/");
    // Its live metrics, scraped as the steps go by.
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut rates, mut responses) = (std::collections::BTreeSet::new(), 0.0f64);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some((200, text)) = try_get(listen, "/metrics") {
                    for line in text.lines() {
                        let value = |l: &str| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
                        if line.starts_with("hammer_target_rate ") {
                            rates.insert(value(line) as u64);
                        }
                        if line.starts_with("hammer_responses_total{") {
                            responses = responses.max(value(line));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            (rates, responses)
        })
    };
    let report = lab(
        &[
            "--target",
            &url,
            "--start-rate",
            "100",
            "--metrics-listen",
            &listen.to_string(),
        ],
        dir.path(),
    );
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (rates, responses) = scraper.join().unwrap();
    // Every step's rate went by (100, 200, 400 ... then the bisection's),
    // and the responses counted across all of them.
    assert!(rates.contains(&100) && rates.contains(&200), "{rates:?}");
    assert!(rates.len() >= 4, "{rates:?}");
    let t = &report["targets"][0];
    let measured: f64 = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["result"]["requests"].as_f64().unwrap())
        .sum();
    assert!(
        responses >= measured,
        "scraped {responses}, steps measured {measured}"
    );
    let found = capacity(t);
    println!("true capacity 400 req/s, found {found}");
    assert!((found - 400.0).abs() <= 40.0, "found {found}");
    assert_eq!(t["stopped"], "converged");
    let steps = t["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["judgement"]["verdict"] == "fail"));
    // Every step's full result is kept, mergeable like an -o file.
    assert!(steps
        .iter()
        .all(|s| s["result"]["histogram"].as_str().is_some()));
    // And the SLO's verdict on it, check by check, as `attack --slo` writes
    // it: a step whose p99 broke the SLO is one the lab failed.
    for s in steps {
        let slo = &s["result"]["slo"];
        let check = &slo["checks"][0];
        assert_eq!(check["check"], "p99<60ms", "{slo}");
        let p99 = s["result"]["latency_ms"]["p99"].as_f64().unwrap();
        assert!(
            (check["actual"].as_f64().unwrap() - p99).abs() < 1e-9,
            "{slo}"
        );
        assert_eq!(check["passed"], p99 < 60.0, "{slo}");
        if slo["passed"] == false {
            assert_ne!(s["judgement"]["verdict"], "pass", "{s}");
        }
    }
    // The closed-loop sweep finds the same ceiling from the other side:
    // throughput stops growing at the service's 400 req/s.
    let sweep = &t["sweep"];
    assert_eq!(sweep["stopped"], "throughput stopped growing", "{sweep}");
    let peak = sweep["measured_peak"][1].as_f64().unwrap();
    assert!((peak - 400.0).abs() <= 40.0, "sweep peak {peak}: {sweep}");
    assert!(t["usl"]["r_squared"].as_f64().is_some(), "{t}");
    // No --diag: no profile, and the report says how to get one.
    assert!(t["knee"].is_null());
    assert!(t["notes"].to_string().contains("--diag"));
    // `hammer report` reads report.json back.
    let again = hammer(
        &["report", dir.path().join("report.json").to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("capacity:"));
}

#[test]
fn bad_lab_flags_are_one_line_errors() {
    for (args, says) in [
        (&["lab", "--precision", "abc"][..], "--precision"),
        (&["lab", "--growth", "1"][..], "--growth"),
        (&["lab", "--slo", "p99>5ms"][..], "METRIC<LIMIT"),
        (
            &["lab", "--target", "http://127.0.0.1:9/"][..],
            "does not answer",
        ),
    ] {
        let out = hammer(args, Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

fn chromium() -> PathBuf {
    for name in [
        "chromium-headless-shell",
        "chromium",
        "chromium-browser",
        "google-chrome",
    ] {
        if let Ok(out) = Command::new("which").arg(name).output() {
            if out.status.success() {
                return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            }
        }
    }
    let shell = PathBuf::from("/usr/lib/chromium/chromium-headless-shell");
    assert!(
        shell.exists(),
        "headless Chromium is needed to judge the HTML report: apt-get install chromium-headless-shell"
    );
    shell
}

fn chromium_run(args: &[&str]) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .output()
        .expect("chromium runs")
}

/// Pixels whose colour is a flame graph's (red to yellow: strong red, less
/// green, little blue), counted in a screenshot.
fn flame_pixels(png_path: &Path) -> (usize, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.line_size / info.width as usize;
    let (mut flame, mut colored) = (0, 0);
    for px in buf[..info.buffer_size()].chunks(channels) {
        let (r, g, b) = (px[0] as i32, px[1] as i32, px[2] as i32);
        if r > 200 && g > 50 && g < 200 && b < 80 {
            flame += 1;
        }
        if (r - g).abs() > 40 || (g - b).abs() > 40 {
            colored += 1;
        }
    }
    (flame, colored)
}

#[test]
fn builtin_lab_report_renders_charts_and_flame_graph_in_chromium() {
    let _x = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let report = lab(
        &["--precision", "15%", "--profile-seconds", "2"],
        dir.path(),
    );
    let t = &report["targets"][0];
    assert!(capacity(t) > 0.0);
    assert!(report["rationale"]
        .as_str()
        .unwrap()
        .contains("/mandelbrot"));
    assert!(t["plan"]["instances"].as_u64().unwrap() >= 2);
    let knee = &t["knee"];
    assert!(
        knee["top"].as_array().is_some_and(|t| !t.is_empty()),
        "top functions at the knee: {knee}"
    );
    for f in ["profile_file", "flamegraph_file", "trace_file"] {
        let name = knee[f].as_str().unwrap_or_else(|| panic!("{f}: {knee}"));
        assert!(dir.path().join(name).exists(), "{name}");
    }
    // The service's own view of each step, from its /metrics: over the
    // passing steps it counted the requests hammer sent, and its p99 is no
    // higher than hammer's (a bucket's width allowed), with no note that
    // the two views differ.
    for step in t["steps"].as_array().unwrap() {
        let own = &step["server"];
        let own_p99 = own["p99_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("the service's own view of every step: {own}"));
        if step["judgement"]["verdict"] == "pass" {
            let counted = own["requests"].as_f64().unwrap();
            let sent = step["result"]["requests"].as_f64().unwrap();
            assert!(
                (counted - sent).abs() <= 0.1 * sent,
                "the service counted {counted} requests, hammer sent {sent}"
            );
            // The service's latency is part of hammer's, so its p99 bucket
            // starts no higher than the top of the bucket hammer's p99 falls
            // in. (Not its interpolated p99: the service's window opens at a
            // scrape at the end of the warm-up, so it also holds the
            // warm-up's last requests, answered after it; at ~160 requests
            // a step one of those, slow after a failing step, moves the
            // interpolated p99 into the next bucket.)
            let p99 = step["result"]["latency_ms"]["p99"].as_f64().unwrap();
            let bucket_top = [
                1.0, 2.5, 5.0, 10.0, 25.0, 40.0, 50.0, 60.0, 75.0, 100.0, 250.0,
            ]
            .into_iter()
            .find(|&le| le >= p99)
            .unwrap_or(f64::INFINITY);
            let own_least = own["p99_at_least_ms"].as_f64().unwrap_or(0.0);
            assert!(
                own_least <= bucket_top,
                "own p99 {own_p99} (at least {own_least}) vs hammer's {p99}"
            );
            assert!(own["timeline"].as_array().unwrap().len() >= 2, "{own}");
        }
    }
    let notes = t["notes"].to_string();
    assert!(!notes.contains("views differ"), "{notes}");
    // The closed-loop sweep goes past the point where mandelweb starts to
    // shed (its goodput stays), so the USL fit has points to say something.
    let points = t["sweep"]["points"].as_array().expect("a sweep");
    assert!(points.len() >= 5, "{}", t["sweep"]);
    assert!(!notes.contains("passes through them exactly"), "{notes}");
    let index = dir.path().join("index.html");
    let url = format!("file://{}", index.display());

    // The DOM after Chromium parsed it: five charts with drawn lines (the
    // fifth, the closed-loop sweep with its USL curve).
    let dom = chromium_run(&["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let charts = dom.matches("<figure><svg").count();
    assert_eq!(charts, 5, "five charts");
    assert!(dom.contains("closed-loop sweep: throughput vs connections"));
    for chart in dom.split("<figure>").skip(1) {
        let chart = &chart[..chart.find("</figure>").unwrap()];
        assert!(chart.contains("<polyline"), "a chart with a line");
        assert!(chart.contains("<text"), "a chart with labels");
    }
    assert!(
        dom.contains("<iframe class=\"flame\"") && dom.contains("srcdoc=\"&lt;style&gt;"),
        "the flame graph is embedded in the page"
    );
    assert!(
        dom.contains("SLO p99 &lt; 60 ms"),
        "the SLO line is labelled"
    );
    assert!(
        dom.contains("p99, the service's own") && dom.contains("service p99 ms"),
        "the service's own p99 is charted and tabled"
    );
    // The wall flame graph (render.queue, render under each request) and
    // the sentence that says why.
    assert!(
        dom.contains("title=\"wall flame graph\"") && dom.contains("<b>Why:</b>"),
        "the wall flame graph and the why line are in the page"
    );
    // What grew from the last passing rate to the knee, CPU and wall.
    assert!(
        dom.contains("title=\"differential CPU flame graph\"")
            && dom.contains("title=\"differential wall flame graph\""),
        "the differential flame graphs are in the page"
    );

    // A screenshot: the page is drawn, and the flame graph with it.
    let shot = dir.path().join("shot.png");
    let out = chromium_run(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1400,3000",
        "--virtual-time-budget=3000",
        &url,
    ]);
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (flame, colored) = flame_pixels(&shot);
    println!("screenshot: {flame} flame-coloured and {colored} coloured pixels");
    assert!(colored > 30_000, "charts drawn: {colored}");
    assert!(flame > 30_000, "flame graph drawn: {flame}");
}

#[test]
fn compare_finds_the_pool_ahead_and_the_no_pool_knee_in_connection_setup() {
    let _x = exclusive();
    let pg = testkit::postgres::Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url();
    let report = lab(
        &[
            "--database-url",
            &url,
            "--no-sweep",
            "--compare",
            "--pool-size 0",
            "--pool-size 8",
            "--max-rate",
            "2000",
            "--precision",
            "20%",
            "--profile-seconds",
            "4",
        ],
        dir.path(),
    );
    let (a, b) = (&report["targets"][0], &report["targets"][1]);
    assert_eq!(a["name"], "mandelweb --pool-size 0");
    let (ca, cb) = (capacity(a), capacity(b));
    println!("no pool {ca} req/s, pool of 8 {cb} req/s");
    assert!(cb > 2.0 * ca, "the pool wins: {ca} vs {cb}");
    assert_eq!(b["stopped"], "max_rate");
    // The seed's finding: without a pool, the knee is connection setup.
    let flame = a["knee"]["flamegraph_file"]
        .as_str()
        .expect("a flame graph");
    let svg = std::fs::read_to_string(dir.path().join(flame)).unwrap();
    assert!(
        svg.contains("mandelweb::db::connect") || svg.contains("connect_raw"),
        "connection setup in the no-pool flame graph"
    );
    // The wall profile shows the wait itself: connection setup holds the
    // largest share of the requests' wall time at the knee.
    let wall = &a["knee"]["wall_top"];
    assert_eq!(
        wall[0]["name"], "db.connect",
        "wall profile at the knee: {wall}"
    );
    assert!(a["knee"]["wall_flamegraph_file"].as_str().is_some());
    // And the lab says why the graph is thin: the service waits, off the CPU.
    let busy = a["knee"]["cores_busy"].as_f64().unwrap();
    assert!(
        busy < 0.5,
        "no-pool mandelweb busy {busy} cores at the knee"
    );
    // B passed every rate up to --max-rate: it is profiled at the highest
    // rate tested, and there connection setup is not where its requests
    // wait (the pool opened its connections before the step).
    let b_knee = &b["knee"];
    assert_eq!(b_knee["passed"], true, "{b_knee}");
    let b_wall: Vec<&str> = b_knee["wall_top"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(!b_wall.is_empty(), "B's wall profile: {b_knee}");
    assert!(
        !b_wall.contains(&"db.connect"),
        "db.connect among B's top three: {b_wall:?}"
    );
    // Side by side on the page: A's top span is connection setup.
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    let side = &page[page
        .find("<h2>Side by side</h2>")
        .expect("a side-by-side table")..];
    let side = &side[..side.find("</table>").unwrap()];
    assert!(
        side.contains("wall time, span #1</th><td><code>") && side.contains("db.connect"),
        "{side}"
    );
    assert!(report["rationale"]
        .as_str()
        .unwrap()
        .contains("find-by-age"));
    drop(pg);
}

#[test]
fn ctrl_c_and_the_budget_stop_it_with_the_report_of_what_ran() {
    let _x = exclusive();
    let server = Server::start(Behavior::Capacity(400));
    let url = server.url("/");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let child = spawn_hammer(&[
        "lab", "--target", &url, "-o", out, "--step", "2s", "--warmup", "0s", "-q",
    ]);
    std::thread::sleep(Duration::from_millis(5500));
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let done = wait_limited(child, Duration::from_secs(20));
    assert_eq!(done.status.code(), Some(130));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["interrupted"], true);
    let steps = report["targets"][0]["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "the steps that ran are kept");
    assert!(dir.path().join("index.html").exists());
    assert!(String::from_utf8_lossy(&done.stdout).contains("interrupted"));

    // A budget that fits two steps: the search stops and says so.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let done = hammer(
        &[
            "lab",
            "--target",
            &url,
            "-o",
            out,
            "--step",
            "1s",
            "--warmup",
            "0s",
            "--min-requests",
            "10",
            "--budget",
            "2500ms",
            "-q",
        ],
        Duration::from_secs(20),
    );
    assert!(done.status.success());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    let t = &report["targets"][0];
    assert_eq!(t["steps"].as_array().unwrap().len(), 2);
    assert!(
        t["notes"].to_string().contains("--budget ran out"),
        "{}",
        t["notes"]
    );
    assert!(report["elapsed_s"].as_f64().unwrap() < 4.0);
}
