"""A stand-in for DCGM's Python bindings and nv-hostengine, which cannot be installed here (they ship with DCGM).

``FakeDcgm(gpus).bindings`` holds modules with the names, signatures and behaviour of the bindings' own
(DCGM ``testing/python3``: ``pydcgm.DcgmHandle`` and ``DcgmFieldGroup``, ``dcgm_agent.dcgmWatchFields``,
``dcgmUpdateAllFields`` and ``dcgmGetLatestValues`` with its ctypes callback ``dcgmFieldValueEnumeration_f``
over ``dcgm_structs.c_dcgmFieldValue_v1`` records, ``dcgm_structs.DCGMError`` with one subclass per
``DCGM_ST_*`` code, ``dcgmvalue``'s sentinels and ``dcgm_fields``' type codes), so the dcgm source runs the
same code on it as on a real installation. The host engine behind them:

- answers each watched field of each GPU with one ``c_dcgmFieldValue_v1``: the value in DCGM's type for that
  field (string, double or int64), DCGM's blank sentinels where its cache holds one (a field the GPU does not
  support, or a driver call that failed), or a non-OK per-value ``status`` (:class:`ValueStatus`);
- ``lose_gpu`` does what DCGM's cache does when NVML starts answering GPU_IS_LOST: every reading of that GPU
  becomes the plain blank of its type (a DCGM test that removes an injected GPU waits for ``DCGM_INT64_BLANK``), the
  identity strings stay as cached, and the last XID is 79 when the driver logged it;
- ``stop()`` kills nv-hostengine: every call on a connection made before raises
  ``DCGMError_ConnectionNotValid`` and new connections are refused the same way until ``start()``; a restarted
  engine has forgotten every field group and watch, as a new process would.
"""

from __future__ import annotations

import ctypes
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# dcgmvalue.py
INT64_BLANK = 0x7FFFFFFFFFFFFFF0
INT64_NOT_SUPPORTED = INT64_BLANK + 2
FP64_BLANK = 140737488355328.0
FP64_NOT_SUPPORTED = FP64_BLANK + 2.0
STR_BLANK = "<<<NULL>>>"
MIB = 2**20

# dcgm_structs.py: the return codes the fake gives, and the text DCGMError prints for some
ST_OK, ST_BADPARAM, ST_NOT_SUPPORTED, ST_NVML_ERROR, ST_NO_DATA, ST_NOT_WATCHED = 0, -1, -6, -8, -14, -16
ST_GPU_IS_LOST, ST_CONNECTION_NOT_VALID, ST_DUPLICATE_KEY = -18, -21, -26
_CODES = {"OK": ST_OK, "BADPARAM": ST_BADPARAM, "GENERIC_ERROR": -3, "NOT_SUPPORTED": ST_NOT_SUPPORTED,
          "NVML_ERROR": ST_NVML_ERROR, "TIMEOUT": -11, "NO_DATA": ST_NO_DATA, "NOT_WATCHED": ST_NOT_WATCHED,
          "NO_PERMISSION": -17, "GPU_IS_LOST": ST_GPU_IS_LOST, "RESET_REQUIRED": -19,
          "CONNECTION_NOT_VALID": ST_CONNECTION_NOT_VALID, "DUPLICATE_KEY": ST_DUPLICATE_KEY}
_ST_TEXT = {ST_CONNECTION_NOT_VALID: "The connection to the host engine is not valid any longer",
            ST_GPU_IS_LOST: "GPU is unreachable", ST_NO_DATA: "No data is available"}

# Field types (dcgm_fields.h) of the fields the source watches: strings, doubles, the rest int64.
STRING_FIELDS = frozenset({1, 50, 54, 57, 85})
DOUBLE_FIELDS = frozenset({155, 164, *range(1001, 1013)})
IDENTITY_FIELDS = frozenset({50, 52, 54, 57, 85, 1})
XID_ERRORS = 230

