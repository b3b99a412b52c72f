"""NVLink checks: every GPU pair joined by the expected number of links, every link active, no
errors on any link through any of NVML's counter paths.

How two GPUs are joined depends on the box. On NVSwitch systems (HGX B200, GB200 NVL72, HGX
H200) every link of a GPU goes to a switch, and each GPU reaches every other through all of its
switch links: the pair's link count is the smaller of the two GPUs' active switch links (what
``nvidia-smi topo -m`` prints as NV18), provided the fabric manager finished registering both.
On boards without a switch the links go GPU to GPU and are counted per peer.
"""

from __future__ import annotations

from itertools import combinations

from exporter.preflight.facts import CORRECTED_ERRORS, GpuFacts, HostFacts
from exporter.preflight.result import CheckResult, failed, passed, skipped, warned
from exporter.preflight.settings import PreflightConfig

_FABRIC_FIX = ("Start nvidia-fabricmanager (NVSwitch systems need it before CUDA can use NVLink) and check "
               "its log; a GPU stuck in_progress needs a reset.")


def _gpus_with_links(host: HostFacts) -> tuple[list[GpuFacts], CheckResult | None]:
    if host.error is not None:
        return [], failed("nvlink", f"GPUs could not be read ({host.origin}): {host.error}",
                          "Check that the NVIDIA driver is loaded (nvidia-smi).")
    return [g for g in host.gpus if g.up], None


def pair_links(a: GpuFacts, b: GpuFacts) -> int:
    """Active links that join GPU a to GPU b, seen from both ends."""
    def direct(x: GpuFacts, y: GpuFacts) -> int:
        return sum(1 for lk in x.links if lk.active and lk.remote_type == "gpu" and lk.remote_bus_id is not None
                   and y.bus_id is not None and lk.remote_bus_id.lower() == y.bus_id.lower())

    def switch(x: GpuFacts) -> int:
        return sum(1 for lk in x.links if lk.active and lk.remote_type == "switch")

    via_switch = min(switch(a), switch(b))
    return min(direct(a, b), direct(b, a)) + via_switch


def nvlink_topology(host: HostFacts, cfg: PreflightConfig) -> CheckResult:
    name = "nvlink_topology"
    gpus, bad = _gpus_with_links(host)
    if bad is not None:
        return failed(name, bad.evidence, bad.fix)
    if len(gpus) < 2:
        return skipped(name, f"{len(gpus)} answering GPU: no pair to join")
    if all(not g.links for g in gpus):
        reasons = sorted({g.unknown.get("links", "no NVLink reported") for g in gpus})
        return failed(name, f"no NVLink found on any GPU ({'; '.join(reasons)})",
                      "This box has no working NVLink: tensor parallelism would run over PCIe.")
    expected = cfg.expected_link_count
    short: list[str] = []
    counts: set[int] = set()
    for a, b in combinations(gpus, 2):
        n = pair_links(a, b)
        counts.add(n)
        if n < expected:
            short.append(f"GPU {a.index}-{b.index} NV{n}")
    switched = any(lk.remote_type == "switch" for g in gpus for lk in g.links)
    shape = "through NVSwitch" if switched else "GPU to GPU"
    pairs = len(gpus) * (len(gpus) - 1) // 2
    fabric = [f"GPU {g.index} {g.fabric_state}" for g in gpus
              if switched and g.fabric_state is not None and g.fabric_state != "completed"]
    if short:
        return failed(name, f"{len(short)} of {pairs} GPU pairs below NV{expected} ({shape}): {', '.join(short)}",
                      "Check nvidia-smi topo -m and nvidia-smi nvlink -s; reseat or RMA the GPU/baseboard "
                      "with missing links" + ("; " + _FABRIC_FIX if switched else "."))
    if fabric:
        return failed(name, f"NVSwitch fabric not ready: {', '.join(fabric)}", _FABRIC_FIX)
    nv = "/".join(f"NV{n}" for n in sorted(counts))
    return passed(name, f"all {pairs} GPU pair(s) joined {shape}, {nv} (expected NV{expected})")


def nvlink_links_active(host: HostFacts, cfg: PreflightConfig) -> CheckResult:
    name = "nvlink_links_active"
    gpus, bad = _gpus_with_links(host)
    if bad is not None:
        return failed(name, bad.evidence, bad.fix)
    if not any(g.links for g in gpus):
        return skipped(name, "no NVLink reported by any GPU")
    problems: list[str] = []
    total = active = 0
    for g in gpus:
        links = g.links
        up = [lk.link for lk in links if lk.active]
        down = [lk.link for lk in links if lk.active is False]
        unknown = [lk.link for lk in links if lk.active is None]
        total += len(links)
        active += len(up)
        expected = g.link_count if g.link_count is not None else cfg.expected_link_count
        if down:
            problems.append(f"GPU {g.index} links {_ranges(down)} inactive")
        if unknown:
            problems.append(f"GPU {g.index} links {_ranges(unknown)} state unknown")
        if len(up) < expected and not down and not unknown:
            problems.append(f"GPU {g.index} has {len(up)} of {expected} links")
    if problems:
        return failed(name, f"{active} of {total} links active; " + "; ".join(problems),
                      "Check nvidia-smi nvlink -s; an inactive link needs a GPU reset or hardware service.")
    return passed(name, f"{active} of {total} links active on {len(gpus)} GPU(s)")


def nvlink_errors(host: HostFacts, cfg: PreflightConfig) -> CheckResult:
    """Fail on any non-zero error counter; warn when only counters of corrected errors moved."""
    name = "nvlink_errors"
    gpus, bad = _gpus_with_links(host)
    if bad is not None:
        return failed(name, bad.evidence, bad.fix)
    paths: set[str] = set()
    hard: dict[tuple[str, str], list[str]] = {}
    soft: dict[tuple[str, str], list[str]] = {}
    counters = 0
    for g in gpus:
        for lk in g.links:
            for key, value in lk.errors.items():
                counters += 1
                paths.add(key[0])
                if value:
                    bucket = soft if key in CORRECTED_ERRORS else hard
                    bucket.setdefault(key, []).append(f"GPU {g.index} link {lk.link}={value:g}")
    if counters == 0:
        return skipped(name, "no NVLink error counter readable")
    read = f"{counters} counters read on paths {', '.join(sorted(paths))}"
    if hard:
        return failed(name, f"{read}; errors: {_describe(hard)}" + (f"; corrected: {_describe(soft)}" if soft else ""),
                      "Watch the counters for growth (nvidia-smi nvlink -e); a link that keeps counting CRC, "
                      "replay or recovery errors needs reseating or RMA before it carries tensor-parallel traffic.")
    if soft:
        return warned(name, f"{read}; only corrected-error counters are non-zero: {_describe(soft)}",
                      "Corrected errors are absorbed by the link; compare with nvidia-smi nvlink -e, and "
                      "act only if they grow quickly or uncorrected counters move.")
    return passed(name, f"{read}; all zero")


def _describe(found: dict[tuple[str, str], list[str]], limit: int = 3) -> str:
    parts = []
    for (path, counter), where in sorted(found.items()):
        shown = ", ".join(where[:limit]) + (f" (+{len(where) - limit} more)" if len(where) > limit else "")
        parts.append(f"{path}/{counter} on {len(where)} link(s): {shown}")
    return "; ".join(parts)


def _ranges(links: list[int]) -> str:
    """[0,1,2,5] -> "0-2,5"."""
    out: list[str] = []
    start = prev = None
    for n in sorted(links):
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = n
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(out)
