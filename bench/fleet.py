"""Fleet scale: N NVL72 racks (18 tray targets each) scraped by one real Prometheus, stepped until Prometheus's limit.

Per detail tier, in one run:

1. **Capture.** 18 real ``--simulate nvl72-tray`` exporters (rack-0) start; each tray's body is captured
   twice, ``--capture-gap`` apart (the stand-ins' source). One more real exporter, of another rack, is
   captured to check the stand-ins' rack relabelling.
2. **Cross-check, side by side.** bench/fleet_standin.py serves rack-0 from the captures (one process, one
   port per tray, counters advancing); two fresh Prometheus servers, one scraping the real rack and one the
   stand-in rack, are measured over the same window, so the rest of the machine loads both alike. Head
   series, series per metric name and rule evaluation time are compared (ratios in the results).
3. **Stepping.** Racks are added to that Prometheus (config reload), doubling: 1, 2, 4, 8, ... racks,
   until rule evaluation reaches 1 s (in two windows running: the machine is shared), Prometheus RSS passes
   the memory limit (or the next doubling would), the scrape stops keeping up, or the tier's rack or time
   limit is reached. The reason is recorded.

Each step reads Prometheus's own /metrics over a measurement window after a settle time:

- active series: ``prometheus_tsdb_head_series`` (scraped series plus the recording rules' outputs)
- samples ingested per second: the increase of ``prometheus_tsdb_head_samples_appended_total`` over the window
- Prometheus RSS: ``process_resident_memory_bytes``
- rule evaluation time per cycle: the groups' evaluation seconds summed over one cycle (the CPU cost of a
  cycle, an upper bound on its wall time): the window's mean from the increase of
  ``prometheus_rule_group_duration_seconds_sum`` and ``_count`` (times the number of groups), and the most
  the sum of ``prometheus_rule_group_last_duration_seconds`` showed, read three times a cycle
- keeping up: every target up, the 0.99 quantile of ``prometheus_target_interval_length_seconds`` within
  25% of the interval, and the longest ``scrape_duration_seconds`` under 90% of the scrape timeout
- the CPU Prometheus and the targets used (cores), and the load average: the machine may be shared.

The mixin's generated rule files (alerts/*.yaml, unscaled) are loaded; no Alertmanager is needed.

    python bench/fleet.py                                                          # the committed run
    python bench/fleet.py --tiers basic --max-racks 2 --scrape-interval 5 --settle 10 --window 10 --capture-gap 10  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fleet_report import memory_limit, summarize, write_results  # noqa: E402
from bench.fleet_standin import for_rack, sample_name, series_set  # noqa: E402
from exporter.mixin.config import MixinConfig  # noqa: E402
from exporter.sources.simulated.profiles import NVL72_TRAYS  # noqa: E402
from exporter.stack import Service, StackError, free_port, http_get, http_post, start_prometheus  # noqa: E402

RULE_EVALUATION_LIMIT_SECONDS = 1.0
CAPTURED_RACK = "rack-0"
# The real exporter that checks the stand-ins' relabelling to another rack: a rack the stepping serves.
IDENTITY_RACK, IDENTITY_TRAY = "rack-5", 3
INTERVAL_SLACK = 1.25
SCRAPE_TIMEOUT_SHARE = 0.9


@dataclass
class Step:
    """What one Prometheus showed with ``racks`` racks of ``targets_kind`` scraped, over one measurement window."""

    tier: str
    targets_kind: str
    racks: int
    targets: int
    targets_up: int
    head_series: int
    head_series_window_start: int
    samples_per_second: float
    rss_bytes: int
    rule_evaluation_seconds: float
    rule_evaluation_seconds_max: float
    rule_groups: int
    slowest_rule_groups: dict[str, float]
    scrape_interval_p99_seconds: float
    scrape_duration_max_seconds: float
    prometheus_cpu_cores: float
    targets_cpu_cores: float
    load_average_1m: float
    window_seconds: float
    forwarded_series: int


class Targets:
    """The processes serving one Prometheus's targets (real exporters or stand-ins) and their addresses."""

    def __init__(self) -> None:
        self.services: list[Service] = []
        self.addresses: list[str] = []

    def cpu_seconds(self) -> float:
        """User plus system CPU of every target process so far (from /proc)."""
        ticks = os.sysconf("SC_CLK_TCK")
        seconds = 0.0
        for service in self.services:
            try:
                fields = Path(f"/proc/{service.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            seconds += (int(fields[11]) + int(fields[12])) / ticks
        return seconds

    def stop(self) -> None:
        for service in self.services:
            service.stop()


def launch_tray(directory: Path, rack: str, tray: int, tier: str) -> Service:
    """One real tray exporter, started as tests/e2e/rack_harness.py starts it, at the given detail tier."""
    name = f"{rack}-tray-{tray:02d}"
    directory = directory / name
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [sys.executable, "-m", "exporter", "run", "--simulate", "nvl72-tray", "--detail", tier,
            "--listen", f"127.0.0.1:{port}"]
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "BLACKWELL_EXPORTER_SOURCES__SIMULATED__TRAY": str(tray),
           "BLACKWELL_EXPORTER_SOURCES__SIMULATED__RACK": rack}
    log_path = directory / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=directory, env=env, start_new_session=True)
    return Service(name, port, process, log_path)


