"""The dispatch source polling one state file of 100,000 distinct kernel names: the old path and the new, side by side.

Names are the real ones of tests/fixtures/kernels/ (H200 recordings, Blackwell GEMM tables),
each varied with a suffix so that all 100,000 are distinct and every rule of the table is
exercised. One run measures, on the same generated names and counts:

- ``old``: the algorithm before issue 13, kept below as ``BaselineSource`` (a faithful copy of
  its reader, its per-name folding and its classification: every rule's regex searched in turn,
  each name decided within its poll): the whole file parsed by ``json.loads`` into a mapping of
  name -> pair, compared with the last poll's mapping name by name. It reads format version 2.
- ``new-v2``, ``new-v3``: today's DispatchSource on the same content as version 2 and 3 (what a
  serving process started with an earlier release keeps writing); ``new-v4``: as version 4, what
  both writers write now (the counts in the state file, the names in a names file beside it,
  written by ``StateWriter``); ``new-v4-stdlib``: version 4 read without msgspec. These classify
  new names until the poll has run the default ``classify_budget_seconds``, the rest over the
  next polls.
- ``new-v4-unbounded``: ``new-v4`` with a budget no poll reaches: every name classified in the
  first poll, i.e. what the literal prefilter of the table (``decide_all``) alone does.

and for each: (a) the first poll (a fresh source: every name to classify), (b) the steady poll:
the writer rewrote the file with 5% of the names advanced, as a live sampler does between two
polls (the same names as last poll), (c) a poll that finds the file not rewritten since, and (d)
the poll right after the classification table changed (every name seen to classify again with
the new table). For (a) and (d) each path is polled again, the file unchanged, until no name
waits (``blackwell_dispatch_kernel_names_pending`` 0): ``until_classified`` gives the polls that
took and their total, and ``polls_ms`` each poll. Only then are the paths' counters compared (they
must agree) and the steady polls taken. Each poll is timed end to end through ``poll()``, wall
clock (the figure that counts) and the polling process's CPU time. Each path runs in a process of
its own, as the source does in an exporter, and the paths take turns within each round, so a
change of load on the shared machine falls on all of them alike.

    .venv/bin/python bench/dispatch_classify.py [--names 100000] [--polls 10] [--first 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from functools import lru_cache, partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.dispatch_reader import StateReader, msgspec  # noqa: E402
from exporter.dispatch_table import CACHE_SIZE, DEFAULT_TABLE, PRECISIONS, KernelClassifier  # noqa: E402
from exporter.inprocess.state import FORMAT, StateError, StateWriter, _check_header, write_atomic  # noqa: E402
from exporter.sources.dispatch import DispatchConfig, DispatchSource  # noqa: E402

KERNELS = REPO / "tests" / "fixtures" / "kernels"
PATHS = ("old", "new-v2", "new-v3", "new-v4", "new-v4-stdlib", "new-v4-unbounded")
VERSIONS = (2, 3, 4)
UNBOUNDED = 3600.0  # a classification budget no poll reaches
MOST_POLLS = 1000  # polls of an unchanged file to wait for every name to be classified


# -- the baseline: the reader and the fold as they were before issue 13 (commit 62fb9da) ---------------
def baseline_is_pair(value: Any) -> bool:
    return (type(value) is list and len(value) == 2 and type(value[0]) is int and type(value[1]) is int
            and value[0] >= 0 and value[1] >= 0)


def baseline_read_state(path: Path) -> dict[str, Any]:
    """The old ``read_state``: the whole file through json.loads, every check but the per-name pairs."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc}", "missing") from None
    try:
        state = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise StateError(f"{path}: torn or not JSON ({len(raw)} bytes): {exc}", "torn") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != 2:
        raise StateError(f"{path}: not a version 2 dispatch state file", "invalid")
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
                raise StateError(f"{where}.{key}: expected a non-negative integer", "invalid")
        if not isinstance(entry.get("names"), dict):
            raise StateError(f"{where}.names: must be a mapping", "invalid")
        if not baseline_is_pair(entry.get("overflow", [0, 0])):
            raise StateError(f"{where}.overflow: expected [launches, gpu_ns]", "invalid")
        if not isinstance(entry.get("uuid", ""), str):
            raise StateError(f"{where}.uuid: must be a string", "invalid")
    return state


