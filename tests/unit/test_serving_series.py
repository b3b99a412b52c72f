"""Serving series across endpoints, runtimes and model versions: told apart, and counters never go backwards."""

import socket
import threading

import pytest

from exporter import promtext
from exporter.snapshot import Snapshot, SnapshotStore
from exporter.sources.base import PartialPollError
from exporter.sources.runtimes import RuntimesConfig, RuntimesSource
from exporter.sources.triton import TritonConfig, TritonSource
from exporter.sources.trtllm_serve import TrtllmServeConfig, TrtllmServeSource
from tests.unit.upstream_server import Route, Upstream

SUCCESS = "blackwell_serving_request_success_total"
TOKENS = "blackwell_serving_generation_tokens_total"
ITERATIONS = "blackwell_serving_iterations_total"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def next_poll(self) -> None:
        self.now += 60


@pytest.fixture
def upstreams():
    servers: list[Upstream] = []

    def start(metrics: bytes) -> Upstream:
        server = Upstream()
        server.routes["/metrics"] = Route(metrics)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def triton_source(*servers: Upstream, clock: Clock) -> TritonSource:
    endpoints = [{"url": s.url("/metrics"), "api": False} for s in servers]
    return TritonSource(TritonConfig(enabled=True, interval=5, timeout=2, endpoints=endpoints), clock=clock)


def series(families, name: str) -> dict[dict, float]:
    """{labels as a sorted tuple of pairs: value} of one metric."""
    return {tuple(sorted(zip(f.metric.labels, labels, strict=True))): value
            for f in families if f.metric.name == name for labels, value in f.samples}


def poll(source) -> list:
    try:
        return source.poll()
    except PartialPollError as exc:
        return exc.families


def test_one_endpoint_failing_never_hands_its_series_to_another_endpoints_value(upstreams):
    """The same model on two servers: when the first fails, the second's 50 must not replace the first's 1000."""
    first = upstreams(b'nv_inference_request_success{model="llama",version="1"} 1000\n')
    second = upstreams(b'nv_inference_request_success{model="llama",version="1"} 50\n')
    clock = Clock()
    source = triton_source(first, second, clock=clock)
    seen: dict[tuple, list[float]] = {}
    for first_up in (True, False, True):
        first.routes["/metrics"].status = 200 if first_up else 500
        for labels, value in series(poll(source), SUCCESS).items():
            seen.setdefault(labels, []).append(value)
        clock.next_poll()
    by_endpoint = {dict(labels)["endpoint"]: values for labels, values in seen.items()}
    assert by_endpoint == {first.url("/metrics"): [1000, 1000], second.url("/metrics"): [50, 50, 50]}


def versions(*rows: tuple[str, int, int]) -> bytes:
    """A Triton body with one (version, generated tokens, iterations) row per loaded version."""
    text = "# TYPE nv_llm_output_token_len histogram\n"
    for v, tokens, _ in rows:
        text += (f'nv_llm_output_token_len_bucket{{model="llama",version="{v}",le="+Inf"}} 3\n'
                 f'nv_llm_output_token_len_sum{{model="llama",version="{v}"}} {tokens}\n'
                 f'nv_llm_output_token_len_count{{model="llama",version="{v}"}} 3\n')
    text += "# TYPE nv_trt_llm_general_metrics gauge\n"
    for v, _, iterations in rows:
        text += f'nv_trt_llm_general_metrics{{general_type="iteration_counter",model="llama",version="{v}"}} {iterations}\n'
    return text.encode()


def test_counters_summed_over_versions_keep_the_totals_of_versions_that_were_unloaded(upstreams):
    server = upstreams(versions(("1", 100, 10), ("2", 30, 3)))
    clock = Clock()
    source = triton_source(server, clock=clock)
    totals = []
    for body in (versions(("1", 100, 10), ("2", 30, 3)),
                 versions(("2", 40, 4)),                  # version 1 unloaded
                 versions(("1", 5, 1), ("2", 45, 5))):    # version 1 loaded again: its count starts over
        server.routes["/metrics"] = Route(body)
        families = poll(source)
        totals.append((sum(series(families, TOKENS).values()), sum(series(families, ITERATIONS).values())))
        clock.next_poll()
    assert totals == [(130, 13), (140, 14), (150, 16)]


