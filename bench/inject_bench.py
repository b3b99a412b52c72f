"""Throughput cost of the injection library vs the cupti-python sampler, each process its own control.

The workload is bench/dispatch_bench.py's launch-bound eager decode loop (40 kernels a step from
one Python thread, the worst case for a kernel tracer). On the lent GPU machine the speed of an
uninstrumented process moved by 12-59% from one process to the next (bench/results/inject_h200.md),
far more than the cost to be measured, so every process measures itself twice:

- phase A, after warm-up and before the first window: the library is loaded, CUPTI never attached
  (BLACKWELL_DISPATCH_START_DELAY holds the first window back; the cupti-python sampler is not yet
  started);
- phase B, from the first window on: sampling as configured.

A mode's cost is 1 - (B/A of its processes) / (B/A of uninstrumented processes), medians over
rounds; the uninstrumented ratio measures the drift between the two phases that any process sees.
Modes alternate within each round.

    python3 bench/inject_bench.py OUT_DIR LIBRARY [--rounds N] [--seconds S] [--delay D] [--period P]
                                  [--modes "library, duty 0.1|..."] [--cpus 2-5]
--cpus pins every mode's process to the same cores. Writes OUT_DIR/inject_bench.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = {
    "off": {},
    "library, window always open": {"inject": True, "BLACKWELL_DISPATCH_DUTY_CYCLE": "1"},
    "cupti-python, always on": {"python": True},
    "library, duty 0.1": {"inject": True, "BLACKWELL_DISPATCH_DUTY_CYCLE": "0.1"},
    "library, duty 0.1, attached between windows": {"inject": True, "BLACKWELL_DISPATCH_DUTY_CYCLE": "0.1",
                                                    "BLACKWELL_DISPATCH_DETACH": "0"},
    "library, duty 0.01": {"inject": True, "BLACKWELL_DISPATCH_DUTY_CYCLE": "0.01"},
}

CHILD = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, "bench")
import torch
from dispatch_bench import Decode, throughput
seconds, delay = float(sys.argv[1]), float(sys.argv[2])
state = Path(os.environ["BLACKWELL_DISPATCH_STATE_DIR"]) / "bench.json"
torch.cuda.init(); torch.zeros(1, device="cuda")  # cuInit: the library's start delay counts from here
cuda_ready = time.monotonic()
work = Decode()
throughput(work, 2.0)
def read(key):
    try:
        return json.loads(state.read_text()).get(key, 0)
    except (OSError, ValueError):
        return 0
before_first_window = throughput(work, delay - 0.4 - (time.monotonic() - cuda_ready))
windows_in_a = read("windows")
while time.monotonic() < cuda_ready + delay:
    time.sleep(0.01)
if os.environ.get("PYTHON_SAMPLER"):
    from exporter.inprocess.sampler import DispatchSampler
    sampler = DispatchSampler(state, 1.0, float(os.environ["BLACKWELL_DISPATCH_PERIOD"]), "bench")
    sampler.start()
sampled_before = read("sampled_seconds")
sampling = throughput(work, seconds)
print(json.dumps({"before_first_window": before_first_window, "sampling": sampling,
                  "ratio": sampling / before_first_window, "windows_before": windows_in_a,
                  "sampled_seconds": read("sampled_seconds") - sampled_before, "windows": read("windows"),
                  "detaches": read("detaches")}))
"""


