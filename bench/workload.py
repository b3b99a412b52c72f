"""The sample sets the benchmarks run on: the simulation at any GPU count, plus every other family.

``simulated_source(gpus)`` is the hgx-b200 simulation with ``gpu_count`` replaced (the synthetic
worst case is 72 GPUs x 18 links). ``filler_families(gpus)`` adds the catalog families the
simulation does not fill (NVML-only, DCGM-compat, logs, engine, dispatch, self-metrics), with the
cardinality each one has on a real box: one series per GPU, per GPU and link for link families,
and a handful of values for every other label. Together they are "every family on".
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

from exporter import catalog
from exporter.catalog import MetricType
from exporter.snapshot import Family, HistogramValue, Snapshot, SnapshotStore
from exporter.sources.simulated import profiles
from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource

REPO = Path(__file__).resolve().parent.parent
LINKS = 18
OTHER_LABEL_VALUES = 3  # values per label that is neither gpu nor link (reason, kind, rule, ...)


def profile_with(gpus: int, base: str = "hgx-b200") -> str:
    """Register ``base`` with ``gpus`` GPUs (same per-GPU model, 18 links each) and return its name."""
    profile = profiles.PROFILES[base]
    if gpus == profile.gpu_count:
        return profile.name
    name = f"{profile.name}-x{gpus}"
    profiles.PROFILES[name] = dataclasses.replace(profile, name=name, gpu_count=gpus)
    return name


def simulated_source(gpus: int, base: str = "hgx-b200", clock=None) -> SimulatedSource:
    config = SimulatedConfig(enabled=True, profile=profile_with(gpus, base))
    return SimulatedSource(config) if clock is None else SimulatedSource(config, clock=clock)


def _label_values(label: str, gpus: int) -> list[str]:
    if label == "gpu":
        return [str(i) for i in range(gpus)]
    if label == "link":
        return [str(i) for i in range(LINKS)]
    return [f"{label}-{i}" for i in range(OTHER_LABEL_VALUES)]


def _combinations(labels: tuple[str, ...], gpus: int) -> Iterator[tuple[str, ...]]:
    """gpu and link vary fully; the first other label takes 3 values, the rest follow it (not a product)."""
    varying = [(i, _label_values(lab, gpus)) for i, lab in enumerate(labels) if lab in ("gpu", "link")]
    others = [i for i, lab in enumerate(labels) if lab not in ("gpu", "link")]
    grid: list[dict[int, str]] = [{}]
    for index, values in varying:
        grid = [{**row, index: v} for row in grid for v in values]
    for row in grid:
        for k in range(OTHER_LABEL_VALUES if others else 1):
            yield tuple(row.get(i, f"{labels[i]}-{k}") for i in range(len(labels)))


def filler_families(gpus: int, emitted: set[str]) -> dict[str, list[Family]]:
    """Families for every catalog metric not in ``emitted``, grouped by the source that fills them."""
    by_source: dict[str, list[Family]] = {}
    for name, metric in catalog.CATALOG.items():
        if name in emitted:
            continue
        family = Family(name)
        for n, values in enumerate(_combinations(metric.labels, gpus)):
            if metric.type is MetricType.HISTOGRAM:
                buckets = tuple((b, float(n + k)) for k, b in enumerate((0.1, 1.0, math.inf)))
                family.add(values, HistogramValue(buckets, 1.5 * n, buckets[-1][1]))
            else:
                family.add(values, 1.0 if metric.type is MetricType.INFO else 1234.5 + n)
        by_source.setdefault(metric.sources[0], []).append(family)
    return by_source


def every_family(gpus: int) -> tuple[SimulatedSource, dict[str, list[Family]]]:
    """The simulation (polled twice, so counters and rates are non-zero) plus fillers, by source."""
    source = simulated_source(gpus)
    source.poll()
    families = source.poll()
    emitted = {f.metric.name for f in families if f.samples}
    groups = filler_families(gpus, emitted)
    groups.setdefault("simulated", []).extend(families)
    return source, groups


def publish_all(store: SnapshotStore, groups: dict[str, list[Family]],
                snapshot_cls: type[Snapshot] = Snapshot) -> None:
    """Publish one snapshot per source; the "exporter" group stands in for the scheduler's self-metrics.

    ``snapshot_cls`` is the Snapshot class of the store's own module (bench/ab.py and
    bench/scrape.py --base load an older snapshot module beside this tree's).
    """
    own = snapshot_cls.of("exporter", groups.get("exporter", []))
    for name, families in groups.items():
        if name != "exporter":
            store.publish(name, snapshot_cls.of(name, families), lambda: own)


def load_at(rev: str, path: str, name: str, overrides: dict[str, types.ModuleType]) -> types.ModuleType:
    """Execute ``path`` as it was at ``rev`` as module ``name``, with ``overrides`` seen as its imports."""
    source = subprocess.check_output(["git", "show", f"{rev}:{path}"], cwd=REPO, text=True)
    module = types.ModuleType(name)
    module.__file__ = f"{rev}:{path}"
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    saved = {key: sys.modules.get(key) for key in overrides}
    sys.modules.update(overrides)
    try:
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own file at rev
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return module
