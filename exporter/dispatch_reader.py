"""Reads dispatch state files for the exporter's dispatch source, fast where msgspec is installed.

A state file of 100,000 kernel names is about 16 MB, and at each poll most of it is the same
list of names as at the last poll (names only ever get appended). With msgspec:

- A file read for the first time is decoded in one typed pass (names as strings, counts as
  integers, checked in C).
- At the next reads the names already known are cut out of the bytes before decoding, so that
  the decoder does not scan them again: where the file holds a ``"names":`` key whose value
  begins with the bytes of a list known from that file (all but its closing bracket: a memcmp;
  for a list known from the first, typed read, its bytes as msgspec encodes it), those bytes
  are replaced by a marker, ``[7`` for the 7th such cut, which no real list of names can hold (a
  name is a string). That pass keeps each GPU's ``names`` undecoded (``msgspec.Raw``): ``[7]``
  is the known list again, ``[7,"new",...]`` the list grown (only the new names are decoded), any
  other list is decoded whole. A marker that does not come back where a GPU's names are, or a
  file that does not decode with the cuts, is decoded again uncut, so the cuts change how fast a
  file is read, never what is read or the error a bad one gets.

Without msgspec (or for a file whose shape msgspec refuses, so that the message is the same
either way) the standard library reads the whole file (``exporter.inprocess.state.read_state``).
Both give what ``check_state`` gives.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from exporter.inprocess.state import check_state, read_bytes, read_state, torn_file_error

try:
    import msgspec
except ImportError:  # optional: the standard library reads the same files, slower
    msgspec = None

# The keys of docs/dispatch-state.md's tables (a test holds them together): the fast reader skips any
# other key, so a key the exporter starts to read must be documented, and so listed, first.
HEADER_KEYS = ("format", "version", "writer", "writer_version", "pid", "process", "started_at", "updated_at", "status",
          "reason", "detail", "duty_cycle", "period_seconds", "windows", "windows_skipped", "sampled_seconds",
          "records", "incomplete_records", "dropped_records", "detaches", "max_names")
GPU_KEYS = ("uuid", "kernels", "kernel_ns", "overflow")  # and names, counts

if msgspec is not None:
    _UNSET = msgspec.UNSET
    _Counts = list[Annotated[int, msgspec.Meta(ge=0)]] | msgspec.UnsetType  # a negative count: the standard reader
    _OTHER_GPU_KEYS = [(key, Any, _UNSET) for key in GPU_KEYS]
    _HEADER = [(key, Any, _UNSET) for key in HEADER_KEYS]
    # Keys the format does not define are skipped; UNSET tells a key that is absent from one that is null.
    _Gpu = msgspec.defstruct("_Gpu", [("names", msgspec.Raw, msgspec.Raw(b"null")),
                                      ("counts", _Counts, _UNSET), *_OTHER_GPU_KEYS])
    _State = msgspec.defstruct("_State", [("gpus", dict[str, _Gpu] | None, None), *_HEADER])
    _TypedGpu = msgspec.defstruct("_TypedGpu", [("names", list[str] | None, None),
                                                ("counts", _Counts, _UNSET), *_OTHER_GPU_KEYS])
    _TypedState = msgspec.defstruct("_TypedState", [("gpus", dict[str, _TypedGpu] | None, None), *_HEADER])
    _decode_state = msgspec.json.Decoder(_State).decode
    _decode_typed = msgspec.json.Decoder(_TypedState).decode
    _decode_names = msgspec.json.Decoder(list[str]).decode
    _decode_any = msgspec.json.Decoder().decode
    _encode = msgspec.json.encode

# What is remembered of one GPU's names: the list's bytes in the file (None: not known yet, read typed) and the names.
Known = tuple[bytes | None, list[str]]


class StateReader:
    """Reads state files; remembers each file's per-GPU name lists (undecoded and decoded) between polls."""

    def __init__(self, use_msgspec: bool = True) -> None:
        """``use_msgspec=False``: the standard library only, as where msgspec is not installed."""
        self.fast = use_msgspec and msgspec is not None
        self._names: dict[str, list[Known]] = {}  # file name -> its GPUs' name lists at the last read, in file order

    def read(self, path: Path) -> dict[str, Any]:
        if not self.fast:
            return read_state(path)
        raw = read_bytes(path)
        try:
            state, lists = _decode(raw, self._names.get(path.name))
        except msgspec.ValidationError:  # not the shape of a state file: the standard reader says exactly what
            return read_state(path)
        except msgspec.DecodeError as exc:
            raise torn_file_error(path, raw, exc) from None
        if lists is not None:
            self._names[path.name] = lists
        return check_state(path, state, typed=state.get("version") == 3)

    def forget_all_but(self, files: set[str]) -> None:
        """Drop what is remembered of files no longer present."""
        for name in [name for name in self._names if name not in files]:
            del self._names[name]


