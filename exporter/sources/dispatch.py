"""The ``dispatch`` source: GEMM precision counts written by the in-process sampler.

Reads every ``*.json`` state file in ``state_dir`` (one per serving process, see
:mod:`exporter.inprocess`), sums the GEMM counters per GPU and precision, and exports the
sampler's health per process. A missing, torn, invalid or stale file fails the poll with that
reason, so ``blackwell_exporter_source_up{source="dispatch"}`` drops and the error names the file.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from exporter.dispatch_table import PRECISIONS
from exporter.inprocess.state import DEFAULT_DIR, StateError, read_state
from exporter.snapshot import Family
from exporter.sources.base import PartialPollError, PollError, Source, SourceConfig


class DispatchConfig(SourceConfig):
    state_dir: Path = Field(DEFAULT_DIR, description="directory the in-process samplers write their state files to")
    stale_after: float = Field(120.0, gt=0, description="seconds after which an unchanged state file counts as stale")


class DispatchSource(Source):
    name: ClassVar[str] = "dispatch"
    stand_in: ClassVar[str | None] = "simulated"
    config_model: ClassVar[type[SourceConfig]] = DispatchConfig

    def __init__(self, config: DispatchConfig, clock: Callable[[], float] = time.time) -> None:
        super().__init__(config)
        self.config: DispatchConfig = config
        self._clock = clock

    def poll(self) -> list[Family]:
        directory = self.config.state_dir
        try:
            paths = sorted(p for p in directory.glob("*.json") if p.is_file())
        except OSError as exc:
            raise PollError(f"{directory}: cannot list state files: {exc}", "missing") from None
        if not paths:
            raise PollError(f"{directory}: no dispatch state files (*.json); start the sampler in the serving "
                            "process with exporter.inprocess.start_sampler()", "missing")
        now = self._clock()
        states = []
        problems: list[StateError] = []
        for path in paths:
            try:
                states.append((path.stem, read_state(path, now, self.config.stale_after)))
            except StateError as exc:
                problems.append(exc)
        if not states:
            raise PollError(str(problems[0]), problems[0].reason)
        families = self._families(states, now)
        # A stale file is a process that ended without stopping its sampler (killed): it must not
        # hide the live ones. A torn or invalid file of a live process is a real fault: shown, partially.
        faults = [p for p in problems if p.reason != "stale"]
        if faults:
            raise PartialPollError("; ".join(str(p) for p in faults), families, faults[0].reason)
        return families

    @staticmethod
    def _families(states: list[tuple[str, dict]], now: float) -> list[Family]:
        launches: dict[tuple[str, str], float] = defaultdict(float)
        seconds: dict[tuple[str, str], float] = defaultdict(float)
        kernels: dict[str, float] = defaultdict(float)
        kernel_seconds: dict[str, float] = defaultdict(float)
        f = {name: Family(name) for name in (
            "blackwell_gemm_kernel_launches_total", "blackwell_gemm_kernel_seconds_total",
            "blackwell_dispatch_kernel_launches_total", "blackwell_dispatch_kernel_seconds_total",
            "blackwell_dispatch_sampler_windows_total", "blackwell_dispatch_sampler_sampled_seconds_total",
            "blackwell_dispatch_sampler_records_total", "blackwell_dispatch_sampler_dropped_records_total",
            "blackwell_dispatch_sampler_duty_cycle_ratio", "blackwell_dispatch_sampler_state_age_seconds",
        )}
        for process, state in states:
            for gpu, entry in state["gpus"].items():
                kernels[gpu] += entry["kernels"]
                kernel_seconds[gpu] += entry["kernel_seconds"]
                for precision in PRECISIONS:
                    launches[(gpu, precision)] += entry["gemm_launches"].get(precision, 0)
                    seconds[(gpu, precision)] += entry["gemm_seconds"].get(precision, 0.0)
            f["blackwell_dispatch_sampler_windows_total"].add((process,), state["windows"])
            f["blackwell_dispatch_sampler_sampled_seconds_total"].add((process,), state["sampled_seconds"])
            f["blackwell_dispatch_sampler_records_total"].add((process,), state["records"])
            f["blackwell_dispatch_sampler_dropped_records_total"].add((process,), state["dropped_records"])
            f["blackwell_dispatch_sampler_duty_cycle_ratio"].add((process,), state["duty_cycle"])
            f["blackwell_dispatch_sampler_state_age_seconds"].add((process,), round(max(0.0, now - state["updated_at"]), 3))
        for (gpu, precision), value in sorted(launches.items()):
            f["blackwell_gemm_kernel_launches_total"].add((gpu, precision), value)
            f["blackwell_gemm_kernel_seconds_total"].add((gpu, precision), seconds[(gpu, precision)])
        for gpu in sorted(kernels):
            f["blackwell_dispatch_kernel_launches_total"].add((gpu,), kernels[gpu])
            f["blackwell_dispatch_kernel_seconds_total"].add((gpu,), kernel_seconds[gpu])
        return list(f.values())
