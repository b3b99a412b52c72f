"""Reads dispatch state files for the exporter's dispatch source, fast where msgspec is installed.

A state file of 100,000 kernel names is about 16 MB, and at each poll most of it is the same
list of names as at the last poll (names only ever get appended). With msgspec the file is
decoded in one pass that keeps each GPU's ``names`` list undecoded (``msgspec.Raw``): a list
byte-for-byte equal to the one read last time from the same file and GPU is not decoded again,
and one that only grew has only its new names decoded. Without msgspec (or for a file whose
shape msgspec refuses, so that the message is the same either way) the standard library reads
the whole file (``exporter.inprocess.state.read_state``). Both give what ``check_state`` gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    # Keys the format does not define are skipped; UNSET tells a key that is absent from one that is null.
    _Gpu = msgspec.defstruct("_Gpu", [("names", msgspec.Raw, msgspec.Raw(b"null")),
                                      ("counts", list[int] | msgspec.UnsetType, _UNSET),
                                      *((key, Any, _UNSET) for key in GPU_KEYS)])
    _State = msgspec.defstruct("_State", [("gpus", dict[str, _Gpu] | None, None),
                                          *((key, Any, _UNSET) for key in HEADER_KEYS)])
    _decode_state = msgspec.json.Decoder(_State).decode
    _decode_names = msgspec.json.Decoder(list[str]).decode
    _decode_any = msgspec.json.Decoder().decode


class StateReader:
    """Reads state files; remembers each file's per-GPU name lists (undecoded and decoded) between polls."""

    def __init__(self, use_msgspec: bool = True) -> None:
        """``use_msgspec=False``: the standard library only, as where msgspec is not installed."""
        self.fast = use_msgspec and msgspec is not None
        self._names: dict[tuple[str, str], tuple[Any, list[str]]] = {}  # (file name, gpu) -> (raw list, names)

    def read(self, path: Path) -> dict[str, Any]:
        if not self.fast:
            return read_state(path)
        raw = read_bytes(path)
        try:
            decoded = _decode_state(raw)
            state = {key: getattr(decoded, key) for key in HEADER_KEYS if getattr(decoded, key) is not _UNSET}
            if decoded.gpus is not None:
                state["gpus"] = {gpu: self._gpu(path.name, gpu, entry, state.get("version"))
                                 for gpu, entry in decoded.gpus.items()}
        except msgspec.ValidationError:  # not the shape of a state file: the standard reader says exactly what
            return read_state(path)
        except msgspec.DecodeError as exc:
            raise torn_file_error(path, raw, exc) from None
        return check_state(path, state, typed=state.get("version") == 3)

    def forget_all_but(self, files: set[str]) -> None:
        """Drop what is remembered of files no longer present."""
        for key in [key for key in self._names if key[0] not in files]:
            del self._names[key]

    def _gpu(self, file: str, gpu: str, entry: Any, version: Any) -> dict[str, Any]:
        fields = {key: getattr(entry, key) for key in (*GPU_KEYS, "counts") if getattr(entry, key) is not _UNSET}
        if version != 3:
            fields["names"] = _decode_any(entry.names)
            return fields
        known = self._names.get((file, gpu))
        if known is not None and known[0] == entry.names:
            names = known[1]
        elif known is not None and _extends(entry.names, known[0]):
            names = known[1] + _decode_names(b"[" + memoryview(entry.names)[len(known[0]):])
        else:
            names = _decode_names(entry.names)
        self._names[(file, gpu)] = (entry.names, names)
        fields["names"] = names
        return fields


def _extends(new: Any, old: Any) -> bool:
    """Whether the JSON list ``new`` is the (non-empty) list ``old`` with more elements after its last one."""
    old_bytes, new_bytes = memoryview(old), memoryview(new)
    end = len(old_bytes) - 1  # where old's closing bracket is
    return (end > 1 and len(new_bytes) > end and old_bytes[end:] == b"]" and new_bytes[end:end + 1] == b","
            and new_bytes[:end] == old_bytes[:end])
