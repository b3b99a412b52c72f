"""Profiles poll cycles of one source (cProfile, the poll's worker threads included) and prints the top.

The same cycle as bench/poll.py (``poll()`` then ``Snapshot.of``) for ``simulated`` or ``nvml``
(the replay over the widened H200 capture); functions sorted by their own time.

    python bench/profile_poll.py nvml --gpus 72 --cycles 3 --top 15
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.poll import FakeClock, nvml_cycle  # noqa: E402
from bench.workload import simulated_source  # noqa: E402
from exporter.snapshot import Snapshot  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=("simulated", "nvml"))
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    clock = FakeClock()
    poll = nvml_cycle(args.gpus, clock) if args.source == "nvml" else simulated_source(args.gpus, clock=clock).poll
    for _ in range(2):
        clock.now += 10.0
        poll()
    profile = cProfile.Profile()
    run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:  # the nvml source reads each GPU in its own thread
        thread_profile = cProfile.Profile()
        thread_profile.enable()
        try:
            run(self)
        finally:
            thread_profile.disable()
            with lock:
                thread_profiles.append(thread_profile)

    lock, thread_profiles = threading.Lock(), []
    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    try:
        profile.enable()
        for _ in range(args.cycles):
            clock.now += 10.0
            Snapshot.of(args.source, poll())
        profile.disable()
    finally:
        threading.Thread.run = run  # type: ignore[method-assign]
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    for thread_profile in thread_profiles:
        stats.add(thread_profile)
    stats.sort_stats("tottime").print_stats(args.top)
    print(f"{args.source}, {args.gpus} GPUs, {args.cycles} cycles (all threads; times inflated by the profiler)")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


if __name__ == "__main__":
    main()
