//! `POST /find-by-age` against a real PostgreSQL 15 cluster the tests start
//! themselves: seeded rows come back, bad bodies are 400s, pool and no pool
//! agree, and an outage gives fast 503s and heals by itself, under load
//! too, whether the database is killed or frozen.

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::post;
use testkit::postgres::Cluster;

use crate::support::{start_with, Service};

const ROWS: i32 = 1000;

fn seeded_cluster() -> Cluster {
    let pg = Cluster::start();
    let out = Command::new(env!("CARGO_BIN_EXE_mandelweb"))
        .args([
            "seed-db",
            "--rows",
            &ROWS.to_string(),
            "--database-url",
            &pg.url(),
        ])
        .output()
        .expect("mandelweb seed-db runs");
    assert!(
        out.status.success(),
        "seed-db failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("people: {ROWS} rows, index on age")
    );
    pg
}

fn service(pg: &Cluster, pool: &str) -> Service {
    start_with(&[
        "--database-url",
        &pg.url(),
        "--pool-size",
        pool,
        "--pool-min-idle",
        "2",
    ])
}

fn find(svc: &Service, body: &str) -> (u16, serde_json::Value) {
    let r = post(svc.public, "/find-by-age", body.as_bytes());
    let json = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}: {}", r.status, r.text()));
    (r.status, json)
}

