"""GPU checks: every GPU answers, driver and CUDA versions, compute capability, ECC, row remaps,
persistence mode. Each judges :class:`HostFacts` only."""

from __future__ import annotations

from collections.abc import Callable

from exporter.preflight.facts import GpuFacts, HostFacts
from exporter.preflight.result import CheckResult, failed, passed, skipped, warned
from exporter.preflight.settings import PreflightConfig


def version_tuple(text: str) -> tuple[int, ...]:
    """"580.159.04" -> (580, 159, 4); non-numeric parts end the tuple."""
    parts: list[int] = []
    for piece in text.strip().split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def _unreadable(check: str, host: HostFacts) -> CheckResult | None:
    if host.error is not None:
        return failed(check, f"GPUs could not be read ({host.origin}): {host.error}",
                      "Check that the NVIDIA driver is loaded (nvidia-smi) and that the exporter can open /dev/nvidia*.")
    if not host.gpus:
        return failed(check, f"no GPU found ({host.origin})", "Check the driver and the container's GPU runtime.")
    return None


def gpus_visible(host: HostFacts, cfg: PreflightConfig) -> CheckResult:
    name = "gpus_visible"
    if (bad := _unreadable(name, host)) is not None:
        return bad
    down = [g for g in host.gpus if not g.up]
    count = len(host.gpus)
    evidence = f"{count} GPU(s), {count - len(down)} answering"
    if down:
        detail = "; ".join(f"GPU {g.index}: {g.down_reason or 'down'}" for g in down)
        return failed(name, f"{evidence}; {detail}",
                      "A lost GPU needs a reset (nvidia-smi -r) or a node drain; check dmesg for XID 79/48.")
    if cfg.expected_gpu_count is not None and count != cfg.expected_gpu_count:
        return failed(name, f"{evidence}, expected {cfg.expected_gpu_count}",
                      "Check CUDA_VISIBLE_DEVICES/the container's device list, or set expected_gpu_count.")
    return passed(name, evidence)


def driver_cuda_version(host: HostFacts, cfg: PreflightConfig) -> CheckResult:
    name = "driver_cuda_version"
    if (bad := _unreadable(name, host)) is not None:
        return bad
    if host.driver_version is None:
        return failed(name, f"driver version unknown: {host.unknown.get('driver_version', 'not reported')}",
                      "Check that the NVIDIA driver is loaded (nvidia-smi).")
    evidence = f"driver {host.driver_version}"
    if version_tuple(host.driver_version) < version_tuple(cfg.min_driver_version):
        return failed(name, f"{evidence} < required {cfg.min_driver_version}",
                      f"Install driver {cfg.min_driver_version} or newer (Blackwell needs R570+).")
    if host.cuda_version is None:
        why = host.unknown.get("cuda_version", "not reported")
        return warned(name, f"{evidence}, CUDA version unknown ({why})",
                      "Read the CUDA version with nvidia-smi and compare it with the engine's build.")
    evidence += f", CUDA {host.cuda_version}"
    if version_tuple(host.cuda_version) < version_tuple(cfg.min_cuda_version):
        return failed(name, f"{evidence} < required CUDA {cfg.min_cuda_version}",
                      f"Update the driver to one that supports CUDA {cfg.min_cuda_version} or newer.")
    return passed(name, evidence)


def compute_capability(host: HostFacts, cfg: PreflightConfig) -> CheckResult:
    """10.x passes (Blackwell); 9.x warns (Hopper has no FP4 tensor cores); anything else fails."""
    name = "compute_capability"
    if (bad := _unreadable(name, host)) is not None:
        return bad
    seen: list[str] = []
    hopper: list[int] = []
    other: list[int] = []
    unknown: list[int] = []
    for gpu in _answering(host):
        if gpu.compute_capability is None:
            unknown.append(gpu.index)
            continue
        major, minor = gpu.compute_capability
        seen.append(f"GPU {gpu.index} {gpu.name or ''} {major}.{minor}".replace("  ", " "))
        if major == 9:
            hopper.append(gpu.index)
        elif major != 10:
            other.append(gpu.index)
    evidence = "; ".join(seen) or "no compute capability read"
    if unknown:
        evidence += f"; unknown on GPU {_join(unknown)}"
    if other or unknown:
        return failed(name, evidence, "Serve this engine on Blackwell (compute capability 10.x) GPUs.")
    if hopper:
        return warned(name, evidence,
                      "Hopper (9.x) runs FP8 but has no FP4 tensor cores: MX-FP4 GEMMs fall back. "
                      "Expected on a test box; on a production Blackwell box this is the wrong node.")
    return passed(name, evidence)


