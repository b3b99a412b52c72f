"""Metric families, immutable per-source snapshots, and the store /metrics reads from.

A source's poll returns families; the scheduler wraps them in a :class:`Snapshot` (pre-rendered
per family, in the poll's worker thread) and hands it to :class:`SnapshotStore`, which swaps it
in and re-renders the whole exposition once. A scrape only reads the last rendered bytes.
"""

from __future__ import annotations

import gzip
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

from exporter import catalog
from exporter.catalog import Metric, MetricType
from exporter.catalog.tiers import DetailSelection

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
GZIP_AHEAD_SECONDS = 300.0  # compress a format ahead of scrapes while one asked for it this recently


@dataclass(frozen=True)
class HistogramValue:
    """A cumulative histogram: ``buckets`` are (upper bound, cumulative count), ascending, +Inf last."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float

    def __post_init__(self) -> None:
        if not self.buckets or not math.isinf(self.buckets[-1][0]):
            raise ValueError("a histogram needs a +Inf bucket")
        if self.buckets[-1][1] != self.count:
            raise ValueError("the +Inf bucket must equal count")
        bounds = [b for b, _ in self.buckets]
        counts = [c for _, c in self.buckets]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError("histogram bucket bounds must be strictly ascending")
        if counts != sorted(counts):
            raise ValueError("histogram bucket counts must be cumulative")

    @classmethod
    def sum_count_only(cls, total: float, count: float) -> HistogramValue:
        """For runtimes that keep only cumulative sums and counts: averages work, quantiles don't."""
        return cls(((math.inf, count),), total, count)


