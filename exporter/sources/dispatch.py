"""The ``dispatch`` source: GEMM launches per GPU and precision, classified here from raw kernel names.

Reads every ``*.json`` state file (format version 3 or 2, docs/dispatch-state.md) in ``state_dir``:
one per serving process, written by the CUPTI injection library or the Python sampler, each listing
kernel names with cumulative ``[launches, gpu_ns]`` per GPU. At each poll the source classifies
with ``dispatch_table.yaml`` (re-read when its modification time changes; a bad table keeps the
last good one and says why) and exports totals that never go backwards:

- The source holds the per-GPU totals itself. Each poll adds what each name gained since the
  last poll (per process, per GPU) to the precision the *current* table gives that name. A table
  change therefore re-labels future launches, never past ones, and a process that exits, goes
  stale, or restarts (same file name, new pid or started_at) takes nothing away: its counts were
  added as they came.
- A process whose file says ``exited`` or went stale has its last counts added, then its file is
  removed (or, where the exporter may not remove it, remembered and ignored) and its per-process
  series end. A corrupt file of a live process is a partial error naming the file; its last good
  per-process series stay.

Names keep their place in a file (a writer appends new ones), so the counts of one poll are
compared with the last poll's position by position, in C (``exporter.moved``), and only
the names whose counts moved are looked at: each place remembers its name's decision as a small
integer (``_CODES``), so what moved is summed per decision in C; a place with no decision yet asks
the table's per-name cache, which a new table starts empty. A version 4 file's names are a
``NameList`` that decodes them as they are indexed: a place is only turned into its name when
that is needed. A file whose names moved or vanished is matched by name instead.

A name the current table has not decided yet (new, or listed when the table changed) waits: what
it gains is held in ``_waiting`` (blocks of names as each poll found them), apart from any process,
and each poll classifies waiting names, oldest first, until it has run ``classify_budget_seconds``
(``KernelClassifier.decide_all``, 6-10 us a name), then adds what the decided ones gained to their
precision. So a first poll of 100,000 new names takes the budget, not seconds; the rest follow
over the next polls (``blackwell_dispatch_kernel_names_pending`` says how many wait), and nothing is lost when the
process that listed them exits or restarts meanwhile. A name decided after a table change gives
the new table's precision to what it gained while waiting.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from bisect import bisect_left
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import add, eq, ge, lshift, sub
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from exporter.dispatch_reader import NameList, StateReader, decoded, extends
from exporter.dispatch_table import DEFAULT_TABLE, PRECISIONS, KernelClassifier
from exporter.inprocess.state import DEFAULT_DIR, NAMES_FILE, StateError
from exporter.moved import moved_slots
from exporter.snapshot import Family
from exporter.sources.base import PartialPollError, PollError, Source, SourceConfig

log = logging.getLogger(__name__)

NOTE_NAMES = 20  # unrecognized GEMM names listed on the landing page
RETIRED_KEPT = 64  # finished processes remembered, in case one writes again
FIRST_CHUNK, MIN_CHUNK, MAX_CHUNK = 256, 64, 1024  # names classified at a time within the poll's budget
# A name's decision as one small integer, so that a poll sums what moved per decision in C: UNDECIDED (the
# table has not decided it yet), NOT_GEMM, or FIRST_GEMM + 2 * (index in PRECISIONS) (+1: a GEMM no rule knows).
UNDECIDED, NOT_GEMM, FIRST_GEMM = 0, 1, 2
START_HINT = ("start sampling in the serving process: CUDA_INJECTION64_PATH=$(blackwell-exporter inject-path) in its "
              "environment (any C++ or Python runtime), or exporter.inprocess.start_sampler() in Python")


class DispatchConfig(SourceConfig):
    state_dir: Path = Field(DEFAULT_DIR, description="directory the samplers write their state files to")
    stale_after: float = Field(120.0, gt=0, description="seconds after which an unchanged state file counts as stale "
                                                        "(its process is taken as gone); keep above the writer's period")
    table: Path | None = Field(None, description="kernel classification table (unset: the one shipped in the package, "
                                                 "exporter/dispatch_table.yaml); re-read when its modification time "
                                                 "changes, so a change needs no model-server restart")
    classify_budget_seconds: float = Field(
        0.02, gt=0, description="how long a poll may run (reading the state files included) before it stops "
                                "classifying kernel names it has not seen (or not since the table changed); it "
                                "classifies one batch at least. The rest wait for the next polls, their launches "
                                "uncounted until then (blackwell_dispatch_kernel_names_pending), so that a state "
                                "file of 100,000 new names does not hold one poll for seconds")


@dataclass
class _Totals:
    """What the exporter has counted since it started; only ever added to."""

    gemm: Counter[tuple[str, str]] = field(default_factory=Counter)  # (gpu, precision) -> launches
    gemm_ns: Counter[tuple[str, str]] = field(default_factory=Counter)
    kernels: Counter[str] = field(default_factory=Counter)
    kernel_ns: Counter[str] = field(default_factory=Counter)
    overflow: Counter[str] = field(default_factory=Counter)
    unrecognized: Counter[str] = field(default_factory=Counter)


@dataclass
class _Listed:
    """One GPU of one process as last folded: its names in file order and their counts, two per name."""

    names: Sequence[str]  # a list, or a version 4 file's NameList (decoded as it is indexed)
    counts: list[int]
    unlisted: dict[str, tuple[int, int]] = field(default_factory=dict)  # names a writer stopped listing -> counts
    codes: list[int] = field(default_factory=list)  # per name: its decision by the current table (_CODES), or UNDECIDED

    def counts_by_name(self) -> dict[str, tuple[int, int]]:
        listed = {name: (self.counts[2 * slot], self.counts[2 * slot + 1]) for slot, name in enumerate(self.names)}
        return {**self.unlisted, **listed}


@dataclass
class _Process:
    """One live writer: its identity, what it had counted at the last poll, its last good header."""

    identity: tuple[int, float]  # (pid, started_at): a change is a restart
    state: dict[str, Any]  # the last good header (no gpus)
    signature: tuple[int, int, int] = (0, 0, 0)  # the file's (inode, mtime_ns, size) when it was last read
    listed: dict[str, _Listed] = field(default_factory=dict)  # gpu -> what was counted of it
    gpu_counts: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # gpu -> kernels, kernel_ns, overflow
    unrecognized: dict[tuple[str, str], int] = field(default_factory=dict)  # (gpu, name) -> launches
    unrecognized_names: Counter[str] = field(default_factory=Counter)  # gpu -> len of the above on that GPU


@dataclass
class _Waiting:
    """Names of one GPU of one process not classified yet, as one poll found them, from ``start`` on.

    A name may wait in several (of other processes, or again after it moved in a later poll).
    """

    process: _Process  # where each name is listed: its list of unrecognized names follows the decisions
    gpu: str
    names: Sequence[str]
    slots: Sequence[int] | None  # each name's place in the process's names of that GPU; None: no longer listed
    launches: list[int]  # what each gained while waiting
    nanoseconds: list[int]
    start: int = 0

    def __len__(self) -> int:
        return len(self.names) - self.start


class DispatchSource(Source):
    name: ClassVar[str] = "dispatch"
    stand_in: ClassVar[str | None] = "simulated"
    config_model: ClassVar[type[SourceConfig]] = DispatchConfig

    def __init__(self, config: DispatchConfig, clock: Callable[[], float] = time.time) -> None:
        super().__init__(config)
        self.config: DispatchConfig = config
        self._clock = clock
        self._started_at = clock()
        self._totals = _Totals()
        self._processes: dict[str, _Process] = {}
        self._ignored: dict[str, tuple[int, int, int]] = {}  # file name -> stat signature of a file we cannot remove
        self._unreadable: dict[str, tuple[tuple[int, int, int], float]] = {}  # file name -> (signature, first seen)
        self._retired: dict[tuple[int, float], _Process] = {}  # the last RETIRED_KEPT finished processes, oldest first
        self._table: KernelClassifier | None = None
        self._table_stamp: tuple[int, int] | None = None
        self._table_error = ""
        # Names waiting for a decision of the current table, oldest first, with what each gained meanwhile:
        # added to the totals when the name is classified, whatever became of the process that listed it.
        self._waiting: deque[_Waiting] = deque()
        self._reader = StateReader()
        self._faults: list[StateError] = []
        self._lock = threading.Lock()  # poll() against notes(), which the HTTP thread calls

    def notes(self) -> list[str]:
        """Built on demand (the landing page is rare, polls are not): table errors, writers' reasons, names."""
        with self._lock:
            return self._build_notes(self._faults)

    # -- the poll ------------------------------------------------------------------------------------
    def poll(self) -> list[Family]:
        with self._lock:
            return self._poll()

    def _poll(self) -> list[Family]:
        began = time.perf_counter()
        self._refresh_table()
        now = self._clock()
        faults: list[StateError] = []
        present = set()
        state_files, names_files = self._listing()
        for path in state_files:
            present.add(path.name)
            try:
                self._read(path, now)
            except StateError as exc:
                faults.append(exc)
        for gone in set(self._processes) - present:
            del self._processes[gone]  # removed by its writer or an operator: its counts are already in the totals
        for kept in (self._ignored, self._unreadable):
            for gone in set(kept) - present:
                del kept[gone]
        self._reader.forget_all_but(set(self._processes))
        self._classify_pending(began + self.config.classify_budget_seconds)
        self._remove_orphans(names_files, now)
        families = self._families(now)
        self._faults = faults
        if faults:
            raise PartialPollError("; ".join(str(f) for f in faults), families, faults[0].reason)
        if not self._processes:
            message = f"{self.config.state_dir}: no live dispatch state files (*.json); {START_HINT}"
            if self._totals.kernels:
                raise PartialPollError(message, families, "missing")
            raise PollError(message, "missing")
        return families

    def _listing(self) -> tuple[list[Path], list[Path]]:
        """The state files (``*.json``, not hidden) and the names files (``.*.names``) of the state directory."""
        directory = self.config.state_dir
        try:
            with os.scandir(directory) as entries:
                files = [Path(entry.path) for entry in entries if entry.is_file()]
        except OSError as exc:
            raise PollError(f"{directory}: cannot list state files: {exc.strerror or exc}", "missing") from None
        return (sorted(p for p in files if p.suffix == ".json" and not p.name.startswith(".")),
                [p for p in files if NAMES_FILE.fullmatch(p.name)])

    def _remove_orphans(self, names_files: list[Path], now: float) -> None:
        """Remove the names files that no live process lists, no waiting name needs, and nothing wrote for
        ``stale_after``: those of finished processes (once their names are classified), of a writer killed
        between its first names and its first state file, of a state file removed by hand."""
        lists = chain((listed.names for process in self._processes.values() for listed in process.listed.values()),
                      (block.names for block in self._waiting))
        needed = {names.file.path.name for names in lists if isinstance(names, NameList)}
        for path in names_files:
            if path.name in needed:
                continue
            try:
                if now - path.stat().st_mtime > self.config.stale_after:
                    path.unlink()
                    log.info("dispatch: %s belongs to no live state file; removed", path)
            except OSError:
                pass  # gone already, or not ours to remove: tried again next poll

    def _read(self, path: Path, now: float) -> None:
        """Fold one file into the totals; raise StateError for a corrupt file of a live process."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._ignored.get(path.name) == signature:
            return
        known = self._processes.get(path.name)
        if known is not None and known.signature == signature:  # not rewritten since the last poll: nothing new
            if self._is_finished(known.state, now):
                self._retire(path, signature, f"stale (last written {now - known.state['updated_at']:.0f}s ago)")
            return
        try:
            state = self._reader.read(path)
        except StateError:
            # Unchanged since first seen unreadable (by this exporter's clock) for longer than stale_after:
            # abandoned, with nothing to count. Until then a fault of a live process.
            seen = self._unreadable.setdefault(path.name, (signature, now))
            if seen[0] != signature:
                seen = self._unreadable[path.name] = (signature, now)
            if now - seen[1] > self.config.stale_after:
                self._retire(path, signature, "was not a readable state file and stopped changing")
                return
            raise
        self._unreadable.pop(path.name, None)
        identity = (state["pid"], float(state["started_at"]))
        process = self._processes.get(path.name)
        if process is None or process.identity != identity:
            if process is not None:
                log.info("dispatch: %s restarted (pid %s -> %s); its earlier counts stay in the totals",
                         path.name, process.identity[0], identity[0])
            # A process taken for gone that writes again (stopped for longer than stale_after, then resumed)
            # goes on from what was already counted, never from zero.
            process = self._retired.pop(identity, None) or _Process(identity, state)
            finished_before_us = identity[1] < self._started_at and self._is_finished(state, now)
            if finished_before_us:  # counted, if at all, by an earlier exporter: do not count it again
                self._retire(path, signature, "ended before this exporter started")
                return
            self._processes[path.name] = process
        self._fold(process, state)
        process.state = {key: value for key, value in state.items() if key != "gpus"}  # the names live in listed
        process.signature = signature
        if self._is_finished(state, now):
            why = "exited" if state["status"] == "exited" else f"stale (last written {now - state['updated_at']:.0f}s ago)"
            self._retire(path, signature, why)

    def _is_finished(self, state: dict[str, Any], now: float) -> bool:
        return state["status"] == "exited" or now - state["updated_at"] > self.config.stale_after

    def _retire(self, path: Path, signature: tuple[int, int, int], why: str) -> None:
        """Forget a finished process (its counts stay in the totals) and remove its file, or ignore it from now on."""
        process = self._processes.pop(path.name, None)
        if process is not None:
            self._retired[process.identity] = process
            while len(self._retired) > RETIRED_KEPT:
                self._retired.pop(next(iter(self._retired)))
        self._unreadable.pop(path.name, None)
        try:
            if os.stat(path).st_ino == signature[0]:  # not a new process's file that replaced it meanwhile
                path.unlink()
            log.info("dispatch: %s %s; its counts are kept in the totals and the file removed", path, why)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if path.name not in self._ignored:
                log.warning("dispatch: %s %s but cannot be removed (%s); ignoring it", path, why, exc.strerror or exc)
            self._ignored[path.name] = signature

    # -- counting ------------------------------------------------------------------------------------
    def _fold(self, process: _Process, state: dict[str, Any]) -> None:
        """Add what each name gained since the last poll (the reader has checked every count)."""
        for gpu, entry in state["gpus"].items():
            names, counts = entry["names"], entry["counts"]
            before, unlisted = _aligned(process.listed.get(gpu), names)
            slots: Iterable[int]
            if before.counts:
                slots = moved_slots(counts, before.counts)
            else:  # a GPU seen for the first time (or matched by name): every name is new
                slots = range(len(names))
            codes = before.codes
            codes += [UNDECIDED] * (len(names) - len(codes))
            self._count_names(process, gpu, entry, before, codes, slots)
            process.listed[gpu] = _Listed(names, counts, unlisted, codes)
            self._count_kernels(process, gpu, entry)

    def _count_names(self, process: _Process, gpu: str, entry: dict[str, Any], before: _Listed, codes: list[int],
                     slots: Iterable[int]) -> None:
        """The hot part of a poll: the names whose counts moved, each with its slot's decision code (``codes``),
        summed per code in C; names no decision is remembered for are looked up in the table's cache once."""
        assert self._table is not None
        names, counts = entry["names"], entry["counts"]
        slots = list(slots)
        slot_codes = list(map(codes.__getitem__, slots))
        if UNDECIDED in slot_codes:
            undecided = list(compress(slots, map(eq, slot_codes, repeat(UNDECIDED))))
            if self._table.decided:  # else a new table (or a new exporter): every name waits, none to look up
                listed = decoded(names, undecided[-1] + 1)
                decided = list(map(_CODES.__getitem__, map(self._table.known, map(listed.__getitem__, undecided))))
                for slot, code in zip(undecided, decided, strict=True):
                    codes[slot] = code
                undecided = list(compress(undecided, map(eq, decided, repeat(UNDECIDED))))
                slot_codes = list(map(codes.__getitem__, slots))
            if undecided:
                self._wait(process, gpu, names, counts, before, undecided)
        gemms = list(map(ge, slot_codes, repeat(FIRST_GEMM)))
        if not any(gemms):
            return
        slots, slot_codes = list(compress(slots, gemms)), list(compress(slot_codes, gemms))
        launches, nanoseconds = _gains(names, counts, before, slots)
        totals = self._totals
        for code in set(slot_codes):
            mask = list(map(eq, slot_codes, repeat(code)))
            gained = sum(compress(launches, mask))
            precision = PRECISIONS[(code - FIRST_GEMM) >> 1]
            totals.gemm[(gpu, precision)] += gained
            totals.gemm_ns[(gpu, precision)] += sum(compress(nanoseconds, mask))
            if (code - FIRST_GEMM) & 1:  # a GEMM no rule knows: listed on the landing page
                totals.unrecognized[gpu] += gained
                unknown = list(compress(slots, mask))
                listed, unrecognized = decoded(names, unknown[-1] + 1), process.unrecognized
                for slot in unknown:
                    key = (gpu, listed[slot])
                    if key not in unrecognized:
                        process.unrecognized_names[gpu] += 1
                    unrecognized[key] = counts[2 * slot]

    def _wait(self, process: _Process, gpu: str, names: Sequence[str], counts: list[int], before: _Listed,
              slots: list[int]) -> None:
        """Hold what the names in ``slots`` (ascending) gained since the last poll until the table decides them.

        In C where it can: a first poll of a large file puts every name here.
        """
        if len(slots) == len(names) and not before.counts and not before.unlisted:  # a first look: all as listed
            self._waiting.append(_Waiting(process, gpu, names, range(len(names)), counts[0::2], counts[1::2]))
            return
        launches, nanoseconds = _gains(names, counts, before, slots)
        waiting = list(map(decoded(names, slots[-1] + 1).__getitem__, slots)) if slots else []
        self._waiting.append(_Waiting(process, gpu, waiting, slots, launches, nanoseconds))

    def _classify_pending(self, deadline: float) -> None:
        """Classify waiting names, oldest first, until ``deadline`` (``perf_counter``; one batch at least); count
        what they gained."""
        assert self._table is not None
        table, totals = self._table, self._totals
        began, done, chunk = time.perf_counter(), 0, FIRST_CHUNK
        while self._waiting:
            block = self._waiting[0]
            begin, end = block.start, block.start + chunk
            names = block.names[begin:end]
            gpu = block.gpu
            for index, name, (precision, rule), launches, nanoseconds in zip(
                    range(begin, begin + len(names)), names, table.decide_all(names), block.launches[begin:end],
                    block.nanoseconds[begin:end], strict=True):
                if precision is None:
                    continue
                totals.gemm[(gpu, precision)] += launches
                totals.gemm_ns[(gpu, precision)] += nanoseconds
                if rule.startswith("default:"):
                    totals.unrecognized[gpu] += launches
                    _list_unrecognized(block.process, gpu, name, block.slots[index] if block.slots else None)
            block.start += len(names)
            done += len(names)
            if not block:
                self._waiting.popleft()
            at = time.perf_counter()
            if at >= deadline:
                break
            # As many names as the time left holds at the rate so far, in chunks big enough to be cheap.
            chunk = (max(MIN_CHUNK, min(MAX_CHUNK, int((deadline - at) * done / (at - began)))) if at > began
                     else MAX_CHUNK)

    def _count_kernels(self, process: _Process, gpu: str, entry: dict[str, Any]) -> None:
        totals = self._totals
        counts = (entry["kernels"], entry["kernel_ns"], entry.get("overflow", [0, 0])[0])
        before = process.gpu_counts.get(gpu, (0, 0, 0))
        totals.kernels[gpu] += max(0, counts[0] - before[0])
        totals.kernel_ns[gpu] += max(0, counts[1] - before[1])
        totals.overflow[gpu] += max(0, counts[2] - before[2])
        process.gpu_counts[gpu] = counts
        for precision in PRECISIONS:  # every precision of a GPU that ran kernels, from 0 for increase()
            totals.gemm[(gpu, precision)] += 0
            totals.gemm_ns[(gpu, precision)] += 0
        totals.unrecognized[gpu] += 0
        totals.overflow[gpu] += 0

    # -- the classification table ---------------------------------------------------------------------
    def _refresh_table(self) -> None:
        path = self.config.table or DEFAULT_TABLE
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            stamp = None
            error = f"{path}: cannot read kernel classification table: {exc.strerror or exc}"
        if stamp is not None and stamp == self._table_stamp:
            return
        if stamp is not None:
            try:
                table = KernelClassifier.load(path)
            except ValueError as exc:
                error = str(exc)
            else:
                if self._table is not None:
                    log.info("dispatch: %s changed; new launches are classified with it", path)
                self._table, self._table_stamp, self._table_error = table, stamp, ""
                self._reclassify_unrecognized()
                return
        if error != self._table_error:
            log.warning("dispatch: %s%s", error, "; keeping the last good table" if self._table else "")
        self._table_error, self._table_stamp = error, stamp
        if self._table is None:
            raise PollError(error, "table")

    def _reclassify_unrecognized(self) -> None:
        """A new table has decided nothing yet: every name a live process lists waits for its decision, and the
        lists of names the table does not know fill again as the decisions come."""
        for process in self._processes.values():
            process.unrecognized = {}
            process.unrecognized_names = Counter()
            for gpu, listed in process.listed.items():
                listed.codes[:] = repeat(UNDECIDED, len(listed.codes))
                for names, slots in ((listed.names, range(len(listed.names))), (list(listed.unlisted), None)):
                    if names:
                        self._waiting.append(_Waiting(process, gpu, names, slots, [0] * len(names), [0] * len(names)))

    # -- what is exported -----------------------------------------------------------------------------
    def _families(self, now: float) -> list[Family]:
        t = self._totals
        f = {name: Family(name) for name in (
            "blackwell_gemm_kernel_launches_total", "blackwell_gemm_kernel_seconds_total",
            "blackwell_dispatch_kernel_launches_total", "blackwell_dispatch_kernel_seconds_total",
            "blackwell_dispatch_overflow_kernel_launches_total", "blackwell_dispatch_unrecognized_gemm_launches_total",
            "blackwell_dispatch_unrecognized_gemm_names", "blackwell_dispatch_table_last_reload_successful",
            "blackwell_dispatch_kernel_names_pending",
        )}
        for key in sorted(t.gemm):
            f["blackwell_gemm_kernel_launches_total"].add(key, t.gemm[key])
            f["blackwell_gemm_kernel_seconds_total"].add(key, t.gemm_ns[key] / 1e9)
        names: Counter[str] = sum((p.unrecognized_names for p in self._processes.values()), Counter())
        for gpu in sorted(t.kernels):
            f["blackwell_dispatch_kernel_launches_total"].add((gpu,), t.kernels[gpu])
            f["blackwell_dispatch_kernel_seconds_total"].add((gpu,), t.kernel_ns[gpu] / 1e9)
            f["blackwell_dispatch_overflow_kernel_launches_total"].add((gpu,), t.overflow[gpu])
            f["blackwell_dispatch_unrecognized_gemm_launches_total"].add((gpu,), t.unrecognized[gpu])
            f["blackwell_dispatch_unrecognized_gemm_names"].add((gpu,), names[gpu])
        f["blackwell_dispatch_table_last_reload_successful"].add((), 0 if self._table_error else 1)
        f["blackwell_dispatch_kernel_names_pending"].add((), sum(map(len, self._waiting)))
        return [*f.values(), *self._health(now)]

    def _health(self, now: float) -> list[Family]:
        """Per-process series of the live writers: they end with their process."""
        per_process = {
            "blackwell_dispatch_sampler_windows_total": "windows",
            "blackwell_dispatch_sampler_windows_skipped_total": "windows_skipped",
            "blackwell_dispatch_sampler_sampled_seconds_total": "sampled_seconds",
            "blackwell_dispatch_sampler_records_total": "records",
            "blackwell_dispatch_sampler_dropped_records_total": "dropped_records",
            "blackwell_dispatch_sampler_duty_cycle_ratio": "duty_cycle",
        }
        families = {name: Family(name) for name in per_process}
        age = Family("blackwell_dispatch_sampler_state_age_seconds")
        status = Family("blackwell_dispatch_sampler_status")
        for process, record in sorted(self._processes.items()):
            label = (process.removesuffix(".json"),)
            state = record.state
            for name, key in per_process.items():
                families[name].add(label, state.get(key, 0))
            age.add(label, round(max(0.0, now - state["updated_at"]), 3))
            status.add((*label, state.get("writer", ""), state["status"], state.get("reason", "")), 1)
        return [*families.values(), age, status]

    def _build_notes(self, faults: list[StateError]) -> list[str]:
        notes = [f"table {self._table_error} (the last good table stays in use)"] if self._table_error else []
        notes += [f"unreadable: {fault}" for fault in faults]
        for name, process in sorted(self._processes.items()):
            state = process.state
            if state["status"] != "sampling":
                notes.append(f"{name} (pid {state['pid']}, {state.get('writer', '?')}): {state['status']}, "
                             f"reason {state.get('reason') or '-'}: {state.get('detail') or 'no detail'}")
        if self._waiting:
            notes.append(f"{sum(map(len, self._waiting))} kernel names wait to be classified: their launches are "
                         "added to the GEMM totals when they are (each poll classifies until it has run "
                         "classify_budget_seconds)")
        if self._ignored:
            notes.append(f"finished but not removable (ignored): {', '.join(sorted(self._ignored))}")
        launches: dict[tuple[str, str], int] = defaultdict(int)
        for process in self._processes.values():
            for key, count in process.unrecognized.items():
                launches[key] += count
        top = heapq.nsmallest(NOTE_NAMES, launches.items(), key=lambda item: (-item[1], item[0]))
        notes += [f"unrecognized GEMM on gpu {gpu} ({count} launches): {name}" for (gpu, name), count in top]
        return notes


