"""Every serving rule and serving panel finds data for vLLM, SGLang, NIM and Dynamo in a real Prometheus.

One exporter per runtime reads a local server that plays the runtime with its fixture
(tests/fixtures/runtimes: recorded for vLLM and SGLang, written from source for Dynamo and NIM),
its counters and histograms growing on every read as a busy server's would. Debian's Prometheus
scrapes the exporters every second with the committed recording and alerting rules. A query that
stays empty for a runtime must be in :data:`GAPS`, with what the runtime lacks; the test checks
that the lack is real.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
import yaml

from exporter import promtext
from exporter.stack import DRILL_TIME_SCALE, Stack, StackError, find_binary, write_rules
from tests.unit.upstream_server import Route, Upstream

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "runtimes"
SETTLE_TIMEOUT_SECONDS = 90.0
# runtime -> [(endpoint settings, fixture)]: Dynamo is a frontend plus a prefill and a decode worker
# (the prefill worker's role comes from its component name, the decode worker's "backend" needs saying).
RUNTIMES = {
    "vllm": [({"runtime": "vllm"}, "vllm/metrics_0.11.0.txt")],
    "sglang": [({"runtime": "sglang"}, "sglang/metrics.txt")],
    "nim": [({"runtime": "nim"}, "nim/metrics.txt")],
    "dynamo": [({"runtime": "dynamo-frontend"}, "dynamo/frontend.txt"),
               ({"runtime": "dynamo-worker"}, "dynamo/worker_prefill.txt"),
               ({"runtime": "dynamo-worker", "role": "decode"}, "dynamo/worker_decode.txt")],
}
# (runtime, what a query reads) -> (a selector that must be empty for that runtime, why). A query
# that is empty for a runtime is explained when it, or a recording rule it reads, contains the text.
_NOT_CANCELED = 'blackwell_serving_request_failure_total{reason!="CANCELED"}'
_SLO_BOUND = 'blackwell_serving_ttft_seconds_bucket{le="0.5"}'
GAPS = {
    ("vllm", "kv_cache_hit_ratio"): ("blackwell_serving_kv_cache_hit_ratio", "no hit-rate gauge: "
                                     "rate(prefix_cache_hit_tokens) / rate(prefix_cache_queried_tokens) instead"),
    ("vllm", "request_failure_total"): (_NOT_CANCELED, "counts no failed requests, only finish reasons (abort is "
                                                       "CANCELED, which the availability SLO leaves out)"),
    ("sglang", "kv_cache_blocks"): ("blackwell_serving_kv_cache_blocks", "token_usage only, no block counts"),
    ("sglang", "request_failure_total"): (_NOT_CANCELED, "counts aborts only (CANCELED)"),
    ("sglang", "prompt_length_tokens"): ("blackwell_serving_prompt_length_tokens_count",
                                         "only with --collect-tokens-histogram"),
    ("sglang", "ttft_seconds:slo_error_ratio"): (_SLO_BOUND, "SGLang's TTFT buckets have 0.4 and 0.6, not the "
                                                             "0.5 s objective (--bucket-time-to-first-token)"),
    ("nim", "kv_cache_blocks"): ("blackwell_serving_kv_cache_blocks", "gpu_cache_usage_perc only"),
    ("nim", "kv_cache_hit_ratio"): ("blackwell_serving_kv_cache_hit_ratio", "no prefix-cache metric"),
    ("nim", "queue_time_seconds"): ("blackwell_serving_queue_time_seconds_count", "no queue-time histogram"),
    ("nim", "prompt_length_tokens"): ("blackwell_serving_prompt_length_tokens_count",
                                      "request_prompt_tokens is not in the fixture"),
    ("nim", "request_failure_total"): (_NOT_CANCELED, "finish reasons only"),
    ("dynamo", "queue_time_seconds"): ("blackwell_serving_queue_time_seconds_count",
                                       "the frontend has no queue-time histogram"),
    ("dynamo", "ttft_seconds:slo_error_ratio"): (_SLO_BOUND, "Dynamo's log-spaced TTFT buckets have 0.47, not "
                                                             "the 0.5 s objective (DYN_METRICS_TTFT_*)"),
}

pytestmark = pytest.mark.integration


def growing(body: bytes, reads: int) -> bytes:
    """``body`` with every counter and histogram sample times ``reads``: a server that keeps serving."""
    metrics = promtext.parse(body)
    out = []
    for line in body.decode().splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if line and not line.startswith("#") and not name.endswith("_created") \
                and metrics.type_of(name) in ("counter", "histogram"):
            head, value = line.rsplit(" ", 1)
            line = f"{head} {float(value) * reads}"
        out.append(line)
    return ("\n".join(out) + "\n").encode()


class Runtime:
    """Local servers playing one runtime's endpoints, their bodies growing every half second."""

    def __init__(self, endpoints: list[tuple[dict, str]]) -> None:
        self.servers = [(settings, Upstream(), (FIXTURES / fixture).read_bytes()) for settings, fixture in endpoints]
        self.stopping = threading.Event()
        for _, server, body in self.servers:
            server.routes.update({"/metrics": Route(body), "/health": Route(b""), "/v1/health/ready": Route(b"")})
        self.thread = threading.Thread(target=self._grow, daemon=True)
        self.thread.start()

    def _grow(self) -> None:
        reads = 1
        while not self.stopping.wait(0.5):
            reads += 1
            for _, server, body in self.servers:
                server.routes["/metrics"] = Route(growing(body, reads))

    def exporter_config(self) -> dict:
        endpoints = [{"url": server.url("/metrics"), **settings} for settings, server, _ in self.servers]
        return {"sources": {"nvml": {"enabled": False},
                            "runtimes": {"enabled": True, "interval": 1, "timeout": 1, "endpoints": endpoints}}}

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        for _, server, _ in self.servers:
            server.close()


