"""Runbooks: one markdown page per alert name, rendered with jinja2.

``templates/runbooks/<AlertName>.md.j2`` extends ``_runbook.md.j2`` and fills the blocks
meaning, impact, diagnosis and mitigation; the base adds the rule itself (expression,
duration, severity) from the same definitions the rule files come from, so a runbook can
never describe a threshold the rule does not use.
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined

from exporter.foundation import STALE_INTERVALS
from exporter.mixin.alerts import all_alerts, runbook_file
from exporter.mixin.config import MixinConfig
from exporter.mixin.model import Alert


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("exporter.mixin", "templates/runbooks"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # markdown, not HTML
    )


def render_all(config: MixinConfig) -> dict[str, str]:
    """Alert name -> runbook markdown."""
    env = _environment()
    by_name: dict[str, list[Alert]] = {}
    for alert in all_alerts(config):
        by_name.setdefault(alert.name, []).append(alert)
    pages = {}
    for name, rules in by_name.items():
        template = env.get_template(f"{name}.md.j2")
        text = template.render(name=name, rules=rules, first=rules[0], c=config,
                               dashboard_url=f"{config.dashboard_base_url}/{rules[0].dashboard}",
                               runbook_path=runbook_file(name), stale_intervals=STALE_INTERVALS)
        pages[name] = text.rstrip("\n") + "\n"
    return pages
