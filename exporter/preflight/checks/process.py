"""Serving-process environment: NCCL_P2P_LEVEL=NVL, and CUDA_VISIBLE_DEVICES naming the GPUs
the process actually has contexts on."""

from __future__ import annotations

from exporter.preflight.facts import HostFacts, ProcessFacts
from exporter.preflight.result import CheckResult, failed, passed, skipped, warned
from exporter.preflight.settings import PreflightConfig


def _unreadable(name: str, proc: ProcessFacts | None) -> CheckResult | None:
    if proc is None:
        return skipped(name, "no serving process configured (set serving_pid or serving_process)")
    if proc.environ is None:
        return skipped(name, f"serving process {proc.pid or ''}: {proc.reason}".replace("  ", " "))
    return None


def nccl_p2p_level(proc: ProcessFacts | None, cfg: PreflightConfig) -> CheckResult:
    name = "serving_nccl_p2p_level"
    if (bad := _unreadable(name, proc)) is not None:
        return bad
    assert proc is not None and proc.environ is not None
    env = proc.environ
    who = f"pid {proc.pid} ({proc.name})"
    if env.get("NCCL_P2P_DISABLE", "0") not in ("0", ""):
        return failed(name, f"{who}: NCCL_P2P_DISABLE={env['NCCL_P2P_DISABLE']}",
                      "Unset NCCL_P2P_DISABLE: it sends all-reduce traffic through host memory instead of NVLink.")
    level = env.get("NCCL_P2P_LEVEL")
    if level is None:
        return warned(name, f"{who}: NCCL_P2P_LEVEL not set",
                      "Set NCCL_P2P_LEVEL=NVL in the serving environment so NCCL uses peer-to-peer over NVLink only.")
    if level.upper() != "NVL":
        return failed(name, f"{who}: NCCL_P2P_LEVEL={level}",
                      "Set NCCL_P2P_LEVEL=NVL: other levels allow or force P2P over PCIe paths.")
    return passed(name, f"{who}: NCCL_P2P_LEVEL={level}")


def cuda_visible_devices(proc: ProcessFacts | None, host: HostFacts | None, cfg: PreflightConfig) -> CheckResult:
    """Every device named exists, and the GPUs the process holds contexts on are the ones named."""
    name = "serving_cuda_visible_devices"
    if (bad := _unreadable(name, proc)) is not None:
        return bad
    assert proc is not None and proc.environ is not None
    who = f"pid {proc.pid} ({proc.name})"
    raw = proc.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = [] if host is None or host.error else [g for g in host.gpus if g.up]
    if not gpus:
        return skipped(name, f"{who}: CUDA_VISIBLE_DEVICES={raw!r}; GPUs could not be read to compare")
    named: list[int] = []
    unresolved: list[str] = []
    if raw is None:
        named = [g.index for g in gpus]
    else:
        for token in (t.strip() for t in raw.split(",") if t.strip()):
            match = [g.index for g in gpus if (token.isdigit() and g.index == int(token))
                     or (g.uuid is not None and g.uuid.startswith(token) and token.startswith("GPU-"))]
            if match:
                named.extend(match)
            else:
                unresolved.append(token)
    text = f"{who}: CUDA_VISIBLE_DEVICES={'unset (all GPUs)' if raw is None else raw}"
    if unresolved:
        return failed(name, f"{text}; names no GPU of this box: {', '.join(unresolved)}",
                      "Fix CUDA_VISIBLE_DEVICES to indexes or UUIDs nvidia-smi -L lists (CUDA stops at the first bad entry).")
    if not named:
        return failed(name, f"{text}; hides every GPU", "Set CUDA_VISIBLE_DEVICES to the GPUs the engine was built for.")
    if any(g.processes is None for g in gpus):
        return passed(name, f"{text} -> GPU {', '.join(map(str, named))}; per-GPU processes not readable")
    in_use = [g.index for g in gpus if proc.pid in (g.processes or ())]
    if not in_use:
        return warned(name, f"{text} -> GPU {', '.join(map(str, named))}; pid {proc.pid} has no context on any GPU "
                      "(not started yet, or NVML sees another pid namespace)",
                      "Run preflight after the engine has loaded, in the host pid namespace.")
    if sorted(in_use) != sorted(set(named)):
        return failed(name, f"{text} -> GPU {', '.join(map(str, named))}, but it runs on GPU "
                      f"{', '.join(map(str, in_use))}",
                      "Restart the server with CUDA_VISIBLE_DEVICES listing exactly the GPUs it should use.")
    return passed(name, f"{text}; running on GPU {', '.join(map(str, in_use))} as named")
