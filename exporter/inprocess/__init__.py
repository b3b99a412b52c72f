"""Code that runs inside the serving process: the CUPTI GEMM dispatch sampler.

Add one call to the process that runs TensorRT-LLM (a Triton Python backend's ``initialize``,
a trtllm-serve launch script, an LLM-API program)::

    from exporter.inprocess import start_sampler
    start_sampler()

It records kernel launches in short windows and writes cumulative ``[launches, gpu_ns]`` per
raw kernel name and GPU to ``$BLACKWELL_DISPATCH_STATE_DIR/<process>.json`` (state format
version 3, as the CUPTI injection library writes it), which the exporter's ``dispatch`` source
reads and classifies. Settings come from the arguments or the environment
(``BLACKWELL_DISPATCH_DUTY_CYCLE``, ``BLACKWELL_DISPATCH_PERIOD``, ``BLACKWELL_DISPATCH_STATE_DIR``,
``BLACKWELL_DISPATCH_PROCESS``, ``BLACKWELL_DISPATCH_MAX_NAMES``); a value that does not parse is
one log line and the default. Without cupti-python (or with CUPTI taken by another subscriber)
it logs why and writes a state file that says so: the serving process carries on unsampled.

Prefer the injection library (``CUDA_INJECTION64_PATH``) where it applies: it reaches every
process of the serving stack (MPI ranks, Ray actors, C++ workers). This sampler is for a Python
process that already runs cupti-python.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from pathlib import Path

from exporter.inprocess.accumulator import DEFAULT_MAX_NAMES
from exporter.inprocess.sampler import DispatchSampler
from exporter.inprocess.state import DEFAULT_DIR

__all__ = ["DEFAULT_DUTY_CYCLE", "DEFAULT_PERIOD", "process_name", "start_sampler", "stop_sampler"]

log = logging.getLogger("blackwell_exporter.inprocess")

DEFAULT_DUTY_CYCLE = 0.01
DEFAULT_PERIOD = 30.0
_RANK_VARIABLES = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID")
_sampler: DispatchSampler | None = None


def process_name() -> str:
    """A name that survives restarts where the launcher gives one (the local MPI/torch rank)."""
    explicit = os.environ.get("BLACKWELL_DISPATCH_PROCESS")
    if explicit:
        return explicit
    for variable in _RANK_VARIABLES:
        if os.environ.get(variable, "").isdigit():
            return f"rank{os.environ[variable]}"
    return f"pid{os.getpid()}"


def _setting(variable: str, default: float, kind: type = float) -> float:
    raw = os.environ.get(variable)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        log.warning("blackwell dispatch sampler: %s=%r is not a number; using %s", variable, raw, default)
        return default


def _free_path(directory: Path, name: str, period: float) -> Path:
    """``<name>.json``, or ``<name>-pid<PID>.json`` while a live process of another pid writes the first."""
    path = directory / f"{name}.json"
    try:
        other = json.loads(path.read_text())
        live = other.get("status") != "exited" and time.time() - float(other.get("updated_at", 0)) < 4 * period
        if other.get("pid") != os.getpid() and live:
            return directory / f"{name}-pid{os.getpid()}.json"
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # no file, or not a state file a live writer keeps: take the name
    return path


def start_sampler(duty_cycle: float | None = None, period: float | None = None,
                  state_dir: str | Path | None = None, process: str | None = None) -> DispatchSampler:
    """Start the sampler once per process; later calls return the running one.

    It always returns the sampler: ``sampler.sampling`` is False when CUPTI cannot be used, and the
    state file's ``reason`` says why.
    """
    global _sampler
    if _sampler is not None:
        return _sampler
    duty = duty_cycle if duty_cycle is not None else _setting("BLACKWELL_DISPATCH_DUTY_CYCLE", DEFAULT_DUTY_CYCLE)
    every = period if period is not None else _setting("BLACKWELL_DISPATCH_PERIOD", DEFAULT_PERIOD)
    max_names = int(_setting("BLACKWELL_DISPATCH_MAX_NAMES", DEFAULT_MAX_NAMES, int))
    directory = Path(state_dir) if state_dir is not None else DEFAULT_DIR
    name = process or process_name()
    injected = os.environ.get("CUDA_INJECTION64_PATH")
    if injected:  # the library already samples this process and writes <name>.json: stand aside, say so
        name += "-python"
    sampler = DispatchSampler(_free_path(directory, name, every), duty, every, name, max_names)
    if injected:
        sampler.disable(f"the injection library ({injected}) samples this process; the Python sampler stands aside")
    sampler.start()
    _sampler = sampler
    atexit.register(stop_sampler)
    return sampler


def stop_sampler() -> None:
    global _sampler
    if _sampler is not None:
        _sampler.stop()
        _sampler = None
