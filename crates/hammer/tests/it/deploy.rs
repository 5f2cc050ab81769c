//! `deploy/` judged by the real things: promtool on the Prometheus config,
//! rules and rule tests; a real Prometheus scraping mandelweb and a running
//! `hammer attack --metrics-listen`, whose quantiles must agree with
//! hammer's own and answer every query of the Grafana board; and the
//! Kubernetes manifests, parsed, with each pod's command run as the Indexed
//! Job would run it and the report Job's command judging the merge.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{
    exclusive, hammer, http_get as get, mandelweb, spawn_hammer, wait_limited, Behavior, Server,
};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the command runs")
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn prometheus_config_rules_and_rule_tests_pass_promtool() {
    let dir = deploy().join("prometheus");
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "rules.yml"],
        &["test", "rules", "rules_test.yml"],
    ] {
        let out = run(Command::new("promtool").args(args).current_dir(&dir));
        assert!(out.status.success(), "promtool {args:?}: {}", said(&out));
    }
}

/// A port free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server of the test's own, on a free port and a temp dir.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(config: &Path, data: &Path) -> Prometheus {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is needed: apt-get install prometheus (./test does)");
        let p = Prometheus { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() || get(addr, "/-/ready").0 != 200 {
            assert!(Instant::now() < deadline, "prometheus did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its scrape manager starts the first scrapes some seconds after
        // it is ready (target updates are throttled): wait for them.
        while p.query("up", now())["data"]["result"]
            .as_array()
            .is_some_and(|r| r.is_empty())
        {
            assert!(Instant::now() < deadline, "prometheus did not scrape");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// An instant query at `at` (Unix seconds): the API's whole answer.
    fn query(&self, q: &str, at: f64) -> Value {
        let (status, body) = get(
            self.addr,
            &format!("/api/v1/query?query={}&time={at:.3}", encode(q)),
        );
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{q}: {body}");
        assert_eq!(v["status"], "success", "{q}: {body}");
        v
    }

    /// The query's single value at `at`.
    fn value(&self, q: &str, at: f64) -> f64 {
        let v = self.query(q, at);
        let result = v["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{q}: {v}");
        result[0]["value"][1].as_str().unwrap().parse().unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The bucket of hammer-diag's latency buckets (seconds) holding `v`.
fn bucket_of(v: f64) -> (f64, f64) {
    let mut lower = 0.0;
    for &le in &hammer_diag::LATENCY_BUCKETS {
        if v <= le {
            return (lower, le);
        }
        lower = le;
    }
    (lower, f64::INFINITY)
}

#[test]
fn a_real_prometheus_sees_both_sides_agree_and_answers_every_board_query() {
    let _x = exclusive();
    let pg = testkit::postgres::Cluster::start();
    let url = pg.url();
    let (_service, public, diag) = mandelweb(&["--database-url", &url, "--pool-size", "4"]);
    let dir = tempfile::tempdir().unwrap();

    // deploy/prometheus as shipped, pointed at this test's ports and
    // scraping every second.
    let hammer_metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let shipped = deploy().join("prometheus");
    let config = std::fs::read_to_string(shipped.join("prometheus.yml"))
        .unwrap()
        .replace("127.0.0.1:6060", &diag.to_string())
        .replace("127.0.0.1:9099", &hammer_metrics.to_string())
        .replace("127.0.0.1:9100", "127.0.0.1:1")
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace(
            "  - rules.yml",
            &format!("  - {}", shipped.join("rules.yml").display()),
        );
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let prom = Prometheus::start(&config_file, &dir.path().join("data"));

    // A run long enough for several scrapes; a scrape of hammer's own
    // listener midway, judged by promtool.
    let out_file = dir.path().join("run.json");
    let target = format!("http://{public}/mandelbrot?width=64&height=64");
    let listen = hammer_metrics.to_string();
    let started = now();
    let child = spawn_hammer(&[
        "attack",
        "-q",
        "-r",
        "200",
        "-d",
        "8s",
        "--metrics-listen",
        &listen,
        "-o",
        out_file.to_str().unwrap(),
        &target,
    ]);
    let mut child = child;
    std::thread::sleep(Duration::from_secs(4));
    if child.try_wait().unwrap().is_some() {
        panic!(
            "hammer ended early: {}",
            said(&child.wait_with_output().unwrap())
        );
    }
    let (status, text) = get(hammer_metrics, "/metrics");
    assert_eq!(status, 200);
    testkit::promtool_check_metrics(&text);
    assert_eq!(get(hammer_metrics, "/nothing").0, 404);
    let out = wait_limited(child, LIMIT);
    assert!(out.status.success(), "{}", said(&out));
    let ended = now();
    // The service's last requests reach a scrape.
    std::thread::sleep(Duration::from_secs(3));
    let own: Value = serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    let own_p99 = own["latency_ms"]["p99"].as_f64().unwrap() / 1e3;
    let requests = own["requests"].as_f64().unwrap();

    // hammer's side: its series go stale when it exits, so the whole run
    // is the last value each bucket had.
    let seen = prom.value(
        "sum(max_over_time(hammer_responses_total{job=\"hammer\"}[5m]))",
        now(),
    );
    // hammer waited for a last scrape (--metrics-linger): every response.
    assert_eq!(
        seen, requests,
        "Prometheus saw {seen} of hammer's {requests} responses"
    );
    let hammer_p99 = prom.value(
        "histogram_quantile(0.99, sum by (le) (max_over_time(hammer_latency_seconds_bucket{job=\"hammer\"}[5m])))",
        now(),
    );
    let (lo, hi) = bucket_of(own_p99);
    assert!(
        (hammer_p99 - own_p99).abs() <= hi - lo,
        "hammer's p99 {own_p99} s (bucket {lo}..{hi}), Prometheus' estimate {hammer_p99} s"
    );
    // The service's side, over the run: within the bucket width of what
    // hammer measured (hammer's adds the network and its own queueing).
    let window = (now() - started).ceil() as u64 + 5;
    let server_p99 = prom.value(
        &format!(
            "histogram_quantile(0.99, sum by (le) (increase(http_request_duration_seconds_bucket{{job=\"mandelweb\"}}[{window}s])))"
        ),
        now(),
    );
    eprintln!(
        "p99: hammer's own {:.2} ms, Prometheus from hammer's buckets {:.2} ms, from the service's {:.2} ms; {seen} of {requests} responses scraped",
        own_p99 * 1e3,
        hammer_p99 * 1e3,
        server_p99 * 1e3
    );
    let (lo, hi) = bucket_of(own_p99.max(server_p99));
    assert!(
        (server_p99 - own_p99).abs() <= hi - lo,
        "hammer's p99 {own_p99} s, the service's {server_p99} s (bucket {lo}..{hi})"
    );

    // Every query of the Grafana board parses, and every panel shows data
    // (node_exporter's panels partly: it is not running here).
    let board: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/hammer.json")).unwrap(),
    )
    .unwrap();
    let during = ended - 1.5;
    let panels = board["panels"].as_array().unwrap();
    assert!(panels.len() >= 9);
    for panel in panels {
        let mut with_data = 0;
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5s");
            let v = prom.query(&expr, during);
            if !v["data"]["result"].as_array().unwrap().is_empty() {
                with_data += 1;
            }
        }
        assert!(with_data > 0, "no data for panel {}", panel["title"]);
    }
    // The pool panel is the service's own collector, read at scrape.
    assert_eq!(
        prom.value("db_pool_max_connections{job=\"mandelweb\"}", during),
        4.0
    );
}

#[test]
fn a_metrics_listen_address_in_use_is_bad_input() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = hammer(
        &["attack", "-q", "-n", "1", "--metrics-listen", &addr],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("--metrics-listen"), "{}", said(&out));
}

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(deploy().join("k8s").join(name)).unwrap();
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The pod spec's one container.
fn container(job: &Value) -> &Value {
    let containers = job["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn env_value<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

/// The shell command a container runs (`sh -c ARG`).
fn command_of(c: &Value) -> String {
    assert_eq!(c["command"], serde_json::json!(["/bin/sh", "-c"]));
    c["args"][0].as_str().unwrap().to_owned()
}

#[test]
fn the_indexed_job_runs_each_shard_and_the_report_job_judges_the_merge() {
    let _x = exclusive();
    let shards = yaml("shards.yaml");
    let report = yaml("report.yaml");
    let claim = yaml("results.yaml");
    assert_eq!(shards["kind"], "Job");
    let spec = &shards["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["backoffLimitPerIndex"], 0);
    let c = container(&shards);
    let n: u64 = env_value(c, "SHARDS")["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(spec["completions"], n, "completions and SHARDS differ");
    assert_eq!(spec["parallelism"], n, "parallelism and SHARDS differ");
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    // The one start instant and the SLO come from the ConfigMap run.sh writes.
    let start = &env_value(c, "START_AT")["valueFrom"]["configMapKeyRef"];
    assert_eq!(start["name"], "hammer-run");
    assert_eq!(start["key"], "start-at");
    let slo = &env_value(container(&report), "SLO")["valueFrom"]["configMapKeyRef"];
    assert_eq!((&slo["name"], &slo["key"]), (&start["name"], &"slo".into()));
    let run_sh = std::fs::read_to_string(deploy().join("k8s/run.sh")).unwrap();
    assert!(run_sh.contains("--from-literal=start-at=") && run_sh.contains("--from-literal=slo="));
    // Both Jobs mount the one claim at the same path.
    let claim_name = claim["metadata"]["name"].as_str().unwrap();
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteMany");
    let mount = |job: &Value| {
        let volume = &job["spec"]["template"]["spec"]["volumes"][0];
        assert_eq!(volume["persistentVolumeClaim"]["claimName"], claim_name);
        let m = &container(job)["volumeMounts"][0];
        assert_eq!(m["name"], volume["name"]);
        m["mountPath"].as_str().unwrap().to_owned()
    };
    let results = mount(&shards);
    assert_eq!(mount(&report), results);

    // Each pod's command, as Kubernetes would run it: index I of N, the
    // shared start, against a loopback server (a 20 ms handler); the
    // volume is a temp dir; every pod's own network is here one loopback,
    // so the metrics listener takes any free port.
    let server = Server::start(Behavior::Slow(Duration::from_millis(20)));
    let dir = tempfile::tempdir().unwrap();
    let local = |cmd: &str| {
        cmd.replace(
            &format!("{results}/"),
            &format!("{}/", dir.path().display()),
        )
        .replace("0.0.0.0:9099", "127.0.0.1:0")
    };
    let shard_cmd = local(&command_of(c));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_hammer")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let start_at = format!("{:.3}", now() + 3.0 + n as f64 * 0.1);
    let pods: Vec<Child> = (0..n)
        .map(|i| {
            Command::new("/bin/sh")
                .args(["-c", &shard_cmd])
                .env("PATH", &path)
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .env("SHARDS", n.to_string())
                .env("START_AT", &start_at)
                .env("RATE", "400")
                .env("DURATION", "2s")
                .env("TARGET", server.url("/"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for pod in pods {
        let out = wait_limited(pod, LIMIT);
        assert!(out.status.success(), "a shard pod: {}", said(&out));
    }
    let report_cmd = local(&command_of(container(&report)));
    let judge = |slo: &str| {
        let out = run(Command::new("/bin/sh")
            .args(["-c", &report_cmd])
            .env("PATH", &path)
            .env("SLO", slo));
        (out.status.code(), said(&out))
    };
    // The plan, whole: 400 req/s for 2 s from N pods.
    let (code, text) = judge("p99<1s");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("800"), "{text}");
    // The SLO judged on the merge: over it, exit 3.
    assert_eq!(judge("p99<5ms").0, Some(3));
    // A pod whose file never came: exit 4, named.
    std::fs::remove_file(dir.path().join("shard-3.json")).unwrap();
    let (code, text) = judge("p99<1s");
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("3"), "{text}");
}

/// The ports `deploy/stack.sh` documents: mandelweb, its diagnostics,
/// Prometheus, PostgreSQL.
const STACK_PORTS: [u16; 4] = [8080, 6060, 9090, 5432];

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Processes whose command line names `needle` (the stack's temp dir).
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

/// Runs `deploy/stack.sh` (copied with hammer into a temp dir anyone may
/// read, so a plain user can run it) as `uid` (None: as this process):
/// mandelweb answers `/find-by-age` from the seeded PostgreSQL, Prometheus
/// scrapes it, and Ctrl-C leaves nothing running and nothing behind.
fn stack_runs_and_stops_clean(uid: Option<u32>) {
    for port in STACK_PORTS {
        assert!(!listening(port), "port {port} is taken: the stack needs it");
    }
    let copy = tempfile::Builder::new()
        .prefix("hammer-stack-")
        .tempdir()
        .unwrap();
    let root = copy.path();
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out =
        run(Command::new("cp").args(["-r", deploy().to_str().unwrap(), root.to_str().unwrap()]));
    assert!(out.status.success(), "{}", said(&out));
    let hammer_copy = root.join("hammer");
    std::fs::copy(env!("CARGO_BIN_EXE_hammer"), &hammer_copy).unwrap();
    let script = root.join("deploy/stack.sh");
    // setpriv execs the script in its place, so the signal below reaches it.
    let mut cmd = match uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg(&script);
            c
        }
        None => Command::new(&script),
    };
    let mut child = cmd
        .env("HAMMER", &hammer_copy)
        .env("TMPDIR", "/tmp")
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("deploy/stack.sh starts");
    let guard = KillOnDrop(child.id());

    // Its lines until "logs in DIR; Ctrl-C stops everything".
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let data = loop {
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("logs in ") {
                    break rest.split(';').next().unwrap().to_string();
                }
                lines.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let err = wait_limited(child, LIMIT);
                panic!(
                    "the stack did not come up: {lines:?} {}",
                    String::from_utf8_lossy(&err.stderr)
                );
            }
        }
    };
    assert!(
        lines.iter().any(|l| l.starts_with("PostgreSQL")),
        "{lines:?}"
    );

    // mandelweb answers from the seeded database (once it has bound: the
    // script starts it in the background).
    let public = SocketAddr::from(([127, 0, 0, 1], 8080));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listening(8080) {
        assert!(
            Instant::now() < deadline,
            "mandelweb never listened on 8080"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = testkit::post(public, "/find-by-age", br#"{"age": 30}"#);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let rows: Value = serde_json::from_str(&answer.text()).unwrap();
    assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{rows}");
    // Prometheus scrapes it (every 5 s as shipped).
    let prometheus = SocketAddr::from(([127, 0, 0, 1], 9090));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = testkit::try_fetch(
            prometheus,
            &format!("/api/v1/query?query={}", encode("up{job=\"mandelweb\"}")),
        )
        .map(|r| r.text())
        .unwrap_or_default();
        let v: Value = serde_json::from_str(&up).unwrap_or(Value::Null);
        if v["data"]["result"][0]["value"][1] == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped mandelweb: {up}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Ctrl-C: the script stops everything and removes its data.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let status = testkit::exit_within(&mut child, Duration::from_secs(60), "deploy/stack.sh");
    std::mem::forget(guard);
    assert_eq!(status.code(), Some(130), "{status}");
    for port in STACK_PORTS {
        assert!(!listening(port), "port {port} still answers after Ctrl-C");
    }
    assert!(!Path::new(&data).exists(), "{data} left behind");
    let left = processes_naming(&data);
    assert!(left.is_empty(), "still running: {left:?}");
}

/// Kills a process left running by a failed assertion.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

#[test]
fn the_stack_script_runs_as_root_and_as_a_plain_user() {
    let _x = exclusive();
    let root = rustix::process::getuid().is_root();
    stack_runs_and_stops_clean(None);
    if root {
        // A plain user: nobody (65534), with no home and no shell.
        stack_runs_and_stops_clean(Some(65534));
    }
}
