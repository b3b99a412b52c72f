"""Series per detail tier for each simulated profile, as docs/metrics.md tabulates them.

Counted, not estimated: one poll of the healthy simulation, rendered and trimmed by the same
:class:`~exporter.catalog.tiers.DetailSelection` the daemon publishes through.
"""

from __future__ import annotations

from exporter.catalog.tiers import (
    GROUPS,
    KEPT_VALUES,
    SUPERSEDED_BY,
    TIER_NAMES,
    DetailConfig,
    DetailSelection,
    series_count,
    tier_of,
)
from exporter.snapshot import Snapshot
from exporter.sources.simulated.profiles import PROFILES
from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource

SERIES_BUDGET = 1_500  # the standard tier of an 8-GPU Blackwell box stays under this


def rendered_families(profile: str) -> dict[str, str]:
    """Family name -> sample lines of one healthy poll of ``profile``, untrimmed (the full tier)."""
    now = [0.0]
    source = SimulatedSource(SimulatedConfig(enabled=True, profile=profile), clock=lambda: now[0])
    now[0] = 10.0
    return dict(Snapshot.of(source.name, source.poll()).rendered)


def series_by_tier(profile: str) -> dict[str, int]:
    rendered = rendered_families(profile)
    return {tier: series_count(DetailSelection(DetailConfig(tier=tier)).apply(rendered)) for tier in TIER_NAMES}


def series_table() -> list[str]:
    """The markdown table of docs/metrics.md: profile, GPUs, series per tier."""
    lines = ["| profile | GPUs | " + " | ".join(TIER_NAMES) + " |", "| --- | --- |" + " --- |" * len(TIER_NAMES)]
    for name, profile in PROFILES.items():
        counts = series_by_tier(name)
        lines.append(f"| {name} | {profile.gpu_count} | " + " | ".join(f"{counts[tier]:,}" for tier in TIER_NAMES) + " |")
    return lines


def tier_cell(name: str) -> str:
    """The tier column of a metric's row: its tier and what is trimmed below full."""
    text = tier_of(name).name.lower()
    if name in KEPT_VALUES:
        label, values = KEPT_VALUES[name]
        text += f"; below full only {label} " + ", ".join(f"`{v}`" for v in sorted(values))
    if name in SUPERSEDED_BY:
        text += f"; below full dropped where `{SUPERSEDED_BY[name]}` is exported"
    return text


def detail_section() -> list[str]:
    """docs/metrics.md's section on detail tiers, with the series count of each simulated profile."""
    return [
        "## Detail tiers",
        "",
        "`detail.tier` (flag `--detail`) picks how much of this catalog is exported: `basic` (what every "
        "alert and recording rule reads, and the identity families), `standard` (the default: also what "
        "the dashboards read) or `full` (every counter). `detail.groups` (flag `--detail-group "
        "GROUP=TIER`, repeatable) overrides it per family group: " + ", ".join(f"`{g}`" for g in GROUPS) + ".",
        "",
        "```yaml",
        "detail:",
        "  tier: standard",
        "  groups: {nvlink: full}   # every NVLink counter, FEC history included",
        "```",
        "",
        "Where one error is visible through two NVML paths on the same hardware, `basic` and `standard` "
        "export one: the NVLink5 counters (`blackwell_nvlink5_*`) on Blackwell, which replace the DL "
        "fields 161-163 (`blackwell_nvlink_dl_*`); the DL fields where there are no NVLink5 counters "
        "(Hopper), which replace the legacy `nvmlDeviceGetNvLinkErrorCounter` counters "
        "(`blackwell_nvlink_crc_flit_errors_total` and the other legacy ones), exported only where "
        "neither newer path exists. `full` exports all of them. The tier column below says where each "
        "family belongs.",
        "",
        f"Series of one healthy simulated box per tier, the exporter's few self-metrics aside (counted by "
        f"`exporter/sources/simulated/budget.py`; "
        f"the standard tier of an 8-GPU Blackwell box stays under {SERIES_BUDGET:,}):",
        "",
        *series_table(),
        "",
    ]
