"""A small, strict reader for what upstream runtimes serve: Prometheus text (0.0.4) and OpenMetrics.

Built for untrusted bodies: a size cap and a sample cap bound the work, and anything malformed
(bad UTF-8, a broken label list, a value that is not a number, a duplicate series, text after
``# EOF``) raises :class:`PromParseError` naming the line, the way Prometheus rejects a whole
scrape. It never raises anything else. A truncated body is caught wherever the cut breaks the
syntax; a cut exactly at a line end cannot be told from a short body (OpenMetrics' ``# EOF``
exists for that, and is honoured when present).

Histograms are grouped per label set (``le`` removed) by :meth:`Exposition.histograms`; a series
that violates the histogram rules (no ``+Inf`` bucket, counts not cumulative) is skipped and named
in ``Exposition.problems`` instead of spoiling the rest of the body.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_SAMPLES = 500_000

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_SPECIAL = {"+inf": math.inf, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped", "unknown", "info", "stateset",
          "gaugehistogram"}
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created", "_info", "_gsum", "_gcount")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class PromParseError(ValueError):
    """The body is not valid exposition text; the message says where and why."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Histogram:
    """One histogram series: ``buckets`` are (upper bound, cumulative count), ascending, +Inf last."""

    labels: Mapping[str, str]
    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float


@dataclass
class Exposition:
    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # declared family name -> type
    problems: list[str] = field(default_factory=list)

    def named(self, name: str) -> Iterator[Sample]:
        return (s for s in self.samples if s.name == name)

    def names(self) -> set[str]:
        return {s.name for s in self.samples}

    def type_of(self, sample_name: str) -> str | None:
        """The declared type of the family ``sample_name`` belongs to (``x_total`` -> ``x``)."""
        if sample_name in self.types:
            return self.types[sample_name]
        for suffix in _SUFFIXES:
            if sample_name.endswith(suffix) and sample_name[: -len(suffix)] in self.types:
                return self.types[sample_name[: -len(suffix)]]
        return None

    def histograms(self, family: str) -> list[Histogram]:
        """Every well-formed series of histogram ``family``; broken ones land in ``problems``."""
        buckets: dict[tuple[tuple[str, str], ...], dict[float, float]] = {}
        sums: dict[tuple[tuple[str, str], ...], float] = {}
        counts: dict[tuple[tuple[str, str], ...], float] = {}
        bad_bounds: set[tuple[tuple[str, str], ...]] = set()
        for sample in self.samples:
            if sample.name == family + "_bucket":
                rest = {k: v for k, v in sample.labels.items() if k != "le"}
                key = tuple(sorted(rest.items()))
                try:
                    bound = _parse_number(sample.labels.get("le", ""))
                except PromParseError:
                    bound = math.nan
                if math.isnan(bound):
                    bad_bounds.add(key)
                    continue
                buckets.setdefault(key, {})[bound] = sample.value
            elif sample.name == family + "_sum":
                sums[tuple(sorted(sample.labels.items()))] = sample.value
            elif sample.name == family + "_count":
                counts[tuple(sorted(sample.labels.items()))] = sample.value
        result = []
        for key in sorted(set(buckets) | set(counts) | bad_bounds):
            problem = ("a bucket has no numeric le" if key in bad_bounds
                       else _check_histogram(buckets.get(key, {}), sums.get(key), counts.get(key)))
            if problem:
                self.problems.append(f"{family}{dict(key)}: {problem}; series skipped")
                continue
            ordered = tuple(sorted(buckets[key].items()))
            result.append(Histogram(dict(key), ordered, sums[key], counts[key]))
        return result


def _check_histogram(buckets: dict[float, float], total: float | None, count: float | None) -> str:
    if math.inf not in buckets:
        return "no +Inf bucket"
    if total is None or count is None:
        return "no _sum or _count"
    ordered = [c for _, c in sorted(buckets.items())]
    if any(a > b for a, b in zip(ordered, ordered[1:], strict=False)):
        return "bucket counts are not cumulative"
    if buckets[math.inf] != count:
        return f"+Inf bucket ({buckets[math.inf]:g}) differs from _count ({count:g})"
    return ""


def is_metric_name(text: str) -> bool:
    return bool(_NAME.fullmatch(text))


