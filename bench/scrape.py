"""Scrape-path benchmark: /metrics served from the pre-rendered cache vs rendering on every scrape.

Both sides hold the same samples (the simulation's families, mirrored into a prometheus_client
registry through a custom collector) and are measured in one run, alternating, over real HTTP on
loopback with a new connection per scrape, the way Prometheus's first scrape of a target behaves.
It also times the in-process render alone (``store.current().body`` vs ``generate_latest``).

    python bench/scrape.py                       # hgx-b200 (8 GPUs x 18 links)
    python bench/scrape.py --gpus 72             # synthetic worst case: 72 GPUs x 18 links
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import math
import platform
import statistics
import time

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.core import CounterMetricFamily

from exporter.catalog import MetricType
from exporter.scheduler import Scheduler
from exporter.server import ExporterHTTPServer
from exporter.snapshot import Family, HistogramValue, SnapshotStore
from exporter.sources.simulated import profiles
from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource


class MirrorCollector:
    """Yields the simulation's last families as prometheus_client families, rendered per scrape."""

    def __init__(self, families: list[Family]) -> None:
        self.families = families

    def collect(self):
        for fam in self.families:
            m = fam.metric
            labels = list(m.labels)
            if m.type is MetricType.COUNTER:
                out = CounterMetricFamily(m.name[: -len("_total")], m.help, labels=labels)
                for values, value in fam.samples:
                    out.add_metric(list(values), value)
            elif m.type is MetricType.INFO:
                out = InfoMetricFamily(m.name[: -len("_info")], m.help, labels=labels[:1])
                for values, _ in fam.samples:
                    out.add_metric(list(values[:1]), dict(zip(labels[1:], values[1:])))
            elif m.type is MetricType.HISTOGRAM:
                out = HistogramMetricFamily(m.name, m.help, labels=labels)
                for values, hist in fam.samples:
                    assert isinstance(hist, HistogramValue)
                    buckets = [("+Inf" if math.isinf(b) else str(b), c) for b, c in hist.buckets]
                    out.add_metric(list(values), buckets, hist.sum)
            else:
                out = GaugeMetricFamily(m.name, m.help, labels=labels)
                for values, value in fam.samples:
                    out.add_metric(list(values), value)
            yield out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def scrape_once(port: int, gzipped: bool) -> tuple[float, int]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"} if gzipped else {})
    body = conn.getresponse().read()
    conn.close()
    return time.perf_counter() - start, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="hgx-b200")
    parser.add_argument("--gpus", type=int, help="override the profile's GPU count (synthetic worst case)")
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--gzip", action="store_true", help="ask for gzip, as Prometheus does by default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    profile = profiles.PROFILES[args.profile]
    if args.gpus:
        profile = dataclasses.replace(profile, name=f"{profile.name}-x{args.gpus}", gpu_count=args.gpus)
        profiles.PROFILES[profile.name] = profile
    source = SimulatedSource(SimulatedConfig(enabled=True, profile=profile.name))
    source.poll()
    time.sleep(0.2)
    scheduler = Scheduler([source], SnapshotStore(), "simulated")
    runner = scheduler.runners["simulated"]
    runner.run_once()
    families = source._model.families()  # noqa: SLF001 - the same samples the cache holds
    assert runner.up, runner.last_error

    ours = ExporterHTTPServer(("127.0.0.1", 0), scheduler)
    ours.serve_in_thread()
    registry = CollectorRegistry()
    registry.register(MirrorCollector(families))
    theirs_server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    ours_port, theirs_port = ours.server_address[1], theirs_server.server_address[1]

    for _ in range(20):  # warm-up both
        scrape_once(ours_port, args.gzip)
        scrape_once(theirs_port, args.gzip)
    ours_t, theirs_t = [], []
    ours_bytes = theirs_bytes = 0
    for _ in range(args.scrapes):
        t, ours_bytes = scrape_once(ours_port, args.gzip)
        ours_t.append(t)
        t, theirs_bytes = scrape_once(theirs_port, args.gzip)
        theirs_t.append(t)

    render_ours, render_theirs = [], []
    for _ in range(min(args.scrapes, 200)):
        start = time.perf_counter()
        scheduler.store.current().body(openmetrics=False, gzipped=False)
        render_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        generate_latest(registry)
        render_theirs.append(time.perf_counter() - start)

    series = scheduler.store.current().text.count(b"\n") - 2 * sum(1 for f in families if f.samples)
    result = {
        "profile": profile.name,
        "gpus": profile.gpu_count,
        "series": series,
        "scrapes": args.scrapes,
        "gzip": args.gzip,
        "bytes": {"cached": ours_bytes, "generate_latest": theirs_bytes},
        "http_ms": {
            "cached": {"p50": percentile(ours_t, 0.5) * 1e3, "p99": percentile(ours_t, 0.99) * 1e3},
            "generate_latest": {"p50": percentile(theirs_t, 0.5) * 1e3, "p99": percentile(theirs_t, 0.99) * 1e3},
        },
        "render_ms": {"cached": statistics.median(render_ours) * 1e3,
                      "generate_latest": statistics.median(render_theirs) * 1e3},
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
    }
    result["ratio_p50"] = result["http_ms"]["generate_latest"]["p50"] / result["http_ms"]["cached"]["p50"]
    result["ratio_p99"] = result["http_ms"]["generate_latest"]["p99"] / result["http_ms"]["cached"]["p99"]
    ours.shutdown()
    theirs_server.shutdown()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    h = result["http_ms"]
    encoding = "gzip" if args.gzip else "identity"
    print(f"{profile.name}: {profile.gpu_count} GPUs, {series} series, {ours_bytes} bytes ({encoding}), "
          f"{args.scrapes} scrapes each")
    print(f"  cached /metrics     p50 {h['cached']['p50']:.3f} ms  p99 {h['cached']['p99']:.3f} ms")
    print(f"  generate_latest     p50 {h['generate_latest']['p50']:.3f} ms  p99 {h['generate_latest']['p99']:.3f} ms")
    print(f"  ratio (theirs/ours) p50 {result['ratio_p50']:.1f}x  p99 {result['ratio_p99']:.1f}x")
    print(f"  render only         cached {result['render_ms']['cached']:.4f} ms  "
          f"generate_latest {result['render_ms']['generate_latest']:.2f} ms")


if __name__ == "__main__":
    main()
