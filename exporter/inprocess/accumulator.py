"""Cumulative per-GPU kernel names with ``[launches, gpu_ns]``, built from kernel activity records.

Kept apart from CUPTI so the arithmetic is testable anywhere: the sampler feeds it
(name, device, start_ns, end_ns) tuples from CUPTI's buffers and asks it for the state to write
(what ``state.StateWriter`` writes as format version 4, docs/dispatch-state.md). Nothing is classified here: the exporter does that,
so a table change needs no restart of the serving process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from exporter import __version__
from exporter.inprocess.state import FORMAT, VERSION

DEFAULT_MAX_NAMES = 2048


@dataclass
class GpuTotals:
    uuid: str = ""
    kernels: int = 0
    kernel_ns: int = 0
    names: dict[str, list[int]] = field(default_factory=dict)
    overflow: list[int] = field(default_factory=lambda: [0, 0])


class Accumulator:
    """Thread-safe totals; ``add_records`` is called from CUPTI's buffer callback."""

    def __init__(self, gpu_label: Callable[[int], tuple[str, str]], process: str, duty_cycle: float,
                 period: float, max_names: int = DEFAULT_MAX_NAMES, clock: Callable[[], float] = time.time) -> None:
        self._gpu_label = gpu_label
        self._clock = clock
        self._lock = threading.Lock()
        self.process = process
        self.duty_cycle = duty_cycle
        self.period = period
        self.max_names = max_names
        self.started_at = clock()
        self.gpus: dict[str, GpuTotals] = {}
        self.windows = 0
        self.windows_skipped = 0
        self.sampled_seconds = 0.0
        self.records = 0
        self.incomplete_records = 0
        self.dropped_records = 0
        self.status, self.reason, self.detail = "sampling", "", ""
        self._labels: dict[int, tuple[str, str]] = {}

    def add_records(self, records: Iterable[tuple[str, int, int, int]]) -> None:
        """Fold (name, cuda device ordinal, start ns, end ns) records into the totals."""
        with self._lock:
            for name, device, start, end in records:
                self.records += 1
                if end <= start:
                    self.incomplete_records += 1  # flushed before the kernel finished: no duration
                    continue
                label = self._labels.get(device)
                if label is None:
                    label = self._labels[device] = self._gpu_label(device)
                gpu = self.gpus.get(label[0])
                if gpu is None:
                    gpu = self.gpus[label[0]] = GpuTotals(uuid=label[1])
                nanoseconds = end - start
                gpu.kernels += 1
                gpu.kernel_ns += nanoseconds
                pair = gpu.names.get(name)
                if pair is None:
                    pair = gpu.overflow if len(gpu.names) >= self.max_names else gpu.names.setdefault(name, [0, 0])
                pair[0] += 1
                pair[1] += nanoseconds

    def add_window(self, seconds: float, dropped: int) -> None:
        with self._lock:
            self.windows += 1
            self.sampled_seconds += seconds
            self.dropped_records += dropped

    def skip_window(self) -> None:
        with self._lock:
            self.windows_skipped += 1

    def set_status(self, status: str, reason: str = "", detail: str = "") -> None:
        with self._lock:
            self.status, self.reason, self.detail = status, reason, detail

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "format": FORMAT, "version": VERSION, "writer": "python", "writer_version": __version__,
                "pid": os.getpid(), "process": self.process, "started_at": self.started_at,
                "updated_at": self._clock(), "status": self.status, "reason": self.reason, "detail": self.detail,
                "duty_cycle": self.duty_cycle, "period_seconds": self.period, "windows": self.windows,
                "windows_skipped": self.windows_skipped, "sampled_seconds": self.sampled_seconds,
                "records": self.records, "incomplete_records": self.incomplete_records,
                "dropped_records": self.dropped_records, "max_names": self.max_names,
                "gpus": {gpu: {"uuid": t.uuid, "kernels": t.kernels, "kernel_ns": t.kernel_ns,
                               "names": list(t.names), "counts": [n for pair in t.names.values() for n in pair],
                               "overflow": list(t.overflow)}
                         for gpu, t in sorted(self.gpus.items())},
            }
