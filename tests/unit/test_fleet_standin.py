"""bench/fleet_standin.py: a stand-in tray serves the captured tray's series, and nothing else, with its
counters moving forward at the captured rate and never backwards; another rack's tray differs only in
that rack's rack-derived label values."""

from __future__ import annotations

import asyncio
import gzip
import json
import urllib.request
from pathlib import Path

import pytest

from bench.fleet_standin import Exposition, family_types, for_rack, is_monotone, samples, series_set, serve
from exporter.sources.simulated.board import RackPlace

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fleet"
# Captured from `exporter run --simulate nvl72-tray --detail basic` (tray 3 of rack-0), 6 s apart.
FIRST = (FIXTURES / "nvl72-tray-03-basic.first.prom").read_text()
SECOND = (FIXTURES / "nvl72-tray-03-basic.second.prom").read_text()
CAPTURED_AT = 1_000_000.0


def standin(first: str = FIRST, second: str = SECOND) -> Exposition:
    return Exposition(first, second, seconds_between=6.0, captured_at=CAPTURED_AT)


def values(body: str) -> dict[str, float]:
    return {series: float(value) for series, value in samples(body).items()}


def monotone_series(body: str) -> list[str]:
    types = family_types(body)
    return [series for series in samples(body) if is_monotone(series.split("{")[0], types)]


def test_every_scrape_serves_exactly_the_captured_series_with_the_captured_help_and_type_lines():
    exposition = standin()
    for elapsed in (0.0, 15.0, 3600.0):
        body = exposition.render(CAPTURED_AT + elapsed)
        assert series_set(body) == series_set(SECOND)
        assert [line for line in body.splitlines() if line.startswith("#")] == \
               [line for line in SECOND.splitlines() if line.startswith("#")]


def test_at_the_capture_time_the_body_is_the_second_capture():
    assert values(standin().render(CAPTURED_AT)) == values(SECOND)


def test_counters_advance_at_the_rate_they_grew_between_the_captures():
    earlier, later = values(FIRST), values(SECOND)
    grown = [s for s in monotone_series(SECOND) if later[s] > earlier.get(s, later[s])]
    assert any(s.startswith("blackwell_serving_generation_tokens_total") for s in grown)
    served = values(standin().render(CAPTURED_AT + 15.0))
    for series in grown:
        assert served[series] == pytest.approx(later[series] + (later[series] - earlier[series]) / 6.0 * 15.0)


def test_counters_and_histogram_buckets_never_go_backwards_from_scrape_to_scrape():
    exposition = standin()
    monotone = monotone_series(SECOND)
    assert any("_bucket{" in s for s in monotone)
    scrapes = [values(exposition.render(CAPTURED_AT + 15.0 * n)) for n in range(8)]
    for before, after in zip(scrapes, scrapes[1:], strict=False):
        assert [s for s in monotone if after[s] < before[s]] == []
    assert sum(scrapes[-1][s] for s in monotone) > sum(scrapes[0][s] for s in monotone)


def test_a_counter_that_fell_between_the_captures_is_held_not_run_backwards():
    series = next(s for s in monotone_series(SECOND) if values(SECOND)[s] > 0)
    value = values(SECOND)[series]
    fallen = SECOND.replace(f"{series} {samples(SECOND)[series]}\n", f"{series} {value / 2!r}\n")
    exposition = standin(first=SECOND, second=fallen)
    assert values(exposition.render(CAPTURED_AT + 600.0))[series] == value / 2


def test_a_gauge_that_changed_swings_between_its_two_captured_values():
    earlier, later = values(FIRST), values(SECOND)
    monotone = set(monotone_series(SECOND))
    changed = [s for s in later if s not in monotone and s in earlier and earlier[s] != later[s]
               and "_timestamp_seconds" not in s]
    assert changed
    exposition = standin()
    for elapsed in (0.0, 3.0, 6.0, 9.0, 12.0, 40.0):
        served = values(exposition.render(CAPTURED_AT + elapsed))
        for series in changed:
            low, high = sorted((earlier[series], later[series]))
            assert low - 1e-9 <= served[series] <= high + 1e-9
    assert values(exposition.render(CAPTURED_AT + 6.0))[changed[0]] == pytest.approx(earlier[changed[0]])


