"""Reads dispatch state files for the exporter's dispatch source, and the names files of version 4.

A version 4 state file holds each GPU's counts, and the number of its names; the names are in a
names file beside it, one JSON string a line, only ever appended to. A process of 100,000 kernel
names writes about 16 MB of names once and 1.1 MB of counts at each write, so this reader decodes
the counts at each poll and a name only once, when the source first asks for it: ``NameList`` is
the sequence of one GPU's names, and decodes the lines of its file in batches as they are indexed.
So the first poll of a file of 100,000 new names reads no name at all but those the poll's
classification budget reaches (the source puts every name of a new file in its waiting list by
position). Version 3 (names inline) and version 2 (a mapping of name to pair) are decoded whole.

A names file must be as long as the state says (``names_bytes``), or the state file is refused,
as a torn one. A line that is not one JSON string is only found when it is decoded: it is logged
once and its slot gets a name that says so (``<line 7 of .rank0.0.x.names: not a JSON string>``),
which no table rule takes for a GEMM; its counts still count in the kernel totals.

With msgspec installed, decoding is msgspec's (typed, in C); without it the standard library's.
Both give what ``check_state`` gives.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, overload

from exporter.inprocess.state import StateError, check_state, read_bytes, read_state, torn_file_error

try:
    import msgspec
except ImportError:  # optional: the standard library reads the same files, slower
    msgspec = None

log = logging.getLogger(__name__)

# The keys of docs/dispatch-state.md's tables (a test holds them together): the fast reader skips any
# other key, so a key the exporter starts to read must be documented, and so listed, first.
HEADER_KEYS = ("format", "version", "writer", "writer_version", "pid", "process", "started_at", "updated_at", "status",
               "reason", "detail", "duty_cycle", "period_seconds", "windows", "windows_skipped", "sampled_seconds",
               "records", "incomplete_records", "dropped_records", "detaches", "max_names")
GPU_KEYS = ("uuid", "kernels", "kernel_ns", "overflow",  # and names, counts
            "names_file", "names_listed", "names_bytes")
BATCH = 1024  # names decoded at a time, at least
BLOCK = 1 << 20  # bytes of a names file read at a time, at least

if msgspec is not None:
    _UNSET = msgspec.UNSET
    _Counts = list[Annotated[int, msgspec.Meta(ge=0)]] | msgspec.UnsetType  # a negative count: the standard reader
    # Keys the format does not define are skipped; UNSET tells a key that is absent from one that is null.
    _Gpu = msgspec.defstruct("_Gpu", [("names", list[str] | dict[str, Any] | None, None), ("counts", _Counts, _UNSET),
                                      *[(key, Any, _UNSET) for key in GPU_KEYS]])
    _State = msgspec.defstruct("_State", [("gpus", dict[str, _Gpu] | None, None),
                                          *[(key, Any, _UNSET) for key in HEADER_KEYS]])
    _decode_state = msgspec.json.Decoder(_State).decode
    _decode_names = msgspec.json.Decoder(list[str]).decode
    _DecodeError: tuple[type[Exception], ...] = (msgspec.DecodeError,)
else:
    _decode_names = json.loads
    _DecodeError = (ValueError, RecursionError)


class StateReader:
    """Reads state files; keeps each version 4 file's names files (what of them is decoded) between polls."""

    def __init__(self, use_msgspec: bool = True) -> None:
        """``use_msgspec=False``: the standard library only, as where msgspec is not installed."""
        self.fast = use_msgspec and msgspec is not None
        self._names: dict[str, dict[str, NamesFile]] = {}  # state file name -> its GPUs' names files, by file name

    def read(self, path: Path) -> dict[str, Any]:
        state = self._decode(path)
        if state["version"] == 4:
            known = self._names.get(path.name, {})
            files = {}
            for entry in state["gpus"].values():
                names_file = files[entry["names_file"]] = self._names_file(path.parent, entry, known)
                entry["names"] = NameList(names_file, entry["names_listed"])
            self._names[path.name] = files
        return state

    def forget_all_but(self, files: set[str]) -> None:
        """Drop what is remembered of state files no longer present."""
        for name in [name for name in self._names if name not in files]:
            del self._names[name]

    def _decode(self, path: Path) -> dict[str, Any]:
        if not self.fast:
            return read_state(path)
        raw = read_bytes(path)
        try:
            decoded = _decode_state(raw)
        except msgspec.ValidationError:  # not the shape of a state file: the standard reader says exactly what
            return read_state(path)
        except msgspec.DecodeError as exc:
            raise torn_file_error(path, raw, exc) from None
        state = {key: getattr(decoded, key) for key in HEADER_KEYS if getattr(decoded, key) is not _UNSET}
        if decoded.gpus is not None:
            state["gpus"] = {gpu: _fields(entry) for gpu, entry in decoded.gpus.items()}
        return check_state(path, state, typed=True)

    def _names_file(self, directory: Path, entry: dict[str, Any], known: dict[str, NamesFile]) -> NamesFile:
        """The names file of one GPU entry, checked to hold ``names_bytes`` bytes: the one of the last read if it
        is the same file, else a new one."""
        path, size = directory / entry["names_file"], entry["names_bytes"]
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise StateError(f"{path}: cannot read the names file: {exc.strerror or exc}", "missing") from None
        if stat.st_size < size:
            raise StateError(f"{path}: the names file has {stat.st_size} bytes, the state file lists {size}", "torn")
        names_file = known.get(entry["names_file"])
        if names_file is None or names_file.inode != stat.st_ino or names_file.size > size:  # replaced, or cut
            names_file = NamesFile(path, stat.st_ino, self.fast)
        names_file.size = size
        return names_file


