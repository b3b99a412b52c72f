"""Every dashboard query returns data from a real Prometheus that scrapes the simulated exporters.

One exporter per simulation profile (HGX B200 for NVLink5, GB200 tray for Grace C2C, 2x H200 for
the Hopper NVLink counters), Debian's Prometheus scraping them every second with the committed
recording and alerting rules loaded. Grafana's variables are replaced as Grafana would for "All".
The H200 box runs the xid-error scenario so the XID panel has events to show.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from exporter.mixin.config import MixinConfig
from exporter.stack import Stack, StackError, find_binary

REPO = Path(__file__).resolve().parents[2]
PROFILES = ["hgx-b200", "gb200-tray", "h200x2", "nvl72-tray"]  # nvl72-tray: one tray fills the rack dashboard
SETTLE_TIMEOUT_SECONDS = 60.0

pytestmark = pytest.mark.integration


def concrete(expr: str) -> str:
    """Grafana's variables as Grafana fills them with every instance and GPU selected."""
    return (expr.replace("$__rate_interval", "10s").replace("$__range", "1h")
            .replace("$instance", ".*").replace("$gpu", ".*").replace("$job", ".*").replace("$cluster", ".*"))


def _queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL) for every panel target of the committed dashboards."""
    out = []
    for path in sorted((REPO / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append((board["uid"], panel["title"], concrete(target["expr"])))
    return out


# Queries that are empty in this test for a reason the test then proves.
def _needs_a_day_of_history(expr: str) -> bool:
    return "offset 1d" in expr or "rate5m_vs_1d" in expr


def _counts_poll_errors(expr: str) -> bool:
    return "blackwell_exporter_source_errors_total" in expr


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    try:
        find_binary("prometheus")
        find_binary("alertmanager", "prometheus-alertmanager")
    except StackError as exc:
        pytest.skip(str(exc))
    rules = [REPO / "alerts" / "recording-rules.yaml", REPO / "alerts" / "alerts.yaml"]
    with Stack.start(tmp_path_factory.mktemp("dashboards-live"), PROFILES, rules) as running:
        running.set_scenario("h200x2", "xid-error")
        yield running


def _empty(stack: Stack, queries: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [q for q in queries if not stack.query(q[2])]


def test_every_dashboard_query_returns_data(stack):
    queries = _queries()
    assert len(queries) > 50
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    empty = _empty(stack, queries)
    # Rates need two scrapes and recording rules one evaluation after that; wait for them.
    while time.monotonic() < deadline:
        empty = _empty(stack, queries)
        if all(_needs_a_day_of_history(q[2]) or _counts_poll_errors(q[2]) for q in empty):
            break
        time.sleep(1.0)
    explained = []
    for uid, title, expr in empty:
        if _needs_a_day_of_history(expr):
            # Prometheus started seconds ago: nothing exists a day back.
            assert not stack.query("count(up offset 1d)"), "day-old data exists, so this query should have data"
            explained.append((uid, title))
        elif _counts_poll_errors(expr):
            # The simulation never fails a poll, so the error counter has no series yet.
            assert not stack.query("blackwell_exporter_source_errors_total")
            assert len(stack.query('blackwell_exporter_source_up == 1')) == len(PROFILES)
            explained.append((uid, title))
        else:
            pytest.fail(f"{uid} / {title}: no data for {expr}")
    assert len(explained) <= 5, explained


def test_variable_queries_find_instances_and_gpus(stack):
    job = MixinConfig().job
    instances = {r["metric"]["instance"] for r in stack.query(f'blackwell_exporter_build_info{{job="{job}"}}')}
    assert instances == {stack.instance(p) for p in PROFILES}
    gpus = {(r["metric"]["instance"], r["metric"]["gpu"]) for r in stack.query("blackwell_gpu_up")}
    assert len(gpus) == 8 + 4 + 2 + 4


def test_profile_specific_panels_see_their_box(stack):
    """C2C share only on the GB200 tray, NVLink5 BER only on Blackwell, DL CRC only on Hopper, and the
    legacy CRC counter (the same hardware counter as DL CRC) nowhere in the default detail tier."""
    def instances(expr: str) -> set[str]:
        return {r["metric"]["instance"] for r in stack.query(expr)}

    assert instances("instance_gpu:blackwell_c2c_rx_bytes_per_second:read_share_avg5m") == {stack.instance("gb200-tray"),
                                                                                        stack.instance("nvl72-tray")}
    assert instances("blackwell_nvlink5_bit_error_rate") == {stack.instance("hgx-b200"), stack.instance("gb200-tray"),
                                                             stack.instance("nvl72-tray")}
    assert instances("blackwell_nvlink_dl_crc_errors_total") == {stack.instance("h200x2")}
    assert instances("blackwell_nvlink_crc_flit_errors_total") == set()
    xids = stack.query('sum by (instance, xid) (increase(blackwell_gpu_xid_errors_total[1h]))')
    assert {(r["metric"]["instance"], r["metric"]["xid"]) for r in xids} == {(stack.instance("h200x2"), "79")}