def serving_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every serving recording rule, alert operand and dashboard panel target."""
    queries = []
    for path in ("recording-rules.yaml", "alerts.yaml"):
        for group in yaml.safe_load((REPO / "alerts" / path).read_text())["groups"]:
            for rule in group["rules"]:
                if ("blackwell_serving" in rule["expr"] or "blackwell_serving" in rule.get("record", "")) \
                        and _in_scope(rule["expr"]):
                    queries.append((rule.get("record") or rule["alert"], rule.get("record") or _operand(rule["expr"])))
    for path in sorted((REPO / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if "blackwell_serving" in target["expr"] and _in_scope(target["expr"]):
                    expr = (target["expr"].replace("$__rate_interval", "10s").replace("$__range", "1h")
                            .replace("$instance", ".*").replace("$gpu", ".*").replace("$job", ".*").replace("$cluster", ".*"))
                    queries.append((f"{board['uid']} / {panel['title']}", expr))
    return queries


def _in_scope(expr: str) -> bool:
    """Serving queries that need GPU metrics (cost per GPU-hour) or a day of history are out of scope here:
    the exporters read only a serving runtime, and Prometheus started a minute ago."""
    return not re.search(r"blackwell_gpu_|offset 1d|vs_1d|cost_per|headroom", expr)


def _operand(expr: str) -> str:
    """An alert's expression without its threshold: the series the alert compares (a firing test is not
    the point; that the compared series exist for this runtime is)."""
    first = re.split(r"\s(?:>|<|>=|<=|==|!=)\s|\n(?:and|or|unless)\n", expr, maxsplit=1)[0]
    return first.strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    try:
        find_binary("prometheus")
        find_binary("alertmanager", "prometheus-alertmanager")
    except StackError as exc:
        pytest.skip(str(exc))
    runtimes = {name: Runtime(endpoints) for name, endpoints in RUNTIMES.items()}
    rules = [REPO / "alerts" / "recording-rules.yaml", REPO / "alerts" / "alerts.yaml"]
    try:
        with Stack.start(tmp_path_factory.mktemp("runtimes"), [], rules,
                         configured={name: r.exporter_config() for name, r in runtimes.items()}) as running:
            yield running
    finally:
        for runtime in runtimes.values():
            runtime.stop()


def _missing(stack: Stack, queries: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(runtime, where, expr) for each query with no series from that runtime's exporter.

    A query that aggregates the instance away (``sum(...)``, a job-level rule) is asked once per
    runtime with the dashboard's instance matcher narrowed to it; one with no such matcher only
    has to return something (it sums every runtime).
    """
    out = []
    for where, expr in queries:
        result = stack.query(expr)
        if all("instance" in r["metric"] for r in result) and result:
            seen = {r["metric"]["instance"] for r in result}
            out += [(name, where, expr) for name in RUNTIMES if stack.instance(name) not in seen]
        elif 'instance=~".*"' in expr:
            out += [(name, where, expr) for name in RUNTIMES
                    if not stack.query(expr.replace('instance=~".*"', f'instance="{stack.instance(name)}"'))]
        elif not result:
            out += [(name, where, expr) for name in RUNTIMES]
    return out


