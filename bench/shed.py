#!/usr/bin/env python3
"""mandelweb's render gate under closed and open loop overload.

mandelweb pinned to core 0, hammer to core 1 (on a machine with more cores,
set SERVER_CPUS / CLIENT_CPUS). For each hammer binary given (label=path;
its `hammer mandelweb` is the service measured):
  closed loop c = 1, 2, 4, 8, 16, 64 (hammer -c N -d 4s), each retrying at
  once: goodput (200s a second), 503s, hammer's p99 over every response,
  and the service's own share of admitted requests (200s) within 60 ms;
  then open loop at 1x, 2x, 5x the best closed-loop goodput.
Pass criteria (issue 27): goodput at every c >= 90% of the best; open loop
goodput >= 90% of capacity; admitted within 60 ms >= 99% (p99 < 60 ms).

Each binary is measured ROUNDS times (`--rounds 3`), the binaries taking
turns, and each figure printed is the median of its rounds (this VM moves
goodput by +-10% from one run to the next).

  bench/shed.py [--duration 4] [--rounds 3] [label=path/to/hammer ...] [-- extra mandelweb flags]
"""
import json
import os
import re
import statistics
import subprocess
import sys
import urllib.request

SERVER_CPUS = os.environ.get("SERVER_CPUS", "0")
CLIENT_CPUS = os.environ.get("CLIENT_CPUS", "1")
CONNECTIONS = [1, 2, 4, 8, 16, 64]
OPEN = [1, 2, 5]


def metrics(diag):
    with urllib.request.urlopen(f"http://{diag}/metrics", timeout=5) as r:
        return r.read().decode()


def admitted(diag):
    """The service's count of /mandelbrot 200s, and of those within 60 ms."""
    text = metrics(diag)
    count = within = 0.0
    for line in text.splitlines():
        if 'route="/mandelbrot"' not in line or 'status="200"' not in line:
            continue
        if line.startswith("http_request_duration_seconds_count{"):
            count += float(line.rsplit(" ", 1)[1])
        if line.startswith("http_request_duration_seconds_bucket{") and 'le="0.06"' in line:
            within += float(line.rsplit(" ", 1)[1])
    return count, within


def attack(hammer, url, args, duration):
    cmd = ["taskset", "-c", CLIENT_CPUS, hammer, "attack", "-q", "--format", "json",
           "-d", f"{duration}s", *args, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)}: {out.stderr}")
    return json.loads(out.stdout)


def step(hammer, url, diag, args, duration):
    before = admitted(diag)
    r = attack(hammer, url, args, duration)
    after = admitted(diag)
    codes = r.get("status_codes", {})
    ok = codes.get("200", 0)
    n = after[0] - before[0]
    return {
        "goodput": ok / r["duration_s"],
        "shed": codes.get("503", 0),
        "failed": r["failed"],
        "p99": r["latency_ms"]["p99"],
        "within": (after[1] - before[1]) / n if n else float("nan"),
    }


def measure(label, hammer, duration, extra):
    server = subprocess.Popen(
        ["taskset", "-c", SERVER_CPUS, hammer, "mandelweb", "--listen", "127.0.0.1:0",
         "--diag-listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = json.loads(server.stdout.readline())
        url = ready["listening"].rstrip("/") + "/mandelbrot"
        diag = re.sub(r"^http://|/$", "", ready["diagnostics"])
        attack(hammer, url, ["-c", "1"], 1)  # warm up
        rows = []
        for c in CONNECTIONS:
            s = step(hammer, url, diag, ["-c", str(c)], duration)
            rows.append((f"closed c={c}", s))
        best = max(s["goodput"] for _, s in rows)
        for k in OPEN:
            s = step(hammer, url, diag, ["-r", f"{k * best:.0f}"], duration)
            rows.append((f"open {k}x ({k * best:.0f}/s)", s))
        return best, rows
    finally:
        server.kill()
        server.wait()


def medians(rounds):
    """One row per step, each figure the median of its rounds."""
    rows = []
    for i, (name, _) in enumerate(rounds[0]):
        steps = [r[i][1] for r in rounds]
        row = {k: statistics.median(s[k] for s in steps) for k in ("goodput", "shed", "p99")}
        row["within"] = statistics.median(s["within"] for s in steps)
        row["other_errors"] = max(s["failed"] - s["shed"] for s in steps)
        # The open-loop rates follow each round's best: name the median's.
        rows.append((re.sub(r" \(.*\)$", "", name), row))
    return rows


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    duration, rounds = 4.0, 3
    while argv[:1] in (["--duration"], ["--rounds"]):
        if argv[0] == "--duration":
            duration = float(argv[1])
        else:
            rounds = int(argv[1])
        argv = argv[2:]
    binaries = [a.split("=", 1) for a in argv] or [["now", "target/release/hammer"]]
    print(f"mandelweb on cpu {SERVER_CPUS}, hammer on cpu {CLIENT_CPUS}, {duration:g} s a step, "
          f"medians of {rounds} rounds" + (f", mandelweb {' '.join(extra)}" if extra else ""))
    measured = {label: [] for label, _ in binaries}
    for r in range(rounds):
        for label, path in binaries:
            _, rows = measure(label, path, duration, extra)
            measured[label].append(rows)
            print(f"  round {r + 1}: {label} done", file=sys.stderr)
    failures = []
    for label, path in binaries:
        rows = medians(measured[label])
        best = max(s["goodput"] for name, s in rows if name.startswith("closed"))
        print(f"\n{label} ({path}): best closed-loop goodput {best:.1f} req/s")
        print(f"  {'step':<22}{'goodput/s':>10}{'of best':>9}{'503s':>9}{'p99 ms (all)':>14}"
              f"{'admitted <=60ms':>17}")
        for name, s in rows:
            share = s["goodput"] / best
            print(f"  {name:<22}{s['goodput']:>10.1f}{100 * share:>8.0f}%{s['shed']:>9.0f}"
                  f"{s['p99']:>14.1f}{100 * s['within']:>16.2f}%")
            if share < 0.9 or not s["within"] >= 0.99 or s["other_errors"] > 0:
                failures.append(f"{label} {name}")
    print("\nbelow 90% of the best goodput, or admitted p99 over 60 ms, or errors other than 503: "
          + (", ".join(failures) if failures else "none"))


if __name__ == "__main__":
    main()
