"""The CI soak: bench/soak.py for 60 seconds with the same checks as the committed 30-minute run
(every scrape answered, no RSS/thread/fd growth, scrape p99, scenario switches seen, upstream
restarts seen and recovered from, SIGTERM honoured). The only long test in the suite.

The warm-up (30 s) takes in the first socket flood (at 20 s): RSS steps up on an exporter's first
flood and stays flat between floods (its flood threads' malloc arenas outlive them), so growth is
judged from the plateau after the first flood to the end, which has seen the second."""

from __future__ import annotations

import pytest

from bench import soak

pytestmark = pytest.mark.integration


def test_soak_60s_scenarios_cycling_and_an_upstream_that_restarts() -> None:
    result = soak.run(duration=60, scenario_every=10, restart_every=20, downtime=3, sample_every=2, warmup=30, flood_every=20, flap_every=3)
    print(soak.markdown(result))
    assert result["scenario_switches"] >= 5
    if soak.triton_registered():
        assert len(result["upstream_restarts"]) >= 2
    failed = [name for name, ok in result["checks"].items() if not ok]
    assert not failed, failed