def _explained(runtime: str, expr: str) -> bool:
    text = expr + "\n" + "\n".join(_recordings_behind(expr))
    return any(name == runtime and needle in text for name, needle in GAPS)


def _recordings_behind(expr: str) -> list[str]:
    """The expressions of the recording rules ``expr`` reads (one level)."""
    names = set(re.findall(r"[a-z_]+:blackwell_serving_[a-z_]+:[a-z0-9_]+", expr))
    return [rule["expr"] for group in yaml.safe_load((REPO / "alerts" / "recording-rules.yaml").read_text())["groups"]
            for rule in group["rules"] if rule["record"] in names]


def test_every_serving_rule_and_panel_finds_data_for_every_runtime(stack):
    queries = serving_queries()
    assert len(queries) > 20
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    missing = _missing(stack, queries)
    while time.monotonic() < deadline and not all(_explained(r, e) for r, _, e in missing):
        time.sleep(2.0)
        missing = _missing(stack, queries)
    unexplained = [f"{runtime}: {where}: {expr}" for runtime, where, expr in missing if not _explained(runtime, expr)]
    assert not unexplained, "\n".join(unexplained)


def test_every_gap_is_real(stack):
    """What GAPS says a runtime lacks, it lacks (else the entry would hide a bug)."""
    for (runtime, needle), (selector, why) in GAPS.items():
        name, _, matchers = selector.partition("{")
        scoped = f'{name}{{instance="{stack.instance(runtime)}"{"," + matchers.rstrip("}") if matchers else ""}}}'
        assert not stack.query(scoped), (runtime, needle, why)


def test_runtime_info_says_what_is_behind_each_endpoint(stack):
    info = {(r["metric"]["runtime"], r["metric"]["flavour"]) for r in stack.query("blackwell_serving_runtime_info")}
    assert info == {("vllm", "v1-engine"), ("sglang", "unified"), ("nim", "llm"), ("dynamo", "frontend"),
                    ("dynamo", "vllm-prefill"), ("dynamo", "vllm-decode")}


# -- a drill on vLLM: the KV cache fills, the alert fires and clears ------------------------------

def _kv_usage(body: bytes, usage: float) -> bytes:
    return b"\n".join(line.rsplit(b" ", 1)[0] + f" {usage}".encode() if line.startswith(b"vllm:kv_cache_usage_perc{")
                      else line for line in body.split(b"\n"))


@pytest.fixture(scope="module")
def vllm_drill(tmp_path_factory):
    """vLLM behind the exporter, with the mixin's rules time-scaled as the drills run them."""
    try:
        find_binary("prometheus")
        find_binary("alertmanager", "prometheus-alertmanager")
    except StackError as exc:
        pytest.skip(str(exc))
    runtime = Runtime(RUNTIMES["vllm"])
    directory = tmp_path_factory.mktemp("vllm-drill")
    rules = write_rules(directory / "rules.yaml", DRILL_TIME_SCALE)
    try:
        with Stack.start(directory, [], [rules], configured={"vllm": runtime.exporter_config()}) as running:
            yield running, runtime
    finally:
        runtime.stop()


def _kv_alerts(stack: Stack) -> list[dict]:
    return [a for a in stack.active_alerts() if a["labels"].get("alertname") == "BlackwellKVCacheNearFull"]


def _wait(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1.0)
    return False


def test_drill_vllm_kv_cache_fills_then_drains(vllm_drill):
    """vLLM reports only kv_cache_usage_perc and its block count: the KV alert must still fire on it."""
    stack, runtime = vllm_drill
    assert _wait(lambda: stack.query("instance_model:blackwell_serving_kv_cache_blocks:used_ratio"), 60)
    assert not _kv_alerts(stack), "0.37 of the KV cache in use is healthy"
    runtime.servers = [(settings, server, _kv_usage(body, 0.97)) for settings, server, body in runtime.servers]
    assert _wait(lambda: _kv_alerts(stack), 90), "BlackwellKVCacheNearFull did not reach Alertmanager"
    alert = _kv_alerts(stack)[0]
    assert alert["labels"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert alert["labels"]["instance"] == stack.instance("vllm")
    runtime.servers = [(settings, server, _kv_usage(body, 0.4)) for settings, server, body in runtime.servers]
    assert _wait(lambda: not _kv_alerts(stack), 90), "the alert did not clear once the cache drained"
