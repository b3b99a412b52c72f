"""The nvml source: GPU, NVLink, GPM and XID telemetry from NVML (see docs/nvml.md).

``backend`` is the thin NVML call layer, ``capabilities`` the once-per-session probe, ``fields``
the field-id tables, ``reader`` one poll of one GPU, ``xid`` the event thread, ``compat`` the
dcgm-exporter names, ``source`` the Source. The recorded-answers backend for tests is ``tests/nvml_replay.py``.
"""
