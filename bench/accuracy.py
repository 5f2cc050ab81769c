#!/usr/bin/env python3
"""hammer's latency graded against the truth when the target pauses.

The target is testkit's pause-server pinned to core 0: it answers at once,
except that for PAUSE ms of every EVERY ms it answers nothing while still
accepting and reading requests, and it measures each request's residence
itself. Each generator runs pinned to core 1 with one thread:

  truth    hammer --disable-keepalive: one connection per request, so no
           request can wait on the client side; the figure is the server's
           own residence quantile. Where a run needs more ports than
           loopback has (rate x duration > --truth-max), the analytic answer
           instead: a request arriving in a pause waits for its end,
           uniformly on (0, PAUSE], plus the server's median residence.
  hammer   default flags (the figure users get).
  oha      -c 50 -q RATE --latency-correction (evenly spaced only: oha has
           no Poisson arrivals).

For each rate x pause x arrivals cell: p99 and p99.9 in ms, the median of
--rounds interleaved rounds, and whether hammer is within 2% + 0.5 ms of the
truth at both (ok), and never worse than oha.

    bench/accuracy.sh [--rates 1000 4000 16000] [--duration 8] [--rounds 3]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import measure  # noqa: E402

PAUSES = [(0, 0), (2, 100), (10, 500), (50, 1000)]


class PauseServer:
    def __init__(self, pause_ms, every_ms):
        self.p = subprocess.Popen(
            ["taskset", "-c", "0", "pause-server", "127.0.0.1:0", str(pause_ms), str(every_ms)],
            stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        self.addr = line.rsplit(" ", 1)[-1].strip()
        self.url = f"http://{self.addr}/"
        self.pause, self.every = pause_ms, every_ms

    def get(self, path):
        with urllib.request.urlopen(f"http://{self.addr}{path}", timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        self.p.kill()
        self.p.wait()

    def analytic_ms(self, q):
        if not self.pause:
            return 0.0
        share = self.pause / self.every
        above = 1.0 - q
        return 0.0 if above >= share else self.pause * (1.0 - above / share)


def hammer(url, rate, duration, arrivals, extra=()):
    cmd = ["hammer", "attack", url, "-w", "1", "-r", str(rate), "-d", f"{duration}s",
           "--arrivals", arrivals, "--format", "json", "-q", *extra]
    out, _, _, _ = measure(cmd, "1")
    v = json.loads(out)
    lat = v["latency_ms"]
    return {"p99": lat["p99"], "p999": lat["p99_9"], "lag": v["schedule_lag_ms"]["p99"],
            "conns": v["connections"]["peak_open"], "failed": v["failed"]}


def oha(url, rate, duration):
    cmd = ["oha", url, "-z", f"{duration}s", "-c", "50", "-q", str(rate), "--latency-correction",
           "--no-tui", "--output-format", "json"]
    out, _, _, _ = measure(cmd, "1")
    p = json.loads(out)["latencyPercentiles"]
    return {"p99": (p.get("p99") or 0) * 1000, "p999": (p.get("p99.9") or 0) * 1000}


def cell(server, rate, arrivals, args):
    """One round of one cell: truth, hammer, oha."""
    server.get("/__reset")
    got = {}
    if rate * args.duration <= args.truth_max:
        hammer(server.url, rate, args.duration, arrivals, ["--disable-keepalive"])
        r = server.get("/__residence")
        got["truth"] = {"p99": r["p99_ms"], "p999": r["p999_ms"], "how": "1 conn/req"}
    got["hammer"] = hammer(server.url, rate, args.duration, arrivals)
    if "truth" not in got:
        base = server.get("/__residence")["p50_ms"]
        got["truth"] = {"p99": server.analytic_ms(0.99) + base, "p999": server.analytic_ms(0.999) + base,
                        "how": "analytic"}
    if arrivals == "even" and shutil.which("oha"):
        got["oha"] = oha(server.url, rate, args.duration)
    return got


def within(h, t):
    return abs(h - t) <= 0.02 * t + 0.5


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--arrivals", nargs="+", default=["even", "poisson"])
    ap.add_argument("--pauses", nargs="+", default=[f"{p}/{e}" for p, e in PAUSES],
                    help="PAUSE_MS/EVERY_MS patterns (0/0: none)")
    ap.add_argument("--truth-max", type=int, default=24000,
                    help="most requests in a one-connection-per-request truth run")
    args = ap.parse_args()
    for tool in ("hammer", "pause-server", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not on PATH")
    rows = []
    for pattern in args.pauses:
        pause, every = (int(x) for x in pattern.split("/"))
        server = PauseServer(pause, every)
        try:
            for rate in args.rates:
                for arrivals in args.arrivals:
                    rounds = []
                    for i in range(args.rounds):
                        g = cell(server, rate, arrivals, args)
                        rounds.append(g)
                        print(f"  round {i + 1} {rate:>6}/s pause {pattern:>8} {arrivals:8}"
                              + "".join(f"  {k} {v['p99']:6.2f}/{v['p999']:6.2f}" for k, v in g.items()),
                              flush=True)
                    med = {}
                    for k in rounds[0]:
                        med[k] = {q: statistics.median(r[k][q] for r in rounds) for q in ("p99", "p999")}
                    med["lag"] = statistics.median(r["hammer"]["lag"] for r in rounds)
                    med["conns"] = statistics.median(r["hammer"]["conns"] for r in rounds)
                    med["how"] = rounds[0]["truth"]["how"]
                    rows.append((rate, pattern, arrivals, med))
        finally:
            server.stop()
    print(f"\nLatency p99 / p99.9 ms (pause-server on core 0, generator on core 1, {args.duration} s runs, "
          f"median of {args.rounds}); ok: hammer within 2% + 0.5 ms of truth at both, and no worse than oha")
    print(f"  {'rate':>6} {'pause/every':>11} {'arrivals':8} {'truth':>15} {'(how)':12} {'hammer':>15} "
          f"{'lag p99':>8} {'conns':>6} {'oha':>15}  verdict")
    for rate, pattern, arrivals, m in rows:
        t, h, o = m["truth"], m["hammer"], m.get("oha")
        ok = within(h["p99"], t["p99"]) and within(h["p999"], t["p999"])
        if o:
            ok = ok and abs(h["p99"] - t["p99"]) <= abs(o["p99"] - t["p99"]) + 0.1 \
                and abs(h["p999"] - t["p999"]) <= abs(o["p999"] - t["p999"]) + 0.1
        oha_s = f"{o['p99']:7.2f}/{o['p999']:7.2f}" if o else f"{'n/a':>15}"
        print(f"  {rate:>6} {pattern:>11} {arrivals:8} {t['p99']:7.2f}/{t['p999']:7.2f} {'(' + m['how'] + ')':12} "
              f"{h['p99']:7.2f}/{h['p999']:7.2f} {m['lag']:8.2f} {m['conns']:6.0f} {oha_s}  {'ok' if ok else 'MISS'}")


if __name__ == "__main__":
    main()
