"""Scrape latency of running daemons while they poll: what a scrape that meets a poll costs.

Daemons (bench/daemon.py, the real CLI) poll the hgx-b200 simulation every ``--interval`` seconds
and are scraped in turn (OpenMetrics, gzip, new connection each) ``--rate`` times a second each,
for ``--seconds``. A poll holds the GIL for its CPU time, handed over every switch interval, so a
scrape that arrives during a poll waits; the variants compare CPython's default 5 ms switch
interval with a shorter one, and the scheduler as it is with the poll-race fix.

    python bench/live.py --interval 1 --seconds 60 --rate 20 --out bench/results/live.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.process import free_port  # noqa: E402
from bench.scrape import percentile, scrape_once  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {"as is": [], "switch 1 ms": ["--switch-interval", "0.001"],
            "poll-race fix": ["--fix-poll-race"], "both": ["--fix-poll-race", "--switch-interval", "0.001"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0, help="scrapes per second per daemon")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    profile = "hgx-b200" if args.gpus == 8 else f"hgx-b200-x{args.gpus}"
    env = {**os.environ, "BLACKWELL_EXPORTER_SOURCES__SIMULATED__INTERVAL": str(args.interval),
           "BLACKWELL_EXPORTER_SOURCES__SIMULATED__TIMEOUT": str(min(args.interval, 5.0))}
    ports, procs = {}, {}
    for name, flags in VARIANTS.items():
        ports[name] = free_port()
        procs[name] = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "daemon.py"), "--gpus", str(args.gpus), *flags, "run",
             "--simulate", profile, "--listen", f"127.0.0.1:{ports[name]}", "--log-level", "error"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        deadline = time.monotonic() + 60
        for port in ports.values():
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                time.sleep(0.2)
        time.sleep(3 * args.interval)
        stop = time.monotonic() + args.seconds
        period = 1.0 / args.rate
        next_round = time.monotonic()
        while time.monotonic() < stop:
            for name, port in ports.items():
                times[name].append(scrape_once(port, gzipped=True, openmetrics=True)[0])
            next_round += period
            time.sleep(max(0.0, next_round - time.monotonic()))
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(10)

    rows = {name: {"scrapes": len(t), "p50_ms": percentile(t, 0.5) * 1e3, "p99_ms": percentile(t, 0.99) * 1e3,
                   "p999_ms": percentile(t, 0.999) * 1e3, "max_ms": max(t) * 1e3} for name, t in times.items()}
    result = {"command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]), "gpus": args.gpus,
              "interval_s": args.interval, "rows": rows,
              "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
              "loadavg_1m": os.getloadavg()[0]}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.gpus} GPUs polled every {args.interval:g} s, scraped {args.rate:g}/s each for {args.seconds:g} s, "
          f"in turn; load {result['loadavg_1m']:.2f}")
    for name, r in rows.items():
        print(f"  {name:14} {r['scrapes']:5} scrapes  p50 {r['p50_ms']:6.3f}  p99 {r['p99_ms']:7.3f}  "
              f"p99.9 {r['p999_ms']:7.3f}  max {r['max_ms']:7.3f} ms")


if __name__ == "__main__":
    main()
