"""Every serving rule and serving panel finds data for every runtime the exporter reads, in a real Prometheus.

One exporter per runtime reads a local server that plays the runtime with its fixture: vLLM, SGLang,
NIM and Dynamo through the ``runtimes`` source (tests/fixtures/runtimes: recorded for vLLM and
SGLang, written from source for Dynamo and NIM), Triton (tests/fixtures/triton, with its HTTP API)
and trtllm-serve (tests/fixtures/trtllm_serve, recorded through its own prometheus_client calls)
through theirs; counters and histograms grow on every read as a busy server's would. Debian's
Prometheus scrapes the exporters every second with the committed recording and alerting rules. A
query that stays empty for a runtime must be in :data:`GAPS`, with what the runtime lacks; the test
checks that the lack is real. The TTFT SLO is judged per runtime at a bound it has (SGLang 0.4 s,
Dynamo 0.47 s, the others 0.5 s), so it finds data on all of them, and on the simulation standing in
for each of them (``sources.simulated.runtime``), whose histograms have that runtime's own buckets.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from exporter import promtext
from exporter.mixin.slo import TTFT_SLO_BUCKET, ttft_error_ratio
from exporter.stack import DRILL_TIME_SCALE, Stack, StackError, find_binary, write_rules
from tests.unit.upstream_server import Route, Upstream

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SETTLE_TIMEOUT_SECONDS = 90.0
_JSON = "application/json"


@dataclass(frozen=True)
class Served:
    """One upstream endpoint: the exporter source reading it, its settings, the exposition it grows and
    where, and the fixed routes beside it (health, version, Triton's API) keyed by path."""

    source: str
    settings: dict
    fixture: str
    metrics_path: str = "/metrics"
    routes: dict[str, Route] = field(default_factory=dict)


_HEALTH = {"/health": Route(b""), "/v1/health/ready": Route(b"")}


def _triton_api() -> dict[str, Route]:
    """Triton's HTTP API for the C++-backend fixture's two models, shaped as the recorded
    python_backend_stats.json is (tests/fixtures/triton), with counts matching the exposition's."""
    stats = [{"name": name, "version": "1", "inference_count": 120, "execution_count": 120,
              "inference_stats": {"success": {"count": 120, "ns": success_ns}, "fail": {"count": 3, "ns": 1_000_000},
                                  "queue": {"count": 120, "ns": queue_ns}}}
             for name, success_ns, queue_ns in (("ensemble", 93_500_123_000, 1_200_000),
                                                ("tensorrt_llm", 91_000_456_000, 2_500_000_000))]
    routes = {"/v2/health/live": Route(b""), "/v2/health/ready": Route(b""),
              "/v2": Route(json.dumps({"name": "triton", "version": "2.51.0"}).encode(), content_type=_JSON),
              "/v2/models/stats": Route(json.dumps({"model_stats": stats}).encode(), content_type=_JSON)}
    for name, config in (("ensemble", {"platform": "ensemble"}), ("tensorrt_llm", {"backend": "tensorrtllm"})):
        routes[f"/v2/models/{name}/versions/1/ready"] = Route(b"")
        routes[f"/v2/models/{name}/versions/1/config"] = Route(json.dumps({"name": name, **config}).encode(),
                                                               content_type=_JSON)
    return routes


# runtime -> its endpoints. Dynamo is a frontend plus a prefill and a decode worker (the prefill
# worker's role comes from its component name, the decode worker's "backend" needs saying).
RUNTIMES: dict[str, list[Served]] = {
    "vllm": [Served("runtimes", {"runtime": "vllm"}, "runtimes/vllm/metrics_0.11.0.txt", routes=_HEALTH)],
    "sglang": [Served("runtimes", {"runtime": "sglang"}, "runtimes/sglang/metrics.txt", routes=_HEALTH)],
    "nim": [Served("runtimes", {"runtime": "nim"}, "runtimes/nim/metrics.txt", routes=_HEALTH)],
    "dynamo": [Served("runtimes", {"runtime": "dynamo-frontend"}, "runtimes/dynamo/frontend.txt", routes=_HEALTH),
               Served("runtimes", {"runtime": "dynamo-worker"}, "runtimes/dynamo/worker_prefill.txt", routes=_HEALTH),
               Served("runtimes", {"runtime": "dynamo-worker", "role": "decode"}, "runtimes/dynamo/worker_decode.txt",
                      routes=_HEALTH)],
    "triton": [Served("triton", {}, "triton/cpp_backend_metrics.txt", routes=_triton_api())],
    "trtllm-serve": [Served("trtllm_serve", {}, "trtllm_serve/prometheus_prefixed.txt", "/prometheus/metrics",
                            {"/health": Route(b""), "/version": Route(b'{"version": "1.0.0"}', content_type=_JSON)})],
}
# The simulation standing in for each runtime it can (a demo of that runtime), scraped beside the real ones.
SIMULATED = {f"simulated-{runtime}": {"sources": {"nvml": {"enabled": False}, "simulated": {
    "enabled": True, "profile": "h200x2", "runtime": runtime, "interval": 1, "timeout": 1}}}
    for runtime in ("vllm", "sglang", "dynamo", "nim")}
# (runtime, what a query reads) -> (a selector that must be empty for that runtime, why). A query
# that is empty for a runtime is explained when it, or a recording rule it reads, contains the text.
GAPS = {
    ("vllm", "kv_cache_hit_ratio"): ("blackwell_serving_kv_cache_hit_ratio", "no hit-rate gauge: "
                                     "rate(prefix_cache_hit_tokens) / rate(prefix_cache_queried_tokens) instead"),
    ("sglang", "kv_cache_blocks"): ("blackwell_serving_kv_cache_blocks", "token_usage only, no block counts"),
    ("sglang", "prompt_length_tokens"): ("blackwell_serving_prompt_length_tokens_count",
                                         "only with --collect-tokens-histogram"),
    ("nim", "kv_cache_blocks"): ("blackwell_serving_kv_cache_blocks", "gpu_cache_usage_perc only"),
    ("nim", "kv_cache_hit_ratio"): ("blackwell_serving_kv_cache_hit_ratio", "no prefix-cache metric"),
    ("nim", "queue_time_seconds"): ("blackwell_serving_queue_time_seconds_count", "no queue-time histogram"),
    ("nim", "prompt_length_tokens"): ("blackwell_serving_prompt_length_tokens_count",
                                      "request_prompt_tokens is not in the fixture"),
    ("dynamo", "queue_time_seconds"): ("blackwell_serving_queue_time_seconds_count",
                                       "the frontend has no queue-time histogram"),
    # Failures by reason: these two count no server failures at all, and their fixtures saw no abort.
    ("sglang", "request_failure_total"): ("blackwell_serving_request_failure_total",
                                          "num_aborted_requests_total only, no sample until a request aborts"),
    ("nim", "request_failure_total"): ("blackwell_serving_request_failure_total", "finish reasons only, no abort"),
    ("triton", "inter_token_latency_seconds"): ("blackwell_serving_inter_token_latency_seconds_count",
                                                "no inter-token metric (the first-response histogram only)"),
    ("triton", "kv_cache_hit_ratio"): ("blackwell_serving_kv_cache_hit_ratio",
                                       "reused KV blocks (a gauge), no hit ratio"),
    ("trtllm-serve", "prompt_length_tokens"): ("blackwell_serving_prompt_length_tokens_count",
                                               "prompt token counter only, no prompt-length histogram"),
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
    """Local servers playing one runtime's endpoints, their expositions growing every half second."""

    def __init__(self, endpoints: list[Served]) -> None:
        self.servers = [(served, Upstream(), (FIXTURES / served.fixture).read_bytes()) for served in endpoints]
        self.stopping = threading.Event()
        for served, server, body in self.servers:
            server.routes.update({**served.routes, served.metrics_path: Route(body)})
        self.thread = threading.Thread(target=self._grow, daemon=True)
        self.thread.start()

    def _grow(self) -> None:
        reads = 1
        while not self.stopping.wait(0.5):
            reads += 1
            for served, server, body in self.servers:
                server.routes[served.metrics_path] = Route(growing(body, reads))

    def exporter_config(self) -> dict:
        sources: dict[str, dict] = {"nvml": {"enabled": False}}
        for served, server, _ in self.servers:
            endpoint = {"url": server.url(served.metrics_path), **served.settings}
            if served.source == "triton":
                endpoint["api_url"] = server.url("")
            source = sources.setdefault(served.source, {"enabled": True, "interval": 1, "timeout": 1, "endpoints": []})
            source["endpoints"].append(endpoint)
        return {"sources": sources}

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
    first = re.split(r"\s(?:>|<|>=|<=|==|!=)\s|\n(?:and|or|unless)(?:\n| on )", expr, maxsplit=1)[0]
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
                         configured={**{name: r.exporter_config() for name, r in runtimes.items()}, **SIMULATED}
                         ) as running:
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


def test_every_runtime_has_a_ttft_bucket_at_the_bound_it_is_judged_at(stack):
    """BlackwellTTFTSLOBucketMissing stays silent on every runtime's default buckets: each one's TTFT
    histogram has a bucket at its bound (SGLang 0.4 s, Dynamo 0.47 s, the others 0.5 s)."""
    alert = next(rule for group in yaml.safe_load((REPO / "alerts" / "alerts.yaml").read_text())["groups"]
                 for rule in group["rules"] if rule.get("alert") == "BlackwellTTFTSLOBucketMissing")
    counted = {r["metric"]["instance"] for r in stack.query("blackwell_serving_ttft_seconds_count")}
    assert counted == {stack.instance(name) for name in [*RUNTIMES, *SIMULATED]}, "every runtime reports TTFT"
    assert stack.query(alert["expr"]) == []


def test_the_simulation_standing_in_for_each_runtime_feeds_the_ttft_slo(stack):
    """Each simulated runtime's TTFT histogram has a bucket at its runtime's bound, so the SLO's bucket
    and error-ratio recording rules find data for it (they stayed empty while the simulation kept
    Triton's buckets for SGLang and Dynamo)."""
    def empty() -> list[str]:
        return [f"{name}: {query}" for name in SIMULATED
                for query in (f'{TTFT_SLO_BUCKET}{{instance="{stack.instance(name)}"}}',
                              f'{ttft_error_ratio("5m")}{{instance="{stack.instance(name)}"}}')
                if not stack.query(query)]

    assert _wait(lambda: not empty(), SETTLE_TIMEOUT_SECONDS), "\n".join(empty())


def test_every_gap_is_real(stack):
    """What GAPS says a runtime lacks, it lacks (else the entry would hide a bug)."""
    for (runtime, needle), (selector, why) in GAPS.items():
        name, _, matchers = selector.partition("{")
        scoped = f'{name}{{instance="{stack.instance(runtime)}"{"," + matchers.rstrip("}") if matchers else ""}}}'
        assert not stack.query(scoped), (runtime, needle, why)


def test_runtime_info_says_what_is_behind_each_endpoint(stack):
    info = {(r["metric"]["runtime"], r["metric"]["flavour"]) for r in stack.query("blackwell_serving_runtime_info")}
    assert info == {("vllm", "v1-engine"), ("sglang", "unified"), ("nim", "llm"), ("dynamo", "frontend"),
                    ("dynamo", "vllm-prefill"), ("dynamo", "vllm-decode"), ("triton", "trtllm-cpp-backend"),
                    ("trtllm-serve", "pytorch")}


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
    runtime.servers = [(served, server, _kv_usage(body, 0.97)) for served, server, body in runtime.servers]
    assert _wait(lambda: _kv_alerts(stack), 90), "BlackwellKVCacheNearFull did not reach Alertmanager"
    alert = _kv_alerts(stack)[0]
    assert alert["labels"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert alert["labels"]["instance"] == stack.instance("vllm")
    runtime.servers = [(served, server, _kv_usage(body, 0.4)) for served, server, body in runtime.servers]
    assert _wait(lambda: not _kv_alerts(stack), 90), "the alert did not clear once the cache drained"
