"""Preflight: the production checklist of a Blackwell serving box, as a command and as metrics.

``blackwell-exporter preflight`` reads the box once (NVML, or the simulation when the config
enables one), the engine directory, the serving process and endpoints and Prometheus, runs
every check (``run.run_checks``) and prints a table or JSON; the exit code is 1 when a check
failed. The daemon runs the same checks on an interval through ``exporter.preflight.source``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.preflight.settings import PreflightConfig


def effective_settings(config: Config) -> PreflightConfig:
    """sources.preflight, with what the rest of the config already says filled in where it is unset:
    the exporter's port from ``listen``, the serving endpoints and the engine from enabled triton/trtllm_serve/engine sources."""
    from exporter.config import parse_listen

    cfg: PreflightConfig = config.sources.preflight  # type: ignore[attr-defined]
    updates: dict[str, object] = {}
    if "exporter_port" not in cfg.model_fields_set:
        updates["exporter_port"] = parse_listen(config.listen)[1]
    triton = getattr(config.sources, "triton", None)
    if cfg.triton_url is None and triton is not None and triton.enabled and triton.endpoints:
        updates["triton_url"] = triton.endpoints[0].api_base()
    engine = getattr(config.sources, "engine", None)
    if cfg.engine_dir is None and engine is not None and engine.enabled and engine.engines:
        updates["engine_dir"] = engine.engines[0].path
    trtllm = getattr(config.sources, "trtllm_serve", None)
    if cfg.trtllm_serve_url is None and trtllm is not None and trtllm.enabled and trtllm.endpoints:
        updates["trtllm_serve_url"] = trtllm.endpoints[0].base()
    return cfg.model_copy(update=updates)


def main(args: argparse.Namespace) -> int:
    from exporter import config as config_mod
    from exporter.preflight import boxes, render
    from exporter.preflight.run import exit_code, gather, run_checks

    try:
        config = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    cfg = effective_settings(config)
    if config.simulated:
        read_box = boxes.fresh_simulation(config.sources.simulated)  # type: ignore[attr-defined]
    else:
        read_box = boxes.read_nvml
    inputs = gather(cfg, read_box)
    results = run_checks(inputs, cfg, config.mixin.job)
    origin = inputs.host.origin if inputs.host is not None else "no GPU facts"
    print(render.as_json(results, origin) if args.json else render.as_table(results, origin), end="")
    return exit_code(results)
