"""Whole-process cost of the running daemon: CPU share of one core and RSS, per GPU count and interval.

Every configuration runs at the same time as its own daemon (``bench/daemon.py``, the real CLI
with the hgx-b200 model widened to N GPUs), scraped every ``--scrape-interval`` seconds the way
Prometheus does (OpenMetrics, gzip). After a warm-up, CPU (utime + stime from /proc/PID/stat) is
read at the start and end of the window; RSS is sampled every second (VmRSS; VmHWM is the peak).
CPU time is the process's own, so daemons running side by side do not inflate each other's
figure, though a loaded machine still slows each poll's wall time.

    python bench/process.py --gpus 8 --intervals 10 1 --window 120 --out bench/results/process.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class Daemon:
    def __init__(self, gpus: int, interval: float, fixed: bool) -> None:
        self.gpus, self.interval, self.fixed = gpus, interval, fixed
        self.port = free_port()
        profile = "hgx-b200" if gpus == 8 else f"hgx-b200-x{gpus}"
        env = {**os.environ, "BLACKWELL_EXPORTER_SOURCES__SIMULATED__INTERVAL": str(interval),
               "BLACKWELL_EXPORTER_SOURCES__SIMULATED__TIMEOUT": str(min(interval, 5.0))}
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "daemon.py"), "--gpus", str(gpus),
             *(["--fix-poll-race"] if fixed else []), "run", "--simulate", profile,
             "--listen", f"127.0.0.1:{self.port}", "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.rss: list[int] = []
        self.scrapes = 0
        self.scrape_errors = 0

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""
        except OSError:
            return 0, b""

    def wait_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self.get("/readyz")[0] == 200:
                return True
            if self.proc.poll() is not None:
                raise SystemExit(f"daemon for {self.gpus} GPUs exited: {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.2)
        return False  # measured all the same; the row says so

    def scrape(self) -> None:
        status, _ = self.get("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0",
                                          "Accept-Encoding": "gzip"})
        self.scrapes += 1
        self.scrape_errors += status != 200

    def poll_errors(self) -> dict[str, float]:
        """The simulated source's blackwell_exporter_source_errors_total, by reason."""
        _, body = self.get("/metrics")
        prefix = 'blackwell_exporter_source_errors_total{source="simulated",reason="'
        return {line[len(prefix):].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in body.decode().splitlines() if line.startswith(prefix)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[8])
    parser.add_argument("--intervals", type=float, nargs="+", default=[10.0, 1.0])
    parser.add_argument("--window", type=float, default=120.0, help="seconds measured, after the warm-up")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    parser.add_argument("--fix-poll-race", choices=("no", "yes", "both"), default="no",
                        help="run the daemons with the scheduler fix of bench/scheduler_race.py (both: side by side)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    fixes = {"no": [False], "yes": [True], "both": [False, True]}[args.fix_poll_race]
    daemons = [Daemon(g, i, f) for g, i, f in itertools.product(args.gpus, args.intervals, fixes)]
    try:
        deadline = time.monotonic() + 60
        ready = {d: d.wait_ready(deadline) for d in daemons}
        time.sleep(args.warmup)
        start_wall = time.monotonic()
        start_cpu = {d: cpu_seconds(d.proc.pid) for d in daemons}
        errors_before = {d: d.poll_errors() for d in daemons}
        next_scrape = start_wall
        stop = start_wall + args.window
        while (now := time.monotonic()) < stop:
            for daemon in daemons:
                daemon.rss.append(memory_kib(daemon.proc.pid)["VmRSS"])
            if now >= next_scrape:
                threads = [threading.Thread(target=d.scrape) for d in daemons]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                next_scrape += args.scrape_interval
            time.sleep(1.0)
        wall = time.monotonic() - start_wall
        end_cpu = {d: cpu_seconds(d.proc.pid) for d in daemons}
        rows = []
        for d in daemons:
            memory = memory_kib(d.proc.pid)
            errors = {reason: n - errors_before[d].get(reason, 0.0) for reason, n in d.poll_errors().items()}
            rows.append({
                "gpus": d.gpus, "interval_s": d.interval, "poll_race_fixed": d.fixed,
                "cpu_percent_of_one_core": (end_cpu[d] - start_cpu[d]) / wall * 100,
                "cpu_ms_per_poll": (end_cpu[d] - start_cpu[d]) / (wall / d.interval) * 1e3,
                "rss_mib_median": sorted(d.rss)[len(d.rss) // 2] / 1024, "rss_mib_max": max(d.rss) / 1024,
                "vmhwm_mib": memory["VmHWM"] / 1024, "scrapes": d.scrapes, "scrape_errors": d.scrape_errors,
                "poll_errors_in_window": {reason: n for reason, n in errors.items() if n},
                "ready_within_60s": ready[d], "ready_at_end": d.get("/readyz")[0] == 200,
            })
    finally:
        for daemon in daemons:
            daemon.proc.terminate()
        for daemon in daemons:
            daemon.proc.wait(10)

    result = {"command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]), "window_s": wall, "rows": rows,
              "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
              "loadavg_1m": os.getloadavg()[0]}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(daemons)} daemons side by side, {wall:.0f} s window, scraped every {args.scrape_interval:g} s, "
          f"load {result['loadavg_1m']:.2f}")
    print(f"  {'gpus':>4} {'interval':>8} {'fix':>4} {'cpu %':>7} {'ms/poll':>8} {'rss MiB':>8} {'max':>6} {'hwm':>6}  notes")
    for r in rows:
        notes = ", ".join([*(["not ready within 60 s"] if not r["ready_within_60s"] else []),
                           *(["not ready at the end"] if not r["ready_at_end"] else []),
                           *(f"{n:g} poll errors ({reason})" for reason, n in r["poll_errors_in_window"].items())])
        print(f"  {r['gpus']:>4} {r['interval_s']:>7g}s {'yes' if r['poll_race_fixed'] else 'no':>4} "
              f"{r['cpu_percent_of_one_core']:6.2f}% "
              f"{r['cpu_ms_per_poll']:8.1f} {r['rss_mib_median']:8.1f} {r['rss_mib_max']:6.1f} "
              f"{r['vmhwm_mib']:6.1f}  {notes}")


if __name__ == "__main__":
    main()
