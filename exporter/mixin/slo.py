"""Multi-window, multi-burn-rate SLO alerts (Google SRE workbook, chapter 5).

Each SLO gets an error-ratio recording rule per window and four alerting rules under one name:
page when both the 1h and 5m windows burn budget 14.4x faster than allowed (2% of a 30-day
budget in an hour), or 6h and 30m at 6x; open a ticket at 3x over 1d and 2h, or 1x over 3d and 6h.
The short window makes an alert stop soon after the burn stops.

The TTFT SLO counts good requests in each runtime's own bucket at or under the objective
(:mod:`exporter.mixin.ttft_buckets`, from the tables in :mod:`exporter.catalog.runtime_buckets`), picked
per endpoint through ``blackwell_serving_runtime_info``.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.catalog.runtime_buckets import TTFT_BUCKET_SETTINGS, TTFT_DEFAULT_BUCKETS
from exporter.mixin.config import MixinConfig
from exporter.mixin.model import Alert, Group, Recording
from exporter.mixin.promql import le_matcher
from exporter.mixin.ttft_buckets import same_bound

WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True)
class BurnWindow:
    long: str
    short: str
    factor: float
    for_: str
    severity: str


BURN_WINDOWS = (
    BurnWindow("1h", "5m", 14.4, "2m", "critical"),
    BurnWindow("6h", "30m", 6.0, "15m", "critical"),
    BurnWindow("1d", "2h", 3.0, "1h", "warning"),
    BurnWindow("3d", "6h", 1.0, "3h", "warning"),
)


def ttft_error_ratio(window: str) -> str:
    return f"instance_model:blackwell_serving_ttft_seconds:slo_error_ratio_rate{window}"


def availability_error_ratio(window: str) -> str:
    return f"instance_model:blackwell_serving_requests:error_ratio_rate{window}"


_INFO = "blackwell_serving_runtime_info"
_ENDPOINT = "on (job, instance, endpoint)"
# Each TTFT series' bucket at the bound its runtime is judged at; the ratios and the meta alert read it.
TTFT_SLO_BUCKET = "endpoint_model:blackwell_serving_ttft_seconds:slo_bucket"
_SERIES = "on (job, instance, endpoint, model)"


def ttft_slo_bucket(config: MixinConfig) -> str:
    """Each TTFT series' bucket at the bound its runtime is judged at.

    A runtime judged away from the objective gets its own branch, joined to its endpoints through
    ``blackwell_serving_runtime_info`` (the histograms and the info share job, instance and
    endpoint); every other series, runtime_info or not, is judged at the objective itself.
    """
    def bucket(bound: float) -> str:
        return f"blackwell_serving_ttft_seconds_bucket{{{le_matcher(bound)}}}"

    apart = {runtime: bound for runtime, bound in sorted(config.ttft_bounds().items())
             if not same_bound(bound, config.ttft_slo_seconds)}
    by_bound: dict[float, list[str]] = {}
    for runtime, bound in apart.items():
        by_bound.setdefault(bound, []).append(runtime)
    branches = [f"{bucket(bound)} and {_ENDPOINT} {_INFO}{{{_runtimes(runtimes)}}}"
                for bound, runtimes in sorted(by_bound.items())]
    rest = f" unless {_ENDPOINT} {_INFO}{{{_runtimes(sorted(apart))}}}" if apart else ""
    return "\nor ".join([*branches, bucket(config.ttft_slo_seconds) + rest])


def _runtimes(names: list[str]) -> str:
    return f'runtime="{names[0]}"' if len(names) == 1 else f'runtime=~"{"|".join(names)}"'


def slo_recording_groups(config: MixinConfig) -> list[Group]:
    # Only series with a bucket at their bound count in the denominator too: an endpoint whose buckets
    # lack it (BlackwellTTFTSLOBucketMissing) would otherwise count every one of its requests as slow.
    ttft = [Recording(record=TTFT_SLO_BUCKET, expr=ttft_slo_bucket(config))] + [
        Recording(record=ttft_error_ratio(w),
                  expr=f"1 - (\n  sum by (job, instance, model) (rate(blackwell_serving_ttft_seconds_bucket[{w}])\n"
                  f"    and on (job, instance, endpoint, model, le) {TTFT_SLO_BUCKET})\n"
                  f"  / sum by (job, instance, model) (rate(blackwell_serving_ttft_seconds_count[{w}]) > 0\n"
                  f"    and {_SERIES} {TTFT_SLO_BUCKET})\n)")
        for w in WINDOWS
    ]
    availability = [Recording(record=availability_error_ratio(w), expr=_availability_error_ratio(w)) for w in WINDOWS]
    return [Group("blackwell-slo-ttft.rules", ttft), Group("blackwell-slo-availability.rules", availability)]


def _availability_error_ratio(window: str) -> str:
    """Failed (not client-canceled) over all finished requests.

    A runtime that counts no server failures (vLLM: finish reasons only) has no failure series to
    divide: the numerator is then 0 wherever requests finished, so the ratio is 0, not absent. No
    finished requests at all still leaves the ratio empty (the denominator must be over 0).
    """
    def total(selector: str) -> str:
        return f"sum by (job, instance, model) (rate({selector}[{window}]))"

    success, failure = total("blackwell_serving_request_success_total"), total("blackwell_serving_request_failure_total")
    failed = total('blackwell_serving_request_failure_total{reason!="CANCELED"}')
    return (f"(\n  {failed}\n"
            f"  or 0 * {success}\n  or 0 * {failure}\n)\n"
            f"/ ((\n  {success} + {failure}\n  or {success}\n  or {failure}\n) > 0)")


def ttft_bucket_missing_alert() -> Alert:
    """A TTFT histogram without a bucket at its runtime's bound (buckets set away from the defaults)."""
    series = "group by (job, instance, endpoint, model) (blackwell_serving_ttft_seconds_count)"
    return Alert(
        name="BlackwellTTFTSLOBucketMissing",
        expr=f"{series}\nunless {_SERIES} {TTFT_SLO_BUCKET}",
        for_="15m", severity="warning",
        summary="A TTFT histogram has no bucket at the bound its TTFT SLO is judged at; that SLO cannot see it.",
        description=("{{ $labels.model }} from {{ $labels.endpoint }} on {{ $labels.instance }} has no TTFT bucket "
                     "at the bound its runtime is judged at, so its TTFT SLO and burn-rate alerts stay empty: "
                     "set mixin.ttft_slo_bounds to a bound it has, or put the bound back in its buckets."),
        dashboard="blackwell-serving-slos",
    )


