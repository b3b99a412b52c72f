"""An NVL72 rack on loopback: 18 tray exporters (``--simulate nvl72-tray``, one process each, tray index
and rack name through the environment), scraped by one Prometheus that sends to one Alertmanager.
Beside them, optionally, one tray of a neighbouring rack: a second NVLink domain in the same Prometheus,
so a domain rule that mixed racks would show it.

The same thing by hand::

    for tray in $(seq 0 17); do
      BLACKWELL_EXPORTER_SOURCES__SIMULATED__TRAY=$tray blackwell-exporter run --simulate nvl72-tray \\
        --scenario rack-straggler-gpu --listen 127.0.0.1:$((9500 + tray)) &
    done
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from exporter.sources.simulated.profiles import NVL72_TRAYS
from exporter.stack import (
    POLL_SECONDS,
    Service,
    Stack,
    free_port,
)

RACK_PROFILE = "nvl72-tray"


def tray_name(index: int, rack: str | None = None) -> str:
    """The exporter's name in the stack: ``tray-07`` in the drilled rack, ``rack-1-tray-00`` in a neighbour."""
    return f"tray-{index:02d}" if rack is None else f"{rack}-tray-{index:02d}"


def _launch_tray(directory: Path, name: str, index: int, scenario: str, rack: str) -> Service:
    """Start one tray exporter without waiting for it (the 18 start side by side)."""
    directory = directory / name
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [sys.executable, "-m", "exporter", "run", "--simulate", RACK_PROFILE, "--scenario", scenario,
            "--listen", f"127.0.0.1:{port}"]
    env = {**os.environ,
           "BLACKWELL_EXPORTER_SOURCES__SIMULATED__TRAY": str(index),
           "BLACKWELL_EXPORTER_SOURCES__SIMULATED__RACK": rack,
           "BLACKWELL_EXPORTER_SOURCES__SIMULATED__INTERVAL": f"{POLL_SECONDS:g}",
           "BLACKWELL_EXPORTER_SOURCES__SIMULATED__TIMEOUT": f"{POLL_SECONDS:g}"}
    log_path = directory / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=directory, env=env, start_new_session=True)
    return Service(name, port, process, log_path)


def start_rack(directory: Path, rule_files: list[Path], webhook_url: str, scenario: str,
               rack: str = "rack-0", neighbour_rack: str | None = None) -> Stack:
    """The rack's 18 trays under ``scenario`` (and tray 0 of ``neighbour_rack``, healthy), then Alertmanager,
    then Prometheus (as :meth:`Stack.start`)."""
    stack = Stack(directory)
    try:
        for index in range(NVL72_TRAYS):
            stack.exporters[tray_name(index)] = _launch_tray(directory, tray_name(index), index, scenario, rack)
        if neighbour_rack is not None:
            name = tray_name(0, neighbour_rack)
            stack.exporters[name] = _launch_tray(directory, name, 0, "healthy", neighbour_rack)
        for service in stack.exporters.values():
            service.wait_ready("/readyz", timeout=90.0)  # 18 interpreters starting on a shared 2-core machine
        stack.start_monitoring(rule_files, webhook_url)
    except BaseException:
        stack.stop()
        raise
    return stack
