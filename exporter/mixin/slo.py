"""Multi-window, multi-burn-rate SLO alerts (Google SRE workbook, chapter 5).

Each SLO gets an error-ratio recording rule per window and four alerting rules under one name:
page when both the 1h and 5m windows burn budget 14.4x faster than allowed (2% of a 30-day
budget in an hour), or 6h and 30m at 6x; open a ticket at 3x over 1d and 2h, or 1x over 3d and 6h.
The short window makes an alert stop soon after the burn stops.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.mixin.config import MixinConfig
from exporter.mixin.model import Alert, Group, Recording
from exporter.mixin.promql import le_matcher

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


def slo_recording_groups(config: MixinConfig) -> list[Group]:
    le = le_matcher(config.ttft_slo_seconds)
    ttft = [
        Recording(record=ttft_error_ratio(w),
                  expr=f"1 - (\n  sum by (job, instance, model) (rate(blackwell_serving_ttft_seconds_bucket{{{le}}}[{w}]))\n"
                  f"  / sum by (job, instance, model) (rate(blackwell_serving_ttft_seconds_count[{w}]) > 0)\n)")
        for w in WINDOWS
    ]
    # Client cancellations are not the server's fault; every other failure reason is.
    availability = [
        Recording(record=availability_error_ratio(w),
                  expr=f'sum by (job, instance, model) (rate(blackwell_serving_request_failure_total{{reason!="CANCELED"}}[{w}]))\n'
                  "/ ((\n"
                  f"  sum by (job, instance, model) (rate(blackwell_serving_request_success_total[{w}]))\n"
                  f"  + sum by (job, instance, model) (rate(blackwell_serving_request_failure_total[{w}]))\n"
                  ") > 0)")
        for w in WINDOWS
    ]
    return [Group("blackwell-slo-ttft.rules", ttft), Group("blackwell-slo-availability.rules", availability)]


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
    return ttft + availability
