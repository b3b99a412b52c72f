"""The literal substrings without which a regular expression cannot match, read from its parse tree.

A kernel classification rule is a Python regular expression searched anywhere in a name; most
rules are alternations of words (``(?i)nccl|allreduce|...``), and the regex engine spends tens of
microseconds per name trying each alternative at each position. ``literals`` derives two sets of
strings from the ``re`` module's own parser, each checked with ``str.__contains__`` (a fast scan):

- ``sure``: strings the pattern matches (a finite part of its language, e.g. the plain words of
  an alternation): where one occurs, the search succeeds;
- the needed strings, at least one of which occurs in any text the pattern is found in: where
  none occurs, the search fails. ``rest`` keeps those a ``sure`` string does not already decide.

Where the whole language is finite (no anchors, lookarounds, back references, unbounded
repeats), ``sure`` is all of it and ``rest`` is empty: the search is never run. The analysis is
conservative: a construct it does not handle contributes nothing (it may match anything), and a
pattern it cannot analyse at all (scoped case flags, an unknown opcode) gets ``None``, meaning
"always search". Case-insensitive patterns give lowercase strings, valid against the lowercased
text of an ASCII name only: Unicode case folding maps non-ASCII characters onto ASCII ones
(KELVIN SIGN matches ``k``), so a non-ASCII name is searched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

try:
    from re import _constants as _sre  # Python 3.11+
    from re import _parser as _parse
except ImportError:  # Python 3.10
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _parse  # type: ignore[no-redef]

MAX_STRINGS = 64  # strings one set may hold before the analysis gives up on it
MAX_CLASS = 8  # characters a class ([qr], [0-3]) may stand for and still count as literals
MAX_REPEAT = 4  # the most copies a bounded repeat (a{1,3}) is expanded into

Strings = frozenset[str]
NOTHING: Strings = frozenset()
EMPTY: Strings = frozenset({""})
_ATOMIC = getattr(_sre, "ATOMIC_GROUP", None)  # Python 3.11+
_POSSESSIVE = getattr(_sre, "POSSESSIVE_REPEAT", None)


@dataclass(frozen=True)
class Literals:
    """What a search of the pattern in a text comes to, where the text holds these strings or not."""

    sure: tuple[str, ...]  # one occurring: the pattern is found
    rest: tuple[str, ...] | None  # else none of these occurring: it is not; None: nothing known
    folded: bool  # lowercase strings of a case-insensitive pattern: compare with an ASCII text lowercased

    def decide(self, text: str) -> bool | None:
        """True or False where the strings decide the search in ``text``, None where it has to run."""
        if self.sure and any(map(text.__contains__, self.sure)):
            return True
        if self.rest is None or any(map(text.__contains__, self.rest)):
            return None
        return False


@dataclass(frozen=True)
class _Node:
    sure: Strings  # a finite part of the node's language (matched exactly)
    exact: bool  # sure is all of its language
    needed: Strings | None  # one of these occurs wherever the node matches; None: nothing known


UNKNOWN = _Node(NOTHING, False, None)


class _Unsupported(Exception):
    pass


def literals(pattern: re.Pattern[str]) -> Literals | None:
    """What the strings of ``pattern`` decide, or None where nothing is known (always search)."""
    folded = bool(pattern.flags & re.IGNORECASE)
    try:
        node = _Analysis(folded).sequence(_parse.parse(pattern.pattern, pattern.flags))
    except (_Unsupported, re.error, RecursionError):
        return None
    sure = _shortest(node.sure)
    if node.exact:
        return Literals(sure, (), folded)
    if node.needed is None:
        return Literals(sure, None, folded) if sure else None
    # Where no sure string occurs, a needed string holding one cannot occur either.
    rest = tuple(n for n in _shortest(node.needed) if not any(s in n for s in sure))
    return Literals(sure, rest, folded)


def _shortest(strings: Strings) -> tuple[str, ...]:
    """The strings that hold none of the others: where a longer one occurs, a shorter one it holds does too."""
    return tuple(sorted(s for s in strings if not any(t != s and t in s for t in strings)))


def _needed(language: Strings) -> Strings | None:
    """A finite language as a requirement: none where it holds the empty string (found everywhere)."""
    return None if "" in language else language


def _product(left: Strings, right: Strings) -> Strings | None:
    product = frozenset(a + b for a in left for b in right)
    return product if len(product) <= MAX_STRINGS else None


def _best(candidates: list[Strings]) -> Strings | None:
    """Of several valid requirements, the most selective: the longest shortest string, then the fewest strings."""
    return max(candidates, key=lambda strings: (min(map(len, strings), default=0), -len(strings)), default=None)


class _Analysis:
    def __init__(self, folded: bool) -> None:
        self.folded = folded

    def char(self, code: int) -> str | None:
        ch = chr(code)
        if not self.folded:
            return ch
        return ch.lower() if ch.isascii() else None  # a non-ASCII character may fold onto an ASCII one

    def sequence(self, items) -> _Node:
        """A concatenation: products of the parts; each run of exact parts, and each part, is a requirement."""
        candidates: list[Strings] = []
        sure: Strings | None = EMPTY
        exact = True
        run: Strings = EMPTY  # the language of the current run of exact parts
        for op, av in items:
            node = self.node(op, av)
            sure = _product(sure, node.sure) if sure is not None else None
            if sure is None:
                exact = False
            if node.exact:
                product = _product(run, node.sure)
                if product is not None:
                    run = product
                    continue
                if (closed := _needed(run)) is not None:
                    candidates.append(closed)
                run = node.sure
                exact = False
                continue
            exact = False
            if (closed := _needed(run)) is not None:
                candidates.append(closed)
            run = EMPTY
            if node.needed is not None:
                candidates.append(node.needed)
        if (closed := _needed(run)) is not None:
            candidates.append(closed)
        if exact:
            return _Node(run, True, _needed(run))
        return _Node(sure or NOTHING, False, _best(candidates))

    def node(self, op, av) -> _Node:
        if op is _sre.LITERAL:
            ch = self.char(av)
            return UNKNOWN if ch is None else _Node(frozenset({ch}), True, frozenset({ch}))
        if op is _sre.IN:
            chars = self.character_class(av)
            return UNKNOWN if chars is None else _Node(chars, True, chars)
        if op in (_sre.NOT_LITERAL, _sre.ANY, _sre.AT, _sre.CATEGORY, _sre.GROUPREF, _sre.ASSERT_NOT):
            return UNKNOWN  # any character, zero width, or text known only at match time
        if op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if (add_flags | del_flags) & re.IGNORECASE:
                raise _Unsupported  # case sensitivity that changes inside the pattern
            return self.sequence(sub)
        if op is _sre.BRANCH:
            return self.alternatives([self.sequence(sub) for sub in av[1]])
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            low, high, sub = av
            return self.repeat(self.sequence(sub), low, high)
        if op is _POSSESSIVE or op is _ATOMIC:  # may refuse a match that backtracking would find: no sure strings
            low, sub = (av[0], av[2]) if op is _POSSESSIVE else (1, av)
            return _Node(NOTHING, False, self.sequence(sub).needed if low >= 1 else None)
        if op is _sre.ASSERT:  # a lookaround's text is part of the searched text too
            return _Node(NOTHING, False, self.sequence(av[1]).needed)
        if op is _sre.GROUPREF_EXISTS:
            _group, yes, no = av
            both = [self.sequence(yes), self.sequence(no) if no is not None else _Node(EMPTY, True, None)]
            return _Node(NOTHING, False, self.alternatives(both).needed)
        raise _Unsupported(op)

    def character_class(self, items) -> Strings | None:
        chars: set[str] = set()
        for op, av in items:
            if op is _sre.LITERAL:
                codes = [av]
            elif op is _sre.RANGE and av[1] - av[0] < MAX_CLASS:
                codes = list(range(av[0], av[1] + 1))
            else:
                return None  # negated, a category (\d, \w), a wide range
            for code in codes:
                if (ch := self.char(code)) is None:
                    return None
                chars.add(ch)
        return frozenset(chars) if len(chars) <= MAX_CLASS else None

    @staticmethod
    def alternatives(nodes: list[_Node]) -> _Node:
        sure = frozenset().union(*(node.sure for node in nodes))
        exact = all(node.exact for node in nodes)
        if len(sure) > MAX_STRINGS:  # any part of a language is a part of it: keep the shortest strings
            sure, exact = frozenset(sorted(sure, key=lambda s: (len(s), s))[:MAX_STRINGS]), False
        needs = [node.needed for node in nodes]
        needed = frozenset().union(*needs) if None not in needs else None
        if needed is not None and len(needed) > MAX_STRINGS:
            needed = None
        return _Node(sure, exact, needed)

    @staticmethod
    def repeat(sub: _Node, low: int, high: int) -> _Node:
        """``sub`` from ``low`` to ``high`` times: ``low`` copies of a sure string match; the language only if bounded."""
        needed = sub.needed if low >= 1 else None
        copies: Strings | None = EMPTY
        for _ in range(min(low, MAX_REPEAT + 1)):
            copies = _product(copies, sub.sure) if copies is not None else None
        sure = copies if copies is not None and low <= MAX_REPEAT else NOTHING
        if not sub.exact or high > MAX_REPEAT:  # MAXREPEAT (unbounded) is far above
            return _Node(sure, False, needed)
        language: set[str] = set()
        copies = EMPTY
        for count in range(high + 1):
            if count >= low:
                language |= copies
            if len(language) > MAX_STRINGS:
                return _Node(sure, False, needed)
            if count < high:
                copies = _product(copies, sub.sure)
                if copies is None:
                    return _Node(sure, False, needed)
        return _Node(frozenset(language), True, _needed(frozenset(language)))
