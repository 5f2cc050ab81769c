//! Starts the real `mandelweb` binary for integration tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running `mandelweb`, killed on drop.
pub struct Service {
    pub child: Child,
    pub public: SocketAddr,
    pub diag: SocketAddr,
    /// The readiness line it printed.
    #[allow(dead_code)]
    pub ready: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mandelweb` on free loopback ports with these extra flags.
pub fn start_with(extra: &[&str]) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandelweb"))
        .args(["--listen", "127.0.0.1:0", "--diag-listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mandelweb runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("a readiness line").unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("readiness is JSON");
    let addr = |key: &str| -> SocketAddr {
        let url = ready[key].as_str().expect("an address");
        url.trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap()
    };
    let (public, diag) = (addr("listening"), addr("diagnostics"));
    Service {
        child,
        public,
        diag,
        ready: line,
    }
}

/// Starts `mandelweb` with no database.
#[allow(dead_code)]
pub fn start() -> Service {
    start_with(&[])
}
