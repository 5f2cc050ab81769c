#!/usr/bin/env python3
"""Runs hammer and its peers (wrk, oha) against nginx, side by side, for the
benchmarks in bench/open-loop.sh and bench/scale.sh.

Every generator runs pinned to its own cores, as a child whose CPU time
comes from wait4(2) and peak RSS from its /proc status (VmHWM), so the
figures need nothing beyond Python's standard library (the bigger benchmark
machine has no /usr/bin/time or perf).
nginx serves `return 200` on loopback, pinned to its own cores.

    peers.py open-loop   highest open-loop rate each generator sustains
    peers.py scale       closed loop and open loop at 1, 2, 4, ... threads
    peers.py tls         HTTP/1.1 over TLS, closed loop, one core each: hammer,
                         wrk, oha (keep-alive), and a handshake per request
    peers.py h2          HTTP/2, h2c and over TLS, 10 connections x 10 streams,
                         closed loop, one core each: hammer, h2load, oha
    peers.py versions before=PATH after=PATH
                         two hammer builds side by side on the engine's hot
                         path (a refactor's "figures unchanged"): closed
                         loop -c 50, open loop at --rate, h2c 10 x 10 streams
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 65536; }}
worker_rlimit_nofile 200000;
http {{
  access_log off;
  client_body_temp_path {work}/body;
  keepalive_requests 1000000000;
  server {{ listen 127.0.0.1:{port} backlog=65535; location / {{ return 200 "hello\\n"; }} }}
  server {{
    listen 127.0.0.1:{tls_port} ssl backlog=65535;
    ssl_certificate {work}/cert.pem;
    ssl_certificate_key {work}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:tls:10m;
    location / {{ return 200 "hello\\n"; }}
  }}
  server {{ listen 127.0.0.1:{h2c_port} http2 backlog=65535; location / {{ return 200 "hello\\n"; }} }}
  server {{
    listen 127.0.0.1:{h2_port} ssl http2 backlog=65535;
    ssl_certificate {work}/cert.pem;
    ssl_certificate_key {work}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams 128;
    location / {{ return 200 "hello\\n"; }}
  }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cores(first, count):
    return ",".join(str(c) for c in range(first, first + count))


class Nginx:
    """nginx with `workers` worker processes pinned to cores 0..workers-1."""

    def __init__(self, workers):
        self.work = tempfile.mkdtemp(prefix="hammer-bench-")
        self.port, self.tls_port = free_port(), free_port()
        self.h2c_port, self.h2_port = free_port(), free_port()
        # A self-signed P-256 certificate for localhost (the generators skip
        # verification: -k, --insecure; wrk never verifies).
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{self.work}/key.pem", "-out", f"{self.work}/cert.pem", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conf = os.path.join(self.work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(workers=workers, work=self.work, port=self.port, tls_port=self.tls_port,
                                      h2c_port=self.h2c_port, h2_port=self.h2_port))
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(f"/var/lib/nginx/{d}", exist_ok=True)
        self.proc = subprocess.Popen(
            ["taskset", "-c", cores(0, workers), "nginx", "-c", conf, "-p", self.work],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}/"
        self.tls_url = f"https://127.0.0.1:{self.tls_port}/"
        self.h2c_url = f"http://127.0.0.1:{self.h2c_port}/"
        self.h2_url = f"https://127.0.0.1:{self.h2_port}/"
        for _ in range(100):
            try:
                urllib.request.urlopen(self.url, timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nginx did not start: " + open(os.path.join(self.work, "error.log")).read())

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def peak_rss(pid, stop, found):
    """Polls the process's own high-water mark (VmHWM) until `stop` is set.
    wait4's ru_maxrss would also count this Python process, whose pages the
    child held between fork and exec."""
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        found[0] = max(found[0], int(line.split()[1]) / 1024)
        except OSError:
            return
        stop.wait(0.1)


def measure(cmd, cpus):
    """Runs cmd pinned to `cpus`; returns (stdout, cpu seconds, peak RSS MiB, wall s)."""
    start = time.monotonic()
    p = subprocess.Popen(["taskset", "-c", cpus] + cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stop, rss = threading.Event(), [0.0]
    watcher = threading.Thread(target=peak_rss, args=(p.pid, stop, rss))
    watcher.start()
    out = p.stdout.read().decode(errors="replace")
    stop.set()
    watcher.join()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise RuntimeError(f"{cmd[0]} exited {status}: {out[-500:]}")
    return out, usage.ru_utime + usage.ru_stime, rss[0], wall


def hammer(url, threads, duration, cpus, rate=None, conns=None, extra=(), binary="hammer"):
    cmd = [binary, "attack", url, "-w", str(threads), "-d", f"{duration}s", "--format", "json", "-q", *extra]
    if rate:
        cmd += ["-r", str(int(rate))]
    if conns:
        cmd += ["-c", str(conns)]
    out, cpu, rss, _ = measure(cmd, cpus)
    v = json.loads(out)
    return {
        "achieved": v["achieved_rate"],
        "requests": v["requests"],
        "p99_ms": v["latency_ms"]["p99"],
        "lag_p99_ms": v["schedule_lag_ms"]["p99"],
        "opened": v.get("connections", {}).get("opened"),
        "peak_open": v.get("connections", {}).get("peak_open"),
        "cpu_s": cpu,
        "rss_mib": rss,
    }


def wrk(url, threads, duration, cpus, conns):
    out, cpu, rss, _ = measure(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", url], cpus)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"achieved": rps, "requests": total, "cpu_s": cpu, "rss_mib": rss}


def oha(url, duration, cpus, conns, rate=None, extra=()):
    cmd = ["oha", url, "-z", f"{duration}s", "-c", str(conns), "--no-tui", "--output-format", "json", *extra]
    if rate:
        cmd += ["-q", str(int(rate)), "--latency-correction"]
    out, cpu, rss, wall = measure(cmd, cpus)
    v = json.loads(out)
    rps = v["summary"]["requestsPerSec"]
    p99 = (v["latencyPercentiles"].get("p99") or 0) * 1000
    return {"achieved": rps, "requests": round(rps * v["summary"]["total"]), "p99_ms": p99, "cpu_s": cpu, "rss_mib": rss}


def per_cpu_s(r):
    return r["requests"] / r["cpu_s"] if r["cpu_s"] > 0 else 0.0


def sustains(r, rate, p99_ms, lag_ms=None):
    ok = abs(r["achieved"] - rate) <= 0.005 * rate and r["p99_ms"] < p99_ms
    return ok and (lag_ms is None or r["lag_p99_ms"] < lag_ms)


def bisect(probe, lo, hi, steps):
    """Highest rate in [lo, hi] for which probe(rate) passes (None if lo fails)."""
    passed, best = probe(lo)
    if not passed:
        return None, best
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok, r = probe(mid)
        if ok:
            lo, best = mid, r
        else:
            hi = mid
    return lo, best


def open_loop(args):
    """One nginx worker on core 0, each generator on core 1, one thread."""
    nginx = Nginx(1)
    rows = {name: [] for name in ("hammer (default flags)", "hammer -c 50", "oha -c 50 --latency-correction")}
    try:
        for round_ in range(args.rounds):
            for name in rows:
                def probe(rate, name=name):
                    if name.startswith("oha"):
                        r = oha(nginx.url, args.duration, "1", 50, rate)
                    else:
                        conns = 50 if "-c 50" in name else None
                        r = hammer(nginx.url, 1, args.duration, "1", rate, conns)
                    ok = sustains(r, rate, args.p99_ms)
                    print(f"  round {round_ + 1} {name:32} {rate:>9.0f}/s  achieved {r['achieved']:>9.0f}"
                          f"  p99 {r['p99_ms']:7.2f} ms" + (f"  lag p99 {r['lag_p99_ms']:7.2f} ms" if "lag_p99_ms" in r else "")
                          + ("" if r.get("opened") is None else f"  conns {r['opened']}/{r['peak_open']}")
                          + ("  ok" if ok else "  FAIL"), flush=True)
                    return ok, r
                rate, best = bisect(probe, args.low, args.high, args.steps)
                rows[name].append((rate, best))
    finally:
        nginx.stop()
    print(f"\nHighest rate with latency p99 < {args.p99_ms} ms and achieved within 0.5% "
          f"(nginx 1 worker on core 0, generator on core 1, {args.duration} s runs, median of {args.rounds}):")
    print(f"  {'generator':34}{'rate/s':>10}{'p99 ms':>9}{'lag p99':>9}{'opened':>8}{'peak':>6}   rounds")
    for name, got in rows.items():
        rates = [r for r, _ in got if r is not None]
        med = statistics.median(rates) if rates else None
        best = next((b for r, b in got if r == med), None) if med else None
        lag = f"{best['lag_p99_ms']:9.2f}" if best and "lag_p99_ms" in best else f"{'':>9}"
        conn = f"{best['opened']:>8}{best['peak_open']:>6}" if best and best.get("opened") is not None else f"{'':>14}"
        shown = f"{med:10.0f}" if med else f"{'none':>10}"
        p99 = f"{best['p99_ms']:9.2f}" if best else f"{'':>9}"
        print(f"  {name:34}{shown}{p99}{lag}{conn}   " + ", ".join("none" if r is None else f"{r:.0f}" for r, _ in got))


def scale(args):
    """nginx with W workers on cores 0..W-1; generators on cores W.. with 1, 2, 4, ... threads."""
    ncpu = os.cpu_count()
    half = ncpu // 2
    nginx = Nginx(half)
    threads = args.threads or [t for t in (1, 2, 4, 8, 16, 32) if t <= half]
    print(f"nginx: {half} workers on cores 0-{half - 1}; generators on cores {half}..; {args.duration} s runs\n")
    print(f"  {'threads':>7} {'generator':22}{'req/s':>11}{'req/CPU-s':>11}{'RSS MiB':>9}{'p99 ms':>9}{'lag p99':>9}")
    try:
        for t in threads:
            cpus = cores(half, t)
            conns = 50 * t
            runs = [
                ("hammer -c %d" % conns, hammer(nginx.url, t, args.duration, cpus, conns=conns)),
                ("wrk -c %d" % conns, wrk(nginx.url, t, args.duration, cpus, conns)),
                ("oha -c %d" % conns, oha(nginx.url, args.duration, cpus, conns)),
            ]
            closed = runs[0][1]["achieved"]
            for name, r in runs:
                print(f"  {t:>7} {name:22}{r['achieved']:>11.0f}{per_cpu_s(r):>11.0f}{r['rss_mib']:>9.1f}", flush=True)
            hammer_cpu = per_cpu_s(runs[0][1])
            for peer, r in runs[1:]:
                print(f"  {'':>7} hammer/{peer.split()[0]} req per CPU-s: {hammer_cpu / max(per_cpu_s(r), 1):.2f}x")
            # The open loop at fractions of the closed loop's rate, and the 100k/thread.
            for rate in sorted({round(closed * f, -3) for f in args.fractions} | {100_000 * t}):
                r = hammer(nginx.url, t, args.duration, cpus, rate=rate)
                ok = sustains(r, rate, float("inf"), lag_ms=1.0)
                print(f"  {t:>7} {'hammer -r %d' % rate:22}{r['achieved']:>11.0f}{per_cpu_s(r):>11.0f}{r['rss_mib']:>9.1f}"
                      f"{r['p99_ms']:>9.2f}{r['lag_p99_ms']:>9.2f}  conns {r['opened']}/{r['peak_open']}" + ("  ok" if ok else "  FAIL"), flush=True)
                if shutil.which("oha") and args.oha_open:
                    o = oha(nginx.url, args.duration, cpus, conns, rate)
                    print(f"  {t:>7} {'oha -q %d' % rate:22}{o['achieved']:>11.0f}{per_cpu_s(o):>11.0f}{o['rss_mib']:>9.1f}{o['p99_ms']:>9.2f}", flush=True)
    finally:
        nginx.stop()


def rounds(runs, args, nginx, what):
    """Runs each (name, run) once per round, interleaved, skipping a tool
    that is not installed (the name's first word after any "proto: "),
    stops nginx, prints the medians; returns req per client CPU-second by name."""
    got = {name: [] for name, _ in runs}
    width = max(len(name) for name, _ in runs) + 2
    try:
        for round_ in range(args.rounds):
            for name, run in runs:
                if not shutil.which(name.split(": ")[-1].split()[0]):
                    continue
                r = run()
                got[name].append(r)
                print(f"  round {round_ + 1} {name:{width}}{r['achieved']:>10.0f} req/s{per_cpu_s(r):>10.0f} req/CPU-s"
                      f"{r['rss_mib']:>8.1f} MiB", flush=True)
    finally:
        nginx.stop()
    print(f"\n{what} (nginx 1 worker on core 0, generator on core 1, {args.duration} s, median of {args.rounds}):")
    print(f"  {'generator':{width}}{'req/s':>10}{'req/CPU-s':>11}{'RSS MiB':>9}")
    med = {}
    for name, rs in got.items():
        if not rs:
            continue
        median = lambda k: statistics.median(x[k] for x in rs)
        med[name] = statistics.median(per_cpu_s(x) for x in rs)
        print(f"  {name:{width}}{median('achieved'):>10.0f}{med[name]:>11.0f}{median('rss_mib'):>9.1f}")
    return med


def tls(args):
    """nginx (1 worker, TLS) on core 0; each generator on core 1, one thread."""
    nginx = Nginx(1)
    url = nginx.tls_url
    c = str(args.conns)
    runs = [
        (f"hammer -c {c}", lambda: hammer(url, 1, args.duration, "1", conns=args.conns, extra=["-k"])),
        (f"wrk -c {c}", lambda: wrk(url, 1, args.duration, "1", args.conns)),
        (f"oha -c {c}", lambda: oha(url, args.duration, "1", args.conns, extra=["--insecure"])),
        (f"hammer -c {c} --disable-keepalive", lambda: hammer(
            url, 1, args.duration, "1", conns=args.conns, extra=["-k", "--disable-keepalive"])),
        (f"hammer -c {c} --disable-keepalive --no-tls-resume", lambda: hammer(
            url, 1, args.duration, "1", conns=args.conns, extra=["-k", "--disable-keepalive", "--no-tls-resume"])),
        (f"oha -c {c} --disable-keepalive", lambda: oha(
            url, args.duration, "1", args.conns, extra=["--insecure", "--disable-keepalive"])),
    ]
    med = rounds(runs, args, nginx, "HTTP/1.1 over TLS")
    h, w = med.get(f"hammer -c {c}"), med.get(f"wrk -c {c}")
    if h and w:
        print(f"  hammer/wrk req per client CPU-second: {h / w:.2f}x")


def h2load(url, duration, cpus, conns, streams):
    out, cpu, rss, _ = measure(["h2load", "-D", str(duration), "-c", str(conns), "-m", str(streams), url], cpus)
    done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", out).group(1))
    rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))
    return {"achieved": rps, "requests": done, "cpu_s": cpu, "rss_mib": rss}


def h2(args):
    """nginx (1 worker, http2) on core 0; each generator on core 1, one thread."""
    nginx = Nginx(1)
    c, m = args.conns, args.streams
    runs = []
    for proto, url in (("h2c", nginx.h2c_url), ("h2 TLS", nginx.h2_url)):
        runs += [
            (f"{proto}: hammer -c {c} --streams {m}", lambda url=url: hammer(
                url, 1, args.duration, "1", conns=c, extra=["-k", "--http2", "--streams", str(m)])),
            (f"{proto}: h2load -c {c} -m {m}", lambda url=url: h2load(url, args.duration, "1", c, m)),
            (f"{proto}: oha --http2 -c {c} -p {m}", lambda url=url: oha(
                url, args.duration, "1", c, extra=["--insecure", "--http2", "-p", str(m)])),
        ]
    med = rounds(runs, args, nginx, "HTTP/2")
    for proto in ("h2c", "h2 TLS"):
        h = med.get(f"{proto}: hammer -c {c} --streams {m}")
        p = med.get(f"{proto}: h2load -c {c} -m {m}")
        if h and p:
            print(f"  {proto}: hammer/h2load req per client CPU-second: {h / p:.2f}x")


def versions(args):
    """Each build on core 1 (one thread) against nginx on core 0, rounds
    interleaved; medians and the ratio of each build to the first."""
    builds = [b.split("=", 1) for b in args.builds]
    nginx = Nginx(1)
    d = args.duration
    closed = "closed -c 50, req/CPU-s"
    lag, p99 = f"open {args.rate:.0f}/s, lag p99 ms", f"open {args.rate:.0f}/s, p99 ms"
    h2c = "h2c -c 10 x 10, req/CPU-s"
    runs = [closed, lag, p99, h2c]
    got = {(label, name): [] for label, _ in builds for name in runs}
    try:
        for round_ in range(args.rounds):
            for label, path in builds:
                r = hammer(nginx.url, 1, d, "1", conns=50, binary=path)
                got[(label, closed)].append(per_cpu_s(r))
                r = hammer(nginx.url, 1, d, "1", rate=args.rate, binary=path)
                got[(label, lag)].append(r["lag_p99_ms"])
                got[(label, p99)].append(r["p99_ms"])
                r = hammer(nginx.h2c_url, 1, d, "1", conns=10, binary=path,
                           extra=["-k", "--http2", "--streams", "10"])
                got[(label, h2c)].append(per_cpu_s(r))
                print(f"  round {round_ + 1} {label:8} "
                      + ", ".join(f"{name} {got[(label, name)][-1]:.3f}" for name in runs), flush=True)
    finally:
        nginx.stop()
    print(f"\nhammer builds (nginx 1 worker on core 0, hammer 1 thread on core 1, {d} s runs, "
          f"median of {args.rounds}):")
    first = builds[0][0]
    print(f"  {'figure':30}" + "".join(f"{label:>12}" for label, _ in builds)
          + "".join(f"{label + '/' + first:>16}" for label, _ in builds[1:]))
    for name in runs:
        med = {label: statistics.median(got[(label, name)]) for label, _ in builds}
        print(f"  {name:30}" + "".join(f"{med[label]:>12.3f}" for label, _ in builds)
              + "".join(f"{med[label] / med[first]:>15.2f}x" for label, _ in builds[1:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    o = sub.add_parser("open-loop")
    o.add_argument("--duration", type=int, default=4)
    o.add_argument("--rounds", type=int, default=3)
    o.add_argument("--low", type=float, default=10_000)
    o.add_argument("--high", type=float, default=160_000)
    o.add_argument("--steps", type=int, default=5)
    o.add_argument("--p99-ms", type=float, default=2.0)
    s = sub.add_parser("scale")
    s.add_argument("--duration", type=int, default=5)
    s.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.8])
    s.add_argument("--oha-open", action="store_true", help="also run oha -q at each open-loop rate")
    s.add_argument("--threads", type=int, nargs="+", help="thread counts (default 1, 2, 4, ... up to half the cores)")
    t = sub.add_parser("tls")
    t.add_argument("--duration", type=int, default=5)
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--conns", type=int, default=50)
    h = sub.add_parser("h2")
    h.add_argument("--duration", type=int, default=5)
    h.add_argument("--rounds", type=int, default=3)
    h.add_argument("--conns", type=int, default=10)
    h.add_argument("--streams", type=int, default=10)
    v = sub.add_parser("versions")
    v.add_argument("builds", nargs="+", help="label=path/to/hammer, the first is the baseline")
    v.add_argument("--duration", type=int, default=4)
    v.add_argument("--rounds", type=int, default=3)
    v.add_argument("--rate", type=float, default=40_000)
    args = ap.parse_args()
    for tool in ("nginx", "taskset", "openssl") + (() if args.what == "versions" else ("hammer",)):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not on PATH")
    {"open-loop": open_loop, "scale": scale, "tls": tls, "h2": h2, "versions": versions}[args.what](args)


if __name__ == "__main__":
    main()
