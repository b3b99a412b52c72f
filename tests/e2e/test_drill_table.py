"""docs/drills.md's table says what the drills actually do: each alert, its scenario, the box it runs on."""

from __future__ import annotations

import re
from pathlib import Path

from drill_harness import PROCESS_DRILLS, drill_profile

from exporter.sources.simulated.scenarios import SCENARIOS

DOC = Path(__file__).resolve().parents[2] / "docs" / "drills.md"


def _rows() -> dict[str, tuple[str, str]]:
    """Alert -> (scenario cell, profile cell) of the drill table."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"Blackwell\w+", cells[0]):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_every_drilled_alert_has_its_row() -> None:
    rows = _rows()
    for scenario in SCENARIOS.values():
        for alert in scenario.alerts:
            assert rows.get(alert) == (f"`{scenario.name}`", drill_profile(scenario)), f"{alert}'s row is off"


def test_the_table_lists_no_alert_the_drills_do_not_cover() -> None:
    named = {alert for scenario in SCENARIOS.values() for alert in scenario.alerts} | set(PROCESS_DRILLS)
    assert set(_rows()) == named
    for alert, how in PROCESS_DRILLS.items():
        assert _rows()[alert][0] == how, f"{alert}'s row does not say how it is drilled"
