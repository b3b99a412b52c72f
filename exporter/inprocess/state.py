"""The dispatch state file, version 2 (docs/dispatch-state.md): written in the serving process, read by the exporter.

One JSON file per serving process, replaced atomically (write a temporary file in the same
directory, fsync, rename over the old one), so a reader sees the previous or the next complete
state and never a half-written one. It carries raw kernel names with cumulative
``[launches, gpu_ns]`` per GPU; the exporter classifies them. Two writers produce it: the CUPTI
injection library (``native/``) and the Python sampler of this package.

Only the standard library is used: this module is imported inside the serving process.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FORMAT = "blackwell-exporter/dispatch-state"
VERSION = 2
DEFAULT_DIR = Path(os.environ.get("BLACKWELL_DISPATCH_STATE_DIR", "/tmp/blackwell-exporter/dispatch"))
STATUSES = ("sampling", "unavailable", "paused", "exited")
REASONS = ("", "cupti_missing", "cupti_incompatible", "multiple_subscribers", "cupti_error", "disabled", "exited")
_COUNTERS = ("windows", "windows_skipped", "sampled_seconds", "records", "incomplete_records", "dropped_records")


class StateError(Exception):
    """The state file cannot be used; ``reason`` is a short label (missing, torn, invalid, outdated)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def write_atomic(path: Path, state: dict[str, Any]) -> None:
    """Replace ``path`` with ``state`` as JSON in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; the exporter reading it often runs as another user (a sidecar)
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0 \
            or value == float("inf"):
        raise StateError(f"{where}: expected a non-negative number, got {value!r}", "invalid")
    return value


def is_pair(value: Any) -> bool:
    """Whether ``value`` is a ``[launches, gpu_ns]`` pair of non-negative integers."""
    return (type(value) is list and len(value) == 2 and type(value[0]) is int and type(value[1]) is int
            and value[0] >= 0 and value[1] >= 0)


def read_state(path: Path) -> dict[str, Any]:
    """Read one state file and check everything but the per-name pairs; raise StateError saying what is wrong.

    Per-name ``[launches, gpu_ns]`` pairs are checked by the reader that walks them (``is_pair``),
    so a file of 100,000 names is walked once per poll, not twice.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StateError(f"{path}: removed while being read", "missing") from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror or exc}", "missing") from None
    try:
        state = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise StateError(f"{path}: torn or not JSON ({len(raw)} bytes): {exc}", "torn") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise StateError(f"{path}: not a dispatch state file (format is not {FORMAT!r})", "invalid")
    version = state.get("version")
    if type(version) is int and version < VERSION:
        raise StateError(f"{path}: state version {version} was written by an older sampler (this exporter reads "
                         f"version {VERSION}, raw kernel names): restart the serving process with this release's "
                         "injection library or exporter.inprocess", "outdated")
    if version != VERSION:
        raise StateError(f"{path}: state version {version!r}, this exporter reads {VERSION}", "invalid")
    _check_header(path, state)
    gpus = state.get("gpus")
    if not isinstance(gpus, dict):
        raise StateError(f"{path}: gpus must be a mapping", "invalid")
    for gpu, entry in gpus.items():
        where = f"{path}: gpus[{gpu}]"
        if not isinstance(entry, dict):
            raise StateError(f"{where}: must be a mapping", "invalid")
        for key in ("kernels", "kernel_ns"):
            if type(entry.get(key)) is not int or entry[key] < 0:
                raise StateError(f"{where}.{key}: expected a non-negative integer, got {entry.get(key)!r}", "invalid")
        if not isinstance(entry.get("names"), dict):
            raise StateError(f"{where}.names: must be a mapping of kernel name to [launches, gpu_ns]", "invalid")
        if not is_pair(entry.get("overflow", [0, 0])):
            raise StateError(f"{where}.overflow: expected [launches, gpu_ns], got {entry.get('overflow')!r}",
                             "invalid")
        if not isinstance(entry.get("uuid", ""), str):
            raise StateError(f"{where}.uuid: must be a string", "invalid")
    return state


def _check_header(path: Path, state: dict[str, Any]) -> None:
    if type(state.get("pid")) is not int:
        raise StateError(f"{path}: pid: expected an integer, got {state.get('pid')!r}", "invalid")
    for key in ("started_at", "updated_at", "duty_cycle", *_COUNTERS):
        _number(state.get(key, 0 if key in ("windows_skipped", "incomplete_records") else None), f"{path}: {key}")
    status = state.get("status")
    if status not in STATUSES:
        raise StateError(f"{path}: status {status!r} is not one of {STATUSES}", "invalid")
    for key in ("writer", "reason", "detail", "process"):
        if not isinstance(state.get(key, ""), str):
            raise StateError(f"{path}: {key}: must be a string", "invalid")
    if state.get("reason", "") not in REASONS:
        # A newer writer may know more reasons: keep the file, label the reason as it is (bounded by the
        # writer's list), and never fail a live process over it.
        state["reason"] = "other"
