"""Re-export counters a runtime already has under the catalog's names (config: ``sources.counter_mapping``).

A deployment whose serving process prints, say, ``trtllm_mx_fp4_kernel_dispatches_total{gpu="3"}``
or ``trtllm_te2_promotion_events_total{layer="47"}`` lands on the same dashboards and alerts as
one measured by the exporter's own sources::

    counter_mapping:
      enabled: true
      endpoints: [{url: "http://127.0.0.1:8000/prometheus/metrics"}]
      mappings:
        - upstream: trtllm_mx_fp4_kernel_dispatches_total
          metric: blackwell_gemm_kernel_launches_total
          labels: {gpu: "{gpu}", precision: fp4}
        - upstream: trtllm_te2_promotion_events_total
          metric: blackwell_te_promotion_events_total
          labels: {layer: "{layer}"}

Each mapping names an upstream sample name (a counter's ``_total`` suffix may be left off), an
optional ``match`` of upstream label values, the catalog counter to fill, and a value for each of
its labels: a literal, or ``{name}`` templates filled from the upstream sample's labels. Upstream
samples that land on the same catalog series are added up, each kept as a part of the sum in the
endpoint's :class:`RetiredTotals`: an upstream series that goes away or restarts at 0 adds its last
value to the series' retired total, so no mapped series ever goes backwards while the exporter
runs (an upstream restart reads as the sum carrying on). The catalog metric must be a counter
whose ``sources`` include ``counter_mapping``; the config is refused otherwise.

An upstream family declared as anything but a counter (or untyped) is not re-exported: a gauge
that goes up and down would corrupt rate(). That, a missing template label, and a mapping that
would pass ``max_series`` (the series first kept stay; new ones beyond the bound are dropped and
counted in ``blackwell_counter_mapping_dropped_series``) are reported as a poll failure with reason ``mapping``, while every
other mapping keeps working.
"""

from __future__ import annotations

import string
import time
from collections.abc import Callable, Set
from typing import ClassVar, cast

from pydantic import Field, field_validator, model_validator

from exporter import catalog, promtext
from exporter.catalog import MetricType
from exporter.promtext import Exposition
from exporter.snapshot import Family
from exporter.sources.base import PollError, SourceConfig, StrictModel
from exporter.sources.http_upstream import Endpoint
from exporter.sources.serving_endpoints import Reading, RetiredTotals, ServingConfig, ServingSource, series_part

SOURCE_NAME = "counter_mapping"
_COUNTER_TYPES = (None, "counter", "untyped", "unknown")


class CounterMap(StrictModel):
    upstream: str = Field(description="upstream sample name, e.g. trtllm_mx_fp4_kernel_dispatches_total")
    metric: str = Field(description="catalog counter to fill, e.g. blackwell_gemm_kernel_launches_total")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="a value for each of the catalog metric's labels: a literal or "
                                               "{upstream_label} templates")
    match: dict[str, str] = Field(default_factory=dict, description="only upstream samples with these label values")
    max_series: int = Field(1000, gt=0, description="catalog series this mapping may create; more is an error")

    @field_validator("upstream")
    @classmethod
    def _upstream_name(cls, value: str) -> str:
        if not promtext.is_metric_name(value):
            raise ValueError(f"{value!r} is not a Prometheus metric name")
        return value

    @model_validator(mode="after")
    def _fits_the_catalog(self) -> CounterMap:
        try:
            metric = catalog.get(self.metric)
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        if metric.type is not MetricType.COUNTER:
            raise ValueError(f"{self.metric} is a {metric.type.value}; only counters can be mapped")
        if SOURCE_NAME not in metric.sources:
            raise ValueError(f"{self.metric} may only be filled by {', '.join(metric.sources)}; its catalog entry "
                             f"must list {SOURCE_NAME!r} in sources before it can be mapped")
        if set(self.labels) != set(metric.labels):
            raise ValueError(f"labels must give exactly {list(metric.labels)} for {self.metric}, "
                             f"got {sorted(self.labels)}")
        for label, template in self.labels.items():
            _template_fields(template, label)
        return self

    def names(self) -> tuple[str, ...]:
        """Sample names this mapping reads: ``x`` also matches ``x_total``, and ``x_total`` also ``x``."""
        if self.upstream.endswith("_total"):
            return (self.upstream, self.upstream[: -len("_total")])
        return (self.upstream, self.upstream + "_total")


def _template_fields(template: str, label: str) -> list[str]:
    fields = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"labels.{label}: {template!r} is not a valid template ({exc})") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"labels.{label}: {template!r} may only use {{label_name}} placeholders")
        fields.append(name)
    return fields


class CounterMappingConfig(ServingConfig):
    endpoints: list[Endpoint] = Field(  # type: ignore[assignment]
        default_factory=lambda: [Endpoint(url="http://127.0.0.1:8000/prometheus/metrics")],
        description="Prometheus endpoints to read the upstream counters from")
    mappings: list[CounterMap] = Field(default_factory=list, description="upstream counter -> catalog counter")

    @model_validator(mode="after")
    def _something_to_map(self) -> CounterMappingConfig:
        if self.enabled and not self.mappings:
            raise ValueError("mappings: the counter mapping is enabled but maps nothing")
        return self