def start_standins(directory: Path, captures: Path, racks: list[str], targets: Targets) -> None:
    """One bench/fleet_standin.py process serving every tray of ``racks``; its addresses join ``targets``."""
    directory.mkdir(parents=True, exist_ok=True)
    ready = directory / "ready.json"
    log_path = directory / "standin.log"
    argv = [sys.executable, str(REPO / "bench" / "fleet_standin.py"), "--captures", str(captures),
            "--ready", str(ready), *[argument for rack in racks for argument in ("--rack", rack)]]
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    service = Service(f"standin-{racks[0]}", 0, process, log_path)
    targets.services.append(service)
    deadline = time.monotonic() + 120.0
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise StackError(f"stand-in for {racks[0]}.. did not start:\n{service.log_tail()}")
        time.sleep(0.1)
    targets.addresses += [f"127.0.0.1:{tray['port']}" for tray in json.loads(ready.read_text())]


def fleet_config(targets: list[str], rule_files: list[Path], interval: float) -> dict:
    return {
        "global": {"scrape_interval": f"{interval:g}s", "scrape_timeout": f"{scrape_timeout(interval):g}s",
                   "evaluation_interval": f"{interval:g}s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": MixinConfig().job, "static_configs": [{"targets": targets}]}],
    }


def scrape_timeout(interval: float) -> float:
    return min(interval, 10.0)


def reload(prometheus: Service, directory: Path, config: dict) -> None:
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    status, body = http_post(f"{prometheus.url}/-/reload", {})
    if status != 200:
        raise RuntimeError(f"Prometheus reload failed ({status}): {body[:300]!r}")


def own_metrics(prometheus: Service) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus's /metrics: sample name -> [(labels, value)]."""
    status, body = http_get(f"{prometheus.url}/metrics", timeout=10.0)
    if status != 200:
        raise RuntimeError(f"Prometheus /metrics answered {status}")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(value for found, value in samples.get(name, []) if labels.items() <= found.items())


def query(prometheus: Service, expression: str) -> list[dict]:
    status, body = http_get(f"{prometheus.url}/api/v1/query?query={urllib.parse.quote(expression)}", timeout=60.0)
    return json.loads(body)["data"]["result"] if status == 200 else []


def scalar(prometheus: Service, expression: str) -> float:
    result = query(prometheus, expression)
    return float(result[0]["value"][1]) if result else 0.0


def forwarded_selector() -> str:
    """deploy/fleet/rack-prometheus.yml's write_relabel_configs (keep, then drop) as one PromQL selector."""
    relabels = yaml.safe_load((REPO / "deploy" / "fleet" / "rack-prometheus.yml").read_text())["remote_write"][0][
        "write_relabel_configs"]
    matchers = [f'__name__{"=~" if relabel["action"] == "keep" else "!~"}{json.dumps(relabel["regex"])}'
                for relabel in relabels]
    return "{" + ", ".join(matchers) + "}"


