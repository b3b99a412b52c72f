"""Reproduces false poll timeouts in ``SourceRunner._attempt`` and checks the proposed fix.

``_work`` sets ``_wake`` in its ``finally`` and then still has to return: freeing the poll's
families (tens of thousands of objects at 72 GPUs) happens after the set, with the GIL handed
around. ``_attempt`` wakes and asks ``thread.is_alive()``; if the poll thread has not exited yet,
a poll that finished in milliseconds is recorded as ``timeout``, its snapshot is dropped and the
source is re-probed with backoff. The fix decides on ``Event.wait``'s return value instead.

    python bench/scheduler_race.py --gpus 8 72 --polls 40
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import textwrap
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import simulated_source  # noqa: E402
from exporter import scheduler  # noqa: E402
from exporter.snapshot import Snapshot, SnapshotStore  # noqa: E402

ORIGINAL = scheduler.SourceRunner._attempt


def patched_attempt():
    """``_attempt`` with the proposed two-line change, compiled from this tree's source."""
    source = textwrap.dedent(inspect.getsource(ORIGINAL))
    for old, new in (("self._wake.wait(self.timeout)", "finished = self._wake.wait(self.timeout)"),
                     ("if thread.is_alive():", "if not finished:")):
        if old not in source:
            raise SystemExit(f"scheduler.py changed ({old!r} not found): the fix may have landed")
        source = source.replace(old, new)
    namespace: dict = {}
    exec(source, vars(scheduler), namespace)  # noqa: S102 - our own source, two lines changed
    return namespace["_attempt"]


def false_timeouts(gpus: int, polls: int, busy: bool) -> int:
    runner = scheduler.SourceRunner(simulated_source(gpus), SnapshotStore(), lambda: Snapshot("exporter", {}))
    stop = threading.Event()

    def spin() -> None:  # another Python thread that wants the GIL, as a scrape or a second source would
        while not stop.is_set():
            pass

    if busy:
        threading.Thread(target=spin, daemon=True).start()
    count = 0
    try:
        for _ in range(polls):
            runner._next_attempt = 0.0  # noqa: SLF001 - poll now, whatever the backoff says
            before = runner.errors.get("timeout", 0)
            runner.run_once()
            count += runner.errors.get("timeout", 0) > before
            while runner._inflight is not None and runner._inflight.is_alive():  # noqa: SLF001
                time.sleep(0.001)
    finally:
        stop.set()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[8, 72])
    parser.add_argument("--polls", type=int, default=40)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    fixed = patched_attempt()
    print(f"polls reported as 'timeout' out of {args.polls} (the timeout is 2 s; every poll takes < 0.5 s)")
    for gpus in args.gpus:
        for busy in (False, True):
            scheduler.SourceRunner._attempt = ORIGINAL
            before = false_timeouts(gpus, args.polls, busy)
            scheduler.SourceRunner._attempt = fixed
            after = false_timeouts(gpus, args.polls, busy)
            print(f"  {gpus:3} GPUs, {'one busy thread' if busy else 'no other thread'}: "
                  f"as is {before:2}, with the fix {after:2}")


if __name__ == "__main__":
    main()
