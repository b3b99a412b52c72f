"""Small PromQL helpers: durations, time scaling, and metric-name extraction for lint.

Rules are written with production durations (``rate(x[5m])``, ``offset 1d``, ``for: 10m``).
:func:`scale_expr` rewrites every range, subquery and offset in an expression by one factor,
so fault drills can run the very same rules in seconds.
"""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_RANGE = re.compile(r"\[(\d+(?:ms|s|m|h|d|w|y))(?::(\d+(?:ms|s|m|h|d|w|y))?)?\]")
_OFFSET = re.compile(r"\boffset\s+(\d+(?:ms|s|m|h|d|w|y))")


def seconds(duration: str) -> float:
    """``'1h30m'`` -> 5400.0; raises ValueError on anything that is not a Prometheus duration."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def number(value: float) -> str:
    """A number as PromQL text without float noise (0.0016666666666666668 -> 0.00166666666667, 86400.0 -> 86400)."""
    return f"{value:.12g}"


def duration(value: float) -> str:
    """Seconds -> the shortest exact Prometheus duration (``3600`` -> ``1h``, ``90`` -> ``90s``)."""
    whole = int(round(value))
    for unit in ("d", "h", "m"):
        size = int(_UNITS[unit])
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def scale(duration_text: str, factor: float) -> str:
    """Multiply a duration by ``factor``, rounded to whole seconds and never under 1s."""
    if factor == 1.0:
        return duration_text
    return duration(max(1.0, round(seconds(duration_text) * factor)))


def scale_expr(expr: str, factor: float) -> str:
    """Scale every ``[range]``, ``[range:step]`` and ``offset d`` in a PromQL expression."""
    if factor == 1.0:
        return expr

    def _range(match: re.Match[str]) -> str:
        window = scale(match.group(1), factor)
        if match.group(0).count(":"):
            step = match.group(2)
            return f"[{window}:{scale(step, factor) if step else ''}]"
        return f"[{window}]"

    expr = _RANGE.sub(_range, expr)
    return _OFFSET.sub(lambda m: f"offset {scale(m.group(1), factor)}", expr)


def le_matcher(bound: float, neighbours: int = 2) -> str:
    """A matcher for one histogram bucket, whichever way the exposition wrote its bound.

    Integers match with and without ``.0`` (``10``, ``10.0``), and so do the floats up to
    ``neighbours`` steps (ULPs) either side, which a runtime that computes its bounds may print
    (``0.1 * 5`` is ``0.5000000000000001``); each is written as Python and Go print it (shortest).
    """
    values = {float(bound)}
    for direction in (-math.inf, math.inf):
        value = float(bound)
        for _ in range(neighbours):
            value = math.nextafter(value, direction)
            values.add(value)
    texts = []
    for value in sorted(values):
        if value.is_integer():
            texts.append(str(int(value)))
        texts.append(repr(value))
    if len(texts) == 1:
        return f'le="{texts[0]}"'
    return 'le=~"' + "|".join(text.replace(".", "\\\\.").replace("+", "\\\\+") for text in texts) + '"'


# Words that look like metric names in an expression but are PromQL syntax.
_KEYWORDS = {
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "resets", "changes",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "quantile_over_time", "stddev_over_time", "present_over_time", "histogram_quantile", "absent",
    "absent_over_time", "abs", "ceil", "floor", "round", "clamp", "clamp_min", "clamp_max", "scalar", "vector",
    "time", "timestamp", "label_replace", "label_join", "sort", "sort_desc", "exp", "ln", "log2", "log10", "sqrt",
    "inf", "nan", "day_of_week", "hour", "minute", "month", "year", "sgn",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^{}]*\}")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label matchers, strings, grouping lists and keywords removed).

    Not a full PromQL parser; it is exact for the expression style this mixin writes
    (metric names are never used as label names, durations are bracketed).
    """
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", r"\1", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\boffset\s+\w+", "", text)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(1)
        if word.lower() in _KEYWORDS or re.fullmatch(r"\d+\w*", word):
            continue
        names.add(word)
    return names


# One token of PromQL text, as far as the selector rewrite cares: a string, a {matcher} block, a
# [range] block, a grouping list after by/without/on/ignoring/group_left/group_right, or a word.
_TOKEN = re.compile(
    r'(?P<string>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')'
    r"|(?P<matchers>\{(?:[^{}\"]|\"(?:[^\"\\]|\\.)*\")*\})"
    r"|(?P<range>\[[^\]]*\])"
    r"|(?P<grouping>\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\))"
    r"|(?P<offset>\boffset\s+-?\w+)"
    r"|(?P<word>(?<![\w:.$])[a-zA-Z_:][a-zA-Z0-9_:]*(?![\w:]))"
)
_FOLLOWED_BY_CALL = re.compile(r"\s*\(")
_FOLLOWED_BY_MATCHERS = re.compile(r"\s*\{")


def with_selector(expr: str, matchers: str) -> str:
    """``expr`` with ``matchers`` (label matchers without braces) added to every vector selector.

    ``rate(x[5m]) / y{a="b"}`` with ``job="j"`` -> ``rate(x{job="j"}[5m]) / y{job="j", a="b"}``.
    Function and aggregation names, keywords, grouping lists, strings and durations are left alone.
    An empty ``matchers`` returns ``expr`` unchanged.
    """
    if not matchers.strip():
        return expr
    out: list[str] = []
    position = 0
    for match in _TOKEN.finditer(expr):
        out.append(expr[position:match.start()])
        token = match.group(0)
        if match.lastgroup == "matchers":  # after a metric name, or a bare {...} selector
            token = _merge(token, matchers)
        elif match.lastgroup == "word" and _is_metric_name(expr, match):
            rest = expr[match.end():]
            if not _FOLLOWED_BY_MATCHERS.match(rest):
                token += "{" + matchers + "}"
        out.append(token)
        position = match.end()
    out.append(expr[position:])
    return "".join(out)


def _is_metric_name(expr: str, match: re.Match[str]) -> bool:
    word = match.group(0)
    if word.lower() in _KEYWORDS or word in ("bool", "inf", "nan", "Inf", "NaN"):
        return False
    return not _FOLLOWED_BY_CALL.match(expr[match.end():])


def _merge(block: str, matchers: str) -> str:
    inner = block[1:-1].strip()
    return "{" + matchers + (", " + inner if inner else "") + "}"