# One H200 as DCGM reports it, by field id: identity (50 name, 54 UUID, 57 PCI bus id, 85 VBIOS, 52 NVML
# index, 1 driver version), clocks in MHz (100, 101), temperatures (140, 150), power in W (155), energy in
# mJ (156), limits, P-state, PCIe replays (202), utilization in % (203, 204), framebuffer in MiB (250
# total, 251 free, 252 used, 253 reserved), last XID (230), clock-event mask (112), row remapping
# (393-396), profiling ratios (1001 graphics engine, 1004 tensor, 1005 DRAM) and C2C status (286, not
# supported on a PCIe H200).
H200: dict[int, Any] = {
    50: "NVIDIA H200", 54: "GPU-1b78982c-0e04-daa0-7189-44a219fa7d37", 57: "00000000:00:06.0",
    85: "96.00.A5.00.1A", 52: 0, 1: "580.159.04", 100: 1980, 101: 3201, 150: 36, 140: 37, 155: 81.4,
    156: 5_472_925, 164: 700.0, 190: 0, 202: 3, 203: 93, 204: 19, 250: 143771, 251: 142555, 252: 600, 253: 616,
    230: 0, 112: 0x4 | 0x1, 393: 0, 394: 2, 395: 0, 396: 0, 1001: 0.91, 1004: 0.54, 1005: 0.33,
    286: INT64_NOT_SUPPORTED,
}


@dataclass(frozen=True)
class ValueStatus:
    """A field whose latest value DCGM returns with a non-OK per-value status (``c_dcgmFieldValue_v1.status``)."""

    code: int


def plain_blank(field_id: int) -> Any:
    """The blank DCGM stores for ``field_id`` when the driver call behind it failed."""
    if field_id in STRING_FIELDS:
        return STR_BLANK
    return FP64_BLANK if field_id in DOUBLE_FIELDS else INT64_BLANK


def _structs_module() -> types.ModuleType:
    structs = types.ModuleType("dcgm_structs")
    structs.DCGM_OPERATION_MODE_AUTO = 1
    structs.DCGM_GROUP_ALL_GPUS = 0x7FFFFFFF
    for name, code in _CODES.items():
        setattr(structs, f"DCGM_ST_{name}", code)

    class DCGMError(Exception):
        """As dcgm_structs.DCGMError: ``value`` is the DCGM_ST_* code, str() its text."""

        _classes: dict[int, type] = {}

        def __new__(cls, value: int) -> DCGMError:
            if cls is DCGMError:
                cls = DCGMError._classes.get(value, cls)
            error = Exception.__new__(cls)
            error.value = value
            return error

        def __init__(self, value: int) -> None:
            super().__init__(value)

        def __str__(self) -> str:
            return _ST_TEXT.get(self.value, f"DCGM Error with code {self.value}")

    for name, code in _CODES.items():  # DCGMError_ConnectionNotValid for DCGM_ST_CONNECTION_NOT_VALID, ...
        DCGMError._classes[code] = type("DCGMError_" + name.title().replace("_", ""), (DCGMError,), {})
    structs.DCGMError = DCGMError
    structs.dcgmExceptionClass = DCGMError._classes.get

    def check(ret: int) -> int:
        if ret != ST_OK:
            raise DCGMError(ret)
        return ret

    structs._dcgmCheckReturn = check

    class Value(ctypes.Union):
        _fields_ = [("i64", ctypes.c_int64), ("dbl", ctypes.c_double), ("str", ctypes.c_char * 256),
                    ("blob", ctypes.c_byte * 4096)]

    class FieldValue(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint), ("fieldId", ctypes.c_ushort), ("fieldType", ctypes.c_short),
                    ("status", ctypes.c_int), ("ts", ctypes.c_int64), ("value", Value)]

    structs.c_dcgmFieldValue_v1 = FieldValue
    return structs