def baseline_decide(table: KernelClassifier, name: str) -> tuple[str | None, str]:
    """The old ``KernelClassifier._decide``: every rule's regex searched, in table order."""
    for rule in table.not_gemm:
        if rule.pattern.search(name):
            return None, f"not_gemm:{rule.name}"
    if not any(rule.pattern.search(name) for rule in table.gemm):
        return None, "not_gemm:no-gemm-rule"
    for rule in table.precision:
        if rule.pattern.search(name):
            return rule.precision, f"precision:{rule.name}"
    return table.default, f"default:{table.default}"


class _BaselineReader:
    def read(self, path: Path) -> dict[str, Any]:
        return baseline_read_state(path)

    def forget_all_but(self, files: set[str]) -> None:
        pass


class BaselineSource(DispatchSource):
    """DispatchSource with the old reader and the old name-by-name fold; listing, stat and families are shared."""

    def __init__(self, config: DispatchConfig, clock) -> None:
        super().__init__(config, clock)
        self._reader = _BaselineReader()
        self._seen: dict[tuple, dict[str, dict[str, list[int]]]] = {}  # process -> gpu -> name -> pair

    def _fold(self, process, state: dict[str, Any]) -> None:
        decide = self._decide
        seen_of_process = self._seen.setdefault(process.identity, {})  # the old one keyed by file name
        updates = []
        for gpu, entry in state["gpus"].items():
            last = seen_of_process.get(gpu, {}).get
            changed = [(name, pair) for name, pair in entry["names"].items() if pair != last(name)]
            for name, pair in changed:
                if not baseline_is_pair(pair):
                    raise StateError(f"pid {process.identity[0]}: gpus[{gpu}].names[{name!r}]: expected [launches, gpu_ns]",
                                     "invalid")
            updates.append((gpu, entry, changed))
        totals = self._totals
        for gpu, entry, changed in updates:
            seen = seen_of_process.setdefault(gpu, {})
            for name, pair in changed:
                before = seen.get(name)
                seen[name] = pair
                precision, rule = decide(name)
                if precision is None:
                    continue
                launches = max(0, pair[0] - before[0]) if before else pair[0]
                nanoseconds = max(0, pair[1] - before[1]) if before else pair[1]
                totals.gemm[(gpu, precision)] += launches
                totals.gemm_ns[(gpu, precision)] += nanoseconds
                if rule.startswith("default:"):
                    totals.unrecognized[gpu] += launches
                    if (gpu, name) not in process.unrecognized:
                        process.unrecognized_names[gpu] += 1
                    process.unrecognized[(gpu, name)] = pair[0]
            counts = (entry["kernels"], entry["kernel_ns"], entry.get("overflow", [0, 0])[0])
            before = process.gpu_counts.get(gpu, (0, 0, 0))
            totals.kernels[gpu] += max(0, counts[0] - before[0])
            totals.kernel_ns[gpu] += max(0, counts[1] - before[1])
            totals.overflow[gpu] += max(0, counts[2] - before[2])
            process.gpu_counts[gpu] = counts
            for precision in PRECISIONS:
                totals.gemm[(gpu, precision)] += 0
                totals.gemm_ns[(gpu, precision)] += 0
            totals.unrecognized[gpu] += 0
            totals.overflow[gpu] += 0

    def _reclassify_unrecognized(self) -> None:
        """Called with each table loaded: the old per-name cache of the old decisions, and every name decided now."""
        assert self._table is not None
        self._decide = decide = lru_cache(maxsize=CACHE_SIZE)(partial(baseline_decide, self._table))
        for process in self._processes.values():
            process.unrecognized = {
                (gpu, kernel): pair[0] for gpu, names in self._seen.get(process.identity, {}).items()
                for kernel, pair in names.items()
                if decide(kernel)[0] is not None and decide(kernel)[1].startswith("default:")}
            process.unrecognized_names = Counter(gpu for gpu, _ in process.unrecognized)


# -- the workload --------------------------------------------------------------------------------------
def real_names() -> list[str]:
    names = [k["name"] for k in yaml.safe_load((KERNELS / "blackwell.yaml").read_text())["kernels"]]
    for workload in json.loads((KERNELS / "h200_torch.json").read_text())["workloads"]:
        names += workload.get("kernels", [])
    return sorted(set(names))


