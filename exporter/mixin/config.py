"""Thresholds and objectives the generated rules use; set under ``mixin:`` in the config file."""

from __future__ import annotations

from pydantic import Field

from exporter.sources.base import StrictModel


class MixinConfig(StrictModel):
    runbook_base_url: str = Field(
        "https://github.com/blackwell-exporter/blackwell-exporter/blob/main/runbooks",
        description="where runbooks/<AlertName>.md are published; alerts link here",
    )
    dashboard_base_url: str = Field("http://grafana.local/d", description="Grafana base URL for dashboard_url")
    ttft_slo_seconds: float = Field(0.5, gt=0, description="TTFT p95 objective")

