"""Every metric the exporter can emit, declared once.

Each area has its own module (``gpu``, ``nvlink``, ``serving``, ``precision``, ``exporter``);
this package merges them into :data:`CATALOG`. Collectors build families from these
declarations only (see :mod:`exporter.snapshot`), so an undeclared name or a wrong label set
fails at the point it is produced, not in a dashboard weeks later.
"""

from __future__ import annotations

from exporter.catalog import exporter as _exporter
from exporter.catalog import gpu as _gpu
from exporter.catalog import nvlink as _nvlink
from exporter.catalog import precision as _precision
from exporter.catalog import preflight as _preflight
from exporter.catalog import runtimes as _runtimes
from exporter.catalog import serving as _serving
from exporter.catalog.model import Metric, MetricType

__all__ = ["CATALOG", "Metric", "MetricType", "get", "series_names"]


def _collect() -> dict[str, Metric]:
    merged: dict[str, Metric] = {}
    for module in (_exporter, _gpu, _nvlink, _serving, _runtimes, _precision, _preflight):
        for metric in module.METRICS:
            if metric.name in merged:
                raise ValueError(f"metric {metric.name} declared twice in the catalog")
            merged[metric.name] = metric
    return merged


CATALOG: dict[str, Metric] = _collect()


def get(name: str) -> Metric:
    """The declaration for ``name``; KeyError names the metric when it is not declared."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"metric {name!r} is not declared in exporter.catalog") from None


def series_names() -> set[str]:
    """Every sample name a query may use: histograms add _bucket/_sum/_count."""
    names: set[str] = set()
    for metric in CATALOG.values():
        names.add(metric.name)
        if metric.type is MetricType.HISTOGRAM:
            names.update(f"{metric.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names
