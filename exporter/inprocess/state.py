"""The dispatch state file: what the in-process sampler writes and the dispatch source reads.

One JSON file per serving process, replaced atomically (write a temporary file in the same
directory, fsync, rename over the old one), so a reader sees the previous or the next complete
state and never a half-written one. Counters in it are cumulative since the sampler started;
a restarted process starts again from zero, which Prometheus' rate() treats as a counter reset.

Only the standard library is used: this module is imported inside the serving process.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FORMAT = "blackwell-exporter/dispatch-state"
VERSION = 1
DEFAULT_DIR = Path(os.environ.get("BLACKWELL_DISPATCH_STATE_DIR", "/tmp/blackwell-exporter/dispatch"))


class StateError(Exception):
    """The state file cannot be used; ``reason`` is a short label (missing, torn, invalid, stale)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def write_atomic(path: Path, state: dict[str, Any]) -> None:
    """Replace ``path`` with ``state`` as JSON in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise StateError(f"{where}: expected a non-negative number, got {value!r}", "invalid")
    return float(value)


def read_state(path: Path, now: float, stale_after: float) -> dict[str, Any]:
    """Read and check one state file; raise StateError saying what is wrong with it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StateError(f"{path}: no dispatch state file (is the sampler running in the serving process?)",
                         "missing") from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror or exc}", "missing") from None
    try:
        state = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"{path}: torn or not JSON ({len(raw)} bytes): {exc}", "torn") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise StateError(f"{path}: not a dispatch state file (format is not {FORMAT!r})", "invalid")
    if state.get("version") != VERSION:
        raise StateError(f"{path}: state version {state.get('version')!r}, this exporter reads {VERSION}", "invalid")
    updated = _number(state.get("updated_at"), f"{path}: updated_at")
    if now - updated > stale_after:
        raise StateError(f"{path}: stale: last written {now - updated:.0f}s ago (limit {stale_after:g}s); "
                         f"the sampler in pid {state.get('pid')} stopped writing", "stale")
    for key in ("windows", "sampled_seconds", "records", "dropped_records", "duty_cycle"):
        _number(state.get(key), f"{path}: {key}")
    gpus = state.get("gpus")
    if not isinstance(gpus, dict):
        raise StateError(f"{path}: gpus must be a mapping", "invalid")
    for gpu, entry in gpus.items():
        where = f"{path}: gpus[{gpu}]"
        if not isinstance(entry, dict):
            raise StateError(f"{where}: must be a mapping", "invalid")
        _number(entry.get("kernels"), f"{where}.kernels")
        _number(entry.get("kernel_seconds"), f"{where}.kernel_seconds")
        for table in ("gemm_launches", "gemm_seconds"):
            values = entry.get(table)
            if not isinstance(values, dict):
                raise StateError(f"{where}.{table}: must be a mapping", "invalid")
            for precision, value in values.items():
                _number(value, f"{where}.{table}.{precision}")
    return state