#[test]
fn seeded_rows_come_back_with_and_without_a_pool() {
    let pg = seeded_cluster();
    let expected: Vec<serde_json::Value> = (1..=ROWS)
        .filter(|id| id % 100 == 42)
        .map(|id| serde_json::json!({"id": id, "name": format!("person-{id}"), "age": 42}))
        .collect();
    assert_eq!(expected.len(), 10);
    for pool in ["0", "4"] {
        let svc = service(&pg, pool);
        for _ in 0..3 {
            assert_eq!(
                find(&svc, r#"{"age": 42}"#),
                (200, serde_json::Value::Array(expected.clone())),
                "pool size {pool}"
            );
        }
        assert_eq!(find(&svc, r#"{"age": 300}"#), (200, serde_json::json!([])));
        let metrics = testkit::fetch(svc.diag, "/metrics").text();
        assert!(
            metrics.contains(r#"route="/find-by-age""#),
            "requests are counted by route"
        );
        assert_eq!(
            find(&svc, r#"{"age": 0, "other": true}"#)
                .1
                .as_array()
                .unwrap()
                .len(),
            10
        );
    }
}

#[test]
fn bad_bodies_are_400_never_500() {
    let pg = seeded_cluster();
    let svc = service(&pg, "4");
    let big = format!(r#"{{"age": 42, "pad": "{}"}}"#, "x".repeat(64 * 1024));
    for body in [
        "",
        "not json",
        "{}",
        r#"{"age": "42"}"#,
        r#"{"age": 42.5}"#,
        r#"{"age": null}"#,
        r#"{"age": 99999999999}"#,
        r#"[42]"#,
        big.as_str(),
    ] {
        let (status, json) = find(&svc, body);
        assert_eq!(status, 400, "body {:.40}: {json}", body);
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{json}"
        );
    }
    // The service is still fine afterwards.
    assert_eq!(find(&svc, r#"{"age": 7}"#).0, 200);
}

#[test]
fn without_a_database_find_by_age_is_503_saying_how_to_give_one() {
    let svc = crate::support::start();
    let (status, json) = find(&svc, r#"{"age": 42}"#);
    assert_eq!(status, 503);
    assert!(
        json["error"].as_str().unwrap().contains("--database-url"),
        "{json}"
    );
}

/// Polls until `/find-by-age` answers 200 and returns how long that took.
fn time_to_recover(svc: &Service) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if find(svc, r#"{"age": 1}"#).0 == 200 {
            return t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no recovery within 10 s");
}

#[test]
fn an_outage_gives_fast_503s_and_heals_by_itself() {
    let pg = seeded_cluster();
    for pool in ["0", "4"] {
        let svc = service(&pg, pool);
        assert_eq!(find(&svc, r#"{"age": 1}"#).0, 200);
        pg.pause();
        for _ in 0..5 {
            let t0 = Instant::now();
            let (status, json) = find(&svc, r#"{"age": 1}"#);
            let took = t0.elapsed();
            assert_eq!(status, 503, "pool {pool}: {json}");
            assert!(
                json["error"]
                    .as_str()
                    .unwrap()
                    .contains("database unavailable"),
                "{json}"
            );
            assert!(
                took < Duration::from_millis(1500),
                "pool {pool}: 503 took {took:?}"
            );
        }
        pg.resume();
        let recovered = time_to_recover(&svc);
        println!("pool size {pool}: recovered {recovered:?} after the database came back");
        assert!(
            recovered < Duration::from_secs(1),
            "pool {pool}: {recovered:?}"
        );
        for _ in 0..10 {
            assert_eq!(find(&svc, r#"{"age": 1}"#).0, 200);
        }
    }
}

/// What one request of [`load`] saw: its status, how long it took, and
/// when it started.
struct Seen {
    status: u16,
    took: Duration,
    started: Instant,
}

/// `clients` threads sending find-by-age back to back until `until`.
fn load(svc: &Service, clients: usize, until: Instant) -> Vec<std::thread::JoinHandle<Vec<Seen>>> {
    (0..clients)
        .map(|i| {
            let addr = svc.public;
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    let body = format!(r#"{{"age": {}}}"#, i % 90);
                    let r = post(addr, "/find-by-age", body.as_bytes());
                    seen.push(Seen {
                        status: r.status,
                        took: started.elapsed(),
                        started,
                    });
                }
                seen
            })
        })
        .collect()
}

#[test]
fn under_load_a_killed_or_frozen_database_is_a_503_on_time_and_heals_within_a_second() {
    const DB_TIMEOUT: Duration = Duration::from_millis(500);
    let pg = seeded_cluster();
    for pool in ["0", "4"] {
        let svc = start_with(&[
            "--database-url",
            &pg.url(),
            "--pool-size",
            pool,
            "--db-timeout",
            "500ms",
        ]);
        assert_eq!(find(&svc, r#"{"age": 1}"#).0, 200);
        for fault in ["killed", "frozen"] {
            let until = Instant::now() + Duration::from_millis(5000);
            let clients = load(&svc, 4, until);
            std::thread::sleep(Duration::from_millis(700));
            let faulted = Instant::now();
            match fault {
                "killed" => pg.pause(),
                _ => pg.freeze(),
            }
            std::thread::sleep(Duration::from_millis(1200));
            match fault {
                "killed" => pg.resume(),
                _ => pg.thaw(),
            }
            let healed = Instant::now();
            let seen: Vec<Seen> = clients
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect();
            let slowest = seen.iter().map(|s| s.took).max().unwrap();
            let failed = seen.iter().filter(|s| s.status == 503).count();
            let late = seen
                .iter()
                .filter(|s| s.started > healed + Duration::from_secs(1) && s.status != 200)
                .count();
            println!(
                "pool {pool}, database {fault}: {} requests, {failed} 503s, slowest {slowest:?}, {late} failures 1 s after it came back",
                seen.len()
            );
            // Only 200s and 503s, the 503s during the fault.
            assert!(seen.iter().all(|s| s.status == 200 || s.status == 503));
            assert!(
                failed > 0,
                "pool {pool}: the {fault} database went unnoticed"
            );
            assert!(seen
                .iter()
                .filter(|s| s.status == 503)
                .all(|s| s.started + s.took > faulted));
            // None hangs: every request ends within --db-timeout and a margin.
            assert!(
                slowest <= DB_TIMEOUT + Duration::from_millis(100),
                "pool {pool}, {fault}: a request took {slowest:?}"
            );
            // Healed without a restart of mandelweb, within a second.
            assert_eq!(late, 0, "pool {pool}, {fault}: still failing 1 s after");
            assert!(seen
                .iter()
                .any(|s| s.started > healed + Duration::from_secs(1)));
        }
    }
}
