"""NVLink5 forward error correction of one simulated link: the FEC history bins (NVML fields
COUNT_FEC_HISTORY_0..15) and the symbol and effective error counters that follow from them.

Modelled as the RS(544,514) code of 200G-per-lane links: a codeword of 544 ten-bit symbols, up to
15 of them corrected. Bin ``n`` counts codewords that arrived with ``n`` symbol errors (bin 0 the
clean ones, nearly all of them); a codeword with more than 15 is uncorrectable, an effective
error. Errored codewords fall off geometrically by bin: on a healthy link each bin holds about a
twentieth of the one below (single-symbol errors, rarely two); a degrading link sends bursts, the
decay flattens and the high bins fill, and its uncorrectable tail is what the effective-error
counter (the one the NVLink alert reads) counts. Symbol errors are the corrected symbols, the sum
of ``n`` times bin ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BINS = 16
CODEWORD_BITS = 544 * 10
# Pre-FEC symbol errors per bit on a healthy link (the SYMBOL_BER the replay's Blackwell answers, 2e-12).
HEALTHY_SYMBOL_ERRORS_PER_BIT = 2e-12
HEALTHY_DECAY = 0.05
DEGRADING_DECAY = 0.65


@dataclass
class LinkFec:
    """Cumulative FEC counts of one link; ``quality`` scales its healthy error rate (links differ)."""

    quality: float = 1.0
    bins: list[float] = field(default_factory=lambda: [0.0] * BINS)
    symbol_errors: float = 0.0
    effective_errors: float = 0.0

    def advance(self, dt: float, line_bytes_per_second: float, uncorrectable_per_second: float = 0.0) -> None:
        """``dt`` seconds of a link running at line rate (idle links keep sending codewords), with
        ``uncorrectable_per_second`` codewords past correction while a fault degrades it."""
        bits_per_second = line_bytes_per_second * 8
        healthy = HEALTHY_SYMBOL_ERRORS_PER_BIT * bits_per_second * self.quality
        # A geometric histogram r, r*q, r*q^2 ... holds r / (1 - q)^2 symbol errors in all.
        errored = _geometric(healthy * (1 - HEALTHY_DECAY) ** 2, HEALTHY_DECAY)
        if uncorrectable_per_second > 0:
            # Its tail past bin 15 (r * q^15 / (1 - q)) is the uncorrectable rate asked for.
            first = uncorrectable_per_second * (1 - DEGRADING_DECAY) / DEGRADING_DECAY ** (BINS - 1)
            errored = [a + b for a, b in zip(errored, _geometric(first, DEGRADING_DECAY), strict=True)]
            self.effective_errors += uncorrectable_per_second * dt
        codewords = bits_per_second / CODEWORD_BITS * dt
        self.bins[0] += codewords - sum(errored) * dt
        for n in range(1, BINS):
            self.bins[n] += errored[n] * dt
            self.symbol_errors += n * errored[n] * dt


def _geometric(first: float, decay: float) -> list[float]:
    """Per-second codewords of bins 0-15 for ``first`` in bin 1 and each bin ``decay`` times the one below."""
    return [0.0, *(first * decay ** (n - 1) for n in range(1, BINS))]