def _value_modules() -> tuple[types.ModuleType, types.ModuleType]:
    value = types.ModuleType("dcgmvalue")
    value.DCGM_INT64_BLANK, value.DCGM_FP64_BLANK, value.DCGM_STR_BLANK = INT64_BLANK, FP64_BLANK, STR_BLANK
    value.DCGM_INT64_IS_BLANK = lambda v: v >= INT64_BLANK
    value.DCGM_FP64_IS_BLANK = lambda v: v >= FP64_BLANK
    value.DCGM_STR_IS_BLANK = lambda v: v.find("<<<") == 0 and v.find(">>>") >= 0
    fields = types.ModuleType("dcgm_fields")
    fields.DCGM_FT_BINARY, fields.DCGM_FT_DOUBLE, fields.DCGM_FT_INT64 = "b", "d", "i"
    fields.DCGM_FT_STRING, fields.DCGM_FT_TIMESTAMP = "s", "t"
    return value, fields


class FakeDcgm:
    """nv-hostengine with its GPUs (DCGM GPU id -> field id -> latest value in DCGM's cache), and the bindings.

    Changing ``gpus`` later changes what every connection sees, as a host engine would.
    """

    def __init__(self, gpus: Mapping[int, Mapping[int, Any]]) -> None:
        self.gpus: dict[int, dict[int, Any]] = {gpu: dict(fields) for gpu, fields in gpus.items()}
        self.running = True
        self.connections = 0  # connections ever made
        self._generation = 0  # bumped by each restart: older handles are dead
        self._open: set[int] = set()
        self._groups: dict[int, tuple[str, tuple[int, ...]]] = {}
        self._watched: set[int] = set()
        self.bindings = self._bindings()

    @property
    def watched(self) -> frozenset[int]:
        """Field ids the running host engine has been asked to watch."""
        return frozenset(field for group in self._watched for field in self._groups[group][1])

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def lose_gpu(self, gpu: int, last_xid: int | None = None) -> None:
        """The GPU fell off the bus: DCGM's cache holds the plain blank for every reading it refreshes."""
        fields = self.gpus[gpu]
        for field in fields:
            if field not in IDENTITY_FIELDS:
                fields[field] = plain_blank(field)
        if last_xid is not None:
            fields[XID_ERRORS] = last_xid

    def stop(self) -> None:
        """nv-hostengine dies: its connections, field groups and watches go with it."""
        self.running = False
        self._open.clear()
        self._groups.clear()
        self._watched.clear()

    def start(self) -> None:
        self.running = True
        self._generation += 1

    # -- the host engine's side of dcgm_agent ------------------------------------------------------------

    def _check(self, handle: int) -> None:
        if not self.running or handle not in self._open:
            raise self.bindings.dcgm_structs.DCGMError(ST_CONNECTION_NOT_VALID)

    def _connect(self, address: str, params: Any) -> int:
        if not self.running:
            raise self.bindings.dcgm_structs.DCGMError(ST_CONNECTION_NOT_VALID)
        self.connections += 1
        handle = self._generation * 1000 + self.connections
        self._open.add(handle)
        return handle

    def _field_group_create(self, handle: int, field_ids: Iterable[int], name: str) -> int:
        self._check(handle)
        if any(existing == name for existing, _ in self._groups.values()):
            raise self.bindings.dcgm_structs.DCGMError(ST_DUPLICATE_KEY)
        group = len(self._groups) + 1
        self._groups[group] = (name, tuple(field_ids))
        return group

    def _field_group_destroy(self, handle: int, group: int) -> int:
        self._check(handle)
        self._groups.pop(group, None)
        self._watched.discard(group)
        return ST_OK

    def _watch(self, handle: int, group_id: int, field_group: int, *_: Any) -> int:
        self._check(handle)
        if field_group not in self._groups:
            raise self.bindings.dcgm_structs.DCGMError(ST_BADPARAM)
        self._watched.add(field_group)
        return ST_OK

    def _update_all(self, handle: int, wait: int) -> int:
        self._check(handle)
        return ST_OK

    def _latest(self, handle: int, group_id: int, field_group: int, callback: Any, user_data: Any) -> int:
        self._check(handle)
        if field_group not in self._groups:
            raise self.bindings.dcgm_structs.DCGMError(ST_BADPARAM)
        field_ids = self._groups[field_group][1]
        record = self.bindings.dcgm_structs.c_dcgmFieldValue_v1
        for gpu, fields in sorted(self.gpus.items()):
            values = (record * len(field_ids))()
            for slot, field in zip(values, field_ids, strict=True):
                self._fill(slot, field, fields.get(field, ValueStatus(ST_NO_DATA)),
                           field_group in self._watched)
            callback(gpu, values, len(field_ids), ctypes.c_void_p(id(user_data)))
        return ST_OK

    @staticmethod
    def _fill(slot: Any, field: int, value: Any, watched: bool) -> None:
        slot.version, slot.fieldId, slot.ts = 1, field, 1_700_000_000_000_000
        if not watched:
            value = ValueStatus(ST_NOT_WATCHED)
        kind = "s" if field in STRING_FIELDS else "d" if field in DOUBLE_FIELDS else "i"
        slot.fieldType = ord(kind)
        if isinstance(value, ValueStatus):
            slot.status = value.code
        elif kind == "s":
            slot.value.str = str(value).encode()
        elif kind == "d":
            slot.value.dbl = float(value)
        else:
            slot.value.i64 = int(value)

    def _bindings(self) -> types.SimpleNamespace:
        structs = _structs_module()
        value, fields = _value_modules()
        agent = types.ModuleType("dcgm_agent")
        agent.dcgmFieldValueEnumeration_f = ctypes.CFUNCTYPE(
            ctypes.c_int32, ctypes.c_uint32, ctypes.POINTER(structs.c_dcgmFieldValue_v1), ctypes.c_int32,
            ctypes.c_void_p)
        agent.dcgmInit = lambda: None
        agent.dcgmConnect_v2 = self._connect
        agent.dcgmDisconnect = lambda handle: self._open.discard(handle)
        agent.dcgmFieldGroupCreate = self._field_group_create
        agent.dcgmFieldGroupDestroy = self._field_group_destroy
        agent.dcgmWatchFields = self._watch
        agent.dcgmUpdateAllFields = self._update_all
        agent.dcgmGetLatestValues = self._latest
        return types.SimpleNamespace(pydcgm=_pydcgm_module(agent, structs), dcgm_agent=agent,
                                     dcgm_structs=structs, dcgm_fields=fields, dcgmvalue=value)


