"""Fleet scale: N simulated NVL72 racks (18 tray exporters each) scraped by one real Prometheus.

Per detail tier, racks are added one at a time to one running Prometheus (config reload), and after
each step Prometheus's own /metrics is read over a measurement window:

- active series: ``prometheus_tsdb_head_series`` (the scraped series plus the recording rules' outputs) at
  the end of the window (also at its start, to show it had settled)
- samples ingested per second: the increase of ``prometheus_tsdb_head_samples_appended_total`` over
  the window divided by its length (scrapes and rule outputs both append)
- Prometheus RSS: ``process_resident_memory_bytes``
- rule evaluation time per cycle: the sum over groups of ``prometheus_rule_group_last_duration_seconds``
  (the groups run side by side, so this is the CPU cost of one cycle, an upper bound on its wall time)

The mixin's generated rule files (alerts/*.yaml, unscaled) are loaded; no Alertmanager is needed
to evaluate alerts. Stepping stops at ``--max-racks``, when rule evaluation reaches 1 s, or when the
tier's time budget is spent. On a 2-CPU box the 18 N exporter processes, not Prometheus, are what
limits N: each tray is a Python interpreter polling its simulated source.

    python bench/fleet.py --tiers standard:3,basic:2,full:2
    python bench/fleet.py --tiers standard:1 --scrape-interval 5 --settle 8 --window 10   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
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

from exporter.mixin.config import MixinConfig  # noqa: E402
from exporter.sources.simulated.profiles import NVL72_TRAYS  # noqa: E402
from exporter.stack import Service, free_port, http_get, http_post, start_prometheus  # noqa: E402

RULE_EVALUATION_LIMIT_SECONDS = 1.0
FLEET_RACKS = 1000
# "A few million active series per server" (Prometheus's own sizing guidance); 2 M is the low end.
SERIES_PER_SERVER = 2_000_000


@dataclass
class Step:
    """What one Prometheus showed with ``racks`` racks scraped, over one measurement window."""

    tier: str
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
    window_seconds: float
    forwarded_series: int


def launch_tray(directory: Path, rack: str, tray: int, tier: str) -> Service:
    """One tray exporter, started as tests/e2e/rack_harness.py starts it, at the given detail tier."""
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


def start_racks(directory: Path, first: int, count: int, tier: str) -> list[Service]:
    """Racks ``first .. first+count-1``, all trays launched side by side, then waited for."""
    trays = [launch_tray(directory, f"rack-{rack}", tray, tier)
             for rack in range(first, first + count) for tray in range(NVL72_TRAYS)]
    for service in trays:
        service.wait_ready("/readyz", timeout=180.0)
    return trays


def fleet_config(targets: list[str], rule_files: list[Path], interval: float) -> dict:
    return {
        "global": {"scrape_interval": f"{interval:g}s", "scrape_timeout": f"{min(interval, 10.0):g}s",
                   "evaluation_interval": f"{interval:g}s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": MixinConfig().job, "static_configs": [{"targets": targets}]}],
    }


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


def total(samples: dict, name: str) -> float:
    return sum(value for _, value in samples.get(name, []))


def forwarded_selector() -> str:
    """deploy/fleet/rack-prometheus.yml's write_relabel_configs (keep, then drop) as one PromQL selector."""
    relabels = yaml.safe_load((REPO / "deploy" / "fleet" / "rack-prometheus.yml").read_text())["remote_write"][0][
        "write_relabel_configs"]
    matchers = [f'__name__{"=~" if relabel["action"] == "keep" else "!~"}{json.dumps(relabel["regex"])}'
                for relabel in relabels]
    return "{" + ", ".join(matchers) + "}"


def forwarded_series(prometheus: Service) -> int:
    """How many of the head's series the rack Prometheus of deploy/fleet would remote_write."""
    query = urllib.parse.quote(f"count({forwarded_selector()})")
    status, body = http_get(f"{prometheus.url}/api/v1/query?query={query}", timeout=30.0)
    result = json.loads(body)["data"]["result"] if status == 200 else []
    return int(float(result[0]["value"][1])) if result else 0


def targets_up(prometheus: Service) -> tuple[int, int]:
    status, body = http_get(f"{prometheus.url}/api/v1/targets?state=active", timeout=10.0)
    active = json.loads(body)["data"]["activeTargets"] if status == 200 else []
    return len(active), sum(1 for target in active if target["health"] == "up")


