"""Proof on real GPUs: the nvml source against nvidia-smi, under load, and batched vs naive timing.

Usage (on a machine with NVIDIA GPUs and the driver loaded; writes OUTDIR/nvml_hw_report.{json,md}):

    python3 bench/nvml_hw_report.py OUTDIR [--port 9402]

1. Starts ``blackwell-exporter run`` with only the nvml source (interval 2 s, legacy NVLink counters
   read every poll so they are current) and scrapes /metrics.
2. Compares, per GPU and link, NVLink state, speed and error counters with ``nvidia-smi nvlink -s``
   and ``-e``, and power, temperatures, memory, clocks, P-state and PCIe with ``--query-gpu``.
3. Runs a bf16 matmul on GPU0 and a GPU0->GPU1 copy loop (PyTorch), scrapes before and during, and
   reports tensor activity and NVLink traffic from the exported metrics.
4. Times, in this process, one poll cycle of the nvml source (one batched field-values call per GPU)
   against a naive poll that asks every counter of every link in its own call, both on the same
   GPUs in the same run, and reports the per-GPU cost.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.sources.nvml.backend import NvmlError, PynvmlBackend  # noqa: E402
from exporter.sources.nvml.capabilities import CLOCK_MEM, CLOCK_SM  # noqa: E402
from exporter.sources.nvml.reader import GpuState, read_gpu  # noqa: E402
from exporter.sources.nvml.source import NvmlConfig, NvmlSource  # noqa: E402

SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            labels = frozenset(LABEL.findall(m.group(3) or ""))
            out[(m.group(1), labels)] = float(m.group(4))
    return out


def get(metrics: dict, name: str, **labels: str) -> float | None:
    return metrics.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return parse(r.read().decode())


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout


def smi_nvlink_s() -> dict[tuple[int, int], float | None]:
    """(gpu, link) -> GB/s, None for an inactive link."""
    out, gpu = {}, -1
    for line in sh("nvidia-smi nvlink -s").splitlines():
        m = re.match(r"GPU (\d+):", line)
        if m:
            gpu = int(m.group(1))
            continue
        m = re.match(r"\s*Link (\d+): (.*)", line)
        if m:
            speed = re.match(r"([\d.]+) GB/s", m.group(2).strip())
            out[(gpu, int(m.group(1)))] = float(speed.group(1)) if speed else None
    return out


def smi_nvlink_e() -> dict[tuple[int, int, str], float]:
    """(gpu, link, 'Replay Errors'|'Recovery Errors'|'CRC Errors'|...) -> value."""
    out, gpu = {}, -1
    for line in sh("nvidia-smi nvlink -e").splitlines():
        m = re.match(r"GPU (\d+):", line)
        if m:
            gpu = int(m.group(1))
            continue
        m = re.match(r"\s*Link (\d+): ([A-Za-z ]+): (\d+)", line)
        if m:
            out[(gpu, int(m.group(1)), m.group(2).strip())] = float(m.group(3))
    return out


QUERY = ("index,power.draw,power.limit,temperature.gpu,temperature.memory,memory.used,memory.reserved,memory.total,"
         "clocks.sm,clocks.mem,pstate,pcie.link.gen.current,pcie.link.width.current,utilization.gpu")


def smi_query() -> list[dict[str, str]]:
    keys = QUERY.split(",")
    rows = []
    for line in sh(f"nvidia-smi --query-gpu={QUERY} --format=csv,noheader,nounits").strip().splitlines():
        rows.append(dict(zip(keys, (v.strip() for v in line.split(",")), strict=False)))
    return rows


def compare(metrics: dict) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []

    def check(what: str, ours: float | None, theirs: float | None, tol: float, rel: float = 0.0) -> None:
        ok = ours is not None and theirs is not None and abs(ours - theirs) <= max(tol, rel * abs(theirs))
        checks.append({"what": what, "exporter": ours, "nvidia_smi": theirs, "tolerance": max(tol, rel * abs(theirs or 0)),
                       "ok": bool(ok)})

    speeds = smi_nvlink_s()
    for (gpu, link), gbps in sorted(speeds.items()):
        up = get(metrics, "blackwell_nvlink_link_up", gpu=gpu, link=link)
        check(f"GPU{gpu} link{link} up", up, 0.0 if gbps is None else 1.0, 0)
        if gbps is not None:
            speed = get(metrics, "blackwell_nvlink_link_speed_bytes_per_second", gpu=gpu, link=link)
            check(f"GPU{gpu} link{link} speed GB/s", None if speed is None else speed / 1e9, gbps, 0.001)
    errors = smi_nvlink_e()
    names = {"Replay Errors": "blackwell_nvlink_dl_replay_errors_total",
             "Recovery Errors": "blackwell_nvlink_dl_recovery_errors_total",
             "CRC Errors": "blackwell_nvlink_dl_crc_errors_total"}
    legacy_vs_smi = []
    for (gpu, link, kind), value in sorted(errors.items()):
        if kind in names:
            check(f"GPU{gpu} link{link} {kind}", get(metrics, names[kind], gpu=gpu, link=link), value, 0)
        if kind == "CRC Errors":
            legacy_vs_smi.append({
                "gpu": gpu, "link": link, "smi_crc": value,
                "dl_crc_field_163": get(metrics, "blackwell_nvlink_dl_crc_errors_total", gpu=gpu, link=link),
                "legacy_crc_flit": get(metrics, "blackwell_nvlink_crc_flit_errors_total", gpu=gpu, link=link),
                "legacy_crc_data": get(metrics, "blackwell_nvlink_crc_data_errors_total", gpu=gpu, link=link),
                "legacy_ecc_data": get(metrics, "blackwell_nvlink_ecc_data_errors_total", gpu=gpu, link=link)})
    for row in smi_query():
        g = row["index"]

        def num(key: str, row: dict[str, str] = row) -> float | None:
            try:
                return float(row[key])
            except (KeyError, ValueError):
                return None

        def ours(name: str, scale: float = 1.0, g: str = g) -> float | None:
            v = get(metrics, name, gpu=g)
            return None if v is None else v * scale

        check(f"GPU{g} power W", ours("blackwell_gpu_power_watts"), num("power.draw"), 15, 0.15)
        check(f"GPU{g} power limit W", ours("blackwell_gpu_power_limit_watts"), num("power.limit"), 1)
        check(f"GPU{g} temperature C", ours("blackwell_gpu_temperature_celsius"), num("temperature.gpu"), 3)
        check(f"GPU{g} memory temperature C", ours("blackwell_gpu_memory_temperature_celsius"),
              num("temperature.memory"), 3)
        # NVML v2 as nvidia-smi: used without the driver's reserve (v1 counted ~615 MiB of reserve as used).
        check(f"GPU{g} memory used MiB", ours("blackwell_gpu_memory_used_bytes", 1 / 2**20), num("memory.used"), 2)
        check(f"GPU{g} memory reserved MiB", ours("blackwell_gpu_memory_reserved_bytes", 1 / 2**20),
              num("memory.reserved"), 2)
        check(f"GPU{g} memory total MiB", ours("blackwell_gpu_memory_total_bytes", 1 / 2**20), num("memory.total"), 1)
        check(f"GPU{g} SM clock MHz", ours("blackwell_gpu_sm_clock_hertz", 1e-6), num("clocks.sm"), 0, 0.1)
        check(f"GPU{g} memory clock MHz", ours("blackwell_gpu_memory_clock_hertz", 1e-6), num("clocks.mem"), 0, 0.02)
        pstate = row.get("pstate", "").lstrip("P")
        check(f"GPU{g} P-state", ours("blackwell_gpu_performance_state"), float(pstate) if pstate.isdigit() else None, 0)
        check(f"GPU{g} PCIe generation", ours("blackwell_gpu_pcie_link_generation"), num("pcie.link.gen.current"), 0)
        check(f"GPU{g} PCIe width", ours("blackwell_gpu_pcie_link_width"), num("pcie.link.width.current"), 0)
    return {"checks": checks, "passed": sum(c["ok"] for c in checks), "total": len(checks),
            "legacy_vs_smi_crc": legacy_vs_smi}


LOAD = r"""
import time, torch
stop = time.time() + float(__import__('sys').argv[1])
a = torch.randn(8192, 8192, device='cuda:0', dtype=torch.bfloat16)
buf = torch.empty(512 * 2**20, device='cuda:0', dtype=torch.uint8)
dst = torch.empty_like(buf, device='cuda:1')
while time.time() < stop:
    for _ in range(8):
        a @ a
    dst.copy_(buf, non_blocking=True)
    torch.cuda.synchronize(0); torch.cuda.synchronize(1)