def state(names: dict[str, list[int]], now: float, version: int) -> dict:
    listed = {"names": names} if version == 2 else {"names": list(names),
                                                     "counts": [n for pair in names.values() for n in pair]}
    return {"format": FORMAT, "version": version, "writer": "inject", "writer_version": "bench", "pid": 1,
            "process": "rank0", "started_at": now - 60, "updated_at": now, "status": "sampling", "reason": "",
            "detail": "", "duty_cycle": 0.1, "period_seconds": 30, "windows": 1, "windows_skipped": 0,
            "sampled_seconds": 3.0, "records": 1, "incomplete_records": 0, "dropped_records": 0,
            "max_names": len(names),
            "gpus": {"0": {"uuid": "", "kernels": sum(p[0] for p in names.values()),
                           "kernel_ns": sum(p[1] for p in names.values()), **listed, "overflow": [0, 0]}}}


class Bench:
    def __init__(self, names: dict[str, list[int]], now: float) -> None:
        self.names, self.now = names, now
        self.root = Path(tempfile.mkdtemp(prefix="dispatch-classify-"))
        self.table = self.root / "table.yaml"
        shutil.copy(DEFAULT_TABLE, self.table)
        for version in VERSIONS:
            (self.root / f"v{version}").mkdir()
        self.writer = StateWriter(self.root / "v4" / "rank0.json")

    def write(self) -> None:
        for version in (2, 3):
            write_atomic(self.root / f"v{version}" / "rank0.json", state(self.names, self.now, version))
        self.writer.write(state(self.names, self.now, 3))  # the writer writes it as version 4

    def source(self, path: str) -> DispatchSource:
        """A fresh source of one path (its table cache empty, as after a start)."""
        version = "v2" if path in ("old", "new-v2") else path[4:6]
        config = DispatchConfig(enabled=True, state_dir=self.root / version, table=self.table,
                                **({"classify_budget_seconds": UNBOUNDED} if path.endswith("-unbounded") else {}))
        clock = lambda: self.now  # noqa: E731
        if path == "old":
            return BaselineSource(config, clock)
        source = DispatchSource(config, clock)
        if path.endswith("-stdlib"):
            source._reader = StateReader(use_msgspec=False)  # as where msgspec is not installed
        return source

    def advance(self, rng: random.Random) -> None:
        for key in rng.sample(list(self.names), len(self.names) // 20):
            self.names[key][0] += 1
            self.names[key][1] += 500

    def change_table(self, step: int) -> None:
        text = DEFAULT_TABLE.read_text()
        if step % 2:
            text = text.replace("precision:\n", "precision:\n  - {name: bench, precision: fp8, pattern: '^bench_'}\n", 1)
        self.table.write_text(text)
        os.utime(self.table, ns=(step, step))


def timed(source: DispatchSource) -> tuple[tuple[float, float], dict, float]:
    """(wall seconds, CPU seconds of this process) of one poll, the counters it exported, the names still pending."""
    gc.collect()  # each poll starts from a collected heap; the collections it causes itself are timed with it
    began, began_cpu = time.perf_counter(), time.process_time()
    families = source.poll()
    elapsed = (time.perf_counter() - began, time.process_time() - began_cpu)
    samples = {(f.metric.name, labels): value for f in families for labels, value in f.samples}
    return elapsed, {key: value for key, value in samples.items()
                     if key[0].startswith(("blackwell_gemm", "blackwell_dispatch_kernel", "blackwell_dispatch_unrecognized"))
                     and key[0] != "blackwell_dispatch_kernel_names_pending"}, samples[
        ("blackwell_dispatch_kernel_names_pending", ())]


def worker(bench: Bench, path: str, connection: Connection) -> None:
    """One path in a process of its own, as in an exporter: it polls when told and answers with its timing.

    ``settle``: poll until no name waits for classification, and answer with every poll's timing.
    """
    source = None
    while (command := connection.recv()) != "stop":
        if command == "fresh":
            source = bench.source(path)
        elif command == "poll":
            elapsed, answer, _ = timed(source)
            connection.send((elapsed, answer))
        else:
            polls = []
            for _ in range(MOST_POLLS):
                elapsed, answer, pending = timed(source)
                polls.append(elapsed)
                if not pending:
                    break
            connection.send((polls, answer))


class Paths:
    """The paths, each in its own process (no path pays for another's memory or garbage), polled in turn."""

    def __init__(self, bench: Bench) -> None:
        context = multiprocessing.get_context("fork")
        self.connections, self.processes = {}, []
        for path in PATHS:
            mine, theirs = context.Pipe()
            process = context.Process(target=worker, args=(bench, path, theirs), daemon=True)
            process.start()
            self.connections[path], self.processes = mine, [*self.processes, process]

    def fresh(self) -> None:
        for connection in self.connections.values():
            connection.send("fresh")

    def poll(self, times: dict[str, list[tuple[float, float]]], what: str) -> None:
        answers = {}
        for path, connection in self.connections.items():
            connection.send("poll")
            elapsed, answers[path] = connection.recv()
            times[path].append(elapsed)
        assert all(answer == answers["old"] for answer in answers.values()), f"the paths disagree: {what}"

    def settle(self, times: dict[str, list[tuple[float, float]]], series: dict[str, list[list[float]]],
               what: str) -> None:
        """Each path polled until it has classified every name: its first poll, and every poll it took."""
        answers = {}
        for path, connection in self.connections.items():
            connection.send("settle")
            polls, answers[path] = connection.recv()
            times[path].append(polls[0])
            series[path].append([wall for wall, _ in polls])
        assert all(answer == answers["old"] for answer in answers.values()), f"the paths disagree: {what}"

    def stop(self) -> None:
        for connection in self.connections.values():
            connection.send("stop")
        for process in self.processes:
            process.join()


def run(args: argparse.Namespace) -> dict:
    base = real_names()
    rng = random.Random(13)
    names = {f"{base[i % len(base)]}_v{i}": [rng.randint(1, 1000), rng.randint(1000, 10**6)]
             for i in range(args.names)}
    bench = Bench(names, time.time())
    times: dict[str, dict[str, list[tuple[float, float]]]] = {
        case: {path: [] for path in PATHS} for case in ("first", "steady", "unchanged", "table_change")}
    series: dict[str, dict[str, list[list[float]]]] = {case: {path: [] for path in PATHS}
                                                       for case in ("first", "table_change")}
    paths = Paths(bench)
    loads = [os.getloadavg()]
    for attempt in range(args.first):
        bench.write()
        paths.fresh()
        paths.settle(times["first"], series["first"], f"first poll {attempt}")
    for step in range(args.polls):
        bench.advance(rng)
        bench.write()
        paths.poll(times["steady"], f"steady poll {step}")
        paths.poll(times["unchanged"], f"unchanged file {step}")
        if step % 4 == 3:
            bench.change_table(step)
            paths.settle(times["table_change"], series["table_change"], f"after table change {step}")
    loads.append(os.getloadavg())
    paths.stop()
    medians = {case: {path: round(statistics.median(v[0] for v in values) * 1000, 2)
                      for path, values in by_path.items()} for case, by_path in times.items()}
    cpu = {case: {path: round(statistics.median(v[1] for v in values) * 1000, 2) for path, values in by_path.items()}
           for case, by_path in times.items()}
    return {
        "names": args.names, "distinct_base_names": len(base),
        "file_bytes": {f"v{v}": sum(f.stat().st_size for f in (bench.root / f"v{v}").iterdir()) for v in VERSIONS},
        "v4_state_file_bytes": (bench.root / "v4" / "rank0.json").stat().st_size,
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "msgspec": msgspec.__version__ if msgspec is not None else None,
        "load_average_1_5_15": {"before": [round(x, 2) for x in loads[0]], "after": [round(x, 2) for x in loads[1]]},
        "steady_names_advanced_per_poll": len(names) // 20,
        "median_ms": medians,
        "old_over_new": {case: {path: round(by_path["old"] / by_path[path], 2) for path in PATHS[1:]}
                         for case, by_path in medians.items()},
        "median_cpu_ms": cpu,
        "target_ms": 50,
        "classify_budget_seconds": DispatchConfig(enabled=True).classify_budget_seconds,
        "until_classified": {case: {path: {
            "polls": statistics.median(map(len, runs)),
            "total_ms": round(statistics.median(map(sum, runs)) * 1000, 1),
            "slowest_poll_ms": round(statistics.median(map(max, runs)) * 1000, 1),
            "later_polls_median_ms": round(statistics.median(wall for run in runs for wall in run[1:]) * 1000, 1)
            if any(len(run) > 1 for run in runs) else None,
        } for path, runs in by_path.items()} for case, by_path in series.items()},
        "polls_ms": {case: {path: [round(v[0] * 1000, 1) for v in values] for path, values in by_path.items()}
                     for case, by_path in times.items()},
        "until_classified_polls_ms": {case: {path: [[round(wall * 1000, 1) for wall in run] for run in runs]
                                             for path, runs in by_path.items()} for case, by_path in series.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--polls", type=int, default=10)
    parser.add_argument("--first", type=int, default=3, help="fresh sources timed on their first poll")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dispatch_classify.json")
    args = parser.parse_args()
    result = run(args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({key: value for key, value in result.items() if not key.endswith("polls_ms")}, indent=2))


if __name__ == "__main__":
    main()
