"""Throughput cost of the injection library vs the cupti-python sampler, side by side in one run.

The workload is bench/dispatch_bench.py's launch-bound eager decode loop (40 kernels a step from
one Python thread, the worst case for a kernel tracer). The library is set at cuInit, so each
mode runs in its own process; modes alternate round by round so drift hits all of them alike.

    python3 bench/inject_bench.py OUT_DIR LIBRARY [--rounds N] [--seconds S] [--baseline LIBRARY] [--cpus 2-5]
                                    [--modes "off|library, duty 0.1"]
--baseline adds the duty-cycle modes under an earlier build of the library, in the same rounds;
--cpus pins every mode's process to the same cores (a launch-bound loop's speed follows its core);
--modes runs only the named modes ("off" is always among them: costs are relative to it).
Writes OUT_DIR/inject_bench.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PERIOD = "4"
MODES = {
    "off": {},
    "library, window always open": {"inject": True, "BLACKWELL_DISPATCH_DUTY_CYCLE": "1"},
    "cupti-python, always on": {"python": True},
    "library, duty 0.1": {"inject": True, "BLACKWELL_DISPATCH_DUTY_CYCLE": "0.1"},
    "library, duty 0.01": {"inject": True, "BLACKWELL_DISPATCH_DUTY_CYCLE": "0.01"},
    "library loaded, duty 0": {"inject": True, "BLACKWELL_DISPATCH_DUTY_CYCLE": "0"},
}
BASELINE_MODES = {
    "baseline library, duty 0.1": {"baseline": True, "BLACKWELL_DISPATCH_DUTY_CYCLE": "0.1"},
    "baseline library, duty 0.01": {"baseline": True, "BLACKWELL_DISPATCH_DUTY_CYCLE": "0.01"},
}

CHILD = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, "bench")
import torch
from dispatch_bench import Decode, throughput
seconds = float(sys.argv[1])
state = Path(os.environ["BLACKWELL_DISPATCH_STATE_DIR"]) / "bench.json"
if os.environ.get("PYTHON_SAMPLER"):
    from exporter.inprocess.sampler import DispatchSampler
    sampler = DispatchSampler(state, 1.0, float(os.environ["BLACKWELL_DISPATCH_PERIOD"]), "bench")
    sampler.start()
work = Decode()
throughput(work, 3.0)
def read(key):
    try:
        return json.loads(state.read_text()).get(key, 0)
    except (OSError, ValueError):
        return 0
before = read("sampled_seconds")
rate = throughput(work, seconds)
print(json.dumps({"steps_per_second": rate, "sampled_before": before, "sampled_after": read("sampled_seconds"),
                  "windows": read("windows")}))
"""


def run_mode(mode: dict, library: str, baseline: str | None, seconds: float, cpus: set[int] | None) -> dict:
    state_dir = tempfile.mkdtemp(prefix="inject-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLACKWELL_", "CUDA_INJECTION64"))}
    env.update({"BLACKWELL_DISPATCH_STATE_DIR": state_dir, "BLACKWELL_DISPATCH_PROCESS": "bench",
                "BLACKWELL_DISPATCH_PERIOD": PERIOD})
    env.update({k: v for k, v in mode.items() if k.startswith("BLACKWELL_")})
    if mode.get("inject"):
        env["CUDA_INJECTION64_PATH"] = library
    if mode.get("baseline"):
        env["CUDA_INJECTION64_PATH"] = baseline
    if mode.get("python"):
        env["PYTHON_SAMPLER"] = "1"
    out = subprocess.run([sys.executable, "-c", CHILD, str(seconds)], env=env, capture_output=True, text=True,
                         timeout=seconds + 120, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["coverage"] = (result["sampled_after"] - result["sampled_before"]) / seconds
    return result


def main() -> None:
    out_dir, library = Path(sys.argv[1]), sys.argv[2]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 2
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 10.0
    baseline = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else None
    modes = {**MODES, **(BASELINE_MODES if baseline else {})}
    if "--modes" in sys.argv:
        chosen = {"off", *sys.argv[sys.argv.index("--modes") + 1].split("|")}
        modes = {name: mode for name, mode in modes.items() if name in chosen}
    cpus = None
    if "--cpus" in sys.argv:
        first, _, last = sys.argv[sys.argv.index("--cpus") + 1].partition("-")
        cpus = set(range(int(first), int(last or first) + 1))
    runs: dict[str, list[dict]] = {name: [] for name in modes}
    for _ in range(rounds):
        for name, mode in modes.items():
            runs[name].append(run_mode(mode, library, baseline, seconds, cpus))
            print(name, json.dumps(runs[name][-1]), flush=True)
    base = statistics.mean(r["steps_per_second"] for r in runs["off"])
    cost = {name: 1 - statistics.mean(r["steps_per_second"] for r in rs) / base for name, rs in runs.items()}
    # each round against its own uninstrumented block: how much of a cost is drift between rounds
    cost_per_round = {name: [round(1 - r["steps_per_second"] / off["steps_per_second"], 4)
                             for r, off in zip(rs, runs["off"], strict=True)] for name, rs in runs.items()}
    report = {
        "workload": "bench/dispatch_bench.py Decode: 8 layers x (bf16 mm M=16, silu, mul, fp8 scaled_mm, add)",
        "seconds_per_block": seconds, "rounds": rounds, "period_seconds": float(PERIOD), "runs": runs,
        "baseline_library": baseline, "cpus": sorted(cpus) if cpus else "any",
        "cost": cost, "cost_per_round": cost_per_round,
        "coverage": {name: statistics.mean(r["coverage"] for r in rs) for name, rs in runs.items()},
        "baseline_spread": (max(r["steps_per_second"] for r in runs["off"])
                            - min(r["steps_per_second"] for r in runs["off"])) / base,
    }
    if "library, window always open" in cost and "cupti-python, always on" in cost:
        report["ratio_library_open_to_cupti_python"] = (cost["library, window always open"]
                                                        / cost["cupti-python, always on"])
    (out_dir / "inject_bench.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report.get(k) for k in ("cost", "coverage", "baseline_spread",
                                                  "ratio_library_open_to_cupti_python")}, indent=1))


if __name__ == "__main__":
    main()