def histogram_body(family: str, label: str, *rows: tuple[str, int, int, float]) -> str:
    """One series of histogram ``family`` per (``label`` value, count at le=1, count, sum) row."""
    text = f"# TYPE {family} histogram\n"
    for value, under_one, count, total in rows:
        labels = f'model="llama",{label}="{value}"' if label == "version" else f'model_name="llama",{label}="{value}"'
        text += (f'{family}_bucket{{{labels},le="1"}} {under_one}\n'
                 f'{family}_bucket{{{labels},le="+Inf"}} {count}\n'
                 f'{family}_sum{{{labels}}} {total}\n'
                 f'{family}_count{{{labels}}} {count}\n')
    return text


def stats_body(*rows: tuple[str, int, int]) -> bytes:
    """Triton's statistics API answer with one (version, count, ns) row per loaded version of llama."""
    entries = ",".join(
        f'{{"name": "llama", "version": "{v}", "inference_stats": {{"success": {{"count": {count}, "ns": {ns}}}, '
        f'"fail": {{"count": 0, "ns": 0}}, "queue": {{"count": {count}, "ns": {ns // 10}}}}}}}'
        for v, count, ns in rows)
    return f'{{"model_stats": [{entries}]}}'.encode()


def histogram_of(families, name: str):
    [value] = series(families, name).values()
    return value


def never_decreases(histograms) -> bool:
    """Each bucket, _count and _sum at least what it was the poll before."""
    return all(now.count >= before.count and now.sum >= before.sum
               and all(c_now >= c_before for (_, c_now), (_, c_before) in zip(now.buckets, before.buckets, strict=True))
               for before, now in zip(histograms, histograms[1:], strict=False))


def test_histograms_summed_over_triton_versions_keep_what_unloaded_versions_counted(upstreams):
    """TTFT and prompt length from /metrics, e2e and queue time from the statistics API: version 1
    is unloaded, then loaded again with its counts started over; no bucket, _count or _sum drops."""
    reads = [  # (TTFT rows, prompt length rows, statistics rows), one per poll
        ([("1", 3, 4, 2900), ("2", 1, 2, 1500)], [("1", 0, 4, 400), ("2", 0, 2, 200)], [("1", 4, 4e9), ("2", 2, 2e9)]),
        ([("2", 2, 3, 1900)], [("2", 1, 3, 201)], [("2", 3, 3e9)]),
        ([("1", 1, 1, 700), ("2", 2, 3, 1900)], [("1", 1, 1, 1), ("2", 1, 3, 201)], [("1", 1, 1e9), ("2", 3, 3e9)]),
    ]
    server = upstreams(b"")
    server.routes.update({"/v2/health/live": Route(b""), "/v2/health/ready": Route(b""),
                          "/v2": Route(b'{"name":"triton","version":"2.51.0"}'),
                          "/v2/models/llama/versions/1/ready": Route(b""),
                          "/v2/models/llama/versions/2/ready": Route(b"")})
    clock = Clock()
    source = TritonSource(TritonConfig(enabled=True, interval=5, timeout=2, endpoints=[
        {"url": server.url("/metrics"), "api_url": server.url("")}]), clock=clock)
    seen: dict[str, list] = {}
    for ttft, prompt, stats in reads:
        server.routes["/metrics"] = Route((histogram_body("nv_inference_first_response_histogram_ms", "version", *ttft)
                                           + histogram_body("nv_llm_input_token_len", "version", *prompt)).encode())
        server.routes["/v2/models/stats"] = Route(stats_body(*((v, c, int(ns)) for v, c, ns in stats)))
        families = poll(source)
        for name in ("blackwell_serving_ttft_seconds", "blackwell_serving_prompt_length_tokens",
                     "blackwell_serving_e2e_latency_seconds", "blackwell_serving_queue_time_seconds"):
            seen.setdefault(name, []).append(histogram_of(families, name))
        clock.next_poll()
    for name, histograms in seen.items():
        assert never_decreases(histograms), name
    ttft = seen["blackwell_serving_ttft_seconds"]
    assert [h.count for h in ttft] == [6, 7, 8]  # 4+2; 4 retired + 3; 4 retired + 1 + 3
    assert [h.buckets[0][1] for h in ttft] == [4, 5, 6]
    assert [h.sum for h in ttft] == pytest.approx([4.4, 4.8, 5.5])
    assert [h.count for h in seen["blackwell_serving_e2e_latency_seconds"]] == [6, 7, 8]
    assert [h.sum for h in seen["blackwell_serving_e2e_latency_seconds"]] == pytest.approx([6, 7, 8])


