"""The exporter's own health: one series per source, plus build info."""

from exporter.catalog.model import counter, gauge, info

_SELF = ("exporter",)

METRICS = [
    info(
        "blackwell_exporter_build_info",
        "Version of the exporter and whether it reads real hardware or a simulation (mode).",
        ("version", "mode", "python_version"),
        sources=_SELF,
    ),
    gauge(
        "blackwell_exporter_source_up",
        "1 when the source's last poll succeeded, 0 when it failed, timed out or has not run yet.",
        ("source",),
        sources=_SELF,
    ),
    gauge(
        "blackwell_exporter_source_poll_duration_seconds",
        "Wall time of the source's last completed poll.",
        ("source",),
        sources=_SELF,
        unit="seconds",
    ),
    gauge(
        "blackwell_exporter_source_last_success_timestamp_seconds",
        "Unix time of the source's last successful poll; 0 before the first one.",
        ("source",),
        sources=_SELF,
        unit="seconds",
    ),
    counter(
        "blackwell_exporter_source_errors_total",
        "Failed polls by source and reason (timeout, error, probe, busy, stale).",
        ("source", "reason"),
        sources=_SELF,
    ),
    gauge(
        "blackwell_exporter_source_interval_seconds",
        "Configured poll interval of the source; staleness is judged against 3 of these.",
        ("source",),
        sources=_SELF,
        unit="seconds",
    ),
    gauge(
        "blackwell_exporter_simulation_scenario",
        "1 for the simulation scenario in force (simulation mode only).",
        ("profile", "scenario"),
        sources=_SELF,
    ),
    gauge(
        "blackwell_exporter_config_last_reload_successful",
        "1 when the last configuration (re)load applied, 0 when a SIGHUP reload was refused and the "
        "previous configuration is still in force.",
        (),
        sources=_SELF,
    ),
    gauge(
        "blackwell_exporter_config_last_reload_success_timestamp_seconds",
        "Unix time the configuration in force was applied (start or the last successful SIGHUP reload).",
        (),
        sources=_SELF,
        unit="seconds",
    ),
]