def series_by_name(prometheus: Service) -> dict[str, int]:
    """Head series per metric name (scraped and recorded), for comparing two Prometheus servers."""
    return {row["metric"].get("__name__", ""): int(float(row["value"][1]))
            for row in query(prometheus, 'count by (__name__) ({__name__=~".+"})')}


def targets_up(prometheus: Service) -> tuple[int, int]:
    status, body = http_get(f"{prometheus.url}/api/v1/targets?state=active", timeout=30.0)
    active = json.loads(body)["data"]["activeTargets"] if status == 200 else []
    return len(active), sum(1 for target in active if target["health"] == "up")


@dataclass
class Scraped:
    """One Prometheus under measurement, the processes serving its targets, and what they are."""

    prometheus: Service
    targets: Targets
    kind: str


def measure(servers: list[Scraped], tier: str, racks: int, args: argparse.Namespace, settle: float) -> list[Step]:
    """Wait ``settle`` for new targets' first scrapes, then read every server's counters across one window,
    side by side (the same moments, so the same load from the rest of the machine)."""
    time.sleep(settle)
    before = [own_metrics(server.prometheus) for server in servers]
    cpu_before = [server.targets.cpu_seconds() for server in servers]
    started = time.monotonic()
    evaluations: list[list[float]] = [[] for _ in servers]
    while time.monotonic() - started < args.window:
        time.sleep(min(args.scrape_interval / 3, args.window - (time.monotonic() - started)) or 0.01)
        for server, seen in zip(servers, evaluations, strict=True):
            seen.append(total(own_metrics(server.prometheus), "prometheus_rule_group_last_duration_seconds"))
    elapsed = time.monotonic() - started
    after = [own_metrics(server.prometheus) for server in servers]
    return [step(server, tier, racks, args, (early, late), elapsed, max(seen),
                 (server.targets.cpu_seconds() - cpu) / elapsed)
            for server, early, late, seen, cpu in zip(servers, before, after, evaluations, cpu_before, strict=True)]


def step(server: Scraped, tier: str, racks: int, args: argparse.Namespace, metrics: tuple[dict, dict],
         elapsed: float, evaluation_max: float, targets_cpu_cores: float) -> Step:
    """One server's Step from its /metrics at the window's start and end, and its API at the end."""
    before, after = metrics
    prometheus = server.prometheus

    def increase(name: str) -> float:
        return total(after, name) - total(before, name)

    count, up = targets_up(prometheus)
    job = MixinConfig().job
    groups = after.get("prometheus_rule_group_last_duration_seconds", [])
    evaluated = increase("prometheus_rule_group_duration_seconds_count")
    mean = increase("prometheus_rule_group_duration_seconds_sum") / evaluated * len(groups) if evaluated else 0.0
    slowest = sorted(groups, key=lambda group: -group[1])[:3]
    return Step(tier=tier, targets_kind=server.kind, racks=racks, targets=count, targets_up=up,
                head_series=int(total(after, "prometheus_tsdb_head_series")),
                head_series_window_start=int(total(before, "prometheus_tsdb_head_series")),
                samples_per_second=round(increase("prometheus_tsdb_head_samples_appended_total") / elapsed, 1),
                rss_bytes=int(total(after, "process_resident_memory_bytes")),
                rule_evaluation_seconds=round(mean, 4), rule_evaluation_seconds_max=round(evaluation_max, 4),
                rule_groups=len(groups),
                slowest_rule_groups={labels["rule_group"].rsplit(";", 1)[-1]: round(seconds, 4)
                                     for labels, seconds in slowest},
                scrape_interval_p99_seconds=round(total(after, "prometheus_target_interval_length_seconds",
                                                        interval=f"{args.scrape_interval:g}s", quantile="0.99"), 3),
                scrape_duration_max_seconds=round(scalar(prometheus, f'max(scrape_duration_seconds{{job="{job}"}})'), 4),
                prometheus_cpu_cores=round(increase("process_cpu_seconds_total") / elapsed, 3),
                targets_cpu_cores=round(targets_cpu_cores, 3), load_average_1m=round(os.getloadavg()[0], 2),
                window_seconds=round(elapsed, 1),
                forwarded_series=int(scalar(prometheus, f"count({forwarded_selector()})")))