def test_a_series_only_in_the_second_capture_is_served_as_captured_and_one_only_in_the_first_is_gone():
    gone, new = 'blackwell_fleet_test_gone{gpu="0"} 1\n', 'blackwell_fleet_test_new_total{gpu="0"} 5\n'
    body = standin(first=FIRST + gone, second=SECOND + new).render(CAPTURED_AT + 60.0)
    assert 'blackwell_fleet_test_new_total{gpu="0"} 5' in body.splitlines()
    assert "blackwell_fleet_test_gone" not in body


def test_another_racks_tray_differs_only_in_that_racks_fabric_ids():
    moved = for_rack(SECOND, tray=3, captured_rack="rack-0", rack="rack-9")
    place = RackPlace(3, "rack-9")
    fabric = [s for s in series_set(moved) if s.startswith("blackwell_gpu_fabric_info")]
    assert len(fabric) == 4
    assert all(f'cluster_uuid="{place.cluster_uuid}"' in s and f'clique_id="{place.clique_id}"' in s for s in fabric)
    assert RackPlace(3, "rack-0").cluster_uuid not in moved
    unchanged = {s for s in series_set(SECOND) if not s.startswith("blackwell_gpu_fabric_info")}
    assert unchanged <= series_set(moved) and len(series_set(moved)) == len(series_set(SECOND))


def test_captures_with_no_time_between_them_are_refused():
    with pytest.raises(ValueError, match="apart in time"):
        Exposition(FIRST, SECOND, seconds_between=0.0, captured_at=CAPTURED_AT)


def test_a_sample_with_a_timestamp_is_refused_with_the_line_named():
    with pytest.raises(ValueError, match="without a timestamp.*blackwell_x"):
        standin(second=SECOND + "blackwell_x 1 1700000000000\n")


def test_the_server_answers_every_tray_of_every_rack_on_its_own_port_gzip_when_asked(tmp_path: Path):
    (tmp_path / "first.prom").write_text(FIRST)
    (tmp_path / "second.prom").write_text(SECOND)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "rack": "rack-0", "seconds_between": 6.0, "captured_at": CAPTURED_AT,
        "trays": {"3": ["first.prom", "second.prom"]}}))
    ready = tmp_path / "ready.json"

    async def scrape() -> list[tuple[dict, str, str]]:
        server = asyncio.create_task(serve(tmp_path, ["rack-0", "rack-4"], ready))
        while not ready.exists():
            await asyncio.sleep(0.01)
        bodies = []
        for tray in json.loads(ready.read_text()):
            request = urllib.request.Request(f"http://127.0.0.1:{tray['port']}/metrics",
                                             headers={"Accept-Encoding": "gzip"})
            with await asyncio.to_thread(urllib.request.urlopen, request, timeout=5) as response:
                bodies.append((tray, response.headers["Content-Encoding"], gzip.decompress(response.read()).decode()))
        server.cancel()
        return bodies

    answered = asyncio.run(scrape())
    assert [(tray["rack"], tray["tray"], encoding) for tray, encoding, _ in answered] == \
           [("rack-0", 3, "gzip"), ("rack-4", 3, "gzip")]
    assert series_set(answered[0][2]) == series_set(SECOND)
    assert series_set(answered[1][2]) == series_set(for_rack(SECOND, 3, "rack-0", "rack-4"))


def test_a_last_success_timestamp_runs_with_the_clock_so_the_source_never_looks_stale():
    series = 'blackwell_exporter_source_last_success_timestamp_seconds{source="simulated"}'
    assert series in values(FIRST) and values(SECOND)[series] > values(FIRST)[series]
    served = values(standin().render(CAPTURED_AT + 600.0))
    assert served[series] == pytest.approx(values(SECOND)[series] + 600.0)


def test_every_rack_derived_label_value_is_relabelled_the_chassis_serial_number_too():
    place, other = RackPlace(3, "rack-0"), RackPlace(3, "rack-9")
    line = (f'blackwell_gpu_platform_info{{gpu="0",chassis_serial_number="{place.chassis_serial_number}",'
            f'tray_index="3"}} 1\n')
    moved = for_rack(line, tray=3, captured_rack="rack-0", rack="rack-9")
    assert moved == line.replace(place.chassis_serial_number, other.chassis_serial_number)
    assert place.chassis_serial_number != other.chassis_serial_number
