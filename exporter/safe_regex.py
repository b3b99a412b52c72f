"""Regular expressions from configuration, compiled with limits.

Python's ``re`` backtracks and cannot be interrupted, so one bad pattern from a config file
(``(a+)+$`` against a long log line) could pin a core for hours inside a source's poll. Every
pattern that comes from config goes through :func:`compile_pattern`, which refuses:

- patterns longer than ``MAX_PATTERN_LENGTH`` characters;
- patterns that do not compile (the message says where);
- the shapes that backtrack exponentially: a variable quantifier inside a repeated group
  (``(a+)+``, ``(\\w*\\s?)*``, ``(a{2,5})+``), and an alternation inside an unbounded repeat
  whose branches do not each start with a different literal character (``(a|ab)*``; single
  characters such as ``(\\s|,)*`` are a character class and fine).

What is accepted can still be polynomial in the subject's length (``\\d*\\d*x``), so callers
also cap what they match against: :func:`bounded` cuts a subject to ``MAX_SUBJECT_LENGTH``.
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11+
    import re._constants as _c  # type: ignore[import-not-found]
    import re._parser as _parser  # type: ignore[import-not-found]
except ImportError:  # Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

MAX_PATTERN_LENGTH = 512
MAX_SUBJECT_LENGTH = 16 * 1024

_REPEATS = (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", _c.MAX_REPEAT))


class UnsafePatternError(ValueError):
    """The pattern is refused; the message says why and, where it can, how to rewrite it."""


def compile_pattern(pattern: str, flags: int = 0, max_length: int = MAX_PATTERN_LENGTH) -> re.Pattern[str]:
    """Compile ``pattern`` from config, or raise :class:`UnsafePatternError` saying why not."""
    if not isinstance(pattern, str):
        raise UnsafePatternError(f"a pattern must be a string, got {type(pattern).__name__}")
    if len(pattern) > max_length:
        raise UnsafePatternError(f"pattern is {len(pattern)} characters; at most {max_length} are allowed")
    try:
        tree = _parser.parse(pattern, flags)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise UnsafePatternError(f"not a valid regular expression{where}: {exc.msg}") from None
    except (RecursionError, OverflowError) as exc:
        raise UnsafePatternError(f"pattern too deeply nested or too large: {exc}") from None
    _check(tree, pattern, inside_repeat=False, inside_unbounded=False)
    try:
        return re.compile(pattern, flags)
    except (re.error, RecursionError, OverflowError) as exc:
        raise UnsafePatternError(f"not a valid regular expression: {exc}") from None


def bounded(subject: str) -> str:
    """``subject`` cut to ``MAX_SUBJECT_LENGTH`` characters, to match a config pattern against."""
    return subject if len(subject) <= MAX_SUBJECT_LENGTH else subject[:MAX_SUBJECT_LENGTH]


def _check(items: Any, pattern: str, inside_repeat: bool, inside_unbounded: bool) -> None:
    for op, arg in items:
        if op in _REPEATS:
            low, high, body = arg
            unbounded = high == _c.MAXREPEAT
            if low != high and inside_repeat:
                raise UnsafePatternError(
                    f"{pattern!r}: a variable quantifier inside a repeated group can backtrack exponentially; "
                    "quantify the group or its content, not both (write (\\d+\\.){3}\\d+ out as \\d+\\.\\d+\\.\\d+\\.\\d+)")
            _check(body, pattern, inside_repeat or high > 1, inside_unbounded or unbounded)
        elif op is _c.BRANCH:
            branches = arg[1]
            if inside_unbounded and not _distinct_first_literals(branches):
                raise UnsafePatternError(
                    f"{pattern!r}: alternatives inside an unbounded repeat must each start with a different "
                    "literal character (use a character class such as [ab]* for single characters)")
            for branch in branches:
                _check(branch, pattern, inside_repeat, inside_unbounded)
        elif op is _c.SUBPATTERN:
            _check(arg[-1], pattern, inside_repeat, inside_unbounded)
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            _check(arg[1], pattern, inside_repeat, inside_unbounded)
        elif op is _c.GROUPREF_EXISTS:
            for branch in arg[1:]:
                if branch is not None:
                    _check(branch, pattern, inside_repeat, inside_unbounded)
        elif op is getattr(_c, "ATOMIC_GROUP", None):
            _check(arg, pattern, inside_repeat, inside_unbounded)


def _distinct_first_literals(branches: list[Any]) -> bool:
    firsts = []
    for branch in branches:
        items = list(branch)
        while items and items[0][0] is _c.SUBPATTERN:
            items = list(items[0][1][-1])
        if not items or items[0][0] is not _c.LITERAL:
            return False
        firsts.append(items[0][1])
    return len(set(firsts)) == len(firsts)
