"""How the figures grow from 1 to 8 to 72 GPUs: runs the other benchmarks per size, writes a table and a plot.

Per GPU count (hgx-b200 per-GPU model, 18 NVLink links per GPU, every catalog family on):
bench/scrape.py (gzip + OpenMetrics, a new version before every scrape, as Prometheus sees it)
and bench/poll.py (CPU per poll cycle, simulated and nvml over the replay). The whole-daemon CPU
share and RSS come from bench/results/process.json (bench/process.py), when present.

    python bench/scaling.py --gpus 1 8 72 --out-dir bench/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def run_json(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 72])
    parser.add_argument("--out-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--replot", action="store_true",
                        help="reuse the scrape and poll figures in OUT_DIR/scaling.json; re-read process.json")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.replot:
        result = json.loads((args.out_dir / "scaling.json").read_text())
        process = json.loads((args.out_dir / "process.json").read_text())
        for row in result["rows"]:
            row.update(daemon_columns(process, row["gpus"]))
        result["process_command"] = process["command"]
        (args.out_dir / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
        plot(result["rows"], args.out_dir / "scaling.png")
        print(table(result["rows"]))
        return

    scrapes = {}
    for gpus in args.gpus:
        count = "300" if gpus <= 8 else "60"
        scrapes[gpus] = run_json([str(BENCH / "scrape.py"), "--gpus", str(gpus), "--every-family", "--gzip",
                                  "--openmetrics", "--fresh", "--scrapes", count, "--json"])
    poll_path = args.out_dir / "poll-scaling.json"
    subprocess.run([sys.executable, str(BENCH / "poll.py"), "--gpus", *map(str, args.gpus), "--cycles", "20",
                    "--out", str(poll_path)], check=True, capture_output=True)
    poll = json.loads(poll_path.read_text())
    process_path = args.out_dir / "process.json"
    process = json.loads(process_path.read_text()) if process_path.exists() else {"rows": []}

    rows = []
    for gpus in args.gpus:
        s = scrapes[gpus]
        cpu = {r["source"]: r for r in poll["rows"] if r["gpus"] == gpus}
        rows.append({
            "gpus": gpus, "families": s["families"], "series": s["series"],
            "bytes_gzip": s["bytes"]["cached"],
            "scrape_p50_ms": s["http_ms"]["cached"]["p50"], "scrape_p99_ms": s["http_ms"]["cached"]["p99"],
            "generate_latest_p50_ms": s["http_ms"]["generate_latest"]["p50"],
            "generate_latest_p99_ms": s["http_ms"]["generate_latest"]["p99"],
            "ratio_p50": s["ratio_p50"]["generate_latest"], "ratio_p99": s["ratio_p99"]["generate_latest"],
            "publish_ms": s["render_ms"]["publish"], "gzip_level1_ms": s["render_ms"]["gzip_level1"],
            "poll_cpu_ms_simulated": cpu.get("simulated", {}).get("cpu_ms_median"),
            "poll_cpu_ms_nvml_replay": cpu.get("nvml-replay", {}).get("cpu_ms_median"),
            **daemon_columns(process, gpus),
            "loadavg_1m": s["loadavg_1m"],
        })
    result = {"command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]), "rows": rows,
              "scrape_commands": {g: scrapes[g]["command"] for g in args.gpus}, "poll_command": poll["command"],
              "process_command": process.get("command"), "machine": scrapes[args.gpus[0]]["machine"],
              "loadavg_1m": os.getloadavg()[0]}
    (args.out_dir / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, args.out_dir / "scaling.png")
    print(table(rows))


def daemon_columns(process: dict, gpus: int) -> dict:
    """Whole-daemon CPU and RSS for ``gpus``, with the poll-race fix where it was measured: as is, the
    72-GPU daemon hardly polls (its polls are judged timed out and backed off), so its CPU says little."""
    proc = {r["interval_s"]: r for r in sorted(process["rows"], key=lambda r: bool(r.get("poll_race_fixed")))
            if r["gpus"] == gpus}
    return {"daemon_cpu_percent_10s": proc.get(10.0, {}).get("cpu_percent_of_one_core"),
            "daemon_cpu_percent_1s": proc.get(1.0, {}).get("cpu_percent_of_one_core"),
            "daemon_rss_mib_10s": proc.get(10.0, {}).get("rss_mib_max"),
            "daemon_rss_mib_1s": proc.get(1.0, {}).get("rss_mib_max")}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(rows: list[dict]) -> str:
    """The scaling table in Markdown."""
    head = ("| GPUs | series | gzip bytes | scrape p50 / p99 ms | generate_latest p50 / p99 ms | ratio p50 / p99 "
            "| publish ms | poll CPU ms sim / nvml | daemon CPU % @10 s / 1 s (*) | RSS MiB @10 s / 1 s (*) |")
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for r in rows:
        lines.append(
            f"| {r['gpus']} | {r['series']:,} | {r['bytes_gzip']:,} | {_fmt(r['scrape_p50_ms'])} / "
            f"{_fmt(r['scrape_p99_ms'])} | {_fmt(r['generate_latest_p50_ms'], 1)} / "
            f"{_fmt(r['generate_latest_p99_ms'], 1)} | {_fmt(r['ratio_p50'], 0)}x / {_fmt(r['ratio_p99'], 0)}x | "
            f"{_fmt(r['publish_ms'])} | {_fmt(r['poll_cpu_ms_simulated'], 1)} / "
            f"{_fmt(r['poll_cpu_ms_nvml_replay'], 1)} | {_fmt(r['daemon_cpu_percent_10s'])} / "
            f"{_fmt(r['daemon_cpu_percent_1s'])} | {_fmt(r['daemon_rss_mib_10s'], 0)} / "
            f"{_fmt(r['daemon_rss_mib_1s'], 0)} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gpus = [r["gpus"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    ax.plot(gpus, [r["scrape_p50_ms"] for r in rows], "o-", label="cached p50")
    ax.plot(gpus, [r["scrape_p99_ms"] for r in rows], "o--", label="cached p99")
    ax.plot(gpus, [r["generate_latest_p50_ms"] for r in rows], "s-", label="generate_latest p50")
    ax.plot(gpus, [r["generate_latest_p99_ms"] for r in rows], "s--", label="generate_latest p99")
    ax.set(xscale="log", yscale="log", xlabel="GPUs (18 links each)", ylabel="ms per scrape",
           title="/metrics, gzip OpenMetrics, new version each scrape")
    ax.legend(fontsize=8)
    ax = axes[1]
    for key, label in (("poll_cpu_ms_simulated", "simulated"), ("poll_cpu_ms_nvml_replay", "nvml (replay)"),
                       ("publish_ms", "publish (re-render all)")):
        points = [(r["gpus"], r[key]) for r in rows if r[key] is not None]
        if points:
            ax.plot(*zip(*points, strict=True), "o-", label=label)
    ax.set(xscale="log", yscale="log", xlabel="GPUs", ylabel="CPU ms per poll", title="poll path")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(gpus, [r["series"] for r in rows], "o-", label="series")
    ax.set(xscale="log", yscale="log", xlabel="GPUs", ylabel="series", title="exposition size (every family)")
    twin = ax.twinx()
    twin.plot(gpus, [r["bytes_gzip"] / 1024 for r in rows], "s--", color="tab:red", label="gzip KiB")
    twin.set(yscale="log", ylabel="gzip KiB")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