"""


def load_phase(port: int, seconds: float) -> dict[str, Any]:
    def view(m: dict) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for g in ("0", "1"):
            out[f"gpu{g}"] = {
                "utilization": get(m, "blackwell_gpu_utilization_ratio", gpu=g),
                "tensor_any": get(m, "blackwell_gpu_tensor_active_ratio", gpu=g, pipe="any"),
                "tensor_hmma": get(m, "blackwell_gpu_tensor_active_ratio", gpu=g, pipe="hmma"),
                "dram_bw_util": get(m, "blackwell_gpu_dram_bandwidth_utilization_ratio", gpu=g),
                "power_w": get(m, "blackwell_gpu_power_watts", gpu=g),
                "nvlink_tx_data_bytes": get(m, "blackwell_nvlink_throughput_bytes_total", gpu=g, direction="tx",
                                            kind="data"),
                "nvlink_rx_data_bytes": get(m, "blackwell_nvlink_throughput_bytes_total", gpu=g, direction="rx",
                                            kind="data"),
                "gpm_nvlink_tx_bytes_per_s_all_links": sum(
                    v for (n, lab), v in m.items() if n == "blackwell_nvlink_link_tx_bytes_per_second"
                    and ("gpu", g) in lab),
                "gpm_nvlink_rx_bytes_per_s_all_links": sum(
                    v for (n, lab), v in m.items() if n == "blackwell_nvlink_link_rx_bytes_per_second"
                    and ("gpu", g) in lab),
            }
        return out

    before = view(scrape(port))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-c", LOAD, str(seconds)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    time.sleep(seconds * 0.75)
    during = view(scrape(port))
    t1 = time.time()
    out, _ = proc.communicate(timeout=seconds + 60)
    delta = {}
    for g in ("gpu0", "gpu1"):
        for k in ("nvlink_tx_data_bytes", "nvlink_rx_data_bytes"):
            a, b = before[g][k], during[g][k]
            delta[f"{g}_{k}_per_s"] = None if a is None or b is None else (b - a) / (t1 - t0)
    return {"before": before, "during": during, "counter_rates_between_scrapes": delta,
            "workload_rc": proc.returncode, "workload_output": out[-2000:]}


def timing(cycles: int) -> dict[str, Any]:
    backend = PynvmlBackend()
    results: dict[str, Any] = {}
    for label, legacy_interval in (("steady", 3600.0), ("with_legacy_refresh", 0.0)):
        source = NvmlSource(NvmlConfig(interval=10, timeout=9, gpu_deadline=8, gpm=False, xid_events=False,
                                       legacy_nvlink_interval=legacy_interval), backend=backend)
        source.probe()
        source.poll()  # warm-up (and the first legacy read)
        times = []
        for _ in range(cycles):
            t = time.perf_counter()
            source.poll()
            times.append((time.perf_counter() - t) * 1e3)
        gpus = [g.state.caps for g in source._gpus if g.state is not None]
        results[label] = {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                          "gpus": len(gpus), "per_gpu_median_ms": statistics.median(times) / len(gpus),
                          "field_entries_per_gpu": [len(c.field_requests) for c in gpus]}
        if label == "steady":
            caps_list = gpus
            serial = []
            states = [GpuState(c) for c in gpus]
            for _ in range(cycles):
                t = time.perf_counter()
                for state in states:
                    read_gpu(backend, state, "", 0.0, 3600.0)
                serial.append((time.perf_counter() - t) * 1e3)
            results["steady_serial"] = {"median_ms": statistics.median(serial), "min_ms": min(serial),
                                        "max_ms": max(serial), "per_gpu_median_ms": statistics.median(serial) / len(gpus)}
            results["capabilities"] = [c.table() for c in gpus]
            for c in gpus:
                results.setdefault("extra_answers", {})[str(c.index)] = {
                    "max_memory_clock_mhz": backend.max_clock_mhz(c.handle, CLOCK_MEM),
                    "memory_bus_width_bits": backend.memory_bus_width(c.handle),
                    "hbm_peak_bytes_per_second": c.hbm_peak_bytes_per_second}
            source.close()
            continue
        source.close()
    # Naive: the same readings, but every field of every link (and every device field) in its own call.
    backend.init()
    handles = [backend.handle_by_index(i) for i in range(backend.device_count())]
    naive_times = {"without_legacy": [], "with_legacy": []}
    for with_legacy in (False, True):
        for _ in range(cycles):
            t = time.perf_counter()
            for caps, h in zip(caps_list, handles, strict=True):
                for request in caps.field_requests:
                    backend.field_values(h, [request])
                backend.memory_info(h)
                backend.utilization(h)
                backend.power_usage_mw(h)
                backend.power_limit_mw(h)
                backend.temperature_c(h)
                backend.clock_mhz(h, CLOCK_SM)
                backend.clock_mhz(h, CLOCK_MEM)
                backend.performance_state(h)
                backend.pcie_link_generation(h)
                backend.pcie_link_width(h)
                backend.clocks_event_reasons(h)
                backend.fabric_info(h)
                if with_legacy:
                    for link, counter in caps.legacy:
                        backend.nvlink_error_counter(h, link, counter)
            naive_times["with_legacy" if with_legacy else "without_legacy"].append((time.perf_counter() - t) * 1e3)
    backend.shutdown()
    for key, times in naive_times.items():
        results[f"naive_{key}"] = {"median_ms": statistics.median(times), "min_ms": min(times),
                                   "max_ms": max(times), "per_gpu_median_ms": statistics.median(times) / len(handles)}
    results["ratio_steady_vs_naive_without_legacy"] = (results["steady"]["median_ms"]
                                                       / results["naive_without_legacy"]["median_ms"])
    results["ratio_serial_vs_naive_without_legacy"] = (results["steady_serial"]["median_ms"]
                                                       / results["naive_without_legacy"]["median_ms"])
    results["ratio_full_vs_naive_with_legacy"] = (results["with_legacy_refresh"]["median_ms"]
                                                  / results["naive_with_legacy"]["median_ms"])
    results["cycles"] = cycles
    return results


GPM_CHECK = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from exporter.sources.nvml.backend import PynvmlBackend
b = PynvmlBackend(); b.init()
h = b.handle_by_index(0)
s1 = b.gpm_sample(h); time.sleep(float(sys.argv[1])); s2 = b.gpm_sample(h)
v = b.gpm_metrics(s1, s2, [5, 7, 10, 2, 3, 62, 63])
print("ok", len(v))
"""


