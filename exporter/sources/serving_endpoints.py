"""What the serving sources share: several upstream endpoints, each on its own interval.

A serving source (``triton``, ``trtllm_serve``) reads one or more endpoints. The scheduler wakes
the source every ``interval``; each endpoint is read when its own interval is due (endpoints
are read in parallel, each bounded by its own timeout), and between reads its last families are
served again. The families of all endpoints are merged into one family per metric. Serving
series carry an ``endpoint`` label (put in by :class:`FamilyBuilder`), so the same model on two
servers is two series and one server failing never lets another's value take over its series.
A series two endpoints still both produce (a catalog metric without the label, as counter
mapping fills) is kept from the first endpoint in config order and reported, because a
duplicate series would make Prometheus reject the whole scrape.

When any endpoint failed, poll raises :class:`PartialPollError` carrying every family, so
``blackwell_serving_up{endpoint} 0`` is published while the source counts as down.
"""

from __future__ import annotations

import abc
import logging
import math
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import Field, model_validator

from exporter import promtext
from exporter.promtext import Exposition, PromParseError
from exporter.snapshot import Family, HistogramValue
from exporter.sources.base import PartialPollError, PollError, Source, SourceConfig
from exporter.sources.http_upstream import Endpoint, Response, UpstreamError, get

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Endpoint)


