//! Provides a throwaway PostgreSQL cluster for tests: `initdb` in a temp
//! dir, `pg_ctl start` on a free loopback port, stopped and deleted on drop.
//! The server refuses to run as root, so when the tests run as root the
//! cluster belongs to, and runs as, the `postgres` OS user.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use tempfile::TempDir;

/// A PostgreSQL server of its own, reachable at [`Cluster::url`].
pub struct Cluster {
    dir: TempDir,
    port: u16,
    user: Option<(u32, u32)>,
}

impl Cluster {
    /// Creates and starts a cluster; panics with the tool's output if the
    /// PostgreSQL binaries (`initdb`, `pg_ctl`) are missing or fail.
    pub fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("hammer-pg-")
            .tempdir()
            .expect("temp dir");
        let user = if rustix::process::getuid().is_root() {
            Some(postgres_user())
        } else {
            None
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let port = free_port();
        let cluster = Cluster { dir, port, user };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        cluster.resume();
        cluster
    }

    /// The connection URL (user `postgres`, database `postgres`, no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once (open connections are cut), keeping its data:
    /// a database outage.
    pub fn pause(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts the server (again) on the same port and waits until it accepts
    /// connections.
    pub fn resume(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        );
    }

    /// Freezes the server: SIGSTOP to the postmaster and every backend.
    /// Connections stay open and nothing answers — a hung database, which
    /// only timeouts can tell from a slow one.
    pub fn freeze(&self) {
        for pid in self.processes().iter().rev() {
            let _ = rustix::process::kill_process(*pid, rustix::process::Signal::STOP);
        }
    }

    /// Undoes [`Cluster::freeze`]: SIGCONT to the same processes.
    pub fn thaw(&self) {
        for pid in self.processes() {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
        }
    }

    /// The postmaster (from its pid file), then its children.
    fn processes(&self) -> Vec<rustix::process::Pid> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .expect("the server is running");
        let postmaster: i32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid on postmaster.pid's first line");
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids.into_iter()
            .filter_map(rustix::process::Pid::from_raw)
            .collect()
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `tool`, run in the cluster's directory as the user that owns it.
    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid).env("HOME", self.dir.path());
        }
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let out = self.command(tool).args(args).output().unwrap_or_else(|e| {
            panic!("{tool}: {e} (PostgreSQL 15's initdb and pg_ctl must be on PATH)")
        });
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data.to_string_lossy(), "-m", "immediate", "stop"])
            .output();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id(1)");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("running as root needs a `postgres` OS user to run the server")
    };
    (id("-u"), id("-g"))
}
