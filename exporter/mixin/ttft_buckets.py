"""The bound each serving runtime's TTFT SLO is judged at, from its default TTFT buckets.

The exporter keeps every runtime's own histogram boundaries (it never re-buckets; the tables are in
:mod:`exporter.catalog.runtime_buckets`), so the TTFT SLO counts good requests in a bucket the
runtime actually has: the largest default bound at or under the objective. That is conservative,
since no request slower than the objective counts as good; the price is that a runtime without the
objective as a bound is judged a little stricter (SGLang at 0.4 s for a 0.5 s objective).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from exporter.catalog.runtime_buckets import TTFT_DEFAULT_BUCKETS

# Bounds this close to each other are one bound written two ways (0.1 * 5 = 0.5000000000000001).
_SAME_BOUND = 1e-9


def same_bound(first: float, second: float) -> bool:
    return math.isclose(first, second, rel_tol=_SAME_BOUND, abs_tol=0.0)


def bound_at_or_under(buckets: Iterable[float], objective: float) -> float | None:
    """The largest bound above 0 that is not over ``objective`` (float noise forgiven); None when none is."""
    under = [b for b in buckets if 0 < b and (b <= objective or same_bound(b, objective))]
    return max(under) if under else None


def default_bounds(objective: float) -> dict[str, float]:
    """Runtime -> the bound its TTFT SLO is judged at by default; a runtime with no default bound
    at or under ``objective`` is left out (it is then judged at the objective itself, and
    ``BlackwellTTFTSLOBucketMissing`` says when it has no such bucket)."""
    bounds = {}
    for runtime, buckets in TTFT_DEFAULT_BUCKETS.items():
        bound = bound_at_or_under(buckets, objective)
        if bound is not None:
            bounds[runtime] = objective if same_bound(bound, objective) else bound
    return bounds