def _gains(names: Sequence[str], counts: list[int], before: _Listed, slots: list[int]) -> tuple[list[int], list[int]]:
    """What the names in ``slots`` (ascending) gained since ``before``, launches and nanoseconds, in C where it can:
    a name in its place of before from its pair then, a name new in its place from zero (or from what it had when
    a writer stopped listing it)."""
    split = bisect_left(slots, len(before.counts) >> 1)  # the names in their place before, then the new ones
    at = list(map(lshift, slots, repeat(1)))
    launches = list(map(counts.__getitem__, at))
    nanoseconds = list(map(counts.__getitem__, map(add, at, repeat(1))))
    if split:
        last, before_at = before.counts, at[:split]
        launches[:split] = map(max, map(sub, launches[:split], map(last.__getitem__, before_at)), repeat(0))
        nanoseconds[:split] = map(max, map(sub, nanoseconds[:split],
                                           map(last.__getitem__, map(add, before_at, repeat(1)))), repeat(0))
    for index in range(split, len(slots)) if before.unlisted else ():  # back after a writer dropped it
        prior = before.unlisted.get(names[slots[index]])
        if prior is not None:
            launches[index] = max(0, launches[index] - prior[0])
            nanoseconds[index] = max(0, nanoseconds[index] - prior[1])
    return launches, nanoseconds