Parts = dict[str, float]  # upstream series (sample name and labels) -> its value


def map_counters(metrics: Exposition, mappings: list[CounterMap], kept: list[set[tuple[str, ...]]] | None = None,
                 retired: RetiredTotals | None = None) -> tuple[list[Family], list[str]]:
    """Catalog families from one exposition, and a problem per mapping that could not be applied.

    ``kept`` holds, per mapping, the catalog series it has admitted so far (updated in place): a
    series once kept stays kept, and new ones are admitted in label order while ``max_series``
    has room, so the kept set never changes under a counter between polls. Series turned away
    are counted in ``blackwell_counter_mapping_dropped_series``. ``retired`` (kept per endpoint by
    the source) adds what upstream series that went away or restarted had counted.
    """
    kept = kept if kept is not None else [set() for _ in mappings]
    parts: dict[tuple[str, tuple[str, ...]], Parts] = {}
    dropped: dict[tuple[str, str], int] = {}
    problems: list[str] = []
    for mapping, admitted in zip(mappings, kept, strict=True):
        read, mapping_problems = _mapped_series(metrics, mapping)
        problems += mapping_problems
        new = sorted(labels for labels in read if labels not in admitted)
        room = max(0, mapping.max_series - len(admitted))
        admitted.update(new[:room])
        turned_away = len(new) - min(room, len(new))
        dropped[(mapping.upstream, mapping.metric)] = dropped.get((mapping.upstream, mapping.metric), 0) + turned_away
        if turned_away:
            problems.append(f"{mapping.upstream} -> {mapping.metric}: more than {mapping.max_series} series; "
                            f"{turned_away} new ones dropped, the {len(admitted)} kept stay")
        for labels, upstream in read.items():
            if labels in admitted:
                series = parts.setdefault((mapping.metric, labels), {})
                for part, value in upstream.items():
                    series[part] = series.get(part, 0.0) + value
    families = [Family("blackwell_counter_mapping_dropped_series")]
    for labels, count in dropped.items():
        families[0].add(labels, count)
    gone = retired.update(parts) if retired is not None else {}
    by_name: dict[str, Family] = {}
    for (name, labels), series in parts.items():
        family = by_name.get(name)
        if family is None:
            family = by_name[name] = Family(name)
        family.add(labels, sum(series.values()) + cast(float, gone.get((name, labels), 0.0)))  # counters only
    return families + list(by_name.values()), problems


def _mapped_series(metrics: Exposition, mapping: CounterMap) -> tuple[dict[tuple[str, ...], Parts], list[str]]:
    """The catalog series one mapping makes of the exposition, each with the upstream samples it adds up."""
    metric = catalog.get(mapping.metric)
    names = mapping.names()
    declared = next((t for t in (metrics.types.get(n) for n in names) if t is not None), None)
    if declared not in _COUNTER_TYPES:
        return {}, [f"{mapping.upstream} is declared {declared}, not a counter; not re-exported"]
    series: dict[tuple[str, ...], Parts] = {}
    problems: list[str] = []
    for sample in metrics.samples:
        if sample.name not in names or any(sample.labels.get(k) != v for k, v in mapping.match.items()):
            continue
        try:
            labels = tuple(mapping.labels[name].format_map(sample.labels) for name in metric.labels)
        except KeyError as exc:
            problems.append(f"{mapping.upstream}{dict(sample.labels)} has no label {exc.args[0]!r} for "
                            f"{mapping.metric}; sample skipped")
            continue
        series.setdefault(labels, {})[f"{sample.name}{{{series_part(sample.labels)}}}"] = sample.value
    return series, problems


class CounterMappingSource(ServingSource[Endpoint]):
    name: ClassVar[str] = SOURCE_NAME
    stand_in: ClassVar[str | None] = "simulated"
    config_model: ClassVar[type[SourceConfig]] = CounterMappingConfig

    @classmethod
    def conflicts(cls, config: SourceConfig, enabled: Set[str]) -> list[str]:
        """A mapping onto a catalog counter that another enabled source fills would emit it twice."""
        problems = super().conflicts(config, enabled)
        for mapping in config.mappings if isinstance(config, CounterMappingConfig) else []:
            others = sorted((set(catalog.get(mapping.metric).sources) & enabled) - {cls.name})
            if others:
                problems.append(f"sources.{cls.name} maps {mapping.upstream} to {mapping.metric}, which "
                                f"sources.{others[0]} also fills; drop the mapping or disable {others[0]}")
        return problems

    def __init__(self, config: CounterMappingConfig, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, clock)
        self.mappings = config.mappings
        # Per endpoint URL, per mapping: the catalog series admitted so far (see map_counters).
        self._kept: dict[str, list[set[tuple[str, ...]]]] = {
            e.url: [set() for _ in config.mappings] for e in config.endpoints}

    def read(self, endpoint: Endpoint, timeout: float) -> Reading:
        deadline = self._clock() + timeout
        metrics, error = self.read_exposition(endpoint, deadline)
        if metrics is None:
            return Reading([], error)
        families, problems = map_counters(metrics, self.mappings, self._kept[endpoint.url],
                                          self.retired_totals(endpoint.url))
        if problems:
            shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
            return Reading(families, PollError(f"{endpoint.url}: {shown}", "mapping"))
        return Reading(families)
