"""The clock-event bitmask both GPU sources decode into ``blackwell_gpu_clock_event_active``.

NVML's ``nvmlDeviceGetCurrentClocksEventReasons`` answers the mask, and DCGM's field 112
(``DCGM_FI_DEV_CLOCKS_EVENT_REASONS``) reports the same NVML mask, so the nvml and dcgm sources
share this one table instead of one importing it from the other.
"""

from __future__ import annotations

# nvmlClocksEventReason* bits -> catalog reason label (idle and application-clock bits are not slowdowns).
CLOCK_EVENT_BITS: dict[int, str] = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clock",
}
