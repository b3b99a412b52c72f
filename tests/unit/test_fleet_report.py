"""bench/fleet_report.py: the 1,000-rack extrapolation is the line through the measured steps, and says so."""

from __future__ import annotations

import pytest

from bench.fleet_report import FLEET_RACKS, SERIES_PER_SERVER, extrapolate, fit


def steps(per_rack_evaluation: float = 0.2) -> list[dict]:
    """Racks that each add 20,000 series, 1,500 samples/s, 2,000 forwarded series, 80 MiB, ``per_rack_evaluation`` s."""
    return [{"racks": racks, "head_series": 500 + 20_000 * racks, "samples_per_second": 1_500.0 * racks,
             "forwarded_series": 2_000 * racks, "rss_bytes": (40 + 80 * racks) * 2**20,
             "rule_evaluation_seconds": 0.05 + per_rack_evaluation * racks} for racks in (1, 2, 4)]


def test_the_fit_recovers_a_line_and_a_single_point_goes_through_the_origin():
    assert fit([(1, 3.0), (2, 5.0), (4, 9.0)]) == pytest.approx((2.0, 1.0))
    assert fit([(4, 8.0)]) == (2.0, 0.0)


def test_the_extrapolation_is_the_fitted_line_at_a_thousand_racks():
    fleet = extrapolate(steps(), interval=15.0)
    assert fleet["series_per_rack"] == 20_000
    assert fleet["series"] == 500 + 20_000 * FLEET_RACKS
    assert fleet["forwarded_samples_per_second"] == round(2_000 * FLEET_RACKS / 15.0)
    assert fleet["racks_per_prometheus_at_2M_series"] == SERIES_PER_SERVER // 20_000
    assert fleet["prometheus_servers_at_2M_series"] == 11  # 20,000,500 series
    assert "not measured" in fleet["method"]


def test_racks_until_one_second_of_rule_evaluation_come_from_the_fitted_evaluation_line():
    fleet = extrapolate(steps(per_rack_evaluation=0.2), interval=15.0)
    assert fleet["racks_until_1s_rule_evaluation_fitted"] == 4  # 0.05 + 0.2 * 4.75 = 1 s
    assert fleet["prometheus_servers_at_this_machines_rule_evaluation"] == 250
