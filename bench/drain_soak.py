#!/usr/bin/env python3
"""Drain, repeated (the Uptime seed): mandelweb is sent SIGTERM ROUNDS times
under load at 80% of its capacity, a supervisor (this script) restarting it
on the same port each time, while one `hammer attack` counts every request.

    cargo build --release -p hammer -p mandelweb && python3 bench/drain_soak.py [ROUNDS]

Passes when every drain exits 0 and hammer saw no response cut mid-way and
no request lost after it was sent (errors `closed`, `reset`,
`bad_response`, `timeout`): the only failures allowed are connections
refused in the moments between one process closing its listener and the
next opening it. Prints each round and the totals. Loopback only; bounded
by ROUNDS x 4 s.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HAMMER = os.path.join(TARGET, "release", "hammer")
MANDELWEB = os.path.join(TARGET, "release", "mandelweb")
PATH = "/mandelbrot?width=128&height=128&iterations=500"
UP_S = 3.0  # how long each process serves before its SIGTERM
LOST = ("closed", "reset", "bad_response", "timeout", "canceled")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port):
    proc = subprocess.Popen(
        [MANDELWEB, "--listen", f"127.0.0.1:{port}", "--drain-timeout", "10s"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=dict(os.environ, RUST_LOG="warn"),
    )
    json.loads(proc.stdout.readline())  # ready: listening
    return proc


def hammer(args):
    out = subprocess.run([HAMMER, "attack", "-q", "--format", "json", *args],
                         capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    for b in (HAMMER, MANDELWEB):
        if not os.path.exists(b):
            sys.exit(f"{b} missing: cargo build --release -p hammer -p mandelweb")
    port = free_port()
    url = f"http://127.0.0.1:{port}{PATH}"
    proc = start(port)
    slots = 2 * os.cpu_count()
    capacity = hammer(["-c", str(slots), "-d", "3s", url])["achieved_rate"]
    rate = 0.8 * capacity
    duration = rounds * (UP_S + 0.5) + 2
    print(f"capacity {capacity:.0f} req/s; hammer at {rate:.0f} req/s for {duration:.0f} s;"
          f" {rounds} SIGTERMs, one every ~{UP_S:.0f} s")
    load = subprocess.Popen(
        [HAMMER, "attack", "-q", "--format", "json", "-r", f"{rate:.0f}",
         "-d", f"{duration:.0f}s", "--timeout", "5s", url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    exits = []
    try:
        for i in range(rounds):
            time.sleep(UP_S)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            drained = time.monotonic() - t0
            proc = start(port)
            gap = time.monotonic() - t0
            exits.append(code)
            print(f"round {i + 1:>2}: exit {code}, drained in {drained * 1e3:.0f} ms,"
                  f" serving again {gap * 1e3:.0f} ms after the signal")
        result = json.loads(load.communicate(timeout=duration + 60)[0])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if load.poll() is None:
            load.kill()
    errors = {k: v for k, v in result["errors"].items() if v}
    lost = sum(result["errors"].get(k, 0) for k in LOST)
    print(f"hammer: {result['requests']} requests, {result['succeeded']} succeeded,"
          f" status codes {result['status_codes']}, errors {errors or 'none'}")
    ok = all(c == 0 for c in exits) and lost == 0 and set(result["status_codes"]) <= {"200"}
    print(f"{'PASS' if ok else 'FAIL'}: {sum(c == 0 for c in exits)}/{rounds} drains exited 0;"
          f" {lost} requests cut or lost after they were sent;"
          f" {result['errors'].get('refused', 0)} connects refused between processes")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