class Family:
    """Samples of one catalog metric. Label values are given in the catalog's label order."""

    __slots__ = ("metric", "samples", "_width", "_histogram")

    def __init__(self, name: str) -> None:
        self.metric: Metric = catalog.get(name)
        self.samples: list[tuple[tuple[str, ...], float | HistogramValue]] = []
        self._width = len(self.metric.labels)
        self._histogram = self.metric.type is MetricType.HISTOGRAM

    def add(self, labels: Sequence[str] | Mapping[str, str], value: float | HistogramValue) -> Family:
        # A plain tuple is what every source passes; testing for it first skips the Mapping ABC check.
        if type(labels) is not tuple and isinstance(labels, Mapping):
            metric = self.metric
            if set(labels) != set(metric.labels):
                raise ValueError(f"{metric.name}: labels {sorted(labels)} != declared {list(metric.labels)}")
            values = tuple(str(labels[k]) for k in metric.labels)
        else:
            values = tuple(map(str, labels))
            if len(values) != self._width:
                raise ValueError(f"{self.metric.name}: {len(values)} label values for labels {list(self.metric.labels)}")
        if self._histogram is not isinstance(value, HistogramValue):
            raise TypeError(f"{self.metric.name}: {self.metric.type.value} got a {type(value).__name__} value")
        self.samples.append((values, value))
        return self


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _number(value: float) -> str:
    if type(value) is float:  # the common case first; the same answers as the general path below
        if value.is_integer():
            return str(int(value)) if abs(value) < 1e15 else repr(value)
        if value == value and not math.isinf(value):
            return repr(value)
    if isinstance(value, int) or (value == value and not math.isinf(value) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _line_format(sample_name: str, names: Sequence[str]) -> str:
    """A %-format for one sample line: one ``%s`` per label value, then one for the value.

    Metric and label names are validated identifiers, so the only ``%`` in the result are ours.
    """
    if not names:
        return sample_name + " %s\n"
    return sample_name + "{" + ",".join(f'{n}="%s"' for n in names) + "} %s\n"


# (metric name, label names) -> (plain, bucket, sum, count) line formats; the label names are part of
# the key because dcgm-exporter compat families may rename a label per generation (Hostname/hostname).
_FORMATS: dict[tuple[str, tuple[str, ...]], tuple[str, str, str, str]] = {}


def _formats(metric: Metric) -> tuple[str, str, str, str]:
    key = (metric.name, metric.labels)
    formats = _FORMATS.get(key)
    if formats is None:
        name, names = metric.name, metric.labels
        formats = (_line_format(name, names), _line_format(name + "_bucket", (*names, "le")),
                   _line_format(name + "_sum", names), _line_format(name + "_count", names))
        _FORMATS[key] = formats
    return formats


def _label_values(family: Family) -> list[tuple[str, ...]]:
    """Each sample's label values, escaped; the per-value check is skipped when no value needs it."""
    rows = [values for values, _ in family.samples]
    joined = "".join(chain.from_iterable(rows))
    if "\\" in joined or '"' in joined or "\n" in joined:
        return [tuple(map(_escape, values)) for values in rows]
    return rows


def render_samples(family: Family) -> str:
    """Sample lines of one family; identical in the text and OpenMetrics formats."""
    plain, bucket, total, count = _formats(family.metric)
    rows = _label_values(family)
    if family.metric.type is MetricType.HISTOGRAM:
        lines: list[str] = []
        bounds: dict[float, str] = {}
        for values, (_, hist) in zip(rows, family.samples, strict=True):
            assert isinstance(hist, HistogramValue)
            for bound, cumulative in hist.buckets:
                le = bounds.get(bound)
                if le is None:
                    le = bounds[bound] = _number(bound)
                lines.append(bucket % (*values, le, _number(cumulative)))
            lines.append(total % (*values, _number(hist.sum)))
            lines.append(count % (*values, _number(hist.count)))
        return "".join(lines)
    return "".join([plain % (*values, _number(value))  # type: ignore[arg-type]
                    for values, (_, value) in zip(rows, family.samples, strict=True)])


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def text_header(metric: Metric) -> str:
    kind = "gauge" if metric.type is MetricType.INFO else metric.type.value
    return f"# HELP {metric.name} {_help(metric.help)}\n# TYPE {metric.name} {kind}\n"


def openmetrics_header(metric: Metric) -> str:
    name = metric.family_name
    header = f"# HELP {name} {_help(metric.help)}\n# TYPE {name} {metric.type.value}\n"
    if metric.unit and name.endswith("_" + metric.unit):
        header += f"# UNIT {name} {metric.unit}\n"
    return header


@dataclass(frozen=True)
class Snapshot:
    """What one poll of one source produced, rendered once. Never mutated after creation."""

    source: str
    rendered: Mapping[str, str]  # metric name -> sample lines
    taken_at: float = field(default_factory=time.time)

    @classmethod
    def of(cls, source: str, families: Iterable[Family]) -> Snapshot:
        merged: dict[str, list[str]] = {}
        for family in families:
            if source not in family.metric.sources:
                raise ValueError(f"source {source!r} may not fill {family.metric.name}")
            if family.samples:
                merged.setdefault(family.metric.name, []).append(render_samples(family))
        return cls(source, {name: "".join(parts) for name, parts in merged.items()})


@dataclass(frozen=True)
class Exposition:
    """One rendered /metrics body in both formats; each gzip variant is made once, when first needed.

    ``_wanted`` is shared by every exposition of one store: for each format (OpenMetrics or
    not), when a scraper last asked for it gzipped. The store compresses those ahead of time.
    """

    version: int
    text: bytes
    openmetrics: bytes
    _gzip: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _wanted: dict[bool, float] = field(default_factory=dict, repr=False, compare=False)

    def body(self, openmetrics: bool, gzipped: bool) -> bytes:
        if not gzipped:
            return self.openmetrics if openmetrics else self.text
        self._wanted[openmetrics] = time.monotonic()
        return self.gzipped(openmetrics)

    def gzip_ready(self, openmetrics: bool) -> bool:
        """Whether the format's gzip body is made already, so a scrape asking for it compresses nothing."""
        return ("om" if openmetrics else "text") in self._gzip

    def gzipped(self, openmetrics: bool) -> bytes:
        """The gzip body, compressed on the first call (level 1: a third of level 6's CPU, ~15% larger)."""
        key = "om" if openmetrics else "text"
        cached = self._gzip.get(key)
        if cached is None:
            with self._lock:
                cached = self._gzip.get(key)
                if cached is None:
                    cached = gzip.compress(self.openmetrics if openmetrics else self.text, compresslevel=1, mtime=0)
                    self._gzip[key] = cached
        return cached


class SnapshotStore:
    """Latest snapshot per source, plus the exposition rendered from all of them.

    ``publish`` replaces one source's snapshot (or drops it with ``None``) together with the
    self-metric families and renders once (and gzips the formats scrapers ask gzip for);
    ``current`` is a lock-free read of the last result.
    Families that several sources fill (serving metrics from two endpoints) are merged under one
    HELP/TYPE header, as both formats require.
    """

    def __init__(self, detail: DetailSelection | None = None) -> None:
        """``detail``: the tiers to publish (the daemon passes ``detail:`` of its config); None publishes all."""
        self._detail = detail if detail is not None and not detail.everything else None
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._self: Snapshot = Snapshot("exporter", {})
        self._version = 0
        self._gzip_wanted: dict[bool, float] = {}
        self._current = self._render()

    def current(self) -> Exposition:
        return self._current

    def snapshot(self, source: str) -> Snapshot | None:
        return self._snapshots.get(source)

    def publish(self, source: str, snapshot: Snapshot | None, self_metrics: Callable[[], Snapshot]) -> None:
        """Swap in ``source``'s snapshot (None drops it) and re-render.

        ``self_metrics`` is called under the lock, so the self-metrics rendered always describe
        the newest state even when two sources publish at once.
        """
        with self._lock:
            if snapshot is None:
                self._snapshots.pop(source, None)
            else:
                self._snapshots[source] = self._trimmed(snapshot)
            self._self = self._trimmed(self_metrics())
            self._version += 1
            current = self._current = self._render()
        # Prometheus asks for gzip on every scrape and a scrape usually finds a new version, so
        # the first scrape of each version would pay for compressing it. Formats scrapers asked
        # gzip for lately are compressed here instead, in the publishing (poll) thread, outside
        # the lock; a format nobody asked for in GZIP_AHEAD_SECONDS costs nothing.
        now = time.monotonic()
        for openmetrics, asked in tuple(self._gzip_wanted.items()):
            if now - asked < GZIP_AHEAD_SECONDS:
                current.gzipped(openmetrics)

    def _trimmed(self, snapshot: Snapshot) -> Snapshot:
        if self._detail is None:
            return snapshot
        return Snapshot(snapshot.source, self._detail.apply(snapshot.rendered), snapshot.taken_at)

    def _render(self) -> Exposition:
        parts = [self._self, *(self._snapshots[s] for s in sorted(self._snapshots))]
        text: list[str] = []
        om: list[str] = []
        for name, metric in catalog.CATALOG.items():
            lines = [p.rendered[name] for p in parts if name in p.rendered]
            if not lines:
                continue
            body = "".join(lines)
            text.append(text_header(metric))
            text.append(body)
            om.append(openmetrics_header(metric))
            om.append(body)
        om.append("# EOF\n")
        return Exposition(self._version, "".join(text).encode(), "".join(om).encode(), _wanted=self._gzip_wanted)
