"""The injection library's cost at a duty cycle, from one process's own timeline.

On the lent GPU machine the launch-bound loop's speed jumps between two levels every few seconds
(bench/results/inject_h200.md), in every process, instrumented or not, so comparing processes, or
the time before sampling with the time after, cannot resolve a 2% cost. Here one process runs
bench/dispatch_bench.py's eager decode loop for a minute while the library samples (windows every
PERIOD seconds at random phase) and records steps in ~20 ms slices, plus when each window ended
(the state file's ``windows`` count moves then). Slices near a window (its mean length, the state
file's ``sampled_seconds / windows``, before its end,
plus 50 ms before and 150 ms after for attaching and detaching) are "window" slices, the rest
"between" slices; both see the same speed jumps. The cost at the duty cycle is

    1 - (mean speed over the whole run) / (mean speed in between slices)

and the cost while a window is open, from the slices wholly inside one (50 ms after its start to
50 ms before its end), is ``1 - open speed / between speed``. The same analysis of a process
running the cupti-python sampler (``exporter.inprocess`` DispatchSampler, started after warm-up,
the same duty cycle and period) gives its window-open cost in the same run, so the target "the
library's window-open cost at most 1/4 of cupti-python's" is a ratio of two in-process figures
(``ratio_window_open_library_to_cupti_python``). The sampler stays subscribed between its windows:
its between slices are slowed too, so its cost reads lower than it is and the ratio higher.

An uninstrumented process run through the same analysis, with windows drawn at the same cadence,
gives the noise floor. "attached between windows" (BLACKWELL_DISPATCH_DETACH=0) is reported the
same way, but its between slices are themselves slowed by CUPTI staying attached, which this design
cannot see (bench/cupti_detach_probe.cu measures that per launch).

    python3 bench/inject_timeline.py OUT_DIR LIBRARY [--seconds 60] [--period 2] [--duty 0.1] [--modes "off|..."]
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from inject_bench import run_child  # bench/ is this script's folder

CHILD = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, "bench")
import torch
from dispatch_bench import Decode, throughput
seconds = float(sys.argv[1])
state = Path(os.environ["BLACKWELL_DISPATCH_STATE_DIR"]) / "bench.json"
work = Decode()
throughput(work, 2.0)
if os.environ.get("PYTHON_SAMPLER"):
    from exporter.inprocess.sampler import DispatchSampler
    DispatchSampler(state, float(os.environ["BLACKWELL_DISPATCH_DUTY_CYCLE"]),
                    float(os.environ["BLACKWELL_DISPATCH_PERIOD"]), "bench").start()
slices, stamp, windows = [], None, 0
steps, end = 0, time.monotonic() + seconds
torch.cuda.synchronize()
while True:
    for _ in range(5):
        work.step()
    steps += 5
    now = time.monotonic()
    try:
        mtime = os.stat(state).st_mtime_ns
        if mtime != stamp:
            stamp, windows = mtime, json.loads(state.read_text()).get("windows", 0)
    except (OSError, ValueError):
        pass
    if not slices or now - slices[-1][0] >= 0.02:
        slices.append((now, steps, windows))
    if now >= end:
        break
print(json.dumps(slices))
"""

MODES = {
    "off": {},
    "library (detaches after each window)": {"inject": True},
    "library, attached between windows": {"inject": True, "BLACKWELL_DISPATCH_DETACH": "0"},
    "cupti-python sampler": {"python": True},
}
LIBRARY = "library (detaches after each window)"
CUPTI_PYTHON = "cupti-python sampler"


def window_ends(slices: list[list[float]], period: float, duty: float, drawn: bool) -> list[float]:
    """When windows ended: where the state file's count moved, or (uninstrumented) drawn at the same cadence."""
    if not drawn:
        return [t for (t, _, w), (_, _, before) in zip(slices[1:], slices, strict=False) if w != before]
    ends, at, rng = [], slices[0][0], random.Random(7)
    while at < slices[-1][0]:
        at += (period - duty * period) * (0.5 + rng.random()) + duty * period
        ends.append(at)
    return ends


