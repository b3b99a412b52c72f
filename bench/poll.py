"""Poll-path benchmark: CPU time of one poll cycle per source, in one process, sources taking turns.

A cycle is what the scheduler's worker thread does: ``source.poll()`` then ``Snapshot.of`` (the
per-family rendering). CPU is ``time.process_time`` of this process, so an upstream served from
another process (the HTTP fixtures) costs nothing here but its client side.

- simulated: the hgx-b200 simulation at each ``--gpus`` count, its clock advanced 10 s a cycle
  (the draws per cycle saturate at 2000, so a 10 s cycle is the heavy case).
- nvml-replay: the real nvml source over ``ReplayBackend`` with the H200 capture
  (tests/fixtures/nvml/h200x2) copied to N GPUs and turned Blackwell (18 NVLink5 links each).
  The replay answers from dicts, so this is the source's own Python cost, not driver time; the
  driver time on real GPUs is in bench/results/nvml* (the nvml helper's hardware report).
- triton / trtllm_serve: the real sources reading the committed fixtures from a
  ``python -m http.server`` child process over loopback (metrics only, no HTTP API).

    python bench/poll.py --gpus 1 8 72 --cycles 30 --out bench/results/poll.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import REPO, simulated_source  # noqa: E402
from exporter.snapshot import Family, Snapshot  # noqa: E402

RECORDING = REPO / "tests" / "fixtures" / "nvml" / "h200x2" / "nvml_probe.json"
OVERLAY = REPO / "tests" / "fixtures" / "nvml" / "h200x2_overlay.json"
FIXTURES = {"triton": REPO / "tests" / "fixtures" / "triton" / "cpp_backend_metrics.txt",
            "trtllm_serve": REPO / "tests" / "fixtures" / "trtllm_serve" / "prometheus_prefixed.txt"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def widened_recording(gpus: int) -> tuple[dict, dict]:
    """The 2-GPU H200 capture and its overlay, repeated to ``gpus`` devices with their own index and UUID."""
    recording = json.loads(RECORDING.read_text())
    overlay = json.loads(OVERLAY.read_text())["calls"]
    devices = recording["devices"]
    wide = []
    for i in range(gpus):
        device = copy.deepcopy(devices[i % len(devices)])
        device["index"] = i
        uuid = device["calls"]["nvmlDeviceGetUUID"]["value"]
        device["calls"]["nvmlDeviceGetUUID"]["value"] = f"{uuid[:-4]}{i:04x}"
        wide.append(device)
    recording = {**recording, "count": gpus, "devices": wide}
    overlay = {call: {str(i): answers[str(i % len(devices))] for i in range(gpus) if str(i % len(devices)) in answers}
               for call, answers in overlay.items()}
    return recording, overlay


def nvml_cycle(gpus: int, clock: FakeClock) -> Callable[[], list[Family]]:
    from exporter.sources.nvml.source import NvmlConfig, NvmlSource
    from tests.nvml_replay import ReplayBackend

    recording, overlay = widened_recording(gpus)
    backend = ReplayBackend(recording, overlay)
    config = NvmlConfig(enabled=True, xid_events=False, gpu_deadline=2.0, timeout=5.0)
    source = NvmlSource(config, backend=backend, clock=clock)
    backend.init()
    for index in range(gpus):
        backend.make_blackwell(index)
    source.probe()
    return source.poll


def http_cycle(name: str, url: str, clock: FakeClock) -> Callable[[], list[Family]]:
    if name == "triton":
        from exporter.sources.triton import TritonConfig, TritonSource

        return TritonSource(TritonConfig(enabled=True, interval=10, timeout=5,
                                         endpoints=[{"url": url, "api": False}]), clock=clock).poll
    from exporter.sources.trtllm_serve import TrtllmServeConfig, TrtllmServeSource

    return TrtllmServeSource(TrtllmServeConfig(enabled=True, interval=10, timeout=5,
                                               endpoints=[{"url": url, "model": "llama"}]), clock=clock).poll


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 72])
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    clock = FakeClock()
    cycles: dict[tuple[str, int], tuple[str, Callable[[], list[Family]]]] = {}
    for gpus in args.gpus:
        cycles[("simulated", gpus)] = ("simulated", simulated_source(gpus, clock=clock).poll)
        if RECORDING.exists():
            cycles[("nvml-replay", gpus)] = ("nvml", nvml_cycle(gpus, clock))
    served = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    port = free_port()
    for name, fixture in FIXTURES.items():
        shutil.copy(fixture, served / f"{name}.txt")
    upstream = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                cwd=served, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        for name in FIXTURES:
            cycles[(name, 0)] = (name, http_cycle(name, f"http://127.0.0.1:{port}/{name}.txt", clock))

        cpu: dict[tuple[str, int], list[float]] = {key: [] for key in cycles}
        wall: dict[tuple[str, int], list[float]] = {key: [] for key in cycles}
        series: dict[tuple[str, int], int] = {}
        for n in range(args.cycles + 2):  # two warm-up rounds
            clock.now += 10.0
            for key, (source, poll) in cycles.items():
                c0, w0 = time.process_time(), time.perf_counter()
                snapshot = Snapshot.of(source, poll())
                c1, w1 = time.process_time(), time.perf_counter()
                series[key] = sum(text.count("\n") for text in snapshot.rendered.values())
                if n >= 2:
                    cpu[key].append(c1 - c0)
                    wall[key].append(w1 - w0)
    finally:
        upstream.terminate()
        upstream.wait(5)
        shutil.rmtree(served, ignore_errors=True)

    rows = []
    for (source, gpus), times in cpu.items():
        rows.append({"source": source, "gpus": gpus or None, "series": series[(source, gpus)],
                     "cpu_ms_median": statistics.median(times) * 1e3, "cpu_ms_max": max(times) * 1e3,
                     "wall_ms_median": statistics.median(wall[(source, gpus)]) * 1e3})
    result = {"command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]), "cycles": args.cycles, "rows": rows,
              "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
              "loadavg_1m": os.getloadavg()[0]}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.cycles} cycles per source, alternating, load {result['loadavg_1m']:.2f}")
    print(f"  {'source':14} {'gpus':>4} {'series':>7} {'cpu ms':>8} {'max':>8} {'wall ms':>8}  {'% core @10s':>11} {'@1s':>6}")
    for row in rows:
        share = row["cpu_ms_median"] / 10e3 * 100
        print(f"  {row['source']:14} {row['gpus'] or '-':>4} {row['series']:>7} {row['cpu_ms_median']:8.2f} "
              f"{row['cpu_ms_max']:8.2f} {row['wall_ms_median']:8.2f}  {share:10.3f}% {share * 10:5.2f}%")


if __name__ == "__main__":
    main()
