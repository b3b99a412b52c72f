"""The CUPTI dispatch sampler that runs inside the serving process.

A daemon thread alternates between idle time and short recording windows: it enables CUPTI's
concurrent-kernel activity records for ``window`` seconds, disables them, flushes CUPTI's buffers
into an :class:`Accumulator` (raw kernel names, no classification), and rewrites the state file.
Only kernels launched inside a window are recorded, so the cost to the serving process is the
cost of tracing times the duty cycle (window / period). The idle time is jittered by +-50% so the
windows do not lock onto a periodic workload.

``cupti-python`` is imported only when a sampler starts. When CUPTI cannot be used (package
missing, another subscriber, an error inside CUPTI) the sampler logs one line, says why in the
state file (``status`` unavailable or paused, ``reason``, ``detail``) and keeps rewriting it every
period without opening windows, so the exporter shows the reason instead of a stale file.
"""

from __future__ import annotations

import ctypes
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

from exporter.inprocess.accumulator import DEFAULT_MAX_NAMES, Accumulator
from exporter.inprocess.state import StateWriter

log = logging.getLogger("blackwell_exporter.inprocess")

BUFFER_BYTES = 8 * 1024 * 1024
# Kernels launched at the very end of a window finish after it: give them this long before the
# forced flush, which hands over unfinished records without an end time.
SETTLE_SECONDS = 0.02


class SamplerUnavailableError(RuntimeError):
    """CUPTI cannot be used in this process; ``reason`` is the state file's reason label."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _cupti_reason(exc: Exception) -> str:
    return "multiple_subscribers" if "MULTIPLE_SUBSCRIBERS" in str(exc) else "cupti_error"


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
                 max_names: int = DEFAULT_MAX_NAMES, seed: int | None = None) -> None:
        if not 0 <= duty_cycle <= 1:
            raise ValueError(f"duty_cycle must be in [0, 1] (0 disables sampling), got {duty_cycle}")
        if period <= 0:
            raise ValueError(f"period must be positive, got {period}")
        self.state_path = state_path
        self._writer = StateWriter(state_path)
        self.duty_cycle = duty_cycle
        self.period = period
        self.window = duty_cycle * period
        self.accumulator = Accumulator(_gpu_label, process, duty_cycle, period, max_names)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cupti: Any = None
        self._disabled = ""

    def disable(self, why: str) -> None:
        """Never attach to CUPTI (call before start): the state file says ``disabled`` and why."""
        self._disabled = why

    @property
    def sampling(self) -> bool:
        return self.accumulator.status == "sampling"

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

    def _attach(self) -> None:
        try:
            from cupti import cupti
        except ImportError as exc:
            raise SamplerUnavailableError(
                f"cupti-python is not importable ({exc}); install it with pip install 'blackwell-exporter[cupti]' "
                "(pick the version matching the driver's CUDA, e.g. cupti-python 13.0.x for driver 580), or use the "
                "injection library (CUDA_INJECTION64_PATH)", "cupti_missing") from None
        self._cupti = cupti
        try:
            cupti.activity_register_callbacks(self._buffer_requested, self._buffer_completed)
        except Exception as exc:
            raise SamplerUnavailableError(f"CUPTI refused the activity callbacks: {exc}", _cupti_reason(exc)) from None

    def start(self) -> None:
        """Attach to CUPTI and start the thread; never raises for CUPTI: the state file says why instead."""
        try:
            if self.duty_cycle == 0:
                raise SamplerUnavailableError("duty cycle 0 (BLACKWELL_DISPATCH_DUTY_CYCLE): sampling disabled", "disabled")
            if self._disabled:
                raise SamplerUnavailableError(self._disabled, "disabled")
            self._attach()
        except SamplerUnavailableError as exc:
            log.warning("blackwell dispatch sampler not sampling: %s", exc)
            self.accumulator.set_status("unavailable", exc.reason, str(exc))
        self._write()
        self._thread = threading.Thread(target=self._run, name="blackwell-dispatch-sampler", daemon=True)
        self._thread.start()
        if self.sampling:
            log.info("dispatch sampler: recording %.2fs of every %.0fs (duty cycle %.3f) into %s",
                     self.window, self.period, self.duty_cycle, self.state_path)

    def _run(self) -> None:
        while True:
            idle = (self.period - self.window) * self._rng.uniform(0.5, 1.5)
            if idle > 0 and self._stop.wait(idle):
                return
            if self.sampling:
                self._window()
            else:
                self.accumulator.skip_window()
            self._write()
            if self._stop.is_set():
                return

    def _window(self) -> None:
        cupti = self._cupti
        kind = cupti.ActivityKind.CONCURRENT_KERNEL
        try:
            began = time.monotonic()
            cupti.activity_enable(kind)
            self._stop.wait(self.window)
            cupti.activity_disable(kind)
            recorded = time.monotonic() - began
            time.sleep(SETTLE_SECONDS)
            cupti.activity_flush_all(1)
            self.accumulator.add_window(recorded, self._dropped())
        except Exception as exc:
            # The sampler must never take the serving process down: stop opening windows, say why.
            log.exception("dispatch sampler paused after a CUPTI error; the state file says why")
            self.accumulator.set_status("paused", _cupti_reason(exc), f"{type(exc).__name__}: {exc}")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling and write the final state (status exited): the exporter adds its last counts and removes it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.accumulator.set_status("exited", "exited", "the process stopped its sampler")
        self._write(final=True)

    def _write(self, final: bool = False) -> None:
        """Write the state; an unwritable directory is one log line, never an error of the serving process (the
        thread tries again each period)."""
        try:
            self._writer.write(self.accumulator.state())
        except OSError as exc:
            log.warning("dispatch sampler: cannot write %s %s: %s", "the final state to" if final else "to",
                        self.state_path, exc)