def _fields(entry: Any) -> dict[str, Any]:
    """A decoded GPU entry's keys that the file holds (names absent also when null: check_state says what)."""
    fields = {key: getattr(entry, key) for key in (*GPU_KEYS, "counts") if getattr(entry, key) is not _UNSET}
    if entry.names is not None:
        fields["names"] = entry.names
    return fields


class NamesFile:
    """One names file as far as it has been decoded: its names so far, the bytes read but not decoded yet."""

    def __init__(self, path: Path, inode: int, fast: bool) -> None:
        self.path, self.inode = path, inode
        self.size = 0  # bytes that hold names: the state file's names_bytes
        self.names: list[str] = []
        self._fast = fast
        self._raw = b""  # read, not decoded yet: from _at on
        self._at = 0
        self._read_to = 0  # the file offset after _raw
        self._problems = 0

    def decode_to(self, end: int) -> list[str]:
        """The names, decoded at least up to ``end`` (fewer only if the file holds fewer lines)."""
        names = self.names
        while len(names) < end:
            lines = self._lines(max(BATCH, end - len(names)))
            if not lines:
                self._problem(f"{self.path}: {len(names)} names in its {self.size} bytes, the state file lists more; "
                              "the missing ones are named <missing>")
                names += [f"<line {slot + 1} of {self.path.name}: missing>" for slot in range(len(names), end)]
                break
            names += self._decoded(lines, len(names))
        return names

    def _lines(self, count: int) -> list[bytes]:
        """Up to ``count`` complete lines after those decoded, reading more of the file as needed."""
        raw, at, lines = self._raw, self._at, []
        while len(lines) < count:
            end = raw.find(b"\n", at)
            if end < 0:
                if self._read_to >= self.size:
                    break
                raw = raw[at:] + self._read(max(BLOCK, 256 * (count - len(lines))))
                at = 0
                continue
            lines.append(raw[at:end])
            at = end + 1
        self._raw, self._at = raw, at
        return lines

    def _read(self, most: int) -> bytes:
        try:
            with open(self.path, "rb") as fh:
                if os.fstat(fh.fileno()).st_ino != self.inode:
                    raise OSError(f"replaced since it was first read (inode {self.inode})")
                fh.seek(self._read_to)
                block = fh.read(min(most, self.size - self._read_to))
        except OSError as exc:
            self._problem(f"{self.path}: cannot read more names: {exc.strerror or exc}")
            block = b""
        if not block:  # nothing more to read: what is left counts as missing
            self.size = self._read_to
        self._read_to += len(block)
        return block

    def _decoded(self, lines: list[bytes], first: int) -> list[str]:
        """The names of ``lines``, the ``first``th line of the file on; a line that is not one JSON string gets a
        name that says so."""
        try:
            names = _decode_names(b"[" + b",".join(lines) + b"]")
            if len(names) == len(lines) and (self._fast or all(type(name) is str for name in names)):
                return names
        except (*_DecodeError, UnicodeDecodeError, TypeError):  # msgspec.ValidationError is a DecodeError
            pass
        names = []  # one line at a time, to name the bad ones
        for slot, line in enumerate(lines, first):
            try:
                name = json.loads(line)
            except (ValueError, RecursionError):
                name = None
            if type(name) is not str:
                self._problem(f"{self.path}: line {slot + 1} is not one JSON string: {line[:80]!r}")
                name = f"<line {slot + 1} of {self.path.name}: not a JSON string>"
            names.append(name)
        return names

    def _problem(self, message: str) -> None:
        self._problems += 1
        if self._problems <= 3:  # a file of bad lines must not flood the log
            log.warning("dispatch: %s", message)


class NameList(Sequence[str]):
    """The first ``length`` names of a names file, decoded as they are indexed (and kept by the file)."""

    def __init__(self, names_file: NamesFile, length: int) -> None:
        self.file, self.length = names_file, length

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.length)
            if step == 1:
                return self.file.decode_to(stop)[start:stop]
            slots = range(start, stop, step)
            names = self.file.decode_to(max(slots, default=-1) + 1)
            return [names[slot] for slot in slots]
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.file.decode_to(index + 1)[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self[:])

    def __contains__(self, name: object) -> bool:
        return name in self[:]

    def index(self, name: Any, start: int = 0, stop: int | None = None) -> int:
        return self[:].index(name, start, self.length if stop is None else stop)


def decoded(names: Sequence[str], end: int) -> Sequence[str]:
    """``names`` as a sequence indexed in C, decoded at least up to ``end``: a NameList's decoded names themselves
    (not a copy, and maybe longer: index it only below its length), any other sequence as it is."""
    return names.file.decode_to(end) if isinstance(names, NameList) else names


def extends(names: Sequence[str], before: Sequence[str]) -> bool:
    """Whether ``names`` begins with ``before``: without decoding a name where both are of one names file."""
    if names is before:
        return True
    if len(before) > len(names):
        return False
    if isinstance(names, NameList) and isinstance(before, NameList) and names.file is before.file:
        return True
    return (before if isinstance(before, list) else list(before)) == names[:len(before)]
