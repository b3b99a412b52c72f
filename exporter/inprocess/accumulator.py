"""Cumulative per-GPU, per-precision kernel counts built from kernel activity records.

Kept apart from CUPTI so the arithmetic is testable anywhere: the sampler feeds it
(name, device, start_ns, end_ns) tuples from CUPTI's buffers and asks it for the state to write.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from exporter.dispatch_table import PRECISIONS
from exporter.inprocess.state import FORMAT, VERSION

# Names whose precision came from the table's default are kept (at most this many) so an operator
# can see which GEMMs the table does not know yet.
MAX_UNRECOGNIZED = 20


@dataclass
class GpuTotals:
    uuid: str = ""
    kernels: int = 0
    kernel_seconds: float = 0.0
    gemm_launches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRECISIONS, 0))
    gemm_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PRECISIONS, 0.0))


class Accumulator:
    """Thread-safe totals; ``add_records`` is called from CUPTI's buffer callback."""

    def __init__(self, classify: Callable[[str], str | None], explain: Callable[[str], str],
                 gpu_label: Callable[[int], tuple[str, str]], process: str, duty_cycle: float,
                 period: float, clock: Callable[[], float] = time.time) -> None:
        self._classify = classify
        self._explain = explain
        self._gpu_label = gpu_label
        self._clock = clock
        self._lock = threading.Lock()
        self.process = process
        self.duty_cycle = duty_cycle
        self.period = period
        self.started_at = clock()
        self.gpus: dict[str, GpuTotals] = {}
        self.windows = 0
        self.sampled_seconds = 0.0
        self.records = 0
        self.incomplete_records = 0
        self.dropped_records = 0
        self.unrecognized: Counter[str] = Counter()
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
                seconds = (end - start) * 1e-9
                gpu.kernels += 1
                gpu.kernel_seconds += seconds
                precision = self._classify(name)
                if precision is None:
                    continue
                gpu.gemm_launches[precision] += 1
                gpu.gemm_seconds[precision] += seconds
                if precision == "other" and self._explain(name).startswith("default:"):
                    if name in self.unrecognized or len(self.unrecognized) < MAX_UNRECOGNIZED:
                        self.unrecognized[name] += 1

    def add_window(self, seconds: float, dropped: int) -> None:
        with self._lock:
            self.windows += 1
            self.sampled_seconds += seconds
            self.dropped_records += dropped

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "format": FORMAT, "version": VERSION, "pid": os.getpid(), "process": self.process,
                "started_at": self.started_at, "updated_at": self._clock(),
                "duty_cycle": self.duty_cycle, "period_seconds": self.period,
                "windows": self.windows, "sampled_seconds": self.sampled_seconds, "records": self.records,
                "incomplete_records": self.incomplete_records, "dropped_records": self.dropped_records,
                "gpus": {gpu: {"uuid": t.uuid, "kernels": t.kernels, "kernel_seconds": t.kernel_seconds,
                               "gemm_launches": dict(t.gemm_launches), "gemm_seconds": dict(t.gemm_seconds)}
                         for gpu, t in sorted(self.gpus.items())},
                "unrecognized_gemms": dict(self.unrecognized.most_common()),
            }