def _decode(raw: bytes, known: list[Known] | None) -> tuple[dict[str, Any], list[Known] | None]:
    """The state, and each GPU's name list to remember (None: nothing to remember, a version 2 file)."""
    if known is None:
        try:
            return _typed(_decode_typed(raw))
        except msgspec.ValidationError:
            pass  # version 2, or not a state file: the general pass below decides
    # A list read typed last time: its bytes as a compact writer writes it (msgspec's are those).
    lists = [(_encode(names) if listed is None else listed, names) for listed, names in known or []]
    cut, used = _cut_known(raw, lists)
    if used:
        try:
            return _state(_decode_state(cut), [lists[index] for index in used])
        except (msgspec.DecodeError, _MarkerLost):
            pass  # the file decides, as if nothing had been cut
    return _state(_decode_state(raw), [])


def _state(decoded: Any, cuts: list[tuple[bytes, list[str]]]) -> tuple[dict[str, Any], list[Known] | None]:
    """A file decoded with its names undecoded, the known lists ``cuts`` (by marker) cut out of it."""
    state = _header(decoded)
    if decoded.gpus is None:
        return state, []
    version = state.get("version")
    gpus, lists, found = {}, [], set()
    for gpu, entry in decoded.gpus.items():
        fields = {key: getattr(entry, key) for key in (*GPU_KEYS, "counts") if getattr(entry, key) is not _UNSET}
        if version != 3:
            fields["names"] = _decode_any(entry.names)
            gpus[gpu] = fields
            continue
        listed = bytes(entry.names)
        marker = _MARKER.match(listed) if cuts else None  # with no cut, a list like [7] is just invalid
        if marker is None:
            names = _decode_names(listed)
        else:
            index = int(marker[1])
            if index >= len(cuts) or index in found:
                raise _MarkerLost
            before, names = cuts[index]
            found.add(index)
            rest = listed[marker.end():]
            if rest != b"]":  # the list grew: decode the new names only
                names = names + _decode_names(b"[" + rest[1:])
                listed = before[:-1] + rest
            else:
                listed = before
        lists.append((listed, names))
        fields["names"] = names
        gpus[gpu] = fields
    if len(found) != len(cuts):  # a marker ended up somewhere other than a GPU's names
        raise _MarkerLost
    state["gpus"] = gpus
    return state, lists if version == 3 else None


def _header(decoded: Any) -> dict[str, Any]:
    return {key: getattr(decoded, key) for key in HEADER_KEYS if getattr(decoded, key) is not _UNSET}


def _typed(decoded: Any) -> tuple[dict[str, Any], list[Known] | None]:
    """A file decoded in one typed pass (names strings, counts integers): its lists' bytes are not known yet."""
    state = _header(decoded)
    if decoded.gpus is not None:
        state["gpus"] = {gpu: {key: getattr(entry, key) for key in ("names", *GPU_KEYS, "counts")
                               if getattr(entry, key) is not _UNSET} for gpu, entry in decoded.gpus.items()}
    lists = [(None, entry.names) for entry in (decoded.gpus or {}).values() if entry.names is not None]
    return state, lists if state.get("version") == 3 else None


class _MarkerLost(Exception):
    """A cut of ``_cut_known`` did not come back as a GPU's names: the file is decoded whole instead."""


_MARKER = re.compile(rb"\[(\d+)(?=[,\]])")
_NAMES_KEY = b'"names":'


def _cut_known(raw: bytes, known: list[tuple[bytes, list[str]]]) -> tuple[bytes, list[int]]:
    """``raw`` with each known list that is still there (maybe followed by more names) replaced by a
    marker, and which of ``known`` each marker stands for, in file order.

    Each ``"names":`` key of the file, in order, is tried against the known lists not matched yet,
    in the order they were in the file last time (a GPU that appeared in between is passed over)."""
    pieces, used, at, search, next_known = [], [], 0, 0, 0
    candidates = [(index, memoryview(listed)[:-1]) for index, (listed, _) in enumerate(known)
                  if len(listed) > 2]  # an empty list: nothing to save, and "[" alone is no list to extend
    while next_known < len(candidates) and (key := raw.find(_NAMES_KEY, search)) >= 0:
        value = search = key + len(_NAMES_KEY)
        for position in range(next_known, len(candidates)):
            index, head = candidates[position]
            if raw.startswith(head, value):
                pieces += [raw[at:value], b"[%d" % len(used)]
                used.append(index)
                at = search = value + len(head)
                next_known = position + 1
                break
    if not used:
        return raw, []
    pieces.append(raw[at:])
    return b"".join(pieces), used
