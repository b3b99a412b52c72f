"""A/B of the poll path: the snapshot + simulation code of two git revisions (or this tree).

Each side's ``exporter/snapshot.py`` and ``exporter/sources/simulated/model.py`` are loaded from
git into separate modules (each model bound to its own snapshot module), and one
poll cycle (advance the model 10 s, build families, ``Snapshot.of``, ``SnapshotStore.publish``,
gzip the text once) runs on each side in turn, same seed, same simulated clock. Every cycle's
exposition must be byte-identical on both sides, which is the check that an optimisation kept
behaviour; the CPU time (``time.process_time``) of each stage is compared as a ratio.

    python bench/ab.py --base 6379416 --head 34d95a8 --gpus 8 --cycles 60

Without ``--head`` the other side is this working tree; a head that also changed what the
simulation emits fails the byte-identical check, by design.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import load_at, profile_with  # noqa: E402
from exporter.snapshot import Snapshot  # noqa: E402
from exporter.sources.simulated import model as new_model  # noqa: E402
from exporter.sources.simulated import profiles  # noqa: E402
from exporter.sources.simulated.scenarios import SCENARIOS  # noqa: E402

STAGES = ("advance", "families", "snapshot", "publish", "gzip")


class Side:
    """One implementation's model, store and per-stage CPU times."""

    def __init__(self, snapshot_mod: types.ModuleType, model_mod: types.ModuleType, profile: str) -> None:
        self.snapshot_mod = snapshot_mod
        self.model = model_mod.BoxModel(profiles.PROFILES[profile], SCENARIOS["healthy"], seed=0, start=0.0)
        self.store = snapshot_mod.SnapshotStore()
        self.times: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self.own = snapshot_mod.Snapshot("exporter", {})

    def cycle(self, now: float) -> bytes:
        clock = time.process_time
        t0 = clock()
        self.model.advance(now)
        t1 = clock()
        families = self.model.families()
        t2 = clock()
        snapshot = self.snapshot_mod.Snapshot.of("simulated", families)
        t3 = clock()
        self.store.publish("simulated", snapshot, lambda: self.own)
        t4 = clock()
        exposition = self.store.current()
        exposition.body(openmetrics=False, gzipped=True)
        t5 = clock()
        for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            self.times[stage].append(seconds)
        return exposition.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--head", help="git revision to measure (default: this working tree)")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=60)
    args = parser.parse_args()

    old_snapshot = load_at(args.base, "exporter/snapshot.py", "base_snapshot", {})
    old_model = load_at(args.base, "exporter/sources/simulated/model.py", "base_model",
                        {"exporter.snapshot": old_snapshot})
    if args.head:
        new_snapshot = load_at(args.head, "exporter/snapshot.py", "head_snapshot", {})
        head_model = load_at(args.head, "exporter/sources/simulated/model.py", "head_model",
                             {"exporter.snapshot": new_snapshot})
    else:
        new_snapshot, head_model = sys.modules[Snapshot.__module__], new_model
    profile = profile_with(args.gpus)
    base, head = Side(old_snapshot, old_model, profile), Side(new_snapshot, head_model, profile)
    for n in range(1, args.cycles + 1):
        now = 10.0 * n
        first, second = (base, head) if n % 2 else (head, base)  # alternate who runs first
        a, b = first.cycle(now), second.cycle(now)
        if a != b:
            raise SystemExit(f"cycle {n}: expositions differ ({len(a)} vs {len(b)} bytes): behaviour changed")

    print(f"{args.gpus} GPUs, {args.cycles} cycles of 10 s simulated time, base {args.base} vs "
          f"{args.head or 'this tree'}, "
          f"outputs byte-identical, load {os.getloadavg()[0]:.2f}")
    print(f"  {'stage':10} {'base ms':>9} {'this ms':>9} {'base/this':>9}")
    total_base = total_head = 0.0
    for stage in STAGES:
        b, h = statistics.median(base.times[stage]) * 1e3, statistics.median(head.times[stage]) * 1e3
        total_base += b
        total_head += h
        print(f"  {stage:10} {b:9.3f} {h:9.3f} {b / h if h else float('inf'):8.2f}x")
    print(f"  {'total':10} {total_base:9.3f} {total_head:9.3f} {total_base / total_head:8.2f}x")


if __name__ == "__main__":
    main()