def measure(prometheus: Service, tier: str, racks: int, interval: float, settle: float, window: float) -> Step:
    """Wait ``settle`` for the new targets' first scrapes, then read counters across ``window``."""
    time.sleep(settle)
    before, started = own_metrics(prometheus), time.monotonic()
    evaluations: list[float] = []
    while time.monotonic() - started < window:
        time.sleep(min(interval, window - (time.monotonic() - started)) or 0.01)
        evaluations.append(total(own_metrics(prometheus), "prometheus_rule_group_last_duration_seconds"))
    after, elapsed = own_metrics(prometheus), time.monotonic() - started
    appended = (total(after, "prometheus_tsdb_head_samples_appended_total")
                - total(before, "prometheus_tsdb_head_samples_appended_total"))
    targets, up = targets_up(prometheus)
    return Step(tier=tier, racks=racks, targets=targets, targets_up=up,
                head_series=int(total(after, "prometheus_tsdb_head_series")),
                head_series_window_start=int(total(before, "prometheus_tsdb_head_series")),
                samples_per_second=round(appended / elapsed, 1),
                rss_bytes=int(total(after, "process_resident_memory_bytes")),
                rule_evaluation_seconds=round(evaluations[-1], 4),
                rule_evaluation_seconds_max=round(max(evaluations), 4),
                rule_groups=len(after.get("prometheus_rule_group_last_duration_seconds", [])),
                window_seconds=round(elapsed, 1), forwarded_series=forwarded_series(prometheus))


def run_tier(directory: Path, tier: str, max_racks: int, args: argparse.Namespace,
             rule_files: list[Path]) -> tuple[list[Step], str]:
    """Add racks one by one to one Prometheus until a limit is hit; one Step per rack count, and why it stopped."""
    directory = directory / tier
    exporters: list[Service] = []
    prometheus: Service | None = None
    steps: list[Step] = []
    stopped = f"{max_racks} racks (the run's limit for this tier) reached"
    started = time.monotonic()
    try:
        for racks in range(1, max_racks + 1):
            exporters += start_racks(directory, racks - 1, 1, tier)
            config = fleet_config([f"127.0.0.1:{s.port}" for s in exporters], rule_files, args.scrape_interval)
            if prometheus is None:
                prometheus = start_prometheus(directory / "prometheus", config)
            else:
                reload(prometheus, directory / "prometheus", config)
            step = measure(prometheus, tier, racks, args.scrape_interval, args.settle, args.window)
            steps.append(step)
            print(json.dumps(asdict(step)), flush=True)
            if step.rule_evaluation_seconds_max >= RULE_EVALUATION_LIMIT_SECONDS:
                stopped = f"rule evaluation reached {RULE_EVALUATION_LIMIT_SECONDS:g} s"
                break
            if time.monotonic() - started > args.tier_budget and racks < max_racks:
                stopped = f"time budget of {args.tier_budget:g} s spent"
                break
    finally:
        for service in [*([prometheus] if prometheus else []), *exporters]:
            service.stop()
    return steps, stopped


