"""The dispatch source classifying one state file of 100,000 distinct kernel names, per poll.

Names are the real ones of tests/fixtures/kernels/ (H200 recordings, Blackwell GEMM tables),
each varied with a tile/suffix so that all 100,000 are distinct and every rule of the table is
exercised. Poll 1 is cold (every name classified by the table's regular expressions); the polls
after it are the steady state: the writer rewrites the file with 5% of the names advanced, as a
live sampler does between two polls, and the cached decisions answer. Each poll is timed
end to end through DispatchSource.poll() (reading and parsing the JSON included) and, apart,
the classification and accounting share of it (the poll minus reading and parsing the file).
A last poll finds the file not rewritten since (a writer period of 30 s, polls every 10 s) and
does not read it again.

    .venv/bin/python bench/dispatch_classify.py [--names 100000] [--polls 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.inprocess.state import FORMAT, VERSION, read_state, write_atomic  # noqa: E402
from exporter.sources.dispatch import DispatchConfig, DispatchSource  # noqa: E402

KERNELS = REPO / "tests" / "fixtures" / "kernels"


def real_names() -> list[str]:
    names = [k["name"] for k in yaml.safe_load((KERNELS / "blackwell.yaml").read_text())["kernels"]]
    for workload in json.loads((KERNELS / "h200_torch.json").read_text())["workloads"]:
        names += workload.get("kernels", [])
    return sorted(set(names))


def state(names: dict[str, list[int]], now: float) -> dict:
    return {"format": FORMAT, "version": VERSION, "writer": "inject", "writer_version": "bench", "pid": 1,
            "process": "rank0", "started_at": now - 60, "updated_at": now, "status": "sampling", "reason": "",
            "detail": "", "duty_cycle": 0.1, "period_seconds": 30, "windows": 1, "windows_skipped": 0,
            "sampled_seconds": 3.0, "records": 1, "incomplete_records": 0, "dropped_records": 0,
            "max_names": len(names),
            "gpus": {"0": {"uuid": "", "kernels": sum(p[0] for p in names.values()),
                           "kernel_ns": sum(p[1] for p in names.values()), "names": names, "overflow": [0, 0]}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--polls", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dispatch_classify.json")
    args = parser.parse_args()
    base = real_names()
    rng = random.Random(13)
    names = {f"{base[i % len(base)]}_v{i}": [rng.randint(1, 1000), rng.randint(1000, 10**6)] for i in range(args.names)}
    directory = Path(tempfile.mkdtemp(prefix="dispatch-classify-"))
    path = directory / "rank0.json"
    now = time.time()
    source = DispatchSource(DispatchConfig(enabled=True, state_dir=directory), clock=lambda: now)
    polls, parses = [], []
    keys = list(names)
    for _ in range(args.polls):
        for key in rng.sample(keys, len(keys) // 20):
            names[key][0] += 1
            names[key][1] += 500
        write_atomic(path, state(names, now))
        began = time.perf_counter()
        read_state(path)
        parses.append(time.perf_counter() - began)
        began = time.perf_counter()
        source.poll()
        polls.append(time.perf_counter() - began)
    began = time.perf_counter()
    source.poll()  # the writer has not rewritten the file since: the source does not read it again
    unchanged = time.perf_counter() - began
    steady = polls[1:]
    classify = [p - r for p, r in zip(polls, parses, strict=True)]
    result = {
        "names": args.names, "distinct_base_names": len(base), "file_bytes": path.stat().st_size,
        "python": platform.python_version(), "machine": platform.machine(),
        "cold_poll_ms": round(polls[0] * 1000, 1), "cold_classify_ms": round(classify[0] * 1000, 1),
        "steady_poll_ms_median": round(statistics.median(steady) * 1000, 1),
        "steady_poll_ms_max": round(max(steady) * 1000, 1),
        "steady_classify_ms_median": round(statistics.median(classify[1:]) * 1000, 1),
        "steady_classify_ms_max": round(max(classify[1:]) * 1000, 1),
        "parse_ms_median": round(statistics.median(parses) * 1000, 1),
        "unchanged_file_poll_ms": round(unchanged * 1000, 2),
        "polls_ms": [round(p * 1000, 1) for p in polls],
        "classify_ms": [round(c * 1000, 1) for c in classify],
        "target_ms": 50,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
