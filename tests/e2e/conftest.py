"""Session-wide drill stack: one exporter per profile, one Prometheus, one Alertmanager, one webhook receiver.

Drills switch the exporters' scenarios at run time instead of starting new processes, so the
whole chain starts once (a few seconds) and every drill costs only the alert's own timing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from drill_harness import (
    BOX_SCENARIOS,
    DRILL_PROFILES,
    TRITON_EXPORTER,
    Drills,
    TritonReplay,
    WebhookReceiver,
    backfill_yesterday,
    drill_profile,
    settle,
)

from exporter.sources.simulated.scenarios import SCENARIOS
from exporter.stack import DRILL_TIME_SCALE, Stack, find_binary, history_needed, write_rules

_batteries: list[Drills] = []


@pytest.fixture(scope="session")
def drill_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixin's rules as the drills run them: every ``for:`` and window shrunk by DRILL_TIME_SCALE."""
    return write_rules(tmp_path_factory.mktemp("rules") / "drill-rules.yaml", DRILL_TIME_SCALE)


@pytest.fixture(scope="session")
def alert_rules(drill_rules: Path) -> dict[str, list[dict[str, Any]]]:
    """Alert name -> its rules (expr, for, labels, annotations) as loaded into Prometheus.

    A name can have several rules: the burn-rate alerts have one per window pair, told apart
    by their ``long`` and ``short`` labels.
    """
    rules: dict[str, list[dict[str, Any]]] = {}
    for group in yaml.safe_load(drill_rules.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rules.setdefault(rule["alert"], []).append(rule)
    return rules


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    thread = threading.Thread(target=receiver.serve_forever, name="webhook", daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()


@pytest.fixture(scope="session")
def triton_replay() -> Iterator[TritonReplay]:
    replay = TritonReplay()
    replay.start()
    yield replay
    replay.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, drill_rules: Path, webhook: WebhookReceiver,
          triton_replay: TritonReplay) -> Iterator[Stack]:
    """The simulated boxes, plus a real-sources exporter reading the Triton replay (for the upstream drills)."""
    for binary in (("prometheus",), ("alertmanager", "prometheus-alertmanager")):
        find_binary(*binary)  # a missing binary is a setup error with the apt hint, not a skip
    with Stack.start(tmp_path_factory.mktemp("stack"), DRILL_PROFILES, [drill_rules], webhook.url,
                     configured={TRITON_EXPORTER: triton_replay.exporter_config()}) as running:
        # Yesterday covers the throughput drill for the first 15 minutes of the session.
        backfill_yesterday(running, drill_profile(SCENARIOS["throughput-drop"]), drill_rules,
                           history_needed(drill_rules)["BlackwellThroughputDrop"] + 900)
        settle(running)
        yield running


@pytest.fixture(scope="session")
def drills(request: pytest.FixtureRequest, stack: Stack, webhook: WebhookReceiver) -> Iterator[Drills]:
    """The drill battery over the scenarios the selected tests read (so ``-k`` runs only those)."""
    wanted = []
    for item in request.session.items:
        params = getattr(item, "callspec", None)
        name = params.params["drill"][1] if params and "drill" in params.params else None
        if name and name not in wanted:
            wanted.append(name)
    battery = Drills(stack, webhook, wanted)
    _batteries.append(battery)
    yield battery
    battery.wait_all()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How long each drill took, for docs/drills.md and for noticing a drill that got slow."""
    results = _batteries[0].results if _batteries else {}
    if not results:
        return
    terminalreporter.section("fault drills")
    for name, r in results.items():
        fired = ", ".join(f"{a} {t:.0f}s" for a, t in sorted(r.seconds_to_fire.items())) or "nothing"
        cleared = ", ".join(f"{a} {t:.0f}s" for a, t in sorted(r.seconds_to_resolve.items())) or "nothing"
        inherited = f" ({r.inherited} inherited)" if r.inherited else ""
        terminalreporter.write_line(f"{name:20} on {r.profile:10} fired: {fired}; resolved after the switch back: "
                                    f"{cleared}{inherited} {r.error}".rstrip())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``drill``: one (alert, scenario) case per alert a scenario in scenarios.py names."""
    if "drill" in metafunc.fixturenames:
        cases = [(alert, s.name) for s in BOX_SCENARIOS.values() for alert in s.alerts]
        metafunc.parametrize("drill", cases, ids=[f"{alert}-{scenario}" for alert, scenario in cases])
