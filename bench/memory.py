#!/usr/bin/env python3
"""mandelweb's memory the Uptime seed's way: RSS and live tokio tasks idle,
with 100, 1,000 and 10,000 idle keep-alive connections open (each has
served one request), and 5 s after they close.

    cargo build --release -p mandelweb && python3 bench/memory.py

Prints per-connection cost (RSS growth / connections) and whether RSS and
tasks come back after the close. The connections are opened in bursts and
held for under the service's 10 s idle limit, which would close them itself.
Loopback only; everything it starts, it stops.
"""

import json
import os
import resource
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "mandelweb")
STEPS = [100, 1_000, 10_000]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def http_get(addr, path):
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1]


def metric(diag, name):
    for line in http_get(diag, "/metrics").decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


def tasks_alive(diag):
    return metric(diag, "tokio_tasks_alive")


def open_idle(addr, n):
    """n keep-alive connections, each after one answered request (in
    batches of 500, so none waits in the accept queue for long)."""
    conns = []
    while len(conns) < n:
        batch = []
        for _ in range(min(500, n - len(conns))):
            s = socket.socket()
            s.connect(addr)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            batch.append(s)
        for s in batch:
            got = b""
            while b"\r\n\r\n" not in got:
                got += s.recv(4096)
        conns += batch
    return conns


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(STEPS) + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
        sys.exit(f"need {want} open files (ulimit -n), have {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: cargo build --release -p mandelweb")
    proc = subprocess.Popen(
        [BIN, "--listen", "127.0.0.1:0", "--diag-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=dict(os.environ, RUST_LOG="warn"),
    )
    try:
        ready = json.loads(proc.stdout.readline())
        hostport = lambda url: (url.split("//")[1].rstrip("/").rsplit(":", 1)[0],
                                int(url.rstrip("/").rsplit(":", 1)[1]))
        public, diag = hostport(ready["listening"]), hostport(ready["diagnostics"])
        http_get(public, "/mandelbrot?width=64&height=64")  # warm the renderer
        time.sleep(1)
        idle_rss, idle_tasks = rss_kib(proc.pid), tasks_alive(diag)
        print(f"mandelweb idle: RSS {idle_rss / 1024:.1f} MiB, tokio tasks alive {idle_tasks}")
        print(f"{'connections':>11} {'open':>6} {'RSS MiB':>8} {'per conn KiB':>13} {'tasks':>6}"
              f" | {'5 s after close: RSS MiB':>24} {'tasks':>6}")
        for n in STEPS:
            started = time.monotonic()
            conns = open_idle(public, n)
            if time.monotonic() - started > 8:
                print(f"opening {n} took {time.monotonic() - started:.1f} s: some hit the 10 s idle limit")
            time.sleep(0.5)
            rss, tasks = rss_kib(proc.pid), tasks_alive(diag)
            open_now = metric(diag, "http_connections_open")
            for s in conns:
                s.close()
            time.sleep(5)
            after_rss, after_tasks = rss_kib(proc.pid), tasks_alive(diag)
            print(f"{n:>11,} {open_now:>6} {rss / 1024:>8.1f} {(rss - idle_rss) / max(open_now, 1):>13.1f} {tasks:>6}"
                  f" | {after_rss / 1024:>24.1f} {after_tasks:>6}")
        print("targets: < 16 KiB per idle connection; RSS within 2x of idle after close;"
              " tasks back to idle exactly")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