class _Codes(dict):
    """A decision (or None: not decided) -> its code, filled as decisions come (a table has a few dozen)."""

    def __missing__(self, decision: tuple[str | None, str]) -> int:
        precision, rule = decision
        code = self[decision] = NOT_GEMM if precision is None else (
            FIRST_GEMM + 2 * PRECISIONS.index(precision) + rule.startswith("default:"))
        return code


_CODES = _Codes({None: UNDECIDED})


def _list_unrecognized(process: _Process, gpu: str, name: str, slot: int | None) -> None:
    """A name just found unrecognized joins the process's list, with its launches as the process lists them now."""
    listed = process.listed.get(gpu)
    if listed is None:
        return
    if slot is None or slot >= len(listed.names) or listed.names[slot] != name:  # dropped or moved since
        if name in listed.unlisted:
            slot = None
        elif name in listed.names:
            slot = listed.names.index(name)
        else:
            return
    key = (gpu, name)
    if key not in process.unrecognized:
        process.unrecognized_names[gpu] += 1
    process.unrecognized[key] = listed.counts[2 * slot] if slot is not None else listed.unlisted[name][0]


def _aligned(listed: _Listed | None, names: Sequence[str]) -> tuple[_Listed, dict[str, tuple[int, int]]]:
    """What was counted of these names at the last poll, in their places now, and the names no longer listed.

    A name past the returned ``names`` is new in its place: counted from zero, or from ``unlisted``.
    """
    if listed is None:
        return _Listed([], []), {}
    if extends(names, listed.names):  # appended, as both writers do
        return listed, listed.unlisted
    # A writer that reordered or dropped names: every name is matched by name; the dropped ones are kept.
    by_name = listed.counts_by_name()
    present = set(names)
    return _Listed([], [], by_name), {name: pair for name, pair in by_name.items() if name not in present}