UNIT_CHECK = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
from exporter.sources.nvml.backend import PynvmlBackend
b = PynvmlBackend(); b.init()
hs = [b.handle_by_index(i) for i in range(2)]
ids = [(138, 0), (139, 0), (140, 0), (141, 0)]
src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda:0")
dst = torch.empty(1 << 30, dtype=torch.uint8, device="cuda:1")
dst.copy_(src); torch.cuda.synchronize(0); torch.cuda.synchronize(1)
time.sleep(2)
before = [[v.value for v in b.field_values(h, ids)] for h in hs]
s0 = [b.gpm_sample(h) for h in hs]; t0 = time.monotonic()
n = 20
t = time.monotonic()
for _ in range(n):
    dst.copy_(src)
torch.cuda.synchronize(0); torch.cuda.synchronize(1)
copy_s = time.monotonic() - t
time.sleep(2)
s1 = [b.gpm_sample(h) for h in hs]; window = time.monotonic() - t0
after = [[v.value for v in b.field_values(h, ids)] for h in hs]
gpm = [b.gpm_metrics(a, c, [60, 61]) for a, c in zip(s0, s1)]
print(json.dumps({"bytes_copied": n * (1 << 30), "copy_seconds": copy_s, "window_seconds": window,
                  "field_deltas_gpu0_gpu1_138_139_140_141": [[a - c for a, c in zip(x, y)] for x, y in zip(after, before)],
                  "gpm_total_rx_tx_mib_per_s_gpu0_gpu1": [[g.get(60), g.get(61)] for g in gpm]}))
