"""An NVL72 rack on loopback: 18 tray exporters (``--simulate nvl72-tray``, one process each, tray index
and rack name through the environment), scraped by one Prometheus that sends to one Alertmanager.

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
    alertmanager_config,
    free_port,
    prometheus_config,
    start_alertmanager,
    start_prometheus,
)

RACK_PROFILE = "nvl72-tray"


def tray_name(index: int) -> str:
    return f"tray-{index:02d}"


def _launch_tray(directory: Path, index: int, scenario: str, rack: str) -> Service:
    """Start one tray exporter without waiting for it (the 18 start side by side)."""
    name = tray_name(index)
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
               rack: str = "rack-0") -> Stack:
    """The rack's 18 trays under ``scenario``, then Alertmanager, then Prometheus (as :meth:`Stack.start`)."""
    stack = Stack(directory)
    try:
        for index in range(NVL72_TRAYS):
            stack.exporters[tray_name(index)] = _launch_tray(directory, index, scenario, rack)
        for service in stack.exporters.values():
            service.wait_ready("/readyz", timeout=90.0)  # 18 interpreters starting on a shared 2-core machine
        stack.alertmanager = start_alertmanager(directory / "alertmanager", alertmanager_config(webhook_url))
        targets = [stack.instance(name) for name in stack.exporters]
        stack.prometheus_config = prometheus_config(targets, f"127.0.0.1:{stack.alertmanager.port}", rule_files)
        stack.prometheus = start_prometheus(directory / "prometheus", stack.prometheus_config)
    except BaseException:
        stack.stop()
        raise
    return stack
