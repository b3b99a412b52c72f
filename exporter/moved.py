"""Which names' counts moved between two polls of a dispatch state file: in C where the package was built
with a compiler (``native/moved.c``, the extension ``exporter._moved``), else with Python's builtins.

Both take two flat count lists (``[launches0, gpu_ns0, launches1, gpu_ns1, ...]``, this poll's and the last
poll's) and give the slots (pair indexes, ascending, each once) whose pair differs, then every slot the
first list has beyond the second. The C one is about three times faster (3.6 against 11.8 ms for
200,000 counts with 5,000 pairs moved, best of 5, on the 2-CPU dev box: ``bench/RESULTS.md``);
``tests/unit/test_moved.py`` holds the two together.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import ne, rshift


def moved_slots_python(counts: list[int], last: list[int]) -> list[int]:
    moved = list(compress(range(len(last)), map(ne, counts, last)))
    moved += range(len(last), len(counts))  # the names new in their place
    return list(dict.fromkeys(map(rshift, moved, repeat(1))))


try:
    from exporter._moved import moved_slots
except ImportError:  # built without a C compiler
    moved_slots = moved_slots_python