"""


def throughput_unit_check() -> dict[str, Any]:
    """Copy exactly 20 GiB GPU0->GPU1 and see how far fields 138-141 and GPM's NVLink totals move."""
    r = subprocess.run([sys.executable, "-c", UNIT_CHECK, str(ROOT)], capture_output=True, text=True, timeout=120)
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": (r.stdout + r.stderr)[-1500:]}
    tx_delta = out["field_deltas_gpu0_gpu1_138_139_140_141"][0][0]
    rx_delta = out["field_deltas_gpu0_gpu1_138_139_140_141"][1][1]
    out["bytes_per_unit_gpu0_tx_data"] = out["bytes_copied"] / tx_delta if tx_delta else None
    out["bytes_per_unit_gpu1_rx_data"] = out["bytes_copied"] / rx_delta if rx_delta else None
    gpm_tx = out["gpm_total_rx_tx_mib_per_s_gpu0_gpu1"][0][1]
    out["gpm_gpu0_tx_bytes_over_window"] = None if gpm_tx is None else gpm_tx * 2**20 * out["window_seconds"]
    return out


def gpm_gap_check() -> dict[str, Any]:
    """nvmlGpmMetricsGet on two samples taken `gap` seconds apart, each in its own process."""
    out = {}
    for gap in (0.5, 0.001, 0.0):
        r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", GPM_CHECK, str(gap), str(ROOT)],
                           capture_output=True, text=True, timeout=60)
        out[str(gap)] = {"rc": r.returncode, "output": (r.stdout + r.stderr)[-600:]}
    return out


