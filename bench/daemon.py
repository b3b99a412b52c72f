"""Run the real daemon with the hgx-b200 model widened to ``--gpus`` GPUs (the CLI knows only named boxes).

``--fix-poll-race`` first applies the scheduler fix that bench/scheduler_race.py proposes, and
``--switch-interval S`` sets ``sys.setswitchinterval`` (how long a thread may hold the GIL while
another waits; CPython's default is 5 ms), so the daemon can be measured with and without them.

    python bench/daemon.py --gpus 72 [--fix-poll-race] [--switch-interval 0.001] run --simulate hgx-b200-x72
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import profile_with  # noqa: E402
from exporter.cli import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--gpus"]:
        profile_with(int(argv[1]))
        argv = argv[2:]
    if argv[:1] == ["--fix-poll-race"]:
        from bench.scheduler_race import patched_attempt
        from exporter.scheduler import SourceRunner

        SourceRunner._attempt = patched_attempt()
        argv = argv[1:]
    if argv[:1] == ["--switch-interval"]:
        sys.setswitchinterval(float(argv[1]))
        argv = argv[2:]
    sys.exit(main(argv))