class ServingConfig(SourceConfig):
    """Common checks for a list of endpoints; subclasses narrow ``endpoints``' type and default."""

    endpoints: Sequence[Endpoint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _endpoints_fit(self) -> ServingConfig:
        if not self.endpoints:
            raise ValueError("endpoints: at least one endpoint is needed")
        urls = [e.url for e in self.endpoints]
        dupes = sorted({u for u in urls if urls.count(u) > 1})
        if dupes:
            raise ValueError(f"endpoints: {', '.join(dupes)} listed more than once")
        for i, endpoint in enumerate(self.endpoints):
            if endpoint.timeout is not None and endpoint.timeout > self.timeout:
                raise ValueError(f"endpoints.{i}.timeout ({endpoint.timeout:g}s) must not exceed the source's "
                                 f"timeout ({self.timeout:g}s), which bounds the whole poll")
            if endpoint.interval is not None and endpoint.interval < self.interval:
                raise ValueError(f"endpoints.{i}.interval ({endpoint.interval:g}s) must not be shorter than the "
                                 f"source's interval ({self.interval:g}s): the source wakes up that often")
        return self


@dataclass
class Reading:
    """What one read of one endpoint produced: families always, an error when it failed."""

    families: list[Family]
    error: PollError | None = None


@dataclass
class _EndpointState(Generic[E]):
    endpoint: E
    due: float = 0.0
    reading: Reading | None = None
    in_flight: Future[Reading] | None = None
    read_started: float = 0.0  # time.monotonic() when the read in flight began
    give_up_at: float = 0.0  # time.monotonic() after which a read still in flight is reported as timed out


class ServingSource(Source, Generic[E], abc.ABC):
    """A source that reads several endpoints; subclasses implement :meth:`read`."""

    def __init__(self, config: ServingConfig, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config)
        self._clock = clock
        self._states: list[_EndpointState[E]] = [_EndpointState(e) for e in config.endpoints]  # type: ignore[misc]
        self._duplicates: list[str] = []
        self._pool: ThreadPoolExecutor | None = None
        self._retired: dict[str, RetiredTotals] = {}

    @abc.abstractmethod
    def read(self, endpoint: E, timeout: float) -> Reading:
        """Read one endpoint within ``timeout`` seconds. Must not raise: failures go in Reading.error."""

    def unanswered(self, endpoint: E) -> list[Family]:
        """Families for an endpoint whose read is still running past its timeout (its ``up 0``)."""
        return []

    def close(self) -> None:
        """Stop waiting for reads in flight; a later poll starts a new set of reader threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        for state in self._states:
            state.in_flight = None

    def retired_totals(self, url: str) -> RetiredTotals:
        """The retired totals of one endpoint, kept for the life of the source (closing included)."""
        return self._retired.setdefault(url, RetiredTotals())

    def endpoint_timeout(self, endpoint: E) -> float:
        """An endpoint gets at most 90% of the source's timeout: a hung upstream must be reported by
        the source (``up 0``) before the scheduler's deadline abandons the whole poll."""
        budget = self.config.timeout * 0.9
        return min(endpoint.timeout, budget) if endpoint.timeout is not None else budget

    def endpoint_interval(self, endpoint: E) -> float:
        return endpoint.interval if endpoint.interval is not None else self.config.interval

    def poll(self) -> list[Family]:
        now = self._clock()
        # Scheduler jitter must not skip an endpoint whose interval equals the source's: half an
        # interval of slack reads it on every poll, and one of 20s under a 5s source every 20s.
        slack = self.config.interval / 2
        due = [s for s in self._states if s.reading is None or now + slack >= s.due]
        self._read_due(due)
        for state in due:
            state.due = now + self.endpoint_interval(state.endpoint)
        families, duplicates = merge_families([s.reading.families for s in self._states if s.reading])
        if duplicates and duplicates != self._duplicates:
            log.warning("%s: series produced by more than one endpoint were kept from the first: %s",
                        self.name, "; ".join(duplicates[:5]))
        self._duplicates = duplicates
        errors = [s.reading.error for s in self._states if s.reading and s.reading.error is not None]
        if errors:
            raise PartialPollError("; ".join(str(e) for e in errors), families, errors[0].reason)
        return families

    def fetch(self, endpoint: E, url: str, deadline: float, accept: str = "application/json",
              allow_status: bool = False) -> Response:
        """GET ``url`` with ``endpoint``'s TLS and size settings, within what is left of ``deadline``."""
        left = deadline - self._clock()
        if left <= 0:
            raise UpstreamError(f"{url}: no time left in this poll", "timeout")
        return get(url, timeout=left, max_bytes=endpoint.max_bytes, tls_verify=endpoint.tls_verify,
                   ca_file=endpoint.ca_file, accept=accept, allow_status=allow_status)

    def read_exposition(self, endpoint: E, deadline: float) -> tuple[Exposition | None, PollError | None]:
        """``endpoint.url``'s Prometheus text, parsed, or None and why it cannot be had (reason
        ``malformed`` for a body that does not parse)."""
        try:
            body = self.fetch(endpoint, endpoint.url, deadline, accept="text/plain").body
            return promtext.parse(body, max_bytes=endpoint.max_bytes), None
        except UpstreamError as exc:
            return None, exc
        except PromParseError as exc:
            return None, PollError(f"{endpoint.url}: malformed exposition: {exc}", "malformed")

    def _read_due(self, due: list[_EndpointState[E]]) -> None:
        """Read the due endpoints at once, each in its own thread, waiting for each only until its
        own timeout: a read that outlives it is reported as timed out (``up 0``) and left to finish
        in the background, never read twice at once, so one hung upstream cannot hold up the other
        endpoints or push the whole poll past the scheduler's deadline."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=len(self._states), thread_name_prefix=f"{self.name}-endpoint")
        started = time.monotonic()
        # The read's own deadline comes first (its message says more); this one is the backstop,
        # still inside the 10% of the source's timeout that endpoint_timeout leaves free.
        grace = self.config.timeout * 0.05
        for state in due:
            if state.in_flight is None:
                state.in_flight = self._pool.submit(self._read_safely, state.endpoint)
                state.read_started = started
                state.give_up_at = started + self.endpoint_timeout(state.endpoint) + grace
        for state in due:
            future = state.in_flight
            if future is None:
                continue
            try:
                state.reading = future.result(timeout=max(0.0, state.give_up_at - time.monotonic()))
            except FutureTimeout:
                running = time.monotonic() - state.read_started
                state.reading = Reading(self.unanswered(state.endpoint), PollError(
                    f"{state.endpoint.url}: still reading after {running:.1f}s; left to finish", "timeout"))
                continue
            state.in_flight = None

    def _read_safely(self, endpoint: E) -> Reading:
        try:
            return self.read(endpoint, self.endpoint_timeout(endpoint))
        except PollError as exc:
            return Reading([], exc)


def merge_families(groups: list[list[Family]]) -> tuple[list[Family], list[str]]:
    """One Family per metric over all endpoints; duplicate series keep the first and are named."""
    merged: dict[str, Family] = {}
    seen: dict[str, set[tuple[str, ...]]] = {}
    duplicates: list[str] = []
    for families in groups:
        for family in families:
            name = family.metric.name
            target = merged.setdefault(name, Family(name))
            keys = seen.setdefault(name, set())
            for labels, value in family.samples:
                if labels in keys:
                    duplicates.append(f"{name}{dict(zip(family.metric.labels, labels, strict=True))}")
                    continue
                keys.add(labels)
                target.samples.append((labels, value))
    return list(merged.values()), duplicates


Value = float | HistogramValue


def add_values(first: Value, second: Value) -> Value | None:
    """``first + second``: numbers add, histograms with the same boundaries add bucket by bucket;
    None when they cannot be added (a number and a histogram, or different boundaries)."""
    if isinstance(first, HistogramValue) and isinstance(second, HistogramValue):
        if [b for b, _ in first.buckets] != [b for b, _ in second.buckets]:
            return None
        return HistogramValue(tuple((bound, c1 + c2) for (bound, c1), (_, c2) in
                                    zip(first.buckets, second.buckets, strict=True)),
                              first.sum + second.sum, first.count + second.count)
    if isinstance(first, HistogramValue) or isinstance(second, HistogramValue):
        return None
    return first + second


def went_down(now: Value, last: Value) -> bool:
    """Whether a part restarted: a number lower than before, or a histogram whose count, sum or any
    bucket is lower, or whose boundaries changed (a reload with another bucket configuration)."""
    if isinstance(now, HistogramValue) and isinstance(last, HistogramValue):
        if add_values(now, last) is None:
            return True
        return now.count < last.count or now.sum < last.sum or any(
            c_now < c_last for (_, c_now), (_, c_last) in zip(now.buckets, last.buckets, strict=True))
    if isinstance(now, HistogramValue) or isinstance(last, HistogramValue):
        return True
    return now < last


class FamilyBuilder:
    """One endpoint's families by catalog name, created on first use, in a stable order.

    Every series gets the ``endpoint`` label from the builder (callers pass the other labels, in
    catalog order), so no two endpoints can produce the same series. A series added twice (two
    versions of one model, where the catalog keys on the model only) is combined with ``merge`` -
    a sum by default, which keeps used/max and per-model rates right - rather than emitted twice,
    which would make Prometheus reject the whole scrape; histograms are added bucket by bucket (the
    first is kept when the boundaries differ). A counter or histogram added with ``part`` (the
    model version, or upstream series, it sums) is remembered part by part so
    :class:`RetiredTotals` can keep the sum rising when a part goes away.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.by_name: dict[str, Family] = {}
        self._index: dict[tuple[str, tuple[str, ...]], int] = {}
        self.parts: dict[tuple[str, tuple[str, ...]], dict[str, Value]] = {}

    def add(self, name: str, labels: tuple[str, ...], value: Value,
            merge: Callable[[float, float], float] = operator.add, part: str | None = None) -> None:
        family = self.by_name.get(name)
        if family is None:
            family = self.by_name[name] = Family(name)
        labels = self._with_endpoint(family, tuple(labels))
        key = (name, labels)
        position = self._index.get(key)
        if position is None:
            self._index[key] = len(family.samples)
            family.add(labels, value)
        else:
            previous = family.samples[position][1]
            if isinstance(previous, HistogramValue) or isinstance(value, HistogramValue):
                combined = add_values(previous, value)
                if combined is None:
                    return  # cannot be added: the first is kept, and the part left out with it
            else:
                combined = merge(previous, value)
            family.samples[position] = (family.samples[position][0], combined)
        if part is not None:
            parts = self.parts.setdefault(key, {})
            earlier = parts.get(part)
            both = None if earlier is None else add_values(earlier, value)
            parts[part] = value if earlier is None else earlier if both is None else both

    def _with_endpoint(self, family: Family, labels: tuple[str, ...]) -> tuple[str, ...]:
        names = family.metric.labels
        if "endpoint" not in names:
            return labels
        at = names.index("endpoint")
        return (*labels[:at], self.endpoint, *labels[at:])

    def families(self, retired: RetiredTotals | None = None) -> list[Family]:
        """The families; with ``retired``, series summed over parts include the parts gone away."""
        if retired is not None:
            for (name, labels), extra in retired.update(self.parts).items():
                family = self.by_name[name]
                position = self._index[(name, labels)]
                combined = add_values(family.samples[position][1], extra)
                if combined is None:
                    log.warning("%s %s: histogram boundaries changed; the totals of retired model versions "
                                "are dropped", self.endpoint, name)
                    retired.forget((name, labels))
                    continue
                family.samples[position] = (labels, combined)
        return list(self.by_name.values())


class RetiredTotals:
    """What the parts of a summed series that went away had counted, per series of one endpoint.

    A counter or histogram summed over parts (a model's versions, or upstream series summed into
    one) would drop when a part goes away (a version unloaded) or restarts its count (reloaded). Each part's last value is kept; a part that is
    missing from a read, or reads lower than before (see :func:`went_down`), adds its last value
    to the series' retired total, so the sum - every bucket, ``_count`` and ``_sum`` of a
    histogram - never goes backwards while the exporter runs. Kept across endpoint failures: a
    runtime restart then shows as the sum carrying on, which is what rate() needs. Bounded by the
    series ever seen. Only a change of histogram boundaries starts a series' retired total anew.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, tuple[str, ...]], dict[str, Value]] = {}
        self._retired: dict[tuple[str, tuple[str, ...]], Value] = {}

    def update(self, parts: dict[tuple[str, tuple[str, ...]], dict[str, Value]]) -> dict[tuple[str, tuple[str, ...]], Value]:
        """Take one read's parts; return the retired total to add to each series read now."""
        for key, now in parts.items():
            for part, last in self._last.get(key, {}).items():
                if part not in now or went_down(now[part], last):
                    retired = self._retired.get(key)
                    both = None if retired is None else add_values(retired, last)
                    self._retired[key] = last if both is None else both  # new boundaries start anew
            self._last[key] = dict(now)
        return {key: self._retired[key] for key in parts if self._retired.get(key)}

    def forget(self, key: tuple[str, tuple[str, ...]]) -> None:
        """Drop a series' retired total (it can no longer be added to what the series reads now)."""
        self._retired.pop(key, None)


def histograms_by_model(metrics: Exposition, family: str, model_label: str = "model",
                        divisor: float = 1.0, rename: Callable[[str], str] = lambda m: m
                        ) -> dict[str, dict[str, HistogramValue]]:
    """Series of histogram ``family`` per model, each under its part: its upstream label set
    (``model="m",version="2"``), for :meth:`FamilyBuilder.add`'s ``part``, which adds them up.

    ``divisor`` only changes the unit (1000: ms -> s; a division keeps 700 ms exactly 0.7 s): the
    boundaries stay the upstream's own, never re-bucketed. Series of one model with different
    boundaries cannot be added; the first is kept and the clash is recorded in ``metrics.problems``.
    """
    merged: dict[str, dict[str, HistogramValue]] = {}
    for hist in metrics.histograms(family):
        model = rename(hist.labels.get(model_label, ""))
        value = HistogramValue(tuple((b / divisor if math.isfinite(b) else b, c) for b, c in hist.buckets),
                               hist.sum / divisor, hist.count)
        parts = merged.setdefault(model, {})
        first = next(iter(parts.values()), None)
        if first is not None and [b for b, _ in first.buckets] != [b for b, _ in value.buckets]:
            metrics.problems.append(f"{family}: series of model {model!r} use different buckets; kept one")
            continue
        parts[series_part(hist.labels)] = value
    return merged


def series_part(labels: Mapping[str, str]) -> str:
    """An upstream series as a ``part`` of a summed one (:meth:`FamilyBuilder.add`): its label set,
    sorted, so the same upstream series is the same part at every read (``model="m",version="2"``)."""
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
