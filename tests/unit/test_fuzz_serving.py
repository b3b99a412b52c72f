"""Fuzzing the exposition path end to end: upstream Prometheus text (Triton) and the statistics
JSON in, our own /metrics out.

Properties: bad input gives a PromParseError/PollError, never another exception; valid input is
never silently dropped; and whatever the upstream sends, what we serve is itself a valid
exposition (a duplicate series there would make Prometheus reject the whole scrape).
Each test prints how many examples hypothesis ran (``pytest -s`` shows them)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import promtext
from exporter.snapshot import Family, Snapshot, SnapshotStore
from exporter.sources.base import PollError
from exporter.sources.triton import TritonConfig, TritonSource, parse_stats, triton_families
from tests.support import counted
from tests.unit.upstream_server import Route, Upstream

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "triton"
TRITON_BODIES = [(FIXTURES / name).read_text() for name in ("cpp_backend_metrics.txt", "python_backend_metrics.txt")]
URL = "http://127.0.0.1:8002/metrics"


def served(snapshot: Snapshot) -> promtext.Exposition:
    """Render ``snapshot`` as /metrics would and read it back strictly."""
    store = SnapshotStore()
    store.publish(snapshot.source, snapshot, lambda: Snapshot("exporter", {}))
    return promtext.parse(store.current().text)


# -- our renderer against the strict parser -------------------------------------------------------

label_values = st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=30)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**15, 10**15))


def test_every_label_value_and_number_we_render_reads_back_unchanged() -> None:
    @SETTINGS
    @given(st.dictionaries(st.tuples(st.sampled_from(["0", "1", "7"]), label_values), numbers, min_size=1, max_size=8))
    def run(tick: Callable[[], None], series: dict[tuple[str, str], float]) -> None:
        tick()
        family = Family("blackwell_gpu_xid_errors_total")  # a counter with several labels; the first is gpu
        names = family.metric.labels
        rows = {}
        for (gpu, text), value in series.items():
            labels = {name: (gpu if i == 0 else text) for i, name in enumerate(names)}
            rows[tuple(labels[n] for n in names)] = value
        for labels, value in rows.items():
            family.add(labels, value)
        back = {tuple(s.labels[n] for n in names): s.value for s in served(Snapshot.of("simulated", [family])).samples
                if s.name == family.metric.name}
        assert back.keys() == rows.keys()
        for key, value in rows.items():
            assert back[key] == value or (math.isnan(back[key]) and math.isnan(value)), (key, value, back[key])

    counted("renderer -> strict parser: label values and numbers", lambda tick: run(tick))


def test_a_label_value_with_a_carriage_return_survives_rendering() -> None:
    family = Family("blackwell_gpu_xid_errors_total")
    family.add(tuple("a\rb" if i else "0" for i in range(len(family.metric.labels))), 1)
    (sample,) = served(Snapshot.of("simulated", [family])).samples
    assert "a\rb" in sample.labels.values()


# -- Triton's exposition through promtext and the triton mapping ----------------------------------

def _mutations(body: str) -> st.SearchStrategy[str]:
    lines = body.splitlines()
    edits = st.one_of(
        st.tuples(st.just("drop"), st.integers(0, len(lines) - 1), st.just("")),
        st.tuples(st.just("dup"), st.integers(0, len(lines) - 1), st.just("")),
        st.tuples(st.just("value"), st.integers(0, len(lines) - 1),
                  st.sampled_from(["-1", "NaN", "+Inf", "-Inf", "1e308", "0x10", "", "1 2", "one", "1e-320"])),
        st.tuples(st.just("insert"), st.integers(0, len(lines)), st.text(max_size=40)),
        st.tuples(st.just("label"), st.integers(0, len(lines) - 1),
                  st.sampled_from(['model="m\\"x"', 'version="2"', 'le="abc"', 'model=""', 'x="y"', 'model="a",model="b"'])),
    )

    def apply(edit_list: list[tuple[str, int, str]], cut: int | None) -> str:
        out = list(lines)
        for kind, index, text in edit_list:
            index = min(index, len(out) - 1) if kind != "insert" else min(index, len(out))
            if not out:
                break
            if kind == "drop":
                del out[index]
            elif kind == "dup":
                out.insert(index, out[index])
            elif kind == "value" and not out[index].startswith("#"):
                out[index] = out[index].rpartition(" ")[0] + " " + text
            elif kind == "insert":
                out.insert(index, text)
            elif kind == "label" and "{" in out[index]:
                head, _, tail = out[index].partition("{")
                out[index] = f"{head}{{{text},{tail}"
        result = "\n".join(out) + "\n"
        return result[:cut] if cut is not None else result

    return st.builds(apply, st.lists(edits, min_size=1, max_size=4), st.one_of(st.none(), st.integers(0, len(body))))


def _through_triton(text: str) -> None:
    """What one poll does with a metrics body: parse, map, snapshot, serve. Only clear errors."""
    try:
        metrics = promtext.parse(text)
    except promtext.PromParseError:
        return
    try:
        families = triton_families(URL, metrics, None)
    except PollError:
        return
    served(Snapshot.of("triton", families))


def test_mutated_triton_bodies_give_a_parse_error_or_a_valid_exposition() -> None:
    @SETTINGS
    @given(st.sampled_from(range(len(TRITON_BODIES))).flatmap(lambda i: _mutations(TRITON_BODIES[i])))
    def run(tick: Callable[[], None], text: str) -> None:
        tick()
        _through_triton(text)

    counted("triton: mutated recorded bodies", lambda tick: run(tick))


_TRITON_SERIES = [
    ("nv_inference_request_success", "counter", ("model", "version")),
    ("nv_inference_count", "counter", ("model", "version")),
    ("nv_inference_request_failure", "counter", ("model", "version", "reason")),
    ("nv_inference_request_duration_us", "counter", ("model", "version")),
    ("nv_inference_pending_request_count", "gauge", ("model", "version")),
]
_TRTLLM_SERIES = [
    ("nv_trt_llm_kv_cache_block_metrics", "gauge", ("model", "version", "kv_cache_block_type")),
    ("nv_trt_llm_request_metrics", "gauge", ("model", "version", "request_type")),
]
_POOLS = {"model": ["ensemble", "tensorrt_llm", 'we"ird', "ünï"], "version": ["1", "2"],
          "reason": ["REJECTED", "BACKEND"], "kv_cache_block_type": ["max", "used", "free", "tokens_per"],
          "request_type": ["active", "max", "waiting"]}


def _exposition(series: list[tuple[str, str, tuple[str, ...]]], pools: dict[str, list[str]] = _POOLS
                ) -> st.SearchStrategy[tuple[str, dict]]:
    """A valid Triton-like body and its samples {(name, labels): value}."""
    one = st.sampled_from(series).flatmap(lambda spec: st.tuples(
        st.just(spec), st.tuples(*(st.sampled_from(pools[label]) for label in spec[2])),
        st.floats(0, 1e12, allow_nan=False)))

    def render(rows: list) -> tuple[str, dict]:
        samples: dict = {}
        for (name, kind, labels), values, value in rows:
            samples[(name, tuple(zip(labels, values, strict=True)))] = (kind, value)
        lines = []
        for name, kind, _ in series:
            mine = [(labels, v) for (n, labels), (_, v) in samples.items() if n == name]
            if not mine:
                continue
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in mine:
                text = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                                for k, v in labels)
                lines.append(f"{name}{{{text}}} {value!r}")
        return "\n".join(lines) + "\n", {k: v for k, (_, v) in samples.items()}

    return st.lists(one, min_size=1, max_size=12).map(render)


def test_valid_triton_counters_pass_through_unchanged() -> None:
    @SETTINGS
    @given(_exposition(_TRITON_SERIES))
    def run(tick: Callable[[], None], generated: tuple[str, dict]) -> None:
        tick()
        text, samples = generated
        exposition = served(Snapshot.of("triton", triton_families(URL, promtext.parse(text), None)))
        out = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in exposition.samples}
        for (name, labels), value in samples.items():
            if name == "nv_inference_request_success":
                assert out[("blackwell_serving_request_success_total",
                            tuple(sorted((*labels, ("endpoint", URL)))))] == value

    counted("triton: valid counters pass through", lambda tick: run(tick))


def test_two_versions_of_a_trtllm_model_do_not_produce_duplicate_series() -> None:
    text = ("# TYPE nv_trt_llm_kv_cache_block_metrics gauge\n"
            'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 10\n'
            'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="2"} 20\n')
    served(Snapshot.of("triton", triton_families(URL, promtext.parse(text), None)))


def test_valid_trtllm_gauges_of_any_model_versions_give_a_valid_exposition() -> None:
    @SETTINGS
    @given(_exposition(_TRTLLM_SERIES))
    def run(tick: Callable[[], None], generated: tuple[str, dict]) -> None:
        text, _ = generated
        tick()
        served(Snapshot.of("triton", triton_families(URL, promtext.parse(text), None)))

    counted("triton: TensorRT-LLM gauges, several model versions", lambda tick: run(tick))


# -- Triton's statistics JSON ---------------------------------------------------------------------

json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                                     st.text(max_size=10)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["model_stats", "name", "version", "inference_stats", "success",
                                                        "fail", "queue", "count", "ns", "x"]), inner, max_size=4)),
                           max_leaves=20)


def test_statistics_json_of_any_shape_parses_or_is_a_malformed_poll_error() -> None:
    @SETTINGS
    @given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=100)))
    def run(tick: Callable[[], None], body: bytes) -> None:
        tick()
        try:
            entries = parse_stats(body)
        except PollError as exc:
            assert exc.reason == "malformed"
            return
        from exporter.sources.triton import TritonApi
        served(Snapshot.of("triton", triton_families(URL, None, TritonApi(live=True, ready=True, stats=entries))))

    counted("triton: statistics JSON", lambda tick: run(tick))


def test_valid_statistics_keep_every_model_and_count() -> None:
    stat = st.fixed_dictionaries({"count": st.integers(0, 2**63), "ns": st.integers(0, 2**63)})
    entry = st.fixed_dictionaries({"name": st.text(min_size=1, max_size=12), "version": st.sampled_from(["", "1"]),
                                   "inference_stats": st.fixed_dictionaries(
                                       {"success": stat, "fail": stat, "queue": stat})})

    @SETTINGS
    @given(st.lists(entry, max_size=5, unique_by=lambda e: (e["name"], e["version"])))
    def run(tick: Callable[[], None], stats: list[dict]) -> None:
        tick()
        entries = parse_stats(json.dumps({"model_stats": stats}).encode())
        assert [(e["name"], e["inference_stats"]["success"]["count"]) for e in entries] == [
            (s["name"], s["inference_stats"]["success"]["count"]) for s in stats]

    counted("triton: valid statistics kept", lambda tick: run(tick))


# -- the public source class against an upstream that answers garbage ------------------------------

@pytest.fixture(scope="module")
def upstream():
    server = Upstream()
    yield server
    server.close()


def test_triton_source_poll_against_garbage_answers_returns_families_or_a_poll_error(upstream: Upstream) -> None:
    bodies = st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                       st.sampled_from([TRITON_BODIES[0].encode(), b"[" * 50000, b'{"version": ' * 20000]))

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bodies, bodies, bodies, st.sampled_from([200, 404, 500, 503]))
    def run(tick: Callable[[], None], metrics: bytes, v2: bytes, stats: bytes, status: int) -> None:
        tick()
        upstream.routes.update({"/metrics": Route(metrics), "/v2": Route(v2, content_type="application/json"),
                                "/v2/models/stats": Route(stats, status=status, content_type="application/json"),
                                "/v2/health/live": Route(b"", status=200), "/v2/health/ready": Route(b"", status=status)})
        source = TritonSource(TritonConfig(enabled=True, interval=5, timeout=2, endpoints=[
            {"url": upstream.url("/metrics"), "api_url": upstream.url("")}]))
        try:
            families = source.poll()
        except PollError as exc:
            families = getattr(exc, "families", [])
        served(Snapshot.of("triton", families))

    counted("triton source: garbage upstream answers", lambda tick: run(tick))


def test_deeply_nested_server_metadata_is_a_malformed_poll_error(upstream: Upstream) -> None:
    upstream.routes.update({"/metrics": Route(TRITON_BODIES[0].encode()), "/v2": Route(b"[" * 100000),
                            "/v2/health/live": Route(b""), "/v2/health/ready": Route(b"")})
    source = TritonSource(TritonConfig(enabled=True, interval=5, timeout=2, endpoints=[
        {"url": upstream.url("/metrics"), "api_url": upstream.url("")}]))
    with pytest.raises(PollError) as caught:
        source.poll()
    assert caught.value.reason == "malformed"



# -- trtllm-serve through its public source class -------------------------------------------------

TRTLLM_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "trtllm_serve"


def test_trtllm_serve_source_poll_against_garbage_answers_returns_families_or_a_poll_error(upstream: Upstream) -> None:
    from exporter.sources.trtllm_serve import TrtllmServeConfig, TrtllmServeSource

    recorded = [(TRTLLM_FIXTURES / n).read_bytes() for n in ("prometheus_prefixed.txt", "prometheus_unprefixed.txt")]
    stats = (TRTLLM_FIXTURES / "iteration_stats.json").read_bytes()
    bodies = st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                       st.sampled_from([*recorded, stats]),
                       st.sampled_from(recorded).flatmap(lambda body: st.integers(0, len(body)).map(
                           lambda cut: body[:cut])))

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bodies, bodies, bodies, bodies, st.sampled_from([200, 404, 503]))
    def run(tick: Callable[[], None], metrics: bytes, version: bytes, models: bytes, iterations: bytes,
            status: int) -> None:
        tick()
        upstream.routes.update({
            "/prometheus/metrics": Route(metrics), "/health": Route(b"", status=status),
            "/version": Route(version, content_type="application/json"),
            "/v1/models": Route(models, content_type="application/json"),
            "/metrics": Route(iterations, content_type="application/json")})
        source = TrtllmServeSource(TrtllmServeConfig(enabled=True, interval=5, timeout=2, endpoints=[
            {"url": upstream.url("/prometheus/metrics"), "iteration_stats": True}]))
        try:
            families = source.poll()
        except PollError as exc:
            families = getattr(exc, "families", [])
        served(Snapshot.of("trtllm_serve", families))

    counted("trtllm-serve source: garbage upstream answers", lambda tick: run(tick))


@pytest.mark.parametrize("path", ["/version", "/v1/models"])
def test_trtllm_serve_deeply_nested_metadata_is_ignored_like_any_malformed_metadata(upstream: Upstream,
                                                                                     path: str) -> None:
    """/version and /v1/models only label the metrics: unreadable answers leave the label empty, the poll stands."""
    from exporter.sources.trtllm_serve import TrtllmServeConfig, TrtllmServeSource

    upstream.routes.update({"/prometheus/metrics": Route((TRTLLM_FIXTURES / "prometheus_prefixed.txt").read_bytes()),
                            "/health": Route(b""), "/version": Route(b'{"version": "1.0"}'),
                            "/v1/models": Route(b'{"data": [{"id": "m"}]}'), path: Route(b"[" * 100000)})
    source = TrtllmServeSource(TrtllmServeConfig(enabled=True, interval=5, timeout=2, endpoints=[
        {"url": upstream.url("/prometheus/metrics")}]))
    families = {f.metric.name: f for f in source.poll()}
    assert families["blackwell_serving_up"].samples[0][1] == 1