def capture(services: list[Service]) -> tuple[list[str], float]:
    """Every service's /metrics body (uncompressed) and the unix time the capture was taken at (its midpoint)."""
    started = time.time()
    bodies = []
    for service in services:
        status, body = http_get(f"{service.url}/metrics", timeout=30.0)
        if status != 200:
            raise StackError(f"{service.name} /metrics answered {status}")
        bodies.append(body.decode())
    return bodies, (started + time.time()) / 2


def write_captures(directory: Path, first: tuple[list[str], float], second: tuple[list[str], float]) -> None:
    """The manifest.json and bodies bench/fleet_standin.py reads: two bodies per tray of CAPTURED_RACK."""
    directory.mkdir(parents=True, exist_ok=True)
    trays = {}
    for tray, (early, late) in enumerate(zip(first[0], second[0], strict=True)):
        names = [f"tray-{tray:02d}.first.prom", f"tray-{tray:02d}.second.prom"]
        (directory / names[0]).write_text(early)
        (directory / names[1]).write_text(late)
        trays[str(tray)] = names
    (directory / "manifest.json").write_text(json.dumps({
        "rack": CAPTURED_RACK, "seconds_between": second[1] - first[1], "captured_at": second[1], "trays": trays}))


def capture_real_rack(directory: Path, tier: str, args: argparse.Namespace, real: Targets) -> dict:
    """Start the real rack (into ``real``) and one real exporter of IDENTITY_RACK; capture every tray twice,
    ``args.capture_gap`` apart, for the stand-ins; return the identity check of the other rack's exporter."""
    real.services = [launch_tray(directory / "real", CAPTURED_RACK, tray, tier) for tray in range(NVL72_TRAYS)]
    other = launch_tray(directory / "real", IDENTITY_RACK, IDENTITY_TRAY, tier)
    try:
        for service in [*real.services, other]:
            service.wait_ready("/readyz", timeout=300.0)
        real.addresses = [f"127.0.0.1:{service.port}" for service in real.services]
        first = capture(real.services)
        time.sleep(args.capture_gap)
        second = capture(real.services)
        write_captures(directory / "captures", first, second)
        varying = sorted({sample_name(series) for early, late in zip(first[0], second[0], strict=True)
                          for series in series_set(early) ^ series_set(late)})
        return identity_check(capture([other])[0][0], second[0][IDENTITY_TRAY], varying)
    finally:
        other.stop()


def cross_check(directory: Path, tier: str, args: argparse.Namespace, rule_files: list[Path],
                standins: Targets) -> tuple[Service, Step, Step, dict]:
    """The real rack and the stand-in rack-0, each scraped by a fresh Prometheus, measured side by side.

    Returns the stand-in rack's Prometheus (still running: the stepping goes on with it), both Steps, and
    the comparison of series per metric name and the other rack's identity check."""
    real = Targets()
    servers: list[Scraped] = []
    try:
        identity = capture_real_rack(directory, tier, args, real)
        start_standins(directory / "standin-0", directory / "captures", [CAPTURED_RACK], standins)
        for name, targets, kind in (("real", real, "real exporters"), ("standin", standins, "stand-in")):
            config = fleet_config(targets.addresses, rule_files, args.scrape_interval)
            servers.append(Scraped(start_prometheus(directory / f"prometheus-{name}", config), targets, kind))
        real_step, standin_step = measure(servers, tier, 1, args, args.settle)
        real_names, standin_names = (series_by_name(server.prometheus) for server in servers)
    except BaseException:
        for server in servers[1:]:
            server.prometheus.stop()
        raise
    finally:
        if servers:
            servers[0].prometheus.stop()
        real.stop()
    differences = {name: [real_names.get(name, 0), standin_names.get(name, 0)]
                   for name in sorted(set(real_names) | set(standin_names))
                   if real_names.get(name, 0) != standin_names.get(name, 0)}
    return servers[1].prometheus, real_step, standin_step, {"identity": identity,
                                                            "series_by_name_differences": differences}


