"""bench/fleet.py's results: the cross-check ratios, the fit extrapolated to 1,000 racks, the markdown table.

The extrapolation is a least-squares line through the stand-in steps of a tier (racks against series,
samples/s, RSS, rule evaluation), evaluated at 1,000 racks: it assumes each rack adds what the measured
racks added, which holds for series and samples (every rack has the same targets) and is an assumption
for RSS and rule evaluation time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

FLEET_RACKS = 1000
# "A few million active series per server" (Prometheus's own sizing guidance); 2 M is the low end.
SERIES_PER_SERVER = 2_000_000
MIB = 2**20


def memory_limit(share: float) -> tuple[int, dict]:
    """The Prometheus RSS limit: ``share`` of this machine's memory, and at most half of what is available now."""
    meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()}
    total, available = meminfo["MemTotal"], meminfo["MemAvailable"]
    return int(min(share * total, available / 2)), {"total_mib": total // MIB, "available_mib": available // MIB}


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line; one point: the line through the origin."""
    if len(points) == 1:
        return points[0][1] / points[0][0], 0.0
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return slope, mean_y - slope * mean_x


def extrapolate(steps: list[dict], interval: float) -> dict:
    """The stand-in steps' fitted lines at 1,000 racks, and what they say about servers per fleet."""
    def line(attribute: str) -> tuple[float, float]:
        return fit([(step["racks"], step[attribute]) for step in steps])

    series, samples, forwarded = line("head_series"), line("samples_per_second"), line("forwarded_series")
    rss, evaluation = line("rss_bytes"), line("rule_evaluation_seconds")
    at = FLEET_RACKS
    fleet_series = series[0] * at + series[1]
    racks_until_1s = int(round((1.0 - evaluation[1]) / evaluation[0], 6)) if evaluation[0] > 0 else None
    return {
        "method": "least-squares line through the stand-in steps, evaluated at 1,000 racks: not measured",
        "series_per_rack": round(series[0]), "samples_per_second_per_rack": round(samples[0], 1),
        "forwarded_series_per_rack": round(forwarded[0]), "rss_mib_per_rack": round(rss[0] / MIB, 1),
        "rss_bytes_per_head_series": round(rss[0] / series[0]) if series[0] else None,
        "rule_evaluation_seconds_per_rack": round(evaluation[0], 5),
        "racks": at, "series": round(fleet_series), "samples_per_second": round(samples[0] * at + samples[1]),
        "forwarded_series": round(forwarded[0] * at + forwarded[1]),
        "forwarded_samples_per_second": round((forwarded[0] * at + forwarded[1]) / interval),
        "racks_per_prometheus_at_2M_series": SERIES_PER_SERVER // round(series[0]),
        "rss_mib_at_2M_series": round((rss[1] + rss[0] / series[0] * SERIES_PER_SERVER) / MIB),
        "prometheus_servers_at_2M_series": -(-int(fleet_series) // SERIES_PER_SERVER),
        "racks_until_1s_rule_evaluation_fitted": racks_until_1s,
        "prometheus_servers_at_this_machines_rule_evaluation": -(-at // racks_until_1s) if racks_until_1s else None,
    }


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def summarize(measured: dict, holds: Callable[[Any], bool], interval: float) -> dict:
    """One tier's summary: the largest N held (``holds(step)``: every limit kept), why stepping stopped,
    the real-against-stand-in cross-check and the extrapolation."""
    real, standin = measured["real"], measured["steps"][0]
    last_window = {step.racks: step for step in measured["steps"]}  # a repeated window replaces the first
    return {
        "largest_racks_held": max((racks for racks, step in last_window.items() if holds(step)), default=0),
        "stopped": measured["stopped"],
        "cross_check": {
            "head_series": [real.head_series, standin.head_series],
            "head_series_ratio": ratio(standin.head_series, real.head_series),
            "samples_per_second_ratio": ratio(standin.samples_per_second, real.samples_per_second),
            "rss_ratio": ratio(standin.rss_bytes, real.rss_bytes),
            "rule_evaluation_seconds": [real.rule_evaluation_seconds, standin.rule_evaluation_seconds],
            "rule_evaluation_ratio": ratio(standin.rule_evaluation_seconds, real.rule_evaluation_seconds),
            "rule_evaluation_max_ratio": ratio(standin.rule_evaluation_seconds_max, real.rule_evaluation_seconds_max),
            "targets_cpu_cores": [real.targets_cpu_cores, standin.targets_cpu_cores],
            "series_by_name_differences": measured["series_by_name_differences"],
            "other_rack_identity": measured["identity"],
        },
        "extrapolation": extrapolate([asdict(step) for step in measured["steps"]], interval),
    }


def steps_table(result: dict) -> list[str]:
    lines = ["| tier | targets | racks | up | head series | samples/s | Prometheus RSS MiB | rule eval s/cycle, mean (max) | "
             "0.99 scrape interval s | longest scrape s | Prometheus CPU cores | targets CPU cores | load 1m | "
             "series forwarded by deploy/fleet |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for step in result["steps"]:
        lines.append(f"| {step['tier']} | {step['targets_kind']} | {step['racks']} | {step['targets_up']}/{step['targets']} | "
                     f"{step['head_series']:,} | {step['samples_per_second']:,.0f} | {step['rss_bytes'] / MIB:,.0f} | "
                     f"{step['rule_evaluation_seconds']:.3f} ({step['rule_evaluation_seconds_max']:.3f}) | "
                     f"{step['scrape_interval_p99_seconds']:.2f} | {step['scrape_duration_max_seconds']:.3f} | "
                     f"{step['prometheus_cpu_cores']:.2f} | {step['targets_cpu_cores']:.2f} | {step['load_average_1m']:.2f} | "
                     f"{step['forwarded_series']:,} |")
    return lines


def cross_check_table(result: dict) -> list[str]:
    lines = ["Cross-check, one rack of 18 real exporters against one rack of stand-ins (each on a fresh Prometheus, "
             "same settle and window; stand-in / real):", "",
             "| tier | head series real / stand-in | ratio | rule eval s real / stand-in | ratio (max) | samples/s ratio | "
             "RSS ratio | metric names whose series count differs | real exporter of another rack = its stand-in |",
             "|---|---|---|---|---|---|---|---|---|"]
    for tier, summary in result["tiers"].items():
        check = summary["cross_check"]
        identity = check["other_rack_identity"]
        lines.append(f"| {tier} | {check['head_series'][0]:,} / {check['head_series'][1]:,} | {check['head_series_ratio']} | "
                     f"{check['rule_evaluation_seconds'][0]:.3f} / {check['rule_evaluation_seconds'][1]:.3f} | "
                     f"{check['rule_evaluation_ratio']} ({check['rule_evaluation_max_ratio']}) | "
                     f"{check['samples_per_second_ratio']} | {check['rss_ratio']} | "
                     f"{json.dumps(check['series_by_name_differences']) if check['series_by_name_differences'] else 'none'} | "
                     f"{'yes' if identity['same_series'] else 'NO'} ({identity['rack']} tray {identity['tray']}, "
                     f"{identity['series_compared']:,} series; not compared, as their series come and go with time: "
                     f"{', '.join(identity['families_varying_with_time']) or 'none'}) |")
    return lines


def extrapolation_table(result: dict) -> list[str]:
    lines = ["Extrapolated to 1,000 racks (a fitted line through the stand-in steps, not a measurement):", "",
             "| tier | largest N held (rule eval < 1 s, scrape keeping up) | series/rack | samples/s/rack | RSS MiB/rack "
             "(bytes/series) | rule eval s/rack | series at 1,000 racks | samples/s at 1,000 racks | racks per Prometheus "
             "at 2 M series (RSS there) | servers for 1,000 racks at 2 M series | servers for 1,000 racks at this "
             "machine's rule eval | forwarded series (samples/s) at 1,000 racks |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for tier, summary in result["tiers"].items():
        fleet = summary["extrapolation"]
        lines.append(f"| {tier} | {summary['largest_racks_held']} | {fleet['series_per_rack']:,} | "
                     f"{fleet['samples_per_second_per_rack']:,.0f} | {fleet['rss_mib_per_rack']:,} "
                     f"({fleet['rss_bytes_per_head_series']:,}) | {fleet['rule_evaluation_seconds_per_rack']:.4f} | "
                     f"{fleet['series']:,} | {fleet['samples_per_second']:,} | "
                     f"{fleet['racks_per_prometheus_at_2M_series']:,} ({fleet['rss_mib_at_2M_series']:,} MiB) | "
                     f"{fleet['prometheus_servers_at_2M_series']} | "
                     f"{fleet['prometheus_servers_at_this_machines_rule_evaluation']} | "
                     f"{fleet['forwarded_series']:,} ({fleet['forwarded_samples_per_second']:,}) |")
    return lines


def markdown(result: dict) -> str:
    lines = [f"# Fleet benchmark ({result['utc']} to {result.get('utc_end', '?')}, load average at the start "
             f"{result['load_average']})", "",
             f"`{result['command']}`: {result['machine']}; Prometheus {result['prometheus']}, scrape and evaluation "
             f"interval {result['scrape_interval']:g} s, settle {result['settle_seconds']:g} s then a "
             f"{result['window_seconds']:g} s window per step, Prometheus RSS limit {result['memory_limit_mib']:,} MiB, "
             f"rule files: {', '.join(result['rule_files'])}. Targets: `real exporters` are 18 `--simulate nvl72-tray` "
             "processes; `stand-in` is bench/fleet_standin.py serving captured bodies of those trays with counters "
             "advancing (one process per step's added racks). The machine was shared: the load average per step "
             "is in the table, and rule evaluation times include that contention.", "",
             *steps_table(result), "", *cross_check_table(result), "", *extrapolation_table(result), "",
             "Why stepping stopped: " + "; ".join(f"{tier}: {summary['stopped']}"
                                                  for tier, summary in result["tiers"].items()) + ".", ""]
    return "\n".join(lines)


def write_results(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