def extrapolate(steps: list[Step]) -> dict:
    """Linear fit through the tier's steps (series and samples/s against racks), evaluated at 1,000 racks.

    An extrapolation, not a measurement: it assumes each rack adds what the measured racks added.
    """
    last = steps[-1]
    first = steps[0]
    span = last.racks - first.racks
    def per_rack(attribute: str) -> float:
        if span == 0:
            return getattr(last, attribute) / last.racks
        return (getattr(last, attribute) - getattr(first, attribute)) / span
    def at(attribute: str, racks: int) -> float:
        return getattr(last, attribute) + per_rack(attribute) * (racks - last.racks)
    evaluation_per_rack = last.rule_evaluation_seconds_max / last.racks
    series = at("head_series", FLEET_RACKS)
    return {
        "method": "linear extrapolation from the measured steps (per-rack increment), not measured",
        "series_per_rack": round(per_rack("head_series")),
        "forwarded_series_per_rack": round(per_rack("forwarded_series")),
        "forwarded_series": round(at("forwarded_series", FLEET_RACKS)),
        "samples_per_second_per_rack": round(per_rack("samples_per_second"), 1),
        "racks": FLEET_RACKS,
        "series": round(series),
        "samples_per_second": round(at("samples_per_second", FLEET_RACKS)),
        "racks_per_prometheus_at_2M_series": int(SERIES_PER_SERVER // per_rack("head_series")),
        "prometheus_servers_at_2M_series": -(-int(series) // SERIES_PER_SERVER),
        "rule_evaluation_seconds_per_rack": round(evaluation_per_rack, 5),
        "racks_until_1s_rule_evaluation": int(RULE_EVALUATION_LIMIT_SECONDS / evaluation_per_rack)
        if evaluation_per_rack else None,
    }


def largest_held(steps: list[Step]) -> int:
    """The most racks measured with every target up and rule evaluation under 1 s."""
    held = [step.racks for step in steps
            if step.targets_up == step.targets and step.rule_evaluation_seconds_max < RULE_EVALUATION_LIMIT_SECONDS]
    return max(held, default=0)


def markdown(result: dict) -> str:
    lines = [f"# Fleet benchmark ({result['utc']}, load average {result['load_average']})", "",
             f"`{result['command']}`: {result['machine']}; Prometheus {result['prometheus']}, scrape and "
             f"evaluation interval {result['scrape_interval']:g} s, rule files: {', '.join(result['rule_files'])}.", "",
             "| tier | racks | targets up | head series | samples/s | Prometheus RSS MiB | rule eval s/cycle (max) | "
             "series forwarded by deploy/fleet |",
             "|---|---|---|---|---|---|---|---|"]
    for step in result["steps"]:
        lines.append(f"| {step['tier']} | {step['racks']} | {step['targets_up']}/{step['targets']} | "
                     f"{step['head_series']:,} | {step['samples_per_second']:,.0f} | "
                     f"{step['rss_bytes'] / 2**20:.0f} | {step['rule_evaluation_seconds']:.3f} "
                     f"({step['rule_evaluation_seconds_max']:.3f}) | {step['forwarded_series']:,} |")
    lines += ["", "Extrapolated linearly to 1,000 racks (an extrapolation from the steps above, not a measurement):", "",
              "| tier | largest N measured, rule eval < 1 s | series/rack | samples/s/rack | series at 1,000 racks | "
              "samples/s at 1,000 racks | racks per Prometheus at 2 M series | servers for 1,000 racks | "
              "racks until rule eval reaches 1 s | forwarded series at 1,000 racks |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for tier, summary in result["tiers"].items():
        fleet = summary["extrapolation"]
        lines.append(f"| {tier} | {summary['largest_racks_held']} | {fleet['series_per_rack']:,} | "
                     f"{fleet['samples_per_second_per_rack']:,.0f} | {fleet['series']:,} | {fleet['samples_per_second']:,} | "
                     f"{fleet['racks_per_prometheus_at_2M_series']:,} | {fleet['prometheus_servers_at_2M_series']} | "
                     f"{fleet['racks_until_1s_rule_evaluation']:,} | {fleet['forwarded_series']:,} |")
    lines += ["", result["limit_note"], ""]
    return "\n".join(lines)


def write_results(result: dict, out: Path) -> None:
    result["limit_note"] = (
        "Why stepping stopped: " + "; ".join(f"{tier}: {summary['stopped']}" for tier, summary in result["tiers"].items())
        + f". On {os.cpu_count()} CPUs the exporters share the cores with Prometheus ({NVL72_TRAYS} Python processes "
        "per rack, polling their simulated source), so the measured rule evaluation time includes that contention "
        "and the run's few-minute budget, not Prometheus alone, caps N.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiers", default="standard:3,basic:2,full:2",
                        help="tier[:most racks], comma-separated (default most racks: --max-racks)")
    parser.add_argument("--max-racks", type=int, default=3)
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    parser.add_argument("--settle", type=float, default=None, help="seconds after adding racks (default 2 intervals: rate rules need two samples)")
    parser.add_argument("--window", type=float, default=None, help="measurement seconds (default 2 intervals)")
    parser.add_argument("--tier-budget", type=float, default=100.0, help="stop adding racks after this many seconds")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fleet")
    args = parser.parse_args()
    args.settle = 2 * args.scrape_interval if args.settle is None else args.settle
    args.window = 2 * args.scrape_interval if args.window is None else args.window
    rule_files = sorted((REPO / "alerts").glob("*.yaml"))
    version = subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    result: dict = {"command": "python " + " ".join(["bench/fleet.py", *sys.argv[1:]]),
                    "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                    "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
                    "prometheus": version.removeprefix("prometheus, version "),
                    "scrape_interval": args.scrape_interval,
                    "rule_files": [str(path.relative_to(REPO)) for path in rule_files],
                    "steps": [], "tiers": {}}
    with tempfile.TemporaryDirectory(prefix="fleet-") as directory:
        for spec in args.tiers.split(","):
            tier, _, most = spec.partition(":")
            steps, stopped = run_tier(Path(directory), tier, int(most or args.max_racks), args, rule_files)
            result["steps"] += [asdict(step) for step in steps]
            result["tiers"][tier] = {"largest_racks_held": largest_held(steps), "stopped": stopped,
                                     "extrapolation": extrapolate(steps)}
            write_results(result, args.out)  # after each tier, so a run cut short keeps what it measured
    print(markdown(result))


if __name__ == "__main__":
    main()
