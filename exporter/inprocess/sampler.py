"""The CUPTI dispatch sampler that runs inside the serving process.

A daemon thread alternates between idle time and short recording windows: it enables CUPTI's
concurrent-kernel activity records for ``window`` seconds, disables them, flushes CUPTI's buffers
into an :class:`Accumulator`, and rewrites the state file. Only kernels launched inside a window
are recorded, so the cost to the serving process is the cost of tracing times the duty cycle
(window / period), plus the Python work of classifying the window's records. The idle time is
jittered by +-50% so the windows do not lock onto a periodic workload.

``cupti-python`` is imported only when a sampler starts; without it :func:`start` raises
:class:`SamplerUnavailableError` with the install hint, and ``start_sampler`` logs that and returns None.
"""

from __future__ import annotations

import ctypes
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

from exporter.dispatch_table import KernelClassifier
from exporter.inprocess.accumulator import Accumulator
from exporter.inprocess.state import write_atomic

log = logging.getLogger("blackwell_exporter.inprocess")

BUFFER_BYTES = 8 * 1024 * 1024
# Kernels launched at the very end of a window finish after it: give them this long before the
# forced flush, which hands over unfinished records without an end time.
SETTLE_SECONDS = 0.02


class SamplerUnavailableError(RuntimeError):
    """CUPTI cannot be used in this process (package missing, or CUPTI refused)."""


def _gpu_label(ordinal: int) -> tuple[str, str]:
    """(gpu label, uuid) for a CUDA device ordinal of this process.

    The label is the NVML index, so it joins the nvml source's series even when the process sees
    a subset of GPUs (CUDA_VISIBLE_DEVICES); without NVML it falls back to the CUDA ordinal.
    """
    try:
        from cuda.bindings import driver

        (err,) = driver.cuInit(0)  # a no-op once the framework has initialized CUDA
        if err != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(err)
        err, device = driver.cuDeviceGet(ordinal)
        if err != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(err)
        err, uuid = driver.cuDeviceGetUuid(device)
        if err != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(err)
        raw = bytes(uuid.bytes)
        text = raw.hex()
        uuid_str = f"GPU-{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:32]}"
    except Exception as exc:  # cuda-bindings missing or the driver refused: keep the ordinal
        log.info("dispatch sampler: no UUID for CUDA device %d (%s); labelling it gpu=%d", ordinal, exc, ordinal)
        return str(ordinal), ""
    try:
        import pynvml

        pynvml.nvmlInit()
        index = pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByUUID(uuid_str))
        return str(index), uuid_str
    except Exception as exc:
        log.info("dispatch sampler: NVML has no index for %s (%s); labelling it gpu=%d", uuid_str, exc, ordinal)
        return str(ordinal), uuid_str


class DispatchSampler:
    def __init__(self, state_path: Path, duty_cycle: float, period: float, process: str,
                 classifier: KernelClassifier | None = None, seed: int | None = None) -> None:
        if not 0 < duty_cycle <= 1:
            raise ValueError(f"duty_cycle must be in (0, 1], got {duty_cycle}")
        if period <= 0:
            raise ValueError(f"period must be positive, got {period}")
        self.state_path = state_path
        self.duty_cycle = duty_cycle
        self.period = period
        self.window = duty_cycle * period
        table = classifier or KernelClassifier.load()
        self.accumulator = Accumulator(table.classify, table.explain, _gpu_label, process, duty_cycle, period)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cupti: Any = None

    # -- CUPTI plumbing --------------------------------------------------------------------
    def _buffer_requested(self) -> tuple[int, int]:
        return BUFFER_BYTES, 0

    def _buffer_completed(self, activities: list[Any]) -> None:
        kind = self._cupti.ActivityKind.CONCURRENT_KERNEL
        self.accumulator.add_records(
            (a.name, a.device_id, a.start, a.end) for a in activities if a.kind == kind)

    def _dropped(self) -> int:
        dropped = ctypes.c_size_t(0)
        try:
            self._cupti.activity_get_num_dropped_records(0, 0, ctypes.addressof(dropped))
        except Exception:  # not fatal: dropped records are a health signal
            return 0
        return int(dropped.value)

    def start(self) -> None:
        try:
            from cupti import cupti
        except ImportError as exc:
            raise SamplerUnavailableError(
                f"cupti-python is not importable ({exc}); install it with pip install 'blackwell-exporter[cupti]' "
                "(pick the version matching the driver's CUDA, e.g. cupti-python 13.0.x for driver 580)") from None
        self._cupti = cupti
        try:
            cupti.activity_register_callbacks(self._buffer_requested, self._buffer_completed)
        except Exception as exc:
            raise SamplerUnavailableError(f"CUPTI refused the activity callbacks: {exc}") from None
        write_atomic(self.state_path, self.accumulator.state())
        self._thread = threading.Thread(target=self._run, name="blackwell-dispatch-sampler", daemon=True)
        self._thread.start()
        log.info("dispatch sampler: recording %.2fs of every %.0fs (duty cycle %.3f) into %s",
                 self.window, self.period, self.duty_cycle, self.state_path)

    def _run(self) -> None:
        cupti = self._cupti
        kind = cupti.ActivityKind.CONCURRENT_KERNEL
        while True:
            idle = (self.period - self.window) * self._rng.uniform(0.5, 1.5)
            if idle > 0 and self._stop.wait(idle):
                return
            try:
                began = time.monotonic()
                cupti.activity_enable(kind)
                self._stop.wait(self.window)
                cupti.activity_disable(kind)
                recorded = time.monotonic() - began
                time.sleep(SETTLE_SECONDS)
                cupti.activity_flush_all(1)
                self.accumulator.add_window(recorded, self._dropped())
                write_atomic(self.state_path, self.accumulator.state())
            except Exception:
                # The sampler must never take the serving process down: stop sampling, say why.
                log.exception("dispatch sampler stopped after an error; the dispatch source will report the "
                              "state file as stale")
                return
            if self._stop.is_set():
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling and remove this process's state file: a stopped sampler's counters end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.state_path.unlink(missing_ok=True)
