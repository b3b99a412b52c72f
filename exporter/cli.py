"""Command line: run | generate | preflight | demo | config check | version | inject-path."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from exporter import __version__
from exporter import config as config_mod
from exporter.catalog.tiers import TIER_NAMES, detail_flags

if TYPE_CHECKING:
    from exporter.daemon import Daemon

log = logging.getLogger("exporter")

# SIGTERM to exit: Kubernetes and Docker wait 10 s before SIGKILL; we promise 5.
SHUTDOWN_DEADLINE_SECONDS = 4.5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blackwell-exporter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the exporter daemon")
    run.add_argument("--config", type=Path, help="YAML config file")
    _add_config_flags(run)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="validate the configuration `run` would use (the file, "
                               "BLACKWELL_EXPORTER_* variables, these flags); print every error with its key path")
    check.add_argument("file", type=Path, nargs="?", help="YAML config file (optional, as for run)")
    _add_config_flags(check)

    gen = sub.add_parser("generate", help="write alerts/, dashboards/ and runbooks/ from the mixin")
    gen.add_argument("--check", action="store_true", help="fail if committed outputs differ")
    gen.add_argument("--config", type=Path, help="config file whose mixin: section sets thresholds")
    gen.add_argument("--output", type=Path, default=Path("."), help="directory to write into")

    pre = sub.add_parser("preflight", help="run the production checklist")
    pre.add_argument("--config", type=Path)
    pre.add_argument("--json", action="store_true", help="machine-readable output")

    demo = sub.add_parser("demo", help="simulated exporter + Prometheus + Alertmanager on loopback, to watch alerts fire")
    demo.add_argument("--profile", default="hgx-b200", help="simulation profile")
    demo.add_argument("--scenario", default="healthy", help="scenario to start in")

    sub.add_parser("version", help="print the version")
    sub.add_parser("inject-path", help="print the absolute path of the CUPTI injection library (CUDA_INJECTION64_PATH)")
    return parser


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that form the command-line config layer, shared by ``run`` and ``config check``."""
    parser.add_argument("--listen", help="HOST:PORT (default :9402)")
    parser.add_argument("--simulate", metavar="PROFILE", help="simulate a box instead of reading hardware")
    parser.add_argument("--scenario", metavar="NAME", help="simulation scenario to start in (default healthy)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--detail", choices=TIER_NAMES, help="detail tier: basic | standard (default) | full")
    parser.add_argument("--detail-group", action="append", default=[], metavar="GROUP=TIER",
                        help="detail tier of one family group (gpu, nvlink, serving ...), repeatable")


def config_flags(args: argparse.Namespace) -> dict:
    """The command-line layer of the configuration, from the flags of ``_add_config_flags``."""
    flags: dict = config_mod.simulate_flags(args.simulate, args.scenario)
    if args.listen:
        flags["listen"] = args.listen
    if args.log_level:
        flags["log_level"] = args.log_level
    flags.update(detail_flags(args.detail, args.detail_group))
    return flags


def _load(path: Path | None, flags: dict) -> config_mod.Config:
    try:
        return config_mod.load(path, flags=flags)
    except config_mod.ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_config_check(path: Path | None, flags: dict) -> int:
    """Validate what ``run`` would load (``path``, the environment, ``flags``) and the web config
    file it names, printing every problem."""
    from exporter import webconfig

    problems: list[str] = []
    try:
        config = config_mod.load(path, flags=flags)
    except config_mod.ConfigError as exc:
        problems = exc.problems
    else:
        if config.web_config_file is not None:
            try:
                webconfig.load(config.web_config_file)
            except webconfig.WebConfigError as exc:
                problems = [f"web_config_file: {p}" for p in exc.problems]
    for problem in problems:
        print(problem)
    subject = path or "configuration"
    if problems:
        print(f"{subject}: {len(problems)} error(s)")
        return 1
    print(f"{subject}: ok")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    flags = config_flags(args)
    config = _load(args.config, flags)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(config, args.config, flags)


def run(config: config_mod.Config, config_path: Path | None, flags: dict | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then stop within ``SHUTDOWN_DEADLINE_SECONDS``; SIGHUP reloads.

    The shutdown closes the listener, stops the jobs and gives sources 2 s to close; hung polls
    and open connections live on daemon threads and do not hold the exit. A watchdog ends the
    process if a step still hangs at the deadline. A reload runs on this (the main) thread, not in
    the signal handler, so a slow one never interrupts the loop halfway (see :mod:`exporter.daemon`).
    """
    from exporter.daemon import Daemon, StartupError
    from exporter.server import ExporterHTTPServer

    try:
        daemon = Daemon(config, config_path, dict(flags or {}))
    except StartupError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    host, port = config_mod.parse_listen(config.listen)
    try:
        server = ExporterHTTPServer((host, port), daemon.scheduler, _scenario_switch(daemon), daemon.web)
    except OSError as exc:
        print(f"cannot listen on {config.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stop, reload_wanted = _install_signal_handlers()
    # Everything imported and built so far lives as long as the process: moving it out of the
    # garbage collector's view cuts full-collection pauses (which stall scrapes too) from ~23 ms to <1 ms.
    gc.freeze()
    daemon.scheduler.start()
    server.serve_in_thread()
    log.info("blackwell-exporter %s (%s) listening on %s (%s), sources: %s", __version__, daemon.mode, config.listen,
             f"web config {config.web_config_file}" if daemon.web is not None else "plain HTTP, no auth",
             ", ".join(s.name for s in daemon.sources))
    while not stop.wait(1.0):
        if reload_wanted.is_set():
            reload_wanted.clear()
            if daemon.reload():
                server.web, server.set_scenario = daemon.web, _scenario_switch(daemon)
    server.shutdown()
    server.server_close()
    daemon.scheduler.shutdown()
    log.info("stopped")
    return 0


def _scenario_switch(daemon: Daemon) -> Callable[[str], None] | None:
    return daemon.set_scenario if daemon.simulation is not None else None


def _install_signal_handlers() -> tuple[threading.Event, threading.Event]:
    """SIGTERM/SIGINT set the first event (and arm the exit watchdog), SIGHUP the second."""
    stop, reload_wanted = threading.Event(), threading.Event()

    def on_term(signum: int, _frame: object) -> None:
        if stop.is_set():
            return
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()
        watchdog = threading.Timer(SHUTDOWN_DEADLINE_SECONDS, _force_exit)
        watchdog.daemon = True
        watchdog.start()

    def on_hup(_signum: int, _frame: object) -> None:
        log.info("received SIGHUP, reloading the configuration")
        reload_wanted.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    return stop, reload_wanted


def _force_exit() -> None:
    log.error("shutdown still blocked after %gs; exiting now", SHUTDOWN_DEADLINE_SECONDS)
    logging.shutdown()
    os._exit(1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"blackwell-exporter {__version__}")
        return 0
    if args.command == "config":
        return cmd_config_check(args.file, config_flags(args))
    if args.command == "run":
        return cmd_run(args)
    if args.command == "generate":
        from exporter.mixin.generate import main as generate_main
        from exporter.reference import sync as sync_reference

        return max(generate_main(args), sync_reference(args.output, check=args.check))
    if args.command == "demo":
        from exporter.demo import main as demo_main

        return demo_main(args)
    if args.command == "inject-path":
        from exporter.inject import LibraryNotBuilt, library_path

        try:
            print(library_path())
        except LibraryNotBuilt as exc:
            print(f"blackwell-exporter inject-path: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "preflight":
        from exporter.preflight import main as preflight_main

        return preflight_main(args)
    raise AssertionError(args.command)
