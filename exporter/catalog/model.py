"""The shape of one catalog entry."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_NAME = re.compile(r"^blackwell_[a-z0-9_]+$")
# dcgm-exporter's names, allowed only on metrics a source emits for dcgm-exporter compatibility.
_COMPAT_NAME = re.compile(r"^DCGM_FI_[A-Z0-9_]+$")
COMPAT_SOURCE = "dcgm_compat"
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricType(str, enum.Enum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    INFO = "info"


@dataclass(frozen=True)
class Metric:
    """One exported metric family.

    ``name`` is the sample name as it appears in the Prometheus text format: counters end in
    ``_total``, info metrics in ``_info``. ``sources`` lists the sources allowed to fill it
    (``simulated`` stands in for the hardware and serving sources).
    """

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    unit: str = ""

    def __post_init__(self) -> None:
        compat = COMPAT_SOURCE in self.sources and self.type is MetricType.GAUGE and _COMPAT_NAME.match(self.name)
        if not (_NAME.match(self.name) or compat):
            raise ValueError(f"{self.name}: metric names are blackwell_ + snake_case "
                             f"(DCGM_FI_* only for gauges whose sources include {COMPAT_SOURCE!r})")
        if self.type is MetricType.COUNTER and not self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counter names end in _total")
        if self.type is MetricType.INFO and not self.name.endswith("_info"):
            raise ValueError(f"{self.name}: info metric names end in _info")
        if self.unit and self.unit not in self.family_name.split("_"):
            raise ValueError(f"{self.name}: unit {self.unit!r} must appear in the name")
        for label in self.labels:
            if not _LABEL.match(label) or label in ("le", "quantile"):
                raise ValueError(f"{self.name}: bad label name {label!r}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{self.name}: duplicate label names")
        if not self.help.strip():
            raise ValueError(f"{self.name}: help text is required")

    @property
    def family_name(self) -> str:
        """The OpenMetrics family name: counters without ``_total``, info without ``_info``."""
        if self.type is MetricType.COUNTER:
            return self.name[: -len("_total")]
        if self.type is MetricType.INFO:
            return self.name[: -len("_info")]
        return self.name


def gauge(name: str, help: str, labels: tuple[str, ...] = (), *, sources: tuple[str, ...], unit: str = "") -> Metric:
    return Metric(name, MetricType.GAUGE, help, labels, sources, unit)


def counter(name: str, help: str, labels: tuple[str, ...] = (), *, sources: tuple[str, ...], unit: str = "") -> Metric:
    return Metric(name, MetricType.COUNTER, help, labels, sources, unit)


def histogram(name: str, help: str, labels: tuple[str, ...] = (), *, sources: tuple[str, ...], unit: str = "") -> Metric:
    return Metric(name, MetricType.HISTOGRAM, help, labels, sources, unit)


def info(name: str, help: str, labels: tuple[str, ...] = (), *, sources: tuple[str, ...]) -> Metric:
    return Metric(name, MetricType.INFO, help, labels, sources)