def identity_check(real_body: str, captured_body: str, varying: list[str]) -> dict:
    """A real exporter of IDENTITY_RACK against the stand-in body for it (captured rack relabelled): same series,
    outside the ``varying`` families whose series come and go with time in a real tray (its two captures differ)?"""
    def steady(body: str) -> set[str]:
        return {series for series in series_set(body) if sample_name(series) not in varying}

    real = steady(real_body)
    standin = steady(for_rack(captured_body, IDENTITY_TRAY, CAPTURED_RACK, IDENTITY_RACK))
    return {"rack": IDENTITY_RACK, "tray": IDENTITY_TRAY, "series_compared": len(real), "same_series": real == standin,
            "only_real": sorted(real - standin)[:5], "only_standin": sorted(standin - real)[:5],
            "families_varying_with_time": varying}


def limit_reached(step: Step, args: argparse.Namespace) -> str | None:
    """The limit ``step`` reached (None: it held every one): rule evaluation, RSS, scrape keeping up."""
    if step.rule_evaluation_seconds >= RULE_EVALUATION_LIMIT_SECONDS:
        return f"rule evaluation reached {RULE_EVALUATION_LIMIT_SECONDS:g} s at {step.racks} racks"
    limit = args.memory_limit_bytes
    if step.rss_bytes >= limit:
        return f"Prometheus RSS {step.rss_bytes / 2**20:,.0f} MiB passed the limit of {limit / 2**20:,.0f} MiB"
    slow = []
    if step.targets_up < step.targets:
        slow.append(f"{step.targets - step.targets_up} of {step.targets} targets down")
    if step.scrape_interval_p99_seconds > INTERVAL_SLACK * args.scrape_interval:
        slow.append(f"0.99 scrape interval {step.scrape_interval_p99_seconds:g} s")
    if step.scrape_duration_max_seconds > SCRAPE_TIMEOUT_SHARE * scrape_timeout(args.scrape_interval):
        slow.append(f"longest scrape {step.scrape_duration_max_seconds:g} s")
    if slow:
        return f"the scrape stopped keeping up at {step.racks} racks ({', '.join(slow)})"
    return None


def stop_reason(step: Step, args: argparse.Namespace, next_racks: int, started: float) -> str | None:
    """Why stepping stops after ``step`` (None: go on to ``next_racks``): a limit reached, the next step's
    predicted RSS, the run's rack limit or the tier's time budget."""
    if reached := limit_reached(step, args):
        return reached
    limit = args.memory_limit_bytes
    predicted = step.rss_bytes * next_racks / step.racks
    if predicted > limit:
        return (f"the next step ({next_racks} racks) would pass the RSS limit of {limit / 2**20:,.0f} MiB "
                f"(predicted {predicted / 2**20:,.0f} MiB)")
    if next_racks > args.max_racks:
        return f"{args.max_racks} racks (the run's limit) reached"
    if time.monotonic() - started > args.tier_budget:
        return f"the tier's time budget of {args.tier_budget:g} s spent"
    return None


def measure_standins(server: Scraped, tier: str, racks: int, args: argparse.Namespace) -> list[Step]:
    """One window; when its rule evaluation reached the limit, one more window right after it (the machine is
    shared: one burst of other work should not end the stepping by itself). Stepping goes by the last window."""
    steps = measure([server], tier, racks, args, args.settle)
    if steps[-1].rule_evaluation_seconds >= RULE_EVALUATION_LIMIT_SECONDS:
        repeat = measure([server], tier, racks, args, 0.0)[0]
        repeat.targets_kind = "stand-in, repeated window"
        steps.append(repeat)
    return steps


