"""The real daemon, started as a subprocess on a simulated HGX B200, checked by Debian's promtool and Prometheus."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import REPO, free_port, http_get, running_exporter, wait_until

pytestmark = pytest.mark.integration


def scrape(base: str) -> dict[str, list]:
    status, body, _ = http_get(base + "/metrics")
    assert status == 200
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


@pytest.fixture(scope="module")
def exporter():
    with running_exporter("--simulate", "hgx-b200", env={"BLACKWELL_EXPORTER_SOURCES__SIMULATED__INTERVAL": "1",
                                                         "BLACKWELL_EXPORTER_SOURCES__SIMULATED__TIMEOUT": "1"}) as (base, _):
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, what="ready")
        yield base


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus package provides promtool")
def test_promtool_finds_nothing_to_complain_about(exporter):
    body = http_get(exporter + "/metrics")[1]
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert result.returncode == 0 and result.stdout == b"" and result.stderr == b"", result.stdout + result.stderr


def test_no_series_is_emitted_twice(exporter):
    seen = set()
    for samples in scrape(exporter).values():
        for sample in samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, key
            seen.add(key)


def test_eight_gpus_with_eighteen_links_each(exporter):
    metrics = scrape(exporter)
    assert {s.labels["gpu"] for s in metrics["blackwell_gpu_up"]} == {str(i) for i in range(8)}
    assert len({(s.labels["gpu"], s.labels["link"]) for s in metrics["blackwell_nvlink_link_up"]}) == 144


def test_counters_increase_between_scrapes(exporter):
    first = scrape(exporter)
    time.sleep(2.2)
    second = scrape(exporter)
    for name in ("blackwell_gpu_energy_joules_total", "blackwell_serving_generation_tokens_total",
                 "blackwell_serving_ttft_seconds_count"):
        assert sum(s.value for s in second[name]) > sum(s.value for s in first[name]), name


def test_self_metrics_describe_the_simulation(exporter):
    metrics = scrape(exporter)
    [build] = metrics["blackwell_exporter_build_info"]
    assert build.labels["mode"] == "simulated"
    assert metrics["blackwell_exporter_source_up"][0].labels == {"source": "simulated"}
    assert metrics["blackwell_exporter_source_up"][0].value == 1


def test_openmetrics_and_gzip_are_negotiated(exporter):
    status, body, headers = http_get(exporter + "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0",
                                                             "Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).endswith(b"# EOF\n")


def test_scenario_switch_at_run_time(exporter):
    request = urllib.request.Request(exporter + "/-/scenario", method="POST", data=b'{"scenario": "gpu-lost"}', headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    try:
        wait_until(lambda: any(s.value == 0 for s in scrape(exporter)["blackwell_gpu_up"]), what="gpu 2 lost")
        metrics = scrape(exporter)
        assert len(metrics["blackwell_gpu_power_watts"]) == 7
    finally:
        urllib.request.urlopen(urllib.request.Request(exporter + "/-/scenario", method="POST", data=b'{"scenario": "healthy"}', headers={"Content-Type": "application/json"}))


def test_readyz_is_503_until_every_source_has_polled_then_200(tmp_path):
    """A trtllm-serve upstream that is not up yet keeps the exporter unready, with the reason;
    once it answers, the next poll makes the exporter ready."""
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        "sources:\n"
        "  nvml: {enabled: false}\n"
        "  trtllm_serve:\n"
        "    enabled: true\n"
        "    interval: 1\n"
        "    timeout: 1\n"
        f"    endpoints: [{{url: 'http://127.0.0.1:{port}/prometheus/metrics', model: m}}]\n"
    )
    body = (REPO / "tests/fixtures/trtllm_serve/prometheus_prefixed.txt").read_bytes()
    routes = {"/prometheus/metrics": body, "/health": b"", "/version": b'{"version": "1.0"}',
              "/v1/models": b'{"data": [{"id": "m"}]}'}

    class Upstream(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            payload = routes.get(self.path.split("?")[0])
            self.send_response(200 if payload is not None else 404)
            self.send_header("Content-Length", str(len(payload or b"")))
            self.end_headers()
            self.wfile.write(payload or b"")

        def log_message(self, *args: object) -> None:
            pass

    with running_exporter("--config", str(config)) as (base, _):
        status, text, _ = http_get(base + "/readyz")
        assert status == 503
        assert b"trtllm_serve: no completed poll yet" in text
        upstream = ThreadingHTTPServer(("127.0.0.1", port), Upstream)
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        try:
            wait_until(lambda: http_get(base + "/readyz")[0] == 200, timeout=40, what="ready after upstream is up")
        finally:
            upstream.shutdown()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package provides it")
def test_a_real_prometheus_scrapes_the_exporter(exporter):
    port = free_port()
    target = urllib.parse.urlsplit(exporter).netloc
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "blackwell", "static_configs": [{"targets": [target]}]}],
        }))
        proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def query(expr: str) -> list:
                url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
                try:
                    status, body, _ = http_get(url)
                except OSError:
                    return []
                return json.loads(body)["data"]["result"] if status == 200 else []

            up = wait_until(lambda: query('up{job="blackwell"} == 1'), timeout=30, what="up == 1")
            assert up[0]["metric"]["instance"] == target
            power = wait_until(lambda: query("blackwell_gpu_power_watts"), timeout=10, what="a GPU metric")
            assert len(power) == 8
        finally:
            proc.terminate()
            proc.wait(10)


def test_preflight_in_simulation_judges_the_simulated_box():
    env = {"BLACKWELL_EXPORTER_SOURCES__PREFLIGHT__ENABLED": "true"}
    with running_exporter("--simulate", "hgx-b200", env=env) as (base, _):
        checks = wait_until(lambda: {s.labels["check"]: s.value
                                     for s in scrape(base).get("blackwell_preflight_check", [])},
                            what="preflight results")
    # Blackwell compute capability and NV18 to the switch: what the hgx-b200 profile models, not this
    # machine's (absent) NVML.
    assert checks["compute_capability"] == 1 and checks["nvlink_topology"] == 1 and checks["gpus_visible"] == 1