def test_histograms_summed_over_a_runtimes_series_keep_what_a_series_that_went_away_counted(upstreams):
    """A vLLM data-parallel engine's TTFT series goes away: the model's sum keeps what it counted."""
    family = "vllm:time_to_first_token_seconds"
    server = upstreams(b"")
    server.routes.update({"/health": Route(b""), "/version": Route(b'{"version": "0.11.0"}')})
    clock = Clock()
    source = RuntimesSource(RuntimesConfig(enabled=True, interval=5, timeout=2, endpoints=[
        {"url": server.url("/metrics"), "runtime": "vllm"}]), clock=clock)
    counts = []
    for rows in ([("0", 1, 2, 1.5), ("1", 3, 3, 0.9)], [("0", 2, 4, 2.5)], [("0", 2, 5, 3.5), ("1", 0, 1, 2.0)]):
        server.routes["/metrics"] = Route(histogram_body(family, "engine", *rows).encode())
        hist = histogram_of(poll(source), "blackwell_serving_ttft_seconds")
        counts.append((hist.buckets[0][1], hist.count, hist.sum))
        clock.next_poll()
    assert counts == [(4, 5, pytest.approx(2.4)), (5, 7, pytest.approx(3.4)), (5, 9, pytest.approx(6.4))]


def test_triton_and_trtllm_serve_on_one_model_name_make_a_body_the_strict_parser_accepts(upstreams):
    triton = upstreams(b'nv_inference_request_success{model="llama",version="1"} 7\n'
                       + versions(("1", 100, 10)))
    serve = Upstream()
    try:
        serve.routes.update({
            "/prometheus/metrics": Route(b'trtllm_request_success_total{model_name="llama",finished_reason="stop"} 3\n'
                                         b'trtllm_generation_tokens_total{model_name="llama"} 90\n'
                                         b'trtllm_num_requests_running{model_name="llama"} 2\n'),
            "/health": Route(b""),
            "/version": Route(b'{"version": "1.2.0"}', content_type="application/json"),
        })
        clock = Clock()
        store = SnapshotStore()
        trtllm = TrtllmServeSource(TrtllmServeConfig(
            enabled=True, endpoints=[{"url": serve.url("/prometheus/metrics"), "model": "llama"}]), clock=clock)
        for name, source in (("triton", triton_source(triton, clock=clock)), ("trtllm_serve", trtllm)):
            store.publish(name, Snapshot.of(name, source.poll()), lambda: Snapshot("exporter", {}))
        body = promtext.parse(store.current().body(openmetrics=False, gzipped=False))
    finally:
        serve.close()
    tokens = {s.labels["endpoint"]: s.value for s in body.named(TOKENS)}
    assert tokens == {triton.url("/metrics"): 100, serve.url("/prometheus/metrics"): 90}


class HeaderDripper:
    """An upstream that answers with a status line and then one header line every 0.1 s, never ending
    its headers: each socket read gets data in time, so only a deadline over the whole read ends it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.requests = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/metrics"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\n")
                while not self.stopped.wait(0.1):
                    connection.sendall(b"X-Padding: x\r\n")
            except OSError:
                pass

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


def poll_into(source: TritonSource, result: list[PartialPollError]) -> None:
    with pytest.raises(PartialPollError) as caught:
        source.poll()
    result.append(caught.value)


def test_an_upstream_that_never_finishes_holds_up_neither_the_other_endpoints_nor_the_poll(upstreams):
    """Its read is given up at the endpoint's timeout (up 0); the other endpoint's values are served."""
    fast = upstreams(b'nv_inference_request_success{model="llama",version="1"} 7\n')
    slow = HeaderDripper()
    clock = Clock()
    source = TritonSource(TritonConfig(enabled=True, interval=5, timeout=2, endpoints=[
        {"url": fast.url("/metrics"), "api": False}, {"url": slow.url(), "api": False}]), clock=clock)
    try:
        for _ in range(2):
            result: list[PartialPollError] = []
            poller = threading.Thread(target=poll_into, args=(source, result))
            poller.start()
            poller.join(timeout=2.0)
            assert not poller.is_alive(), "the poll ends inside the source's timeout: the scheduler keeps it"
            [error] = result
            assert slow.url() in str(error)
            families = error.families
            assert series(families, SUCCESS) == {(("endpoint", fast.url("/metrics")), ("model", "llama"),
                                                  ("version", "1")): 7}
            assert series(families, "blackwell_serving_up") == {
                (("endpoint", fast.url("/metrics")), ("runtime", "triton")): 1,
                (("endpoint", slow.url()), ("runtime", "triton")): 0}
            clock.next_poll()
    finally:
        source.close()
        slow.close()