def run_tier(directory: Path, tier: str, args: argparse.Namespace, rule_files: list[Path]) -> dict:
    """One tier: the side-by-side cross-check, then doubling stand-in racks until a limit. Steps and why it stopped."""
    directory = directory / tier
    started = time.monotonic()
    standins = Targets()
    prometheus: Service | None = None
    try:
        prometheus, real, first, check = cross_check(directory, tier, args, rule_files, standins)
        print(json.dumps(asdict(real)), flush=True)
        print(json.dumps(asdict(first)), flush=True)
        steps, racks = [first], 1
        while not (stopped := stop_reason(steps[-1], args, 2 * racks, started)):
            start_standins(directory / f"standin-{racks}", directory / "captures",
                           [f"rack-{rack}" for rack in range(racks, 2 * racks)], standins)
            racks *= 2
            reload(prometheus, directory / "prometheus-standin",
                   fleet_config(standins.addresses, rule_files, args.scrape_interval))
            for measured in measure_standins(Scraped(prometheus, standins, "stand-in"), tier, racks, args):
                steps.append(measured)
                print(json.dumps(asdict(measured)), flush=True)
    finally:
        for service in [*([prometheus] if prometheus else []), *standins.services]:
            service.stop()
    return {"real": real, "steps": steps, "stopped": stopped, **check}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiers", default="standard,basic,full", help="detail tiers, comma-separated, in run order")
    parser.add_argument("--max-racks", type=int, default=256, help="stop stepping past this many racks")
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds after adding racks (default 2 intervals: rate rules need two samples)")
    parser.add_argument("--window", type=float, default=None, help="measurement seconds (default 2 intervals)")
    parser.add_argument("--capture-gap", type=float, default=None,
                        help="seconds between the two captures of the real rack (default 2 intervals)")
    parser.add_argument("--tier-budget", type=float, default=900.0, help="stop stepping after this many seconds")
    parser.add_argument("--memory-share", type=float, default=0.25,
                        help="Prometheus RSS limit as a share of this machine's memory (also at most half of "
                             "what is available at the start)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fleet")
    args = parser.parse_args()
    args.settle = 2 * args.scrape_interval if args.settle is None else args.settle
    args.window = 2 * args.scrape_interval if args.window is None else args.window
    args.capture_gap = 2 * args.scrape_interval if args.capture_gap is None else args.capture_gap
    # Stopped with SIGTERM (or by a background shell's kill), still stop every process it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.memory_limit_bytes, memory = memory_limit(args.memory_share)
    rule_files = sorted((REPO / "alerts").glob("*.yaml"))
    version = subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    result: dict = {"command": "python " + " ".join(["bench/fleet.py", *sys.argv[1:]]),
                    "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                    "machine": f"{os.cpu_count()} CPUs, {memory['total_mib']:,} MiB memory "
                               f"({memory['available_mib']:,} MiB available at the start), Python "
                               f"{sys.version.split()[0]}; shared with other engineers' work during the run",
                    "memory_limit_mib": args.memory_limit_bytes // 2**20,
                    "prometheus": version.removeprefix("prometheus, version "),
                    "scrape_interval": args.scrape_interval, "settle_seconds": args.settle,
                    "window_seconds": args.window,
                    "rule_files": [str(path.relative_to(REPO)) for path in rule_files],
                    "steps": [], "tiers": {}}
    with tempfile.TemporaryDirectory(prefix="fleet-") as directory:
        for tier in args.tiers.split(","):
            measured = run_tier(Path(directory), tier, args, rule_files)
            result["steps"] += [asdict(step) for step in (measured["real"], *measured["steps"])]
            result["tiers"][tier] = summarize(measured, lambda step: limit_reached(step, args) is None,
                                               args.scrape_interval)
            result["utc_end"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            write_results(result, args.out)  # after each tier, so a run cut short keeps what it measured
    print((args.out.with_suffix(".md")).read_text())


if __name__ == "__main__":
    main()