def parse(body: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES,
          max_samples: int = DEFAULT_MAX_SAMPLES) -> Exposition:
    """Parse one exposition body; PromParseError on anything that is not valid."""
    if len(body) > max_bytes:
        raise PromParseError(f"body is {len(body)} bytes, over the {max_bytes}-byte cap")
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PromParseError(f"not UTF-8 at byte {exc.start}") from None
    else:
        text = body
    out = Exposition()
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    ended = False
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            continue
        if ended:
            raise PromParseError(f"line {number}: content after # EOF")
        try:
            if line.startswith("#"):
                ended = _comment(line, out)
                continue
            sample = _sample(line)
        except PromParseError as exc:
            raise PromParseError(f"line {number}: {exc}: {_excerpt(line)}") from None
        key = (sample.name, tuple(sorted(sample.labels.items())))
        if key in seen:
            raise PromParseError(f"line {number}: duplicate series {sample.name}{dict(sample.labels)}")
        seen.add(key)
        out.samples.append(sample)
        if len(out.samples) > max_samples:
            raise PromParseError(f"more than {max_samples} samples")
    return out


def _excerpt(line: str) -> str:
    return repr(line if len(line) <= 120 else line[:117] + "...")


def _comment(line: str, out: Exposition) -> bool:
    """Handle a ``#`` line; True for ``# EOF``."""
    parts = line.split(None, 3)
    if len(parts) >= 2 and parts[1] == "EOF" and len(parts) == 2:
        return True
    if len(parts) >= 3 and parts[1] == "TYPE":
        if not _NAME.fullmatch(parts[2]):
            raise PromParseError(f"bad metric name {parts[2]!r} in TYPE")
        kind = parts[3].strip().lower() if len(parts) == 4 else ""
        if kind not in _TYPES:
            raise PromParseError(f"unknown metric type {kind!r}")
        if parts[2] in out.types:
            raise PromParseError(f"second TYPE line for {parts[2]}")
        out.types[parts[2]] = kind
    return False


def _sample(line: str) -> Sample:
    match = _NAME.match(line)
    if not match:
        raise PromParseError("a sample line must start with a metric name")
    name = match.group()
    pos = match.end()
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] == "{":
        labels, pos = _labels(line, pos + 1)
    rest = line[pos:]
    if rest and not rest[0].isspace():
        raise PromParseError("expected a space before the value")
    # An OpenMetrics exemplar follows " # "; it is not part of the sample.
    fields = rest.split(" # ", 1)[0].split()
    if not fields:
        raise PromParseError("no value")
    if len(fields) > 2:
        raise PromParseError("too many fields after the value")
    value = _parse_number(fields[0])
    if len(fields) == 2:
        _parse_number(fields[1])
    return Sample(name, labels, value)


def _labels(line: str, pos: int) -> tuple[dict[str, str], int]:
    labels: dict[str, str] = {}
    end = len(line)
    while True:
        while pos < end and line[pos] in " \t":
            pos += 1
        if pos < end and line[pos] == "}":
            return labels, pos + 1
        match = _LABEL_NAME.match(line, pos)
        if not match:
            raise PromParseError("bad label name" if pos < end else "label list not closed")
        label = match.group()
        pos = match.end()
        while pos < end and line[pos] in " \t":
            pos += 1
        if pos >= end:
            raise PromParseError("label list not closed")
        if line[pos] != "=":
            raise PromParseError(f"expected = after label {label}")
        pos += 1
        while pos < end and line[pos] in " \t":
            pos += 1
        if pos >= end or line[pos] != '"':
            raise PromParseError(f"label {label} value must be quoted")
        value, pos = _quoted(line, pos + 1)
        if label in labels:
            raise PromParseError(f"label {label} given twice")
        labels[label] = value
        while pos < end and line[pos] in " \t":
            pos += 1
        if pos >= end:
            raise PromParseError("label list not closed")
        if line[pos] == ",":
            pos += 1
        elif line[pos] != "}":
            raise PromParseError("expected , or } after a label value")


def _quoted(line: str, pos: int) -> tuple[str, int]:
    chars: list[str] = []
    end = len(line)
    while pos < end:
        char = line[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\":
            if pos + 1 >= end or line[pos + 1] not in _ESCAPES:
                raise PromParseError("bad escape in a label value")
            chars.append(_ESCAPES[line[pos + 1]])
            pos += 2
            continue
        chars.append(char)
        pos += 1
    raise PromParseError("label value not closed")


def _parse_number(text: str) -> float:
    special = _SPECIAL.get(text.lower())
    if special is not None:
        return special
    if not _NUMBER.fullmatch(text):
        raise PromParseError(f"{text!r} is not a number")
    return float(text)