def run_child(child: str, args: list[str], mode: dict, library: str, settings: dict[str, str], timeout: float,
              cpus: set[int] | None = None) -> tuple[dict, Path]:
    """Run ``child`` in a fresh process under ``mode`` (the library injected or not, its settings); its last line's JSON.

    Also used by bench/inject_timeline.py. The process's own BLACKWELL_* and injection variables are dropped.
    """
    state_dir = Path(tempfile.mkdtemp(prefix="inject-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLACKWELL_", "CUDA_INJECTION64"))}
    env.update({"BLACKWELL_DISPATCH_STATE_DIR": str(state_dir), "BLACKWELL_DISPATCH_PROCESS": "bench", **settings})
    env.update({k: v for k, v in mode.items() if k.startswith("BLACKWELL_")})
    if mode.get("inject"):
        env["CUDA_INJECTION64_PATH"] = library
    if mode.get("python"):
        env["PYTHON_SAMPLER"] = "1"
    out = subprocess.run([sys.executable, "-c", child, *args], env=env, capture_output=True, text=True,
                         timeout=timeout, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1]), state_dir


def run_mode(mode: dict, library: str, seconds: float, delay: float, period: float, cpus: set[int] | None) -> dict:
    result, _ = run_child(CHILD, [str(seconds), str(delay)], mode, library,
                          {"BLACKWELL_DISPATCH_PERIOD": str(period), "BLACKWELL_DISPATCH_START_DELAY": str(delay)},
                          seconds + delay + 120, cpus)
    result["coverage"] = result["sampled_seconds"] / seconds
    return result


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main() -> None:
    out_dir, library = Path(sys.argv[1]), sys.argv[2]
    rounds, seconds = int(option("--rounds", "2")), float(option("--seconds", "12"))
    delay, period = float(option("--delay", "6")), float(option("--period", "1.2"))
    modes = MODES
    if "--modes" in sys.argv:
        chosen = {"off", *option("--modes", "").split("|")}
        modes = {name: mode for name, mode in MODES.items() if name in chosen}
    cpus = None
    if "--cpus" in sys.argv:
        first, _, last = option("--cpus", "").partition("-")
        cpus = set(range(int(first), int(last or first) + 1))
    runs: dict[str, list[dict]] = {name: [] for name in modes}
    for done in range(1, rounds + 1):
        for name, mode in modes.items():
            runs[name].append(run_mode(mode, library, seconds, delay, period, cpus))
            print(name, json.dumps(runs[name][-1]), flush=True)
        write_report(out_dir, runs, done, seconds, delay, period, cpus)  # after each round: a cut-off run keeps its rounds


def write_report(out_dir: Path, runs: dict[str, list[dict]], rounds: int, seconds: float, delay: float, period: float,
                 cpus: set[int] | None) -> None:
    drift = statistics.median(r["ratio"] for r in runs["off"])
    report = {
        "workload": "bench/dispatch_bench.py Decode: 8 layers x (bf16 mm M=16, silu, mul, fp8 scaled_mm, add)",
        "design": "each process: phase A before the first window, phase B sampling; cost = 1 - median(B/A) / "
                  "median(B/A of uninstrumented processes)",
        "seconds_phase_b": seconds, "start_delay_seconds": delay, "period_seconds": period, "rounds": rounds,
        "cpus": sorted(cpus) if cpus else "any", "runs": runs, "drift_ratio_uninstrumented": drift,
        "cost": {name: 1 - statistics.median(r["ratio"] for r in rs) / drift for name, rs in runs.items()},
        "cost_per_round": {name: [round(1 - r["ratio"] / drift, 4) for r in rs] for name, rs in runs.items()},
        "coverage": {name: statistics.mean(r["coverage"] for r in rs) for name, rs in runs.items()},
        "spread_between_processes_phase_a": {
            name: (max(r["before_first_window"] for r in rs) - min(r["before_first_window"] for r in rs))
            / statistics.median(r["before_first_window"] for r in rs) for name, rs in runs.items()},
    }
    cost = report["cost"]
    if "library, window always open" in cost and "cupti-python, always on" in cost:
        report["ratio_library_open_to_cupti_python"] = cost["library, window always open"] / cost["cupti-python, always on"]
    (out_dir / "inject_bench.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report.get(k) for k in ("cost", "coverage", "drift_ratio_uninstrumented",
                                                  "ratio_library_open_to_cupti_python")}, indent=1))


if __name__ == "__main__":
    main()
