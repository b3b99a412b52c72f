"""docs/mixin.md: the alert, recording-rule and dashboard tables, rendered from the definitions."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined

from exporter.mixin.alerts import alert_groups, alert_names, all_alerts
from exporter.mixin.config import MixinConfig
from exporter.mixin.dashboards import SCHEMA_VERSION, all_dashboards
from exporter.mixin.model import Recording
from exporter.mixin.rules import groups
from exporter.mixin.slo import BURN_WINDOWS, WINDOWS, ttft_bound_rows


def render(config: MixinConfig) -> str:
    env = Environment(loader=PackageLoader("exporter.mixin", "templates/docs"), undefined=StrictUndefined,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    rec_groups = groups(config)["recording-rules"]
    recording = [r for g in rec_groups for r in g.rules if isinstance(r, Recording)]
    return env.get_template("mixin.md.j2").render(
        c=config,
        recording=recording,
        recording_count=len(recording),
        recording_groups=rec_groups,
        alert_rules=all_alerts(config),
        alert_names=alert_names(),
        alert_groups=alert_groups(config),
        dashboards=all_dashboards(config),
        schema_version=SCHEMA_VERSION,
        burn_windows=BURN_WINDOWS,
        windows=WINDOWS,
        ttft_rows=ttft_bound_rows(config),
    )
