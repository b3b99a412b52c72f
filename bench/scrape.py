"""Scrape-path benchmark: /metrics served from the pre-rendered cache vs rendering on every scrape.

Both sides hold the same samples (the simulation's families, plus with ``--every-family`` every
other catalog family, mirrored into a prometheus_client registry through a custom collector).
Each HTTP server runs in its own child process and this process is the client, so neither server
shares a GIL with the client or with the other (freeing one side's garbage cannot stall the other). Scrapes alternate (ours, theirs, ours, ...) over loopback, one new connection per
scrape, and the time is taken from connect to the last byte. The child also times the work behind
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

from bench.workload import every_family, simulated_source  # noqa: E402
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


def build(gpus: int, every: bool) -> tuple[SnapshotStore, dict[str, list[Family]]]:
    """Our store with the samples published, and the same families by source for the mirror."""
    store = SnapshotStore()
    if every:
        _, groups = every_family(gpus)
    else:
        source = simulated_source(gpus)
        source.poll()
        groups = {"simulated": source.poll()}
    own = Snapshot.of("exporter", groups.get("exporter", []))
    for name, families in groups.items():
        if name != "exporter":
            store.publish(name, Snapshot.of(name, families), lambda: own)
    return store, groups


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


def serve(side: str, gpus: int, every: bool, pipe: Connection) -> None:
    """Child process: one side's server over the samples; the "ours" child also answers timing requests."""
    from exporter.scheduler import Scheduler
    from exporter.server import ExporterHTTPServer

    store, groups = build(gpus, every)
    families = [f for fams in groups.values() for f in fams]
    registry = CollectorRegistry()
    registry.register(MirrorCollector(families))
    if side == "ours":
        server = ExporterHTTPServer(("127.0.0.1", 0), Scheduler([], store, "simulated"))
        server.serve_in_thread()
    else:
        server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    text = store.current().text
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    pipe.send({"port": server.server_address[1], "series": series,
               "families": sum(1 for line in text.splitlines() if line.startswith(b"# TYPE"))})
    own = Snapshot.of("exporter", groups.get("exporter", []))
    source = next(name for name in groups if name != "exporter")
    while (request := pipe.recv()) != "stop":
        if request == "publish":  # a poll finished: the next scrape sees a new version (no-op for theirs)
            if side == "ours":
                store.publish(source, store.snapshot(source), lambda: own)
            pipe.send("ok")
        else:
            pipe.send(_render_times(store, groups, 30 if gpus > 16 else 100))
    server.shutdown()


def _render_times(store: SnapshotStore, groups: dict[str, list[Family]], repeat: int) -> dict[str, float]:
    """Median in-process ms of what sits behind a scrape, on each side."""
    own = Snapshot.of("exporter", groups.get("exporter", []))
    source = next(name for name in groups if name != "exporter")
    snapshot = store.snapshot(source)
    registry = CollectorRegistry()
    registry.register(MirrorCollector([f for fams in groups.values() for f in fams]))
    return {
        "cached_body": _median_ms(lambda: store.current().body(openmetrics=False, gzipped=True), 1000),
        "publish": _median_ms(lambda: store.publish(source, snapshot, lambda: own), repeat),
        "gzip_once": _median_ms(lambda: gzip.compress(store.current().text, compresslevel=6, mtime=0), repeat),
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
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    pipes, children = {}, []
    for side in ("ours", "theirs"):
        pipes[side], child_end = ctx.Pipe()
        children.append(ctx.Process(target=serve, args=(side, args.gpus, args.every_family, child_end), daemon=True))
        children[-1].start()
    info = pipes["ours"].recv()
    ours_port, theirs_port = info["port"], pipes["theirs"].recv()["port"]
    pipe = pipes["ours"]
    try:
        for _ in range(20):  # warm-up both
            scrape_once(ours_port, args.gzip, args.openmetrics)
            scrape_once(theirs_port, args.gzip, args.openmetrics)
        ours_t, theirs_t = [], []
        ours_bytes = theirs_bytes = 0
        for _ in range(args.scrapes):
            if args.fresh:
                pipe.send("publish")
                pipe.recv()
            t, ours_bytes = scrape_once(ours_port, args.gzip, args.openmetrics)
            ours_t.append(t)
            t, theirs_bytes = scrape_once(theirs_port, args.gzip, args.openmetrics)
            theirs_t.append(t)
        pipe.send("render")
        render = pipe.recv()
    finally:
        for side, child in zip(("ours", "theirs"), children, strict=True):
            pipes[side].send("stop")
            child.join(10)

    def stats(times: list[float]) -> dict[str, float]:
        return {"p50": percentile(times, 0.5) * 1e3, "p99": percentile(times, 0.99) * 1e3,
                "max": max(times) * 1e3}

    result = {
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
        "gpus": args.gpus,
        "every_family": args.every_family,
        "families": info["families"],
        "series": info["series"],
        "scrapes": args.scrapes,
        "gzip": args.gzip,
        "openmetrics": args.openmetrics,
        "fresh": args.fresh,
        "bytes": {"cached": ours_bytes, "generate_latest": theirs_bytes},
        "http_ms": {"cached": stats(ours_t), "generate_latest": stats(theirs_t)},
        "render_ms": render,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "loadavg_1m": os.getloadavg()[0],
    }
    result["ratio_p50"] = result["http_ms"]["generate_latest"]["p50"] / result["http_ms"]["cached"]["p50"]
    result["ratio_p99"] = result["http_ms"]["generate_latest"]["p99"] / result["http_ms"]["cached"]["p99"]
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    h = result["http_ms"]
    encoding = "gzip" if args.gzip else "identity"
    fmt = "OpenMetrics" if args.openmetrics else "text 0.0.4"
    print(f"{args.gpus} GPUs{' (every family)' if args.every_family else ''}{' (fresh)' if args.fresh else ''}: "
          f"{info['families']} families, "
          f"{info['series']} series, {ours_bytes} bytes ({fmt}, {encoding}), {args.scrapes} scrapes each, "
          f"load {result['loadavg_1m']:.2f}")
    print(f"  cached /metrics     p50 {h['cached']['p50']:.3f} ms  p99 {h['cached']['p99']:.3f} ms")
    print(f"  generate_latest     p50 {h['generate_latest']['p50']:.3f} ms  p99 {h['generate_latest']['p99']:.3f} ms"
          f"  ({theirs_bytes} bytes)")
    print(f"  ratio (theirs/ours) p50 {result['ratio_p50']:.1f}x  p99 {result['ratio_p99']:.1f}x")
    print("  in-process ms       " + "  ".join(f"{k} {v:.4g}" for k, v in render.items()))


if __name__ == "__main__":
    main()