def ttft_bound_rows(config: MixinConfig) -> list[tuple[str, str, str, str]]:
    """(runtime, its default buckets around the objective, the bound it is judged at, where its buckets
    are set) for docs/mixin.md; ``-`` where no default bound is at or under the objective."""
    bounds = config.ttft_bounds()
    rows = []
    for runtime, buckets in TTFT_DEFAULT_BUCKETS.items():
        bound = bounds.get(runtime)
        rows.append((runtime, _buckets_around(buckets, config.ttft_slo_seconds),
                     f"{bound:g}" if bound is not None else "-", TTFT_BUCKET_SETTINGS[runtime]))
    return rows


def _buckets_around(buckets: tuple[float, ...], objective: float) -> str:
    """The three bounds at or under ``objective`` and the two over it, ``...`` where more are left out."""
    positive = [bound for bound in buckets if bound > 0]
    over = next((index for index, bound in enumerate(positive)
                 if bound > objective and not same_bound(bound, objective)), len(positive))
    first, end = max(0, over - 3), min(len(positive), over + 2)
    text = ", ".join(f"{bound:g}" for bound in positive[first:end])
    return ("... " if first > 0 else "") + text + (" ..." if end < len(positive) else "")


def bounds_text(config: MixinConfig) -> str:
    """Which runtime is judged at which bound, for dashboards and docs: ``vllm 0.5s, sglang 0.4s``."""
    return ", ".join(f"{runtime} {bound:g}s" for runtime, bound in sorted(config.ttft_bounds().items()))


def _burn_alerts(name: str, ratio, objective: float, summary: str, what: str, dashboard: str) -> list[Alert]:
    budget = 1.0 - objective
    alerts = []
    for bw in BURN_WINDOWS:
        threshold = f"{bw.factor * budget:.6g}"
        alerts.append(Alert(
            name=name,
            expr=f"{ratio(bw.long)} > {threshold}\nand\n{ratio(bw.short)} > {threshold}",
            for_=bw.for_,
            severity=bw.severity,
            labels={"long": bw.long, "short": bw.short},
            summary=summary,
            description=(
                f"{{{{ $labels.model }}}} on {{{{ $labels.instance }}}}: {{{{ $value | humanizePercentage }}}} of "
                f"requests {what} over the last {bw.long} (and {bw.short}), {bw.factor:g}x the rate the "
                f"{objective:.4g} objective allows."
            ),
            dashboard=dashboard,
        ))
    return alerts


def slo_alerts(config: MixinConfig) -> list[Alert]:
    ttft = _burn_alerts(
        "BlackwellTTFTBudgetBurn", ttft_error_ratio, config.ttft_slo_objective,
        "Requests are missing the TTFT objective fast enough to exhaust the error budget.",
        f"took longer than {config.ttft_slo_seconds:g}s to the first token", "blackwell-serving-slos",
    )
    availability = _burn_alerts(
        "BlackwellAvailabilityBudgetBurn", availability_error_ratio, config.availability_slo_objective,
        "Requests are failing fast enough to exhaust the availability error budget.",
        "failed", "blackwell-serving-slos",
    )
    return [*ttft, *availability, ttft_bucket_missing_alert()]
