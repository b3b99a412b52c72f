"""Ingest benchmarks: log-tail throughput of the logs source, and Prometheus-text parse time.

logs: a realistic TensorRT-LLM server log (bench/gen_trtllm_log.py) is read from its beginning by
the real ``LogsSource`` with the default rules, poll after poll until every line is counted.
Reported: lines/s over wall and CPU time, and the split between reading/splitting/decoding
(``Tail.read`` plus decode) and the rules (``count_line``), plus each rule's own search time.

promtext: a Triton + TensorRT-LLM backend exposition grown to ``--series`` series (the committed
fixture's families repeated over model names) parsed by ``exporter.promtext.parse``, and the
Triton source's mapping of it into catalog families.

    python bench/ingest.py --lines 500000 --series 50000 --out bench/results/ingest.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gen_trtllm_log  # noqa: E402
from bench.workload import REPO  # noqa: E402
from exporter import promtext  # noqa: E402
from exporter.sources.logs import LogsConfig, LogsSource  # noqa: E402

TRITON_FIXTURE = REPO / "tests" / "fixtures" / "triton" / "cpp_backend_metrics.txt"


def logs_throughput(path: Path, lines: int) -> dict:
    source = LogsSource(LogsConfig(enabled=True, paths=[str(path)], start_at="beginning"))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    polls = 0
    while True:
        polls += 1
        families = source.poll()
        if source.bytes_read[str(path)] >= path.stat().st_size:
            break
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    counted = {f.metric.name: sum(v for _, v in f.samples) for f in families}
    source.close()
    return {"lines": lines, "bytes": path.stat().st_size, "polls": polls, "wall_s": wall, "cpu_s": cpu,
            "lines_per_s_wall": lines / wall, "lines_per_s_cpu": lines / cpu, "counted": counted}


def logs_split(path: Path) -> dict:
    """Where the time goes: reading + splitting + decoding, versus the rules, versus each rule alone."""
    source = LogsSource(LogsConfig(enabled=True, paths=[str(path)], start_at="beginning"))
    from exporter.sources.logs import Tail

    tail = Tail(str(path), False, source.config.max_line_bytes)
    c0 = time.process_time()
    raw: list[bytes] = []
    while True:
        lines, read, _ = tail.read(source.config.max_read_bytes)
        if not read:
            break
        raw += lines
    text = [line.decode("utf-8", errors="replace") for line in raw]
    c1 = time.process_time()
    for line in text:
        source.count_line(line)
    c2 = time.process_time()
    tail.close()
    per_rule = {}
    for rule, regex, _ in source.rules:
        search = regex.search
        r0 = time.process_time()
        hits = sum(1 for line in text if search(line))
        per_rule[rule.name] = {"cpu_s": time.process_time() - r0, "matching_lines": hits}
    return {"lines": len(text), "read_split_decode_cpu_s": c1 - c0, "rules_cpu_s": c2 - c1, "per_rule": per_rule}


def triton_body(series: int) -> tuple[bytes, int]:
    """The fixture's families with every model-labelled sample repeated over model names until ~``series``."""
    lines = TRITON_FIXTURE.read_text().splitlines()
    with_model = sum(1 for line in lines if 'model="' in line and not line.startswith("#"))
    plain = sum(1 for line in lines if line and not line.startswith("#")) - with_model
    copies = max(1, (series - plain) // max(1, with_model))
    out, total = [], 0
    model = re.compile(r'model="([^"]*)"')
    for line in lines:
        if line.startswith("#") or 'model="' not in line:
            out.append(line)
            total += bool(line) and not line.startswith("#")
            continue
        for k in range(copies):
            out.append(model.sub(lambda m, k=k: f'model="{m.group(1)}_{k}"', line))
        total += copies
    return ("\n".join(out) + "\n").encode(), total


def promtext_parse(series: int, repeat: int) -> dict:
    from exporter.sources.triton import triton_families

    body, total = triton_body(series)
    parse_times, map_times = [], []
    for _ in range(repeat):
        c0 = time.process_time()
        parsed = promtext.parse(body)
        c1 = time.process_time()
        triton_families("http://127.0.0.1:8002/metrics", parsed, None)
        c2 = time.process_time()
        parse_times.append(c1 - c0)
        map_times.append(c2 - c1)
    parse_ms = statistics.median(parse_times) * 1e3
    return {"series": total, "bytes": len(body), "parse_cpu_ms_median": parse_ms,
            "series_per_s": total / (parse_ms / 1e3), "triton_map_cpu_ms_median": statistics.median(map_times) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--series", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        path = Path(tmp) / "trtllm.log"
        gen_trtllm_log.write(path, args.lines)
        runs = [logs_throughput(path, args.lines) for _ in range(args.repeat)]
        split = logs_split(path)
    best = max(runs, key=lambda r: r["lines_per_s_cpu"])
    parse = promtext_parse(args.series, args.repeat)
    result = {"command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
              "logs": {"runs": runs, "best": best, "split": split}, "promtext": parse,
              "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
              "loadavg_1m": os.getloadavg()[0]}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load {result['loadavg_1m']:.2f}")
    print(f"logs: {args.lines} lines, {best['bytes']} bytes; lines/s per run (cpu): "
          + ", ".join(f"{r['lines_per_s_cpu']:,.0f}" for r in runs)
          + f"; wall best {max(r['lines_per_s_wall'] for r in runs):,.0f}")
    print(f"  split: read+split+decode {split['read_split_decode_cpu_s']:.2f} s, rules {split['rules_cpu_s']:.2f} s")
    for name, rule in sorted(split["per_rule"].items(), key=lambda kv: -kv[1]["cpu_s"]):
        print(f"    {name:24} {rule['cpu_s']:.3f} s  {rule['matching_lines']:>7} lines match")
    print(f"promtext: {parse['series']} series, {parse['bytes']} bytes: parse {parse['parse_cpu_ms_median']:.1f} ms "
          f"({parse['series_per_s']:,.0f} series/s), triton mapping {parse['triton_map_cpu_ms_median']:.1f} ms")


if __name__ == "__main__":
    main()