def _pydcgm_module(agent: types.ModuleType, structs: types.ModuleType) -> types.ModuleType:
    """pydcgm's DcgmHandle and DcgmFieldGroup, over dcgm_agent as the real ones are."""
    pydcgm = types.ModuleType("pydcgm")

    class DcgmHandle:
        def __init__(self, handle: Any = None, ipAddress: str | None = None, opMode: int = 1) -> None:  # noqa: N803
            agent.dcgmInit()
            self.handle = agent.dcgmConnect_v2(ipAddress, None)

        def Shutdown(self) -> None:  # noqa: N802
            if self.handle is not None:
                agent.dcgmDisconnect(self.handle)
            self.handle = None

    class DcgmFieldGroup:
        def __init__(self, dcgmHandle: DcgmHandle, name: str = "", fieldIds: list[int] | None = None) -> None:  # noqa: N803
            self._dcgmHandle, self.name, self.fieldIds = dcgmHandle, name, fieldIds or []
            self.fieldGroupId = None  # as the real one: set before the call that may fail
            self.fieldGroupId = agent.dcgmFieldGroupCreate(dcgmHandle.handle, self.fieldIds, name)

        def Delete(self) -> None:  # noqa: N802
            if self.fieldGroupId is not None:
                try:
                    agent.dcgmFieldGroupDestroy(self._dcgmHandle.handle, self.fieldGroupId)
                except structs.dcgmExceptionClass(ST_CONNECTION_NOT_VALID):
                    pass  # as the real one: the connection is gone, and the group with it
                self.fieldGroupId = None

    pydcgm.DcgmHandle, pydcgm.DcgmFieldGroup = DcgmHandle, DcgmFieldGroup
    return pydcgm
