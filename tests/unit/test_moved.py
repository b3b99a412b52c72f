"""Which names' counts moved between two polls: the C helper (native/moved.c) and its Python fallback agree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exporter import moved

COUNT = st.integers(min_value=0, max_value=2**70)  # big ints too: a counter past 2**63 is still a count


@st.composite
def two_polls(draw) -> tuple[list[int], list[int]]:
    last = draw(st.lists(st.tuples(COUNT, COUNT), max_size=40))
    now = [pair if draw(st.booleans()) else (pair[0] + draw(st.integers(0, 3)), pair[1] + draw(st.integers(0, 3)))
           for pair in last]
    now += draw(st.lists(st.tuples(COUNT, COUNT), max_size=5))  # names appended since
    return [n for pair in now for n in pair], [n for pair in last for n in pair]


@given(two_polls())
def test_the_c_helper_gives_what_the_python_fallback_gives(polls):
    counts, last = polls
    assert moved.moved_slots(counts, last) == moved.moved_slots_python(counts, last)


def test_the_moved_slots_are_those_whose_pair_changed_then_the_new_ones():
    last = [1, 10, 2, 20, 3, 30]
    counts = [1, 10, 2, 21, 4, 30, 1, 1]  # slot 1 moved by its gpu_ns, slot 2 by its launches, slot 3 is new
    assert moved.moved_slots(counts, last) == moved.moved_slots_python(counts, last) == [1, 2, 3]
    assert moved.moved_slots(list(last), last) == []


def test_the_package_was_built_with_the_c_helper():
    """./dev test installs a C compiler: without it the install would quietly use the fallback."""
    assert moved.moved_slots is not moved.moved_slots_python