def ecc_mode(host: HostFacts, cfg: PreflightConfig) -> CheckResult:
    name = "ecc_mode"
    if (bad := _unreadable(name, host)) is not None:
        return bad
    return _per_gpu_flag(
        name, host, lambda g: g.ecc_current, "ecc", on="ECC on", off="ECC off",
        fix_off="Enable ECC: nvidia-smi -e 1, then reset the GPU or reboot.",
        extra=_ecc_pending,
    )


def _ecc_pending(gpus: list[GpuFacts]) -> CheckResult | None:
    pending_off = [g.index for g in gpus if g.ecc_current and g.ecc_pending is False]
    if pending_off:
        return warned("ecc_mode", f"ECC on now but set to turn off at the next reset on GPU {_join(pending_off)}",
                      "Run nvidia-smi -e 1 so ECC stays on after the next reset.")
    return None


def persistence_mode(host: HostFacts, cfg: PreflightConfig) -> CheckResult:
    name = "persistence_mode"
    if (bad := _unreadable(name, host)) is not None:
        return bad
    return _per_gpu_flag(
        name, host, lambda g: g.persistence, "persistence", on="persistence on", off="persistence off",
        fix_off="Run nvidia-persistenced (or nvidia-smi -pm 1) so the driver stays loaded between clients.",
    )


def row_remaps(host: HostFacts, cfg: PreflightConfig) -> CheckResult:
    name = "row_remaps"
    if (bad := _unreadable(name, host)) is not None:
        return bad
    gpus = _answering(host)
    failures = [g.index for g in gpus if g.remap_failure]
    pending = [g.index for g in gpus if g.remap_pending]
    unknown = [g for g in gpus if g.remap_pending is None]
    if failures:
        return failed(name, f"row remapping failed on GPU {_join(failures)}",
                      "The GPU ran out of spare rows: drain the node and RMA the GPU.")
    if pending:
        return failed(name, f"row remap pending on GPU {_join(pending)}",
                      "Reset the GPU (nvidia-smi -r, after draining) so the pending remap takes effect.")
    if len(unknown) == len(gpus):
        return skipped(name, f"row remapping not readable: {_reasons(unknown, 'remap')}")
    evidence = f"no pending or failed row remaps on GPU {_join([g.index for g in gpus if g.remap_pending is not None])}"
    if unknown:
        evidence += f"; not readable on GPU {_join([g.index for g in unknown])}"
    return passed(name, evidence)


def _per_gpu_flag(name: str, host: HostFacts, read: Callable[[GpuFacts], bool | None], key: str, *, on: str,
                  off: str, fix_off: str,
                  extra: Callable[[list[GpuFacts]], CheckResult | None] | None = None) -> CheckResult:
    gpus = _answering(host)
    off_gpus = [g.index for g in gpus if read(g) is False]
    on_gpus = [g.index for g in gpus if read(g)]
    unknown = [g for g in gpus if read(g) is None]
    if off_gpus:
        return failed(name, f"{off}: GPU {_join(off_gpus)}", fix_off)
    if not on_gpus:
        return skipped(name, f"not readable: {_reasons(unknown, key)}")
    if extra is not None and (result := extra(gpus)) is not None:
        return result
    evidence = f"{on}: GPU {_join(on_gpus)}"
    if unknown:
        return warned(name, f"{evidence}; unknown on GPU {_join([g.index for g in unknown])}",
                      "Read it with nvidia-smi -q on the GPUs that did not answer.")
    return passed(name, evidence)


def _answering(host: HostFacts) -> list[GpuFacts]:
    return [g for g in host.gpus if g.up]


def _reasons(gpus: list[GpuFacts], key: str) -> str:
    reasons = sorted({g.unknown.get(key, "not reported") for g in gpus})
    return "; ".join(reasons)


def _join(indexes: list[int]) -> str:
    return ", ".join(str(i) for i in indexes)
