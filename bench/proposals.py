"""A/B of optimisations proposed for other helpers' files, applied here as patches in memory only.

Each proposal runs against the code as it is on the same input, alternating, and must give the
same result; the CPU-time ratio is its predicted effect once its owner applies it.

1. promtext: label pairs without escapes are read with one regex match, and quoted values up to
   the closing quote in one ``str`` scan, instead of character by character (``_labels``,
   ``_quoted``); anything else falls back to the existing loop at the same position.
2. logs: a line is searched by a rule only if it contains one of the literals every match of
   that rule must contain (``requires`` below, lower-cased; the check runs on whole chunks with
   ``str.find``, so lines with no literal cost nothing per rule). Non-ASCII lines skip the
   prefilter, since ``(?i)`` folds a few non-ASCII letters onto ASCII ones.
3. cli: ``gc.freeze()`` once the daemon has started, so a full (generation 2) collection no
   longer walks every object made at import and start-up; it stops the world, scrapes included.

    python bench/proposals.py --lines 200000 --series 50000
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import tempfile
import time
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gen_trtllm_log  # noqa: E402
from bench.ingest import triton_body  # noqa: E402
from exporter import promtext  # noqa: E402
from exporter.sources import logs  # noqa: E402

# -- 1. promtext ---------------------------------------------------------------------------------
_PAIR = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"\\]*)"[ \t]*([,}])')
_PLAIN = re.compile(r'[^"\\]*')
ORIGINAL_LABELS = promtext._labels  # noqa: SLF001
ORIGINAL_QUOTED = promtext._quoted  # noqa: SLF001


def fast_labels(line: str, pos: int) -> tuple[dict[str, str], int]:
    labels: dict[str, str] = {}
    while True:
        match = _PAIR.match(line, pos)
        if match is None:  # escapes, spaces before "}", an error: the existing loop takes over here
            rest, end = ORIGINAL_LABELS(line, pos)
            for key in rest:
                if key in labels:
                    raise promtext.PromParseError(f"label {key} given twice")
            labels.update(rest)
            return labels, end
        label = match.group(1)
        if label in labels:
            raise promtext.PromParseError(f"label {label} given twice")
        labels[label] = match.group(2)
        pos = match.end()
        if match.group(3) == "}":
            return labels, pos


def fast_quoted(line: str, pos: int) -> tuple[str, int]:
    stop = _PLAIN.match(line, pos).end()
    if stop < len(line) and line[stop] == '"':
        return line[pos:stop], stop + 1
    return ORIGINAL_QUOTED(line, pos)


def promtext_ab(series: int, rounds: int) -> None:
    body, total = triton_body(series)
    variants = {"as is": (ORIGINAL_LABELS, ORIGINAL_QUOTED), "proposed": (fast_labels, fast_quoted)}

    def parse_with(name: str) -> promtext.Exposition:
        promtext._labels, promtext._quoted = variants[name]  # noqa: SLF001
        try:
            return promtext.parse(body)
        finally:
            promtext._labels, promtext._quoted = ORIGINAL_LABELS, ORIGINAL_QUOTED  # noqa: SLF001

    same = [[(s.name, dict(s.labels), s.value) for s in parse_with(name).samples] for name in variants]
    assert same[0] == same[1], "the proposal changed the parse"
    del same  # timed runs keep nothing alive, so neither side's GC walks the other's results
    times: dict[str, list[float]] = {name: [] for name in variants}
    for n in range(rounds):
        for name in sorted(variants, reverse=bool(n % 2)):  # alternate which runs first
            gc.collect()
            c0 = time.process_time()
            parse_with(name)
            times[name].append(time.process_time() - c0)
    base, new = min(times["as is"]), min(times["proposed"])
    print(f"promtext.parse, {total} series, {len(body)} bytes (best of {rounds}, CPU): as is {base * 1e3:.0f} ms, "
          f"proposed {new * 1e3:.0f} ms, {base / new:.2f}x; identical samples")


# -- 2. logs -------------------------------------------------------------------------------------
# Literals every match of each default rule contains (lower-cased; exact case for case-sensitive rules).
REQUIRES: dict[str, tuple[bool, tuple[str, ...]]] = {  # rule -> (case-insensitive?, literals)
    "te_promotion": (True, ("promot",)),
    "fp8_fallback": (True, ("fp8", "fp4", "e4m3", "e2m1")),
    "engine_build": (True, ("build",)),
    "engine_load": (True, ("load", "deserializ")),
    "cuda_graph_capture": (True, ("captur",)),
    "autotune": (True, ("autotun",)),
    "jit_compile": (True, ("compil", "kernel cache miss")),
    "cuda_oom": (True, ("out of memory", "cudaerrormemoryallocation", "cuda_error_out_of_memory",
                        "outofmemoryerror")),
    "nccl_error": (False, ("nccl",)),
    "nccl_watchdog_timeout": (True, ("watchdog caught collective operation timeout", "nccl")),
    "nccl_warn": (False, ("NCCL WARN",)),
}


def candidate_lines(text: str, starts: list[int], literals: tuple[str, ...]) -> set[int]:
    """Indexes of the lines of ``text`` (starting at ``starts``) that contain one of ``literals``."""
    found: set[int] = set()
    for literal in literals:
        at = text.find(literal)
        while at != -1:
            line = bisect_right(starts, at) - 1
            found.add(line)
            at = text.find(literal, starts[line + 1] if line + 1 < len(starts) else len(text))
    return found


def prefiltered_count(source: logs.LogsSource, lines: list[str]) -> None:
    """What ``count_line`` does for each line, with the rules a line cannot match skipped."""
    text = "\n".join(lines)
    lower = text.lower() if text.isascii() else None
    starts, at = [], 0
    for line in lines:
        starts.append(at)
        at += len(line) + 1
    everything = set(range(len(lines)))
    candidates = {}
    for rule, _, _ in source.rules:
        spec = REQUIRES.get(rule.name)
        if spec is None or (spec[0] and lower is None):
            candidates[rule.name] = everything  # no literal known, or non-ASCII text: search every line
        else:
            candidates[rule.name] = candidate_lines(lower if spec[0] else text, starts, spec[1])
    hits = sorted(set().union(*candidates.values())) if candidates else []
    rules = source.rules
    for index in hits:
        source.rules = [r for r in rules if index in candidates[r[0].name]]
        source.count_line(lines[index])
    source.rules = rules


def logs_ab(lines: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-proposals-") as tmp:
        path = Path(tmp) / "trtllm.log"
        gen_trtllm_log.write(path, lines)
        text = path.read_bytes().decode("utf-8", errors="replace").split("\n")[:-1]

    def as_is(source: logs.LogsSource, batch: list[str]) -> None:
        for line in batch:
            source.count_line(line)

    variants: dict[str, Callable[[logs.LogsSource, list[str]], None]] = {"as is": as_is, "proposed": prefiltered_count}
    times: dict[str, list[float]] = {name: [] for name in variants}
    counts = {}
    for n in range(rounds):
        for name in sorted(variants, reverse=bool(n % 2)):
            count = variants[name]
            source = logs.LogsSource(logs.LogsConfig(enabled=True, paths=[], start_at="beginning"))
            gc.collect()
            c0 = time.process_time()
            for first in range(0, len(text), 50_000):  # poll-sized batches
                count(source, text[first:first + 50_000])
            times[name].append(time.process_time() - c0)
            counts[name] = dict(source.counts)
    assert counts["as is"] == counts["proposed"], "the proposal changed the counts"
    base, new = min(times["as is"]), min(times["proposed"])
    print(f"logs rules, {len(text)} lines (best of {rounds}, CPU): as is {len(text) / base:,.0f} lines/s, "
          f"proposed {len(text) / new:,.0f} lines/s, {base / new:.1f}x; identical counts "
          f"({sum(counts['as is'].values()):g} matches)")


# -- 3. gc.freeze ----------------------------------------------------------------------------------
def gc_ab(polls: int) -> None:
    import exporter.cli  # noqa: F401 - what the daemon imports, so the heap is the daemon's
    from bench.workload import simulated_source
    from exporter.snapshot import Snapshot, SnapshotStore

    source, store, own = simulated_source(8), SnapshotStore(), Snapshot("exporter", {})
    pauses: list[float] = []
    started: list[float] = []

    def watch(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                started.append(time.perf_counter())
            else:
                pauses.append(time.perf_counter() - started.pop())

    def run() -> tuple[int, float]:
        pauses.clear()
        for _ in range(polls):
            store.publish("simulated", Snapshot.of("simulated", source.poll()), lambda: own)
        return len(pauses), max(pauses, default=0.0)

    gc.callbacks.append(watch)
    try:
        run()  # warm-up
        gc.collect()
        before = run()
        gc.freeze()
        after = run()
        gc.unfreeze()
    finally:
        gc.callbacks.remove(watch)
    print(f"gen-2 collections over {polls} 8-GPU poll cycles: as is {before[0]}, longest {before[1] * 1e3:.1f} ms; "
          f"after gc.freeze() {after[0]}, longest {after[1] * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--series", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.2f}")
    promtext_ab(args.series, args.rounds)
    logs_ab(args.lines, args.rounds)
    gc_ab(200)


if __name__ == "__main__":
    main()
