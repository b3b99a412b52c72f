"""Regexes from config (exporter.safe_regex): a length cap, clear errors, and no pattern accepted
that backtracks exponentially. Prints how many examples hypothesis ran (``pytest -s``)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.safe_regex import MAX_PATTERN_LENGTH, MAX_SUBJECT_LENGTH, UnsafePatternError, bounded, compile_pattern
from tests.support import counted


@pytest.mark.parametrize("pattern", [
    r"XID (\d+)", r"^\[(?P<level>[A-Z]+)\] (?P<msg>.*)$", r"(foo|bar)*baz", r"[\s,]*", r"(\s|,)*", r"(?:ab){2}",
    r"NVRM: Xid \(PCI:(?P<pci>[0-9a-f:.]+)\): (?P<xid>\d+)", r"(a{3})+", r"(?P<x>a)(?(x)b|c)",
])
def test_ordinary_log_patterns_compile(pattern: str) -> None:
    assert compile_pattern(pattern).pattern == pattern


@pytest.mark.parametrize("pattern, why", [
    (r"(a+)+$", "variable quantifier inside a repeated group"),
    (r"(\w*\s?)*x", "variable quantifier inside a repeated group"),
    (r"(a{2,5})+!", "variable quantifier inside a repeated group"),
    (r"((a*))*", "variable quantifier inside a repeated group"),
    (r"(?=(a+)+)", "variable quantifier inside a repeated group"),
    (r"(a|ab)*c", "alternatives inside an unbounded repeat"),
    (r"(.|a)*b", "alternatives inside an unbounded repeat"),
    (r"(", "not a valid regular expression at position 0"),
    (r"a{2,1}", "not a valid regular expression"),
    ("x" * (MAX_PATTERN_LENGTH + 1), f"at most {MAX_PATTERN_LENGTH} are allowed"),
])
def test_dangerous_or_broken_patterns_are_refused_with_the_reason(pattern: str, why: str) -> None:
    with pytest.raises(UnsafePatternError, match=re.escape(why)):
        compile_pattern(pattern)


def test_non_strings_and_subjects_are_bounded() -> None:
    with pytest.raises(UnsafePatternError, match="must be a string"):
        compile_pattern(123)  # type: ignore[arg-type]
    assert len(bounded("x" * (MAX_SUBJECT_LENGTH * 2))) == MAX_SUBJECT_LENGTH
    assert bounded("short") == "short"


@pytest.mark.filterwarnings("ignore::FutureWarning")  # "possible nested set" in random text
def test_any_text_compiles_or_is_an_unsafe_pattern_error() -> None:
    @settings(max_examples=500, deadline=None)
    @given(st.one_of(st.text(max_size=60), st.text(alphabet="()[]{}|*+?.^$\\ab1,:-=!<>P", max_size=40)))
    def run(tick: Callable[[], None], pattern: str) -> None:
        tick()
        try:
            compile_pattern(pattern)
        except UnsafePatternError as exc:
            assert str(exc)

    counted("safe_regex: arbitrary pattern text", lambda tick: run(tick))


atoms = st.sampled_from(["a", "b", ".", r"\d", "[ab]", "ab", "a?", "a*", "a+", "(?:a|b)", "(?:a|ab)"])
patterns = st.recursive(atoms, lambda inner: st.one_of(
    st.tuples(inner, inner).map("".join),
    st.tuples(inner, inner).map(lambda p: f"(?:{p[0]}|{p[1]})"),
    st.tuples(inner, st.sampled_from(["*", "+", "?", "{2}", "{1,3}"])).map(lambda p: f"(?:{p[0]}){p[1]}"),
), max_leaves=6)


def _slowest(compiled: re.Pattern[str], n: int) -> float:
    worst = 0.0
    for subject in ("a" * n + "!", "ab" * (n // 2) + "!", "1" * n + "!"):
        started = time.perf_counter()
        compiled.search(subject)
        worst = max(worst, time.perf_counter() - started)
    return worst


def test_no_accepted_pattern_backtracks_exponentially() -> None:
    """Doubling the subject from 9 to 18 characters: polynomial patterns slow down a few times,
    exponential ones by hundreds (2^9). Small sizes keep even a missed bad pattern fast."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(patterns)
    def run(tick: Callable[[], None], pattern: str) -> None:
        try:
            compiled = compile_pattern(pattern + "x")
        except UnsafePatternError:
            return
        tick()
        small, large = min(_slowest(compiled, 9) for _ in range(3)), min(_slowest(compiled, 18) for _ in range(3))
        assert large < max(40 * small, 0.003), (pattern, small, large)

    counted("safe_regex: accepted patterns timed", lambda tick: run(tick))
