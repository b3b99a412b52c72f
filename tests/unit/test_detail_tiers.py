"""Detail tiers: series per simulated profile and tier as docs/metrics.md states them, the default
within budget while every alert, recording rule and panel keeps its metrics, one NVML path per error
below full, and the switch by config, flag and family group."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter import config as config_mod
from exporter.catalog import CATALOG, series_names
from exporter.catalog.tiers import SUPERSEDED_BY, DetailConfig, DetailSelection, detail_flags, series_count
from exporter.cli import build_parser
from exporter.mixin import dashboards
from exporter.mixin.config import MixinConfig
from exporter.mixin.promql import metric_names
from exporter.mixin.rules import groups as rule_file_groups
from exporter.snapshot import Family, Snapshot, SnapshotStore
from exporter.sources.simulated.budget import SERIES_BUDGET, rendered_families, series_by_tier
from exporter.sources.simulated.profiles import PROFILES

REPO = Path(__file__).resolve().parents[2]
DEFAULT = DetailSelection(DetailConfig())


def _family(sample_name: str) -> str | None:
    if sample_name in CATALOG:
        return sample_name
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix) and sample_name[: -len(suffix)] in CATALOG:
            return sample_name[: -len(suffix)]
    return None


def _recorded_families() -> dict[str, set[str]]:
    """Recorded series -> the exported families it is computed from (through earlier recordings)."""
    config = MixinConfig()
    sources: dict[str, set[str]] = {}
    for group in rule_file_groups(config)["recording-rules"]:
        for rule in group.rules:
            names = metric_names(rule.expr)
            found = {f for f in map(_family, names) if f} | {f for n in names for f in sources.get(n, ())}
            sources.setdefault(rule.record, set()).update(found)
    return sources


def _consumers() -> list[tuple[str, set[str]]]:
    """Every alert and panel query with the exported families it reads."""
    recorded = _recorded_families()
    config = MixinConfig()

    def families(expr: str) -> set[str]:
        names = metric_names(expr)
        return {f for f in map(_family, names) if f} | {f for n in names for f in recorded.get(n, ())}

    out = [(f"alert {rule.name}", families(rule.expr)) for group in rule_file_groups(config)["alerts"]
           for rule in group.rules]
    out += [(f"panel {board['uid']}/{panel['title']}", families(target["expr"]))
            for board in dashboards.all_dashboards(config) for panel in board["panels"] for target in panel["targets"]]
    return [(name, used) for name, used in out if used]


def test_the_series_table_in_docs_metrics_is_what_the_tiers_export():
    text = (REPO / "docs" / "metrics.md").read_text()
    for name in PROFILES:
        counts = series_by_tier(name)
        row = re.search(rf"^\| {name} \| \d+ \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$", text, re.M)
        assert row, f"docs/metrics.md has no series row for {name}"
        assert [int(cell.replace(",", "")) for cell in row.groups()] == [counts["basic"], counts["standard"],
                                                                         counts["full"]]
        assert counts["basic"] < counts["standard"] < counts["full"]


def test_the_default_tier_of_an_8_gpu_blackwell_box_is_within_budget():
    boxes = [name for name, p in PROFILES.items() if p.gpu_count == 8 and "B200" in p.gpu.name]
    assert boxes
    for name in boxes:
        assert series_by_tier(name)["standard"] <= SERIES_BUDGET, name


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_alert_and_panel_keeps_its_metrics_in_the_default_tier(profile):
    full = rendered_families(profile)
    default = DEFAULT.apply(full)
    for name, used in _consumers():
        available = used & full.keys()
        if not available:
            continue  # this box has none of them at any tier (no Grace, no dispatch sampler ...)
        assert available & default.keys(), f"{profile}: {name} has none of {sorted(available)}"
        for family in available - default.keys():
            replacement = SUPERSEDED_BY.get(family)
            assert replacement in default or SUPERSEDED_BY.get(replacement) in default, \
                f"{profile}: {name} loses {family} in the default tier"


def test_every_family_an_alert_reads_is_in_the_basic_tier():
    basic = DetailSelection(DetailConfig(tier="basic"))
    for name, used in _consumers():
        if name.startswith("alert "):
            assert all(basic.exports(family) for family in used), name


def _nvml_snapshot(*names: str) -> Snapshot:
    families = []
    for name in names:
        family = Family(name)
        labels = CATALOG[name].labels
        for link in range(2):
            values = {"gpu": "0", "link": str(link), "kind": "rcv", "result": "total"}
            family.add([values[label] for label in labels], 1)
        families.append(family)
    return Snapshot.of("nvml", families)


def test_below_full_one_nvml_path_per_error_and_full_keeps_both():
    blackwell = _nvml_snapshot("blackwell_nvlink_crc_flit_errors_total", "blackwell_nvlink_dl_crc_errors_total",
                               "blackwell_nvlink5_errors_total")
    hopper = _nvml_snapshot("blackwell_nvlink_crc_flit_errors_total", "blackwell_nvlink_dl_crc_errors_total")
    assert set(DEFAULT.apply(blackwell.rendered)) == {"blackwell_nvlink5_errors_total"}
    assert set(DEFAULT.apply(hopper.rendered)) == {"blackwell_nvlink_dl_crc_errors_total"}
    full = DetailSelection(DetailConfig(tier="full"))
    assert full.apply(blackwell.rendered) == dict(blackwell.rendered)


def test_a_family_group_switches_on_its_own():
    rendered = rendered_families("hgx-b200")
    nvlink_full = DetailSelection(DetailConfig(groups={"nvlink": "full"})).apply(rendered)
    nvlink = {name for name in rendered if name.startswith("blackwell_nvlink")}
    assert {name: rendered[name] for name in nvlink} == {name: nvlink_full[name] for name in nvlink}
    assert nvlink_full["blackwell_gpu_tensor_active_ratio"] == DEFAULT.apply(rendered)["blackwell_gpu_tensor_active_ratio"]
    gpu_basic = DetailSelection(DetailConfig(groups={"gpu": "basic"})).apply(rendered)
    assert "blackwell_gpu_temperature_celsius" not in gpu_basic and "blackwell_nvlink5_bit_error_rate" in gpu_basic


def test_the_store_publishes_the_selected_tier():
    store = SnapshotStore(DetailSelection(DetailConfig(tier="basic")))
    store.publish("simulated", Snapshot("simulated", rendered_families("h200x2")), lambda: Snapshot("exporter", {}))
    body = store.current().body(openmetrics=False, gzipped=False).decode()
    assert "blackwell_gpu_up{" in body and "blackwell_gpu_temperature_celsius" not in body
    samples = [line for line in body.splitlines() if line and not line.startswith("#")]
    assert len(samples) == series_by_tier("h200x2")["basic"]


def test_tier_by_config_file_flag_and_group_flag(tmp_path):
    path = tmp_path / "exporter.yaml"
    path.write_text("detail:\n  tier: basic\n  groups: {nvlink: full}\n")
    loaded = config_mod.load(path, environ={})
    assert (loaded.detail.tier, loaded.detail.groups) == ("basic", {"nvlink": "full"})
    args = build_parser().parse_args(["run", "--detail", "full", "--detail-group", "serving=basic"])
    flagged = config_mod.load(path, environ={}, flags=detail_flags(args.detail, args.detail_group))
    assert (flagged.detail.tier, flagged.detail.groups) == ("full", {"nvlink": "full", "serving": "basic"})


@pytest.mark.parametrize(("layer", "message"), [
    ({"detail": {"tier": "everything"}}, "unknown detail tier 'everything'"),
    ({"detail": {"groups": {"nvswitch": "full"}}}, "unknown family group nvswitch"),
    (detail_flags(None, ["nvlink"]), "unknown detail tier ''"),
])
def test_a_bad_tier_or_group_is_a_config_error_naming_it(layer, message):
    with pytest.raises(config_mod.ConfigError, match=re.escape(message)):
        config_mod.load(None, environ={}, flags=layer)


def test_series_are_counted_per_sample_line():
    assert series_count({"a": "x 1\nx 2\n", "b": "y 1\n"}) == 3
    assert "blackwell_serving_ttft_seconds_bucket" in series_names()
