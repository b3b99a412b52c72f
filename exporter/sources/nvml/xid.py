"""A daemon thread that counts XID events from NVML's event stream, per GPU UUID and XID code.

dcgm-exporter exports the last XID as a gauge, so two XIDs between scrapes show as one. This
counts every event. Counts are keyed by UUID and survive NVML re-init (a new watcher is given
the old counts), so a counter only resets when the exporter restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from exporter.sources.nvml.backend import Backend, NvmlError

log = logging.getLogger(__name__)

WAIT_MS = 1000


class XidWatcher:
    def __init__(self, backend: Backend, handles: Sequence[Any], counts: Counter[tuple[str, int]] | None = None) -> None:
        self._backend = backend
        self._handles = list(handles)
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int]] = counts if counts is not None else Counter()
        self._last: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_set: Any = None
        self.registered = 0
        self.error = ""

    def start(self) -> None:
        """Register for XID events on every GPU that supports them and start waiting."""
        self._event_set, registered = self._backend.xid_event_set(self._handles)
        self.registered = len(registered)
        if not registered:
            log.info("nvml: no GPU supports XID events; blackwell_gpu_xid_errors_total stays empty")
        self._thread = threading.Thread(target=self._run, name="nvml-xid", daemon=True)
        self._thread.start()

    def counts(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._counts)

    def last(self) -> dict[str, int]:
        """The most recent XID code per GPU UUID (what dcgm-exporter's XID gauge shows)."""
        with self._lock:
            return dict(self._last)

    def carried_counts(self) -> Counter[tuple[str, int]]:
        """The live counter, to hand to the watcher that replaces this one."""
        return self._counts

    def stop(self, timeout: float = 2 * WAIT_MS / 1000) -> threading.Thread | None:
        """Stop waiting and free the event set; returns the thread if it is still inside NVML.

        The set is then left to the thread: freeing it under a waiting thread would be a
        use-after-free, and the caller must not shut NVML down before the thread has returned."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("nvml: XID thread did not stop within %.1fs; leaving it behind", timeout)
                return thread
        if self._event_set is not None:
            try:
                self._backend.xid_free(self._event_set)
            except NvmlError as exc:
                log.debug("nvml: freeing the XID event set: %s", exc)
            self._event_set = None
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._backend.xid_wait(self._event_set, WAIT_MS)
            except NvmlError as exc:
                # A lost GPU makes the wait fail until re-init replaces this watcher: do not spin.
                if self.error != str(exc):
                    log.warning("nvml: waiting for XID events failed: %s", exc)
                self.error = str(exc)
                self._stop.wait(WAIT_MS / 1000)
                continue
            except Exception:  # noqa: BLE001 - the thread must outlive any surprise from the binding
                log.exception("nvml: XID thread")
                time.sleep(WAIT_MS / 1000)
                continue
            if event is not None:
                log.warning("nvml: XID %d on GPU %s", event.xid, event.uuid)
                with self._lock:
                    self._counts[(event.uuid, event.xid)] += 1
                    self._last[event.uuid] = event.xid