def analyse(slices: list[list[float]], ends: list[float], window: float) -> dict:
    near = [(end - window - 0.05, end + 0.15) for end in ends]
    inside = [(end - window + 0.05, end - 0.05) for end in ends]
    spent = {"window": [0.0, 0], "between": [0.0, 0], "open": [0.0, 0]}
    for (t0, s0, _), (t1, s1, _) in zip(slices, slices[1:], strict=False):
        kind = "window" if any(lo <= t1 and t0 <= hi for lo, hi in near) else "between"
        spent[kind][0] += t1 - t0
        spent[kind][1] += s1 - s0
        if any(lo <= t0 and t1 <= hi for lo, hi in inside):
            spent["open"][0] += t1 - t0
            spent["open"][1] += s1 - s0
    between = spent["between"][1] / spent["between"][0]
    window_speed = spent["window"][1] / spent["window"][0] if spent["window"][0] else between
    open_speed = spent["open"][1] / spent["open"][0] if spent["open"][0] else between
    overall = (spent["window"][1] + spent["between"][1]) / (spent["window"][0] + spent["between"][0])
    return {"windows_seen": len(ends), "steps_per_second_between": between, "steps_per_second_near_windows": window_speed,
            "steps_per_second_window_open": open_speed, "seconds_window_open": spent["open"][0],
            "share_of_time_near_windows": spent["window"][0] / (spent["window"][0] + spent["between"][0]),
            "cost_near_windows": 1 - window_speed / between, "cost_window_open": 1 - open_speed / between,
            "cost_at_duty": 1 - overall / between}


def main() -> None:
    out_dir, library = Path(sys.argv[1]), sys.argv[2]
    option = {k: float(sys.argv[sys.argv.index(k) + 1]) for k in ("--seconds", "--period", "--duty") if k in sys.argv}
    seconds, period, duty = option.get("--seconds", 60.0), option.get("--period", 2.0), option.get("--duty", 0.1)
    chosen = sys.argv[sys.argv.index("--modes") + 1].split("|") if "--modes" in sys.argv else list(MODES)
    report: dict = {"seconds": seconds, "period_seconds": period, "duty_cycle": duty, "modes": {}}
    for name, mode in ((name, MODES[name]) for name in chosen):
        slices, state_dir = run_child(CHILD, [str(seconds)], mode, library, {
            "BLACKWELL_DISPATCH_PERIOD": str(period), "BLACKWELL_DISPATCH_DUTY_CYCLE": str(duty)}, seconds + 120)
        sampled = mode.get("inject") or mode.get("python")
        final = json.loads((state_dir / "bench.json").read_text()) if sampled else {}
        # Each window's length as it was: the cupti-python sampler's run long (its thread waits for the GIL
        # the loop holds, and its buffer callbacks are Python), about 3 s for a 1 s window at duty 0.5.
        window = final["sampled_seconds"] / final["windows"] if final.get("windows") else duty * period
        result = analyse(slices, window_ends(slices, period, duty, drawn=not sampled), window)
        result["window_seconds"] = window
        result.update({k: final.get(k) for k in ("windows", "detaches", "sampled_seconds")} if final else {})
        report["modes"][name] = result
        if LIBRARY in report["modes"] and CUPTI_PYTHON in report["modes"]:
            report["ratio_window_open_library_to_cupti_python"] = (
                report["modes"][LIBRARY]["cost_window_open"] / report["modes"][CUPTI_PYTHON]["cost_window_open"])
        print(name, json.dumps(result), flush=True)
        (out_dir / f"timeline_{len(report['modes'])}.json").write_text(json.dumps(slices))
        (out_dir / "inject_timeline.json").write_text(json.dumps(report, indent=1))  # after each mode: a cut-off run keeps them


if __name__ == "__main__":
    main()