def start_exporter(port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update({
        "PYTHONFAULTHANDLER": "1",
        "BLACKWELL_EXPORTER_SOURCES__NVML__INTERVAL": "2",
        "BLACKWELL_EXPORTER_SOURCES__NVML__TIMEOUT": "1.8",
        "BLACKWELL_EXPORTER_SOURCES__NVML__GPU_DEADLINE": "1.5",
        "BLACKWELL_EXPORTER_SOURCES__NVML__LEGACY_NVLINK_INTERVAL": "0",
        "BLACKWELL_EXPORTER_SOURCES__NVML__DCGM_COMPAT_NAMES": "true",
    })
    log = open(log_path, "w")  # noqa: SIM115 - lives as long as the exporter
    return subprocess.Popen([sys.executable, "-m", "exporter", "run", "--listen", f"127.0.0.1:{port}"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(port: int, seconds: float) -> dict:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            m = scrape(port)
            if any(name == "blackwell_gpu_up" for name, _ in m):
                return m
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the exporter did not serve GPU metrics in time")


def markdown(report: dict[str, Any]) -> str:
    t = report["timing"]
    cmp_ = report["comparison"]
    lines = [
        "# nvml source on real hardware",
        "",
        f"Produced by `bench/nvml_hw_report.py` on {report['machine']['gpus']}, driver {report['machine']['driver']}, "
        f"at {report['machine']['when']}. Raw numbers: `nvml_hw_report.json`.",
        "",
        "## Exporter vs nvidia-smi",
        "",
        f"{cmp_['passed']} of {cmp_['total']} checks agree (NVLink state, speed and `nvlink -e` counters per "
        "link; power, temperatures, memory, clocks, P-state, PCIe per GPU; tolerances for values that move "
        "are in the JSON).",
        "",
    ]
    for n, attempt in enumerate(cmp_.get("earlier_attempts_disagreements", []), 1):
        lines.append(f"Attempt {n} disagreed on: " + "; ".join(
            f"{c['what']} exporter {c['exporter']} vs nvidia-smi {c['nvidia_smi']}" for c in attempt)
            + " (moving values; compared again after the next poll).")
        lines.append("")
    failed = [c for c in cmp_["checks"] if not c["ok"]]
    if failed:
        lines += ["Disagreements:", "", "| check | exporter | nvidia-smi | tolerance |", "| --- | --- | --- | --- |"]
        lines += [f"| {c['what']} | {c['exporter']} | {c['nvidia_smi']} | {c['tolerance']:g} |" for c in failed]
        lines.append("")
    lines += ["Two NVLink error paths, first links of each GPU (`nvidia-smi nvlink -e` CRC vs field 163 vs the "
              "legacy per-link call):", "",
              "| gpu | link | smi CRC | dl_crc (field 163) | legacy CRC_FLIT | legacy CRC_DATA | legacy ECC_DATA |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in cmp_["legacy_vs_smi_crc"]:
        if r["link"] < 3:
            lines.append(f"| {r['gpu']} | {r['link']} | {r['smi_crc']:g} | {r['dl_crc_field_163']} | "
                         f"{r['legacy_crc_flit']} | {r['legacy_crc_data']} | {r['legacy_ecc_data']} |")
    load = report["load"]
    lines += ["", "## Under load (bf16 matmul on GPU0, GPU0->GPU1 copy loop)", "",
              "| metric | GPU0 idle | GPU0 load | GPU1 idle | GPU1 load |", "| --- | --- | --- | --- | --- |"]
    for key in ("utilization", "tensor_any", "tensor_hmma", "dram_bw_util", "power_w",
                "gpm_nvlink_tx_bytes_per_s_all_links", "gpm_nvlink_rx_bytes_per_s_all_links"):
        row = [load["before"]["gpu0"][key], load["during"]["gpu0"][key], load["before"]["gpu1"][key],
               load["during"]["gpu1"][key]]
        lines.append(f"| {key} | " + " | ".join("-" if v is None else f"{v:.4g}" for v in row) + " |")
    unit = report.get("throughput_unit_check", {})
    if "exporter_gpu0_tx_data_delta_bytes" in unit:
        lines += ["", f"Exported `blackwell_nvlink_throughput_bytes_total{{gpu=\"0\",direction=\"tx\",kind=\"data\"}}` "
                  f"moved {unit['exporter_gpu0_tx_data_delta_bytes']:.6g} bytes across a copy of "
                  f"{unit['bytes_copied'] + 2**30:.6g} bytes (20 GiB timed + 1 GiB warm-up); GPU1 rx moved "
                  f"{unit['exporter_gpu1_rx_data_delta_bytes']:.6g}."]
    lines += ["", "NVLink data counters (fields 138/139) between the idle and the load scrape, bytes/s: "
              + ", ".join(f"{k} {v:.3g}" for k, v in load["counter_rates_between_scrapes"].items() if v is not None),
              "", "## Poll cost: batched vs naive (same GPUs, same run, "
              f"{t['cycles']} cycles each, GPM off in both)", "",
              "| poll | median ms (all GPUs) | per GPU ms | min | max |", "| --- | --- | --- | --- | --- |"]
    for key, name in (("steady", "nvml source, steady cycle (legacy counters not due; GPUs in parallel threads)"),
                      ("steady_serial", "same reads, GPUs one after the other (batching alone)"),
                      ("naive_without_legacy", "naive, one call per counter per link"),
                      ("with_legacy_refresh", "nvml source, cycle that re-reads the legacy per-link counters"),
                      ("naive_with_legacy", "naive, plus the legacy per-link counters")):
        r = t[key]
        lines.append(f"| {name} | {r['median_ms']:.2f} | {r['per_gpu_median_ms']:.2f} | {r['min_ms']:.2f} | "
                     f"{r['max_ms']:.2f} |")
    lines += ["", f"Steady batched / naive: **{t['ratio_steady_vs_naive_without_legacy']:.3f}** (target <= 0.333); "
              f"batching alone (serial): {t['ratio_serial_vs_naive_without_legacy']:.3f}. "
              f"With the legacy refresh in both: {t['ratio_full_vs_naive_with_legacy']:.3f} (the legacy counters "
              "have no batched form; the source reads them every `legacy_nvlink_interval`, 60 s by default).",
              "", "## Units of NVLink throughput fields 138-141 (exactly 20 GiB copied GPU0->GPU1, after a 1 GiB "
              "warm-up copy)", "",
              "`field_deltas_*` are raw link-0-scoped answers of fields 138-141; `exporter_*_delta_bytes` is the "
              "exported per-GPU series (sum over links, KiB x 1024) across the same copy (scraped before and "
              "after; the matmul load had ended).", "",
              "```", json.dumps(report["throughput_unit_check"], indent=1), "```",
              "", "## GPM: two samples `gap` s apart, nvmlGpmMetricsGet, each in its own process", "",
              "| gap s | exit code | output |", "| --- | --- | --- |",
              *(f"| {gap} | {r['rc']} | {r['output'].strip().splitlines()[-1] if r['output'].strip() else ''} |"
                for gap, r in report["gpm_gap_check"].items()),
              "", "## dcgm-exporter compatible names (exporter run with dcgm_compat_names: true; first lines)", "",
              "```", *report.get("dcgm_compat_sample", [])[:8], "```",
              "", "## Capability table logged at probe", "", "```", *t["capabilities"], "```", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--port", type=int, default=9402)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--load-seconds", type=float, default=16.0)
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": {
        "gpus": ", ".join(sh("nvidia-smi --query-gpu=name --format=csv,noheader").split("\n")).strip(", "),
        "driver": sh("nvidia-smi --query-gpu=driver_version --format=csv,noheader").split("\n")[0].strip(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "topology": sh("nvidia-smi topo -m")}}
    report["timing"] = timing(args.cycles)
    report["gpm_gap_check"] = gpm_gap_check()
    (args.outdir / "nvml_hw_report.json").write_text(json.dumps(report, indent=1, default=str))
    exporter = start_exporter(args.port, args.outdir / "exporter.log")
    try:
        wait_ready(args.port, 30)
        time.sleep(2.5)  # one more poll: GPM needs two samples
        # Power, clocks and temperatures move between the exporter's last poll (up to 2 s old) and the
        # nvidia-smi call: a check that disagrees is retried after the next poll, at most 3 attempts,
        # and every attempt's disagreements stay in the report.
        earlier: list[list[dict[str, Any]]] = []
        for _ in range(3):
            first = scrape(args.port)
            report["comparison"] = compare(first)
            if report["comparison"]["passed"] == report["comparison"]["total"]:
                break
            earlier.append([c for c in report["comparison"]["checks"] if not c["ok"]])
            time.sleep(2.5)
        report["comparison"]["earlier_attempts_disagreements"] = earlier
        report["dcgm_compat_sample"] = sorted(f"{n}{dict(lab)} {v}" for (n, lab), v in first.items()
                                              if n.startswith("DCGM_FI_"))[:20]
        report["load"] = load_phase(args.port, args.load_seconds)
        report["source_up"] = get(scrape(args.port), "blackwell_exporter_source_up", source="nvml")
        time.sleep(2.5)  # a poll after the load ended
        before = scrape(args.port)
        report["throughput_unit_check"] = throughput_unit_check()
        time.sleep(2.5)  # one more poll
        after = scrape(args.port)
        for key, gpu, direction in (("exporter_gpu0_tx_data_delta_bytes", "0", "tx"),
                                    ("exporter_gpu1_rx_data_delta_bytes", "1", "rx")):
            a = get(before, "blackwell_nvlink_throughput_bytes_total", gpu=gpu, direction=direction, kind="data")
            b = get(after, "blackwell_nvlink_throughput_bytes_total", gpu=gpu, direction=direction, kind="data")
            report["throughput_unit_check"][key] = None if a is None or b is None else b - a
    finally:
        exporter.terminate()
        try:
            exporter.wait(10)
        except subprocess.TimeoutExpired:
            exporter.kill()
    (args.outdir / "nvml_hw_report.json").write_text(json.dumps(report, indent=1, default=str))
    (args.outdir / "nvml_hw_report.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NvmlError as exc:
        print(f"NVML error: {exc}", file=sys.stderr)
        sys.exit(1)
