"""The dispatch state file, version 3 (docs/dispatch-state.md): written in the serving process, read by the exporter.

One JSON file per serving process, replaced atomically (write a temporary file in the same
directory, fsync, rename over the old one), so a reader sees the previous or the next complete
state and never a half-written one. It carries raw kernel names per GPU, in the order they were
first seen, and beside them their cumulative ``[launches, gpu_ns]`` as one flat list of integers;
the exporter classifies them. Two writers produce it: the CUPTI injection library (``native/``)
and the Python sampler of this package. Version 2 files (a mapping of name to pair) are still
read, turned into the same positional lists.

Only the standard library is used: this module is imported inside the serving process. The
exporter reads through ``exporter.dispatch_reader``, which is faster where msgspec is installed.
"""

from __future__ import annotations

import json
import os
import tempfile
from itertools import chain
from pathlib import Path
from typing import Any

FORMAT = "blackwell-exporter/dispatch-state"
VERSION = 3  # what the writers of this release write
READABLE_VERSIONS = (2, 3)
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


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StateError(f"{path}: removed while being read", "missing") from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror or exc}", "missing") from None


def torn_file_error(path: Path, raw: bytes, exc: Exception) -> StateError:
    """The error for a file whose bytes are not one whole JSON document (cut short, or not JSON at all)."""
    return StateError(f"{path}: torn or not JSON ({len(raw)} bytes): {exc}", "torn")


def read_state(path: Path) -> dict[str, Any]:
    """Read one state file with the standard library; see ``check_state`` for what comes back."""
    raw = read_bytes(path)
    try:
        state = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise torn_file_error(path, raw, exc) from None
    return check_state(path, state)


def check_state(path: Path, state: Any, typed: bool = False) -> dict[str, Any]:
    """Check a decoded state file, its counts included; raise StateError saying what is wrong.

    Each ``gpus`` entry comes back with ``names`` (a list of kernel names) and ``counts`` (two
    non-negative integers per name: launches, gpu_ns), whichever version the file is; a version 2
    mapping is turned into these lists. The counts are checked in C (``map(type, ...)``, ``min``).
    ``typed``: the decoder already checked that names are strings and counts non-negative integers
    (the fast reader's typed decoding of version 3).
    """
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise StateError(f"{path}: not a dispatch state file (format is not {FORMAT!r})", "invalid")
    version = state.get("version")
    if type(version) is int and version < READABLE_VERSIONS[0]:
        raise StateError(f"{path}: state version {version} was written by an older sampler (this exporter reads "
                         f"versions {READABLE_VERSIONS}, raw kernel names): restart the serving process with this "
                         "release's injection library or exporter.inprocess", "outdated")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise StateError(f"{path}: state version {version!r}, this exporter reads {READABLE_VERSIONS}", "invalid")
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
        if version == 2:
            entry["names"], entry["counts"] = _positional(where, entry.get("names"))
        else:
            _check_lists(where, entry, typed)
        if not is_pair(entry.get("overflow", [0, 0])):
            raise StateError(f"{where}.overflow: expected [launches, gpu_ns], got {entry.get('overflow')!r}",
                             "invalid")
        if not isinstance(entry.get("uuid", ""), str):
            raise StateError(f"{where}.uuid: must be a string", "invalid")
    return state


def _positional(where: str, names: Any) -> tuple[list[str], list[Any]]:
    """A version 2 mapping of name -> [launches, gpu_ns] as the names and flat counts of version 3."""
    if not isinstance(names, dict):
        raise StateError(f"{where}.names: must be a mapping of kernel name to [launches, gpu_ns]", "invalid")
    pairs = list(names.values())
    try:  # in C; each pair must hold two values, or a [1, 2, 3] beside a [4] would shift every count after it
        paired = set(map(len, pairs)) <= {2}
        counts = list(chain.from_iterable(pairs))
    except TypeError:  # a pair that is a number
        paired, counts = False, []
    if not paired or not set(map(type, counts)) <= {int} or min(counts, default=0) < 0:
        bad = next((name for name, pair in names.items() if not is_pair(pair)), "")
        raise StateError(f"{where}.names[{bad!r}]: expected [launches, gpu_ns], got {names.get(bad)!r}", "invalid")
    return list(names), counts


def _check_lists(where: str, entry: dict[str, Any], typed: bool) -> None:
    names, counts = entry.get("names"), entry.get("counts")
    if not isinstance(names, list) or not (typed or set(map(type, names)) <= {str}):
        raise StateError(f"{where}.names: must be a list of kernel names", "invalid")
    if not isinstance(counts, list) or len(counts) != 2 * len(names) or not (typed or set(map(type, counts)) <= {int}):
        if not isinstance(counts, list):
            got = repr(counts)
        elif len(counts) != 2 * len(names):
            got = f"{len(counts)} values"
        else:
            got = repr(next(count for count in counts if type(count) is not int))
        raise StateError(f"{where}.counts: expected a list of two integers per name ({2 * len(names)}), got {got}",
                         "invalid")
    if not typed and min(counts, default=0) < 0:
        slot = next(index for index, count in enumerate(counts) if count < 0) >> 1
        raise StateError(f"{where}.names[{names[slot]!r}]: expected [launches, gpu_ns], "
                         f"got {counts[2 * slot:2 * slot + 2]!r}", "invalid")


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
