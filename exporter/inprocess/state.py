"""The dispatch state file, version 4 (docs/dispatch-state.md): written in the serving process, read by the exporter.

One JSON file per serving process, replaced atomically (write a temporary file in the same
directory, fsync, rename over the old one), so a reader sees the previous or the next complete
state and never a half-written one. It carries, per GPU, the cumulative ``[launches, gpu_ns]`` of
each raw kernel name as one flat list of integers, in the order the names were first seen; the
names themselves go to a names file per GPU beside it, one JSON string a line, appended to and
never rewritten (``StateWriter``), so neither side handles a name more than once. The exporter
classifies them. Two writers produce it: the CUPTI injection library (``native/``) and the Python
sampler of this package. Version 3 (the names inline, a list) and version 2 (a mapping of name to
pair) files are still read, turned into the same positional lists.

Only the standard library is used: this module is imported inside the serving process. The
exporter reads through ``exporter.dispatch_reader``, which is faster where msgspec is installed.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from itertools import chain
from pathlib import Path
from typing import Any

FORMAT = "blackwell-exporter/dispatch-state"
VERSION = 4  # what the writers of this release write
READABLE_VERSIONS = (2, 3, 4)
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


# A names file is a bare file name in the state directory (the exporter reads and removes it): never a path.
NAMES_FILE = re.compile(r"\.[^/\x00]+\.names")


class StateWriter:
    """Writes one process's state file (version 4) from its state as the accumulator holds it.

    ``write`` takes each GPU's ``names`` and ``counts`` lists, appends to that GPU's names file the
    names it has not written yet (then fsyncs it), and only then replaces the state file, whose
    ``names_listed`` says how many lines of the names file are the GPU's names (``names_bytes``: their
    length in bytes): a reader that sees the state always finds them. A list that does not begin
    with the names already written (a caller that reordered or dropped names) starts a new names
    file (the exporter removes the old one when it no longer needs it); so does a names file that
    is gone or shorter than written (the exporter removes the files of a process it took for gone,
    e.g. one stopped for a while).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: dict[str, tuple[str, list[str], int]] = {}  # gpu -> (names file, names in it, its bytes)

    def write(self, state: dict[str, Any]) -> None:
        gpus = {}
        for gpu, entry in state["gpus"].items():
            names_file, listed, size = self._append(gpu, entry["names"])
            gpus[gpu] = {key: value for key, value in entry.items() if key != "names"} | {
                "names_file": names_file, "names_listed": listed, "names_bytes": size}
        write_atomic(self.path, {**state, "version": VERSION, "gpus": gpus})

    def _append(self, gpu: str, names: list[str]) -> tuple[str, int, int]:
        name, written, size = self._files.get(gpu) or ("", [], 0)
        if written != names[:len(written)] or (name and not _holds(self.path.parent / name, size)):
            name, written, size = "", [], 0  # reordered names, or a file removed (by an exporter that took us for gone)
        if not name:
            safe = re.sub(r"[^A-Za-z0-9_-]", "_", gpu)
            name = f".{self.path.stem}.{safe}.{os.getpid()}-{time.time_ns():x}.names"
        new = names[len(written):]
        if new or not size:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lines = "".join(json.dumps(n) + "\n" for n in new).encode()
            fd = os.open(self.path.parent / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.fchmod(fd, 0o644)  # the exporter, often another user, reads it
                done = 0  # written at the end of what was written whole: a torn earlier append is overwritten
                while done < len(lines):
                    done += os.pwrite(fd, lines[done:], size + done)
                os.ftruncate(fd, size + len(lines))
                os.fsync(fd)
            finally:
                os.close(fd)
            written, size = written + new, size + len(lines)
        self._files[gpu] = (name, written, size)
        return name, len(written), size


def _holds(path: Path, size: int) -> bool:
    try:
        return os.stat(path).st_size >= size
    except OSError:
        return False


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

    Each ``gpus`` entry comes back with ``counts`` (two non-negative integers per name: launches,
    gpu_ns) and, for versions 2 and 3, ``names`` (a list of kernel names; a version 2 mapping is
    turned into these lists); a version 4 entry's names are the ``names_listed`` lines of the first
    ``names_bytes`` bytes of its ``names_file`` (checked to be a bare file name), which the caller
    reads. The counts are checked in C (``map(type, ...)``, ``min``). ``typed``: the decoder already checked that names are strings and
    counts non-negative integers (the fast reader's typed decoding).
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
        elif version == 3:
            names = entry.get("names")
            if not isinstance(names, list) or not (typed or set(map(type, names)) <= {str}):
                raise StateError(f"{where}.names: must be a list of kernel names", "invalid")
            _check_counts(where, entry.get("counts"), len(names), typed, names.__getitem__)
        else:
            names_file = entry.get("names_file")
            if not isinstance(names_file, str) or not NAMES_FILE.fullmatch(names_file):
                raise StateError(f"{where}.names_file: expected the name of a .names file in {path.parent}, got "
                                 f"{names_file!r}", "invalid")
            for key in ("names_listed", "names_bytes"):
                if type(entry.get(key)) is not int or entry[key] < 0:
                    raise StateError(f"{where}.{key}: expected a non-negative integer, got {entry.get(key)!r}",
                                     "invalid")
            _check_counts(where, entry.get("counts"), entry["names_listed"], typed,
                          lambda slot, file=names_file: f"{file} line {slot + 1}")
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


def _check_counts(where: str, counts: Any, listed: int, typed: bool, name: Callable[[int], str]) -> None:
    """Two non-negative integers per name of the ``listed`` names; ``name(slot)`` says which name a bad pair is of
    (a version 4 file's: its line, counted from 1)."""
    if not isinstance(counts, list) or len(counts) != 2 * listed or not (typed or set(map(type, counts)) <= {int}):
        if not isinstance(counts, list):
            got = repr(counts)
        elif len(counts) != 2 * listed:
            got = f"{len(counts)} values"
        else:
            got = repr(next(count for count in counts if type(count) is not int))
        raise StateError(f"{where}.counts: expected a list of two integers per name ({2 * listed}), got {got}",
                         "invalid")
    if not typed and min(counts, default=0) < 0:
        slot = next(index for index, count in enumerate(counts) if count < 0) >> 1
        raise StateError(f"{where}.names[{name(slot)!r}]: expected [launches, gpu_ns], "
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
