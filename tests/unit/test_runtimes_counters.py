"""Counters read from vLLM, SGLang and Dynamo never go backwards: not when an upstream series the
exporter sums away stops being printed, and not when the server restarts with fewer of them.

The fake upstream serves the runtime's own exposition (tests/fixtures/runtimes: recorded for vLLM and
SGLang, written from source for Dynamo), as a busy server grows it, through the ``runtimes`` source's
public ``poll()``. A restart is a new process: every counter and histogram starts again at 0, and a
label set appears only once something is counted under it (Dynamo's ``error_type``; vLLM creates one
series per finish reason at start-up).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import promtext
from exporter.catalog import MetricType
from exporter.sources.runtimes import RuntimeEndpoint, RuntimesConfig, RuntimesSource, runtime_families
from tests.support import assert_nothing_went_down
from tests.unit.upstream_server import Route, Upstream

FIXTURES = Path(__file__).parent.parent / "fixtures" / "runtimes"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
COUNTERS = ("blackwell_serving_request_success_total", "blackwell_serving_request_failure_total",
            "blackwell_serving_prompt_tokens_total", "blackwell_serving_generation_tokens_total",
            "blackwell_serving_preemptions_total", "blackwell_serving_prefix_cache_queried_tokens_total",
            "blackwell_serving_prefix_cache_hit_tokens_total")


class ServedExposition:
    """One runtime process's /metrics: its fixture with every counter and histogram sample times
    ``served`` (the fixture's traffic served that many times over), less the series dropped."""

    def __init__(self, fixture: str) -> None:
        self.fixture = (FIXTURES / fixture).read_text()
        self.types = promtext.parse(self.fixture.encode())
        self.served = 1
        self.dropped: list[tuple[str, ...]] = []
        self.overrides: dict[tuple[str, ...], float] = {}
        self.twins: list[tuple[str, str, str]] = []

    def restart(self) -> None:
        """A new process: nothing served yet, nothing dropped or set."""
        self.served, self.dropped, self.overrides = 0, [], {}

    def twin(self, needle: str, old: str, new: str) -> None:
        """Print each sample line containing ``needle`` a second time, with ``old`` replaced by ``new``."""
        self.twins.append((needle, old, new))

    def drop(self, *needles: str) -> None:
        """Stop printing the series whose sample line contains every one of ``needles``."""
        self.dropped.append(needles)

    def set(self, value: float, *needles: str) -> None:
        """The series whose sample line contains every one of ``needles`` reads ``value``."""
        self.overrides[needles] = value

    def body(self) -> bytes:
        lines = []
        fixture = []
        for line in self.fixture.splitlines():
            fixture.append(line)
            fixture += [line.replace(old, new) for needle, old, new in self.twins
                        if needle in line and not line.startswith("#")]
        for line in fixture:
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if line and not line.startswith("#"):
                if any(all(n in line for n in needles) for needles in self.dropped):
                    continue
                head, value = line.rsplit(" ", 1)
                set_to = next((v for needles, v in self.overrides.items() if all(n in line for n in needles)), None)
                if set_to is not None:
                    line = f"{head} {set_to}"
                elif not name.endswith("_created") and self.types.type_of(name) in ("counter", "histogram"):
                    line = f"{head} {float(value) * self.served}"
            lines.append(line)
        return ("\n".join(lines) + "\n").encode()


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Runtime:
    """A local server playing one runtime endpoint, read by a runtimes source on a fake clock."""

    def __init__(self, runtime: str, exposition: ServedExposition) -> None:
        self.exposition = exposition
        self.upstream = Upstream()
        self.upstream.routes.update({"/health": Route(b""), "/metrics": Route(exposition.body())})
        self.clock = Clock()
        self.endpoint = RuntimeEndpoint(url=self.upstream.url("/metrics"), runtime=runtime)
        self.source = RuntimesSource(RuntimesConfig(enabled=True, interval=5, timeout=2, endpoints=[self.endpoint]),
                                     clock=self.clock)

    def poll(self) -> dict:
        """Each counter series, and each histogram's count, sum and buckets, read through poll()."""
        self.upstream.routes["/metrics"] = Route(self.exposition.body())
        self.clock.now += 5
        return flatten(self.source.poll())

    def alone(self) -> dict:
        """What the exposition served now maps to on its own, with nothing carried over."""
        return flatten(runtime_families(self.endpoint, promtext.parse(self.exposition.body()), 200, ""))

    def close(self) -> None:
        self.source.close()
        self.upstream.close()


def flatten(families) -> dict:
    out = {}
    for family in families:
        for labels, value in family.samples:
            key = (family.metric.name, labels[:-1])  # the endpoint is the same throughout
            if family.metric.name in COUNTERS:
                out[key] = value
            elif family.metric.type is MetricType.HISTOGRAM:
                out[(key, "count")], out[(key, "sum")] = value.count, value.sum
                out.update({(key, bound): count for bound, count in value.buckets})
    return out


@pytest.fixture
def runtimes():
    started: list[Runtime] = []

    def start(runtime: str, fixture: str) -> Runtime:
        started.append(Runtime(runtime, ServedExposition(fixture)))
        return started[-1]

    yield start
    for runtime in started:
        runtime.close()


SUCCESS = ("blackwell_serving_request_success_total", (LLAMA, ""))


def test_a_finish_reason_that_stops_being_printed_is_no_false_reset_on_vllm(runtimes):
    vllm = runtimes("vllm", "vllm/metrics_0.11.0.txt")
    vllm.exposition.set(10, 'finished_reason="stop"')
    vllm.exposition.set(5, 'finished_reason="length"')
    before = vllm.poll()
    assert before[SUCCESS] == 15
    vllm.exposition.drop("vllm:request_success_total", 'finished_reason="length"')
    vllm.exposition.set(11, 'finished_reason="stop"')
    after = vllm.poll()
    assert_nothing_went_down(before, after)
    assert after[SUCCESS] == 16, "the 5 length-finished requests stay counted; one more stopped"


def test_an_api_endpoint_that_stops_being_printed_is_no_false_reset_on_dynamo(runtimes):
    dynamo = runtimes("dynamo-frontend", "dynamo/frontend.txt")
    dynamo.exposition.twin('status="success"', 'endpoint="chat_completions"', 'endpoint="completions"')
    dynamo.exposition.served = 2
    before = dynamo.poll()
    assert before[SUCCESS] == 2 * 41 + 2 * 41
    dynamo.exposition.drop('endpoint="completions"', 'status="success"')
    dynamo.exposition.served = 3
    after = dynamo.poll()
    assert_nothing_went_down(before, after)
    assert after[SUCCESS] == 3 * 41 + 2 * 41, "what /v1/completions served stays counted"


@pytest.mark.parametrize("runtime, fixture, not_yet", [
    ("vllm", "vllm/metrics_0.11.0.txt", None),  # vLLM creates every finish reason's series at start-up
    ("sglang", "sglang/metrics.txt", None),
    ("dynamo-frontend", "dynamo/frontend.txt", 'error_type="overload"'),  # no overload yet in the new process
])
def test_a_restart_carries_every_counter_and_histogram_on_from_where_it_was(runtimes, runtime, fixture, not_yet):
    server = runtimes(runtime, fixture)
    server.exposition.served = 3
    before = server.poll()
    server.exposition.restart()
    if not_yet:
        server.exposition.drop(not_yet)
    server.poll()  # the new process, before its first request
    server.exposition.served = 1
    after, fresh = server.poll(), server.alone()
    assert fresh[SUCCESS] > 0
    assert_nothing_went_down({key: before[key] for key in fresh}, after)
    # what the new process counted is added to what the old one had: rate() sees exactly the new requests
    assert {key: after[key] for key in fresh} == {key: before[key] + value for key, value in fresh.items()}
    if not_yet:  # a label set the new process counts later carries on from where the old one left it
        server.exposition.dropped.clear()
        again = server.poll()
        assert_nothing_went_down(before, again)
        rejected = ("blackwell_serving_request_failure_total", (LLAMA, "", "REJECTED"))
        assert again[rejected] == before[rejected] + 1


def test_a_gauge_summed_over_engines_still_reads_what_the_engines_read_now(runtimes):
    """The used-blocks gauge vLLM lacks is still derived from usage x max blocks."""
    vllm = runtimes("vllm", "vllm/metrics_0.11.0.txt")
    vllm.poll()
    vllm.exposition.set(0.5, "vllm:kv_cache_usage_perc")
    vllm.upstream.routes["/metrics"] = Route(vllm.exposition.body())
    vllm.clock.now += 5
    blocks = {labels[:2]: value for family in vllm.source.poll() for labels, value in family.samples
              if family.metric.name == "blackwell_serving_kv_cache_blocks"}
    assert blocks[(LLAMA, "max")] == 16384 and blocks[(LLAMA, "used")] == 8192
