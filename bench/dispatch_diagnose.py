"""Where the sampler's cost comes from: CUPTI tracing itself vs the Python work on its records.

Runs the launch-bound decode loop of dispatch_bench.py in interleaved blocks: tracing off; CUPTI
kernel tracing always on with a callback that drops the records unread; always on with the full
classification; and the sampler at duty cycles 0.01 and 0.05.

    python3 bench/dispatch_diagnose.py OUT_DIR
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench.dispatch_bench import Decode, throughput
from exporter.inprocess.sampler import DispatchSampler


def main() -> None:
    out = Path(sys.argv[1])
    state_dir = Path(tempfile.mkdtemp())
    work = Decode()
    throughput(work, 3.0)
    modes = ["off", "on, records dropped unread", "on, classified", "duty 0.01/10s", "duty 0.05/10s"]
    results: dict[str, list[float]] = {m: [] for m in modes}
    coverage: dict[str, list[float]] = {m: [] for m in modes}
    block, rounds = 8.0, 3
    for r in range(rounds):
        for mode in modes:
            sampler = None
            if mode != "off":
                duty, period = {"duty 0.01/10s": (0.01, 10.0), "duty 0.05/10s": (0.05, 10.0)}.get(mode, (1.0, block))
                sampler = DispatchSampler(state_dir / f"{r}-{len(results[mode])}.json", duty, period, "diag", seed=r)
                if mode == "on, records dropped unread":
                    sampler._buffer_completed = lambda activities: None  # noqa: E731
                sampler.start()
            results[mode].append(throughput(work, block))
            if sampler is not None:
                sampler.stop()
                coverage[mode].append(sampler.accumulator.sampled_seconds / block)
    base = statistics.mean(results["off"])
    report = {"device": torch.cuda.get_device_name(), "block_seconds": block, "rounds": rounds,
              "steps_per_second": results,
              "overhead_percent": {m: 100 * (1 - statistics.mean(v) / base) for m, v in results.items() if m != "off"},
              "coverage": {m: statistics.mean(v) for m, v in coverage.items() if v}}
    print(json.dumps(report), flush=True)
    (out / "dispatch_diagnose.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
