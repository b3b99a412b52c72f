"""Code that runs inside the serving process: the CUPTI GEMM dispatch sampler.

Add one call to the process that runs TensorRT-LLM (a Triton Python backend's ``initialize``,
a trtllm-serve launch script, an LLM-API program)::

    from exporter.inprocess import start_sampler
    start_sampler()

It records kernel launches in short windows and writes cumulative counts per GPU and precision
to ``$BLACKWELL_DISPATCH_STATE_DIR/<process>.json``, which the exporter's ``dispatch`` source
reads. Settings come from the arguments or the environment (``BLACKWELL_DISPATCH_DUTY_CYCLE``,
``BLACKWELL_DISPATCH_PERIOD``, ``BLACKWELL_DISPATCH_STATE_DIR``, ``BLACKWELL_DISPATCH_PROCESS``).
Without cupti-python it logs why and returns None: the serving process carries on unsampled.
"""

from __future__ import annotations

import atexit
import logging
import os
from pathlib import Path

from exporter.inprocess.sampler import DispatchSampler, SamplerUnavailableError
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


def start_sampler(duty_cycle: float | None = None, period: float | None = None,
                  state_dir: str | Path | None = None, process: str | None = None) -> DispatchSampler | None:
    """Start the sampler once per process; later calls return the running one."""
    global _sampler
    if _sampler is not None:
        return _sampler
    duty = duty_cycle if duty_cycle is not None else float(os.environ.get("BLACKWELL_DISPATCH_DUTY_CYCLE",
                                                                           DEFAULT_DUTY_CYCLE))
    every = period if period is not None else float(os.environ.get("BLACKWELL_DISPATCH_PERIOD", DEFAULT_PERIOD))
    directory = Path(state_dir) if state_dir is not None else DEFAULT_DIR
    name = process or process_name()
    sampler = DispatchSampler(directory / f"{name}.json", duty, every, name)
    try:
        sampler.start()
    except SamplerUnavailableError as exc:
        log.warning("blackwell dispatch sampler not started: %s", exc)
        return None
    _sampler = sampler
    atexit.register(stop_sampler)
    return sampler


def stop_sampler() -> None:
    global _sampler
    if _sampler is not None:
        _sampler.stop()
        _sampler = None
