"""Exponential backoff shared by the scheduler (failed polls) and the nvml source (NVML re-init)."""

MAX_BACKOFF_SECONDS = 300.0


def backoff_delay(interval: float, failures: int, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """``interval * 2**(failures-1)``, at most ``max(cap, interval)``; safe for any failure count."""
    return min(interval * 2 ** min(max(failures, 1) - 1, 30), max(cap, interval))
