"""Scrape-path benchmark: /metrics served from the pre-rendered cache vs rendering on every scrape.

Both sides hold the same samples (the simulation's families, plus with ``--every-family`` every
other catalog family, mirrored into a prometheus_client registry through a custom collector).
Each HTTP server runs in its own child process and this process is the client, so no server
shares a GIL with the client or with another (freeing one side's garbage cannot stall the other).
Scrapes alternate between the sides over loopback, one new connection per scrape, timed from
connect to the last byte. ``--base REV`` adds a third side: the same server over the snapshot
module as it was at REV, the A/B for changes to the cache itself. The child also times the work behind
a scrape in-process: our cached ``body()``, our full re-render (``publish``, done once per poll,
not per scrape) and ``generate_latest`` (done by prometheus_client on every scrape).

    python bench/scrape.py                              # hgx-b200: 8 GPUs x 18 links
    python bench/scrape.py --gzip                       # Accept-Encoding: gzip, as Prometheus sends
    python bench/scrape.py --gpus 72 --every-family     # synthetic worst case
    python bench/scrape.py --json --out bench/results/scrape-hgx-b200.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable like `python -m bench.scrape`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry, generate_latest, start_http_server  # noqa: E402
from prometheus_client.core import (  # noqa: E402
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)

from bench.workload import every_family, load_at, publish_all, simulated_source  # noqa: E402
from exporter.catalog import MetricType  # noqa: E402
from exporter.snapshot import Family, HistogramValue, Snapshot, SnapshotStore  # noqa: E402


class MirrorCollector:
    """Yields our families as prometheus_client families, so ``generate_latest`` renders them per scrape."""

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
                    out.add_metric(list(values[:1]), dict(zip(labels[1:], values[1:], strict=True)))
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


def families_for(gpus: int, every: bool) -> dict[str, list[Family]]:
    """The benchmark's samples, by the source that fills them."""
    if every:
        return every_family(gpus)[1]
    source = simulated_source(gpus)
    source.poll()
    return {"simulated": source.poll()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def serve(side: str, gpus: int, every: bool, base: str | None, pipe: Connection) -> None:
    """Child process: one side's HTTP server over the samples, answering control messages until "stop".

    "cached" serves this tree's SnapshotStore, "base" the SnapshotStore of the ``base`` revision's
    snapshot module (same server code), "generate_latest" prometheus_client's own server.
    """
    from exporter.scheduler import Scheduler
    from exporter.server import ExporterHTTPServer

    groups = families_for(gpus, every)
    snapshot_mod = sys.modules[SnapshotStore.__module__]
    if side == "base":
        assert base is not None
        snapshot_mod = load_at(base, "exporter/snapshot.py", "base_snapshot", {})
        snapshot_mod.HistogramValue = HistogramValue  # the samples were made with this tree's class
    store = snapshot_mod.SnapshotStore()
    publish_all(store, groups, snapshot_mod.Snapshot)
    if side == "generate_latest":
        registry = CollectorRegistry()
        registry.register(MirrorCollector([f for fams in groups.values() for f in fams]))
        server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    else:
        server = ExporterHTTPServer(("127.0.0.1", 0), Scheduler([], store, "simulated"))
        server.serve_in_thread()
    text = store.current().text
    pipe.send({"port": server.server_address[1],
               "series": sum(1 for line in text.splitlines() if line and not line.startswith(b"#")),
               "families": sum(1 for line in text.splitlines() if line.startswith(b"# TYPE"))})
    source = next(name for name in groups if name != "exporter")
    own = snapshot_mod.Snapshot.of("exporter", groups.get("exporter", []))
    while (request := pipe.recv()) != "stop":
        if request == "publish":  # a poll finished: the next scrape sees a new version
            if side != "generate_latest":
                store.publish(source, store.snapshot(source), lambda: own)
            pipe.send("ok")
        else:
            pipe.send(_render_times(store, groups, 30 if gpus > 16 else 100))
    server.shutdown()


def _render_times(store: SnapshotStore, groups: dict[str, list[Family]], repeat: int) -> dict[str, float]:
    """Median in-process ms of the work behind a scrape: ours (cached body, re-render, gzip) and theirs."""
    own = Snapshot.of("exporter", groups.get("exporter", []))
    source = next(name for name in groups if name != "exporter")
    snapshot = store.snapshot(source)
    registry = CollectorRegistry()
    registry.register(MirrorCollector([f for fams in groups.values() for f in fams]))
    return {
        "cached_body": _median_ms(lambda: store.current().body(openmetrics=False, gzipped=True), 1000),
        "publish": _median_ms(lambda: store.publish(source, snapshot, lambda: own), repeat),
        "gzip_level1": _median_ms(lambda: gzip.compress(store.current().text, compresslevel=1, mtime=0), repeat),
        "gzip_level6": _median_ms(lambda: gzip.compress(store.current().text, compresslevel=6, mtime=0), repeat),
        "generate_latest": _median_ms(lambda: generate_latest(registry), repeat),
        "generate_latest_gzip": _median_ms(lambda: gzip.compress(generate_latest(registry)), repeat),
    }


def scrape_once(port: int, gzipped: bool, openmetrics: bool) -> tuple[float, int]:
    """One scrape on a fresh connection; seconds from connect to the last byte, and body bytes."""
    headers = "Accept-Encoding: gzip\r\n" if gzipped else ""
    if openmetrics:
        headers += "Accept: application/openmetrics-text; version=1.0.0\r\n"
    request = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n".encode()
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(262144):
            chunks.append(chunk)
    elapsed = time.perf_counter() - start
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.split(b" ", 2)[1] == b"200":
        raise RuntimeError(f"scrape of port {port} answered {head[:80]!r}")
    return elapsed, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=8, help="GPU count of the hgx-b200 model (72 = worst case)")
    parser.add_argument("--every-family", action="store_true", help="also fill every family the simulation does not")
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--gzip", action="store_true", help="ask for gzip, as Prometheus does by default")
    parser.add_argument("--openmetrics", action="store_true", help="ask for OpenMetrics, as Prometheus prefers")
    parser.add_argument("--fresh", action="store_true",
                        help="publish a new version before every scrape, as when each scrape follows a poll")
    parser.add_argument("--base", help="also serve a base git revision's snapshot module (A/B of the cache)")
    parser.add_argument("--alone", action="store_true",
                        help="serve and scrape only the cache (no other server's work between its scrapes)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args()

    sides = ["cached"] if args.alone else ["cached", *(["base"] if args.base else []), "generate_latest"]
    ctx = multiprocessing.get_context("spawn")
    pipes, children = {}, []
    for side in sides:
        pipes[side], child_end = ctx.Pipe()
        children.append(ctx.Process(target=serve, args=(side, args.gpus, args.every_family, args.base, child_end),
                                    daemon=True))
        children[-1].start()
    infos = {side: pipes[side].recv() for side in sides}
    times: dict[str, list[float]] = {side: [] for side in sides}
    sizes: dict[str, int] = {}
    try:
        for n in range(20 + args.scrapes):  # 20 warm-up rounds, then measured rounds
            for side in sides:
                if args.fresh:
                    pipes[side].send("publish")
                    pipes[side].recv()
                elapsed, sizes[side] = scrape_once(infos[side]["port"], args.gzip, args.openmetrics)
                if n >= 20:
                    times[side].append(elapsed)
        render = {}
        if not args.alone:
            pipes["cached"].send("render")
            render = pipes["cached"].recv()
    finally:
        for side, child in zip(sides, children, strict=True):
            pipes[side].send("stop")
            child.join(10)

    def stats(values: list[float]) -> dict[str, float]:
        return {"p50": percentile(values, 0.5) * 1e3, "p99": percentile(values, 0.99) * 1e3,
                "max": max(values) * 1e3}

    info = infos["cached"]
    http = {side: stats(times[side]) for side in sides}
    result = {
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
        "gpus": args.gpus, "every_family": args.every_family, "families": info["families"],
        "series": info["series"], "scrapes": args.scrapes, "gzip": args.gzip, "openmetrics": args.openmetrics,
        "fresh": args.fresh, "base": args.base, "alone": args.alone, "bytes": sizes, "http_ms": http, "render_ms": render,
        "ratio_p50": {side: http[side]["p50"] / http["cached"]["p50"] for side in sides if side != "cached"},
        "ratio_p99": {side: http[side]["p99"] / http["cached"]["p99"] for side in sides if side != "cached"},
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "loadavg_1m": os.getloadavg()[0],
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    encoding = "gzip" if args.gzip else "identity"
    fmt = "OpenMetrics" if args.openmetrics else "text 0.0.4"
    print(f"{args.gpus} GPUs{' every family' if args.every_family else ''}{', fresh' if args.fresh else ''}: "
          f"{info['families']} families, {info['series']} series, {fmt}, {encoding}, {args.scrapes} scrapes each, "
          f"load {result['loadavg_1m']:.2f}")
    for side in sides:
        ratio = "" if side == "cached" else (f"  x{result['ratio_p50'][side]:.1f} p50, "
                                             f"x{result['ratio_p99'][side]:.1f} p99 vs cached")
        print(f"  {side:16} p50 {http[side]['p50']:8.3f} ms  p99 {http[side]['p99']:8.3f} ms  "
              f"{sizes[side]:>8} bytes{ratio}")
    if render:
        print("  in-process ms    " + "  ".join(f"{k} {v:.4g}" for k, v in render.items()))


if __name__ == "__main__":
    main()
