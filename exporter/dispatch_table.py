"""Kernel name -> precision path, from the data table ``dispatch_table.yaml`` beside this module.

Runs in the exporter's dispatch source, which classifies the raw kernel names of the state files
at each poll, so it imports only the standard library and PyYAML. Decisions are cached per name
(up to ``cache_size`` names, enough for every name of a large state file; a full cache is emptied
and fills again): after the first poll a name costs one dictionary lookup.

A rule's regular expression is searched only where the literal strings it is made of do not
decide it (``exporter.regex_literals``): a name holding none of ``nccl``, ``allreduce``, ... is
not run through the communication rule's alternation at all, one holding ``fp8`` matches the fp8
rule without its anchored alternatives being tried, and a rule that is nothing but a set of words
is decided by the words alone. The decision is always the one the plain search gives.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress, filterfalse, repeat
from operator import contains, not_
from pathlib import Path

import yaml

from exporter.regex_literals import Literals, literals

PRECISIONS = ("fp4", "fp8", "16bit", "other")
DEFAULT_TABLE = Path(__file__).with_name("dispatch_table.yaml")
MAX_PATTERN_LENGTH = 1000
CACHE_SIZE = 1 << 18
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's where PyYAML has it: a table loads in ms


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    precision: str = ""
    needs: Literals | None = field(init=False, repr=False, compare=False)  # None: always search

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", literals(self.pattern))

    def found(self, name: str, lowered: str | None) -> bool:
        """``pattern.search(name)``, decided by its literals where they can; ``lowered``: an ASCII name lowercased."""
        needs = self.needs
        if needs is not None:
            text = lowered if needs.folded else name
            if text is not None and (decided := needs.decide(text)) is not None:
                return decided
        return self.pattern.search(name) is not None

    def among(self, names: list[str], lowered: list[str], indices: list[int]) -> set[int]:
        """The ``indices`` of the ASCII ``names`` (``lowered``: the same lowercased) the pattern is found in.

        What ``found`` decides name by name, one literal at a time over all the names, in C.
        """
        needs, search = self.needs, self.pattern.search
        if needs is None:
            return {i for i in indices if search(names[i])}
        texts = list(map((lowered if needs.folded else names).__getitem__, indices))
        hits: set[int] = set()
        for string in needs.sure:
            hits.update(compress(indices, map(contains, texts, repeat(string))))
        if needs.rest == ():
            return hits
        if hits:
            undecided = list(map(not_, map(hits.__contains__, indices)))
            indices, texts = list(compress(indices, undecided)), list(compress(texts, undecided))
        if needs.rest is not None:
            candidates: set[int] = set()
            for string in needs.rest:
                candidates.update(compress(indices, map(contains, texts, repeat(string))))
            indices = sorted(candidates)
        hits.update(i for i in indices if search(names[i]))
        return hits


class KernelClassifier:
    """Classifies demangled kernel names; ``classify`` returns a precision or None (not a GEMM)."""

    def __init__(self, not_gemm: list[Rule], gemm: list[Rule], precision: list[Rule], default: str,
                 cache_size: int = CACHE_SIZE) -> None:
        self.not_gemm = not_gemm
        self.gemm = gemm
        self.precision = precision
        self.default = default
        self.cache_size = cache_size
        # One decision per kernel name, cached: classify, explain and decide all read it.
        self._decisions: dict[str, tuple[str | None, str]] = {}
        self.known = self._decisions.get  # the decision already made for a name, or None: never classifies

    @property
    def decided(self) -> int:
        """How many names the cache holds a decision for: 0 for a table that has decided nothing yet."""
        return len(self._decisions)

    def decide(self, name: str) -> tuple[str | None, str]:
        """(precision or None for not a GEMM, the rule that decided: 'precision:nvjet-fp8', 'default:other', ...)."""
        decision = self._decisions.get(name)
        if decision is None:
            decision = self._decide(name)
            if len(self._decisions) >= self.cache_size:
                self._decisions.clear()
            self._decisions[name] = decision
        return decision

    @classmethod
    def load(cls, path: Path = DEFAULT_TABLE) -> KernelClassifier:
        """Read and validate a table; ValueError names the file and the rule that is wrong."""
        try:
            data = yaml.load(path.read_text(), Loader=SAFE_LOADER)
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read kernel classification table: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError(f"{path}: expected a mapping with version: 1")
        default = data.get("default_precision", "other")
        if default not in PRECISIONS:
            raise ValueError(f"{path}: default_precision {default!r} is not one of {PRECISIONS}")

        def rules(section: str, with_precision: bool) -> list[Rule]:
            out = []
            for i, raw in enumerate(data.get(section) or []):
                where = f"{path}: {section}[{i}]"
                if not isinstance(raw, dict) or not isinstance(raw.get("pattern"), str) or not raw.get("name"):
                    raise ValueError(f"{where}: each rule needs a name and a pattern")
                if len(raw["pattern"]) > MAX_PATTERN_LENGTH:
                    raise ValueError(f"{where} ({raw['name']}): pattern longer than {MAX_PATTERN_LENGTH} characters")
                try:
                    pattern = re.compile(raw["pattern"])
                except re.error as exc:
                    raise ValueError(f"{where} ({raw['name']}): bad regular expression: {exc}") from None
                precision = raw.get("precision", "")
                if with_precision and precision not in PRECISIONS:
                    raise ValueError(f"{where} ({raw['name']}): precision {precision!r} is not one of {PRECISIONS}")
                out.append(Rule(str(raw["name"]), pattern, precision))
            return out

        return cls(rules("not_gemm", False), rules("gemm", False), rules("precision", True), default)

    def decide_all(self, names: Sequence[str]) -> list[tuple[str | None, str]]:
        """``decide`` of each name, rule by rule over all of them: what classifying many new names costs."""
        batch = [name for name in dict.fromkeys(names) if name not in self._decisions and name.isascii()]
        if batch:
            lowered = [name.lower() for name in batch]
            decisions: list[tuple[str | None, str]] = [(self.default, f"default:{self.default}")] * len(batch)
            todo = list(range(len(batch)))
            for rule in self.not_gemm:
                hits = rule.among(batch, lowered, todo)
                for i in hits:
                    decisions[i] = (None, f"not_gemm:{rule.name}")
                todo = list(filterfalse(hits.__contains__, todo))
            gemms: set[int] = set()
            for rule in self.gemm:
                gemms |= rule.among(batch, lowered, list(filterfalse(gemms.__contains__, todo)))
            for i in filterfalse(gemms.__contains__, todo):
                decisions[i] = (None, "not_gemm:no-gemm-rule")
            todo = sorted(gemms)
            for rule in self.precision:
                hits = rule.among(batch, lowered, todo)
                for i in hits:
                    decisions[i] = (rule.precision, f"precision:{rule.name}")
                todo = list(filterfalse(hits.__contains__, todo))
            if len(self._decisions) + len(batch) > self.cache_size:
                self._decisions.clear()
            self._decisions.update(zip(batch, decisions, strict=True))
        return list(map(self.decide, names))

    def _decide(self, name: str) -> tuple[str | None, str]:
        lowered = name.lower() if name.isascii() else None
        for rule in self.not_gemm:
            if rule.found(name, lowered):
                return None, f"not_gemm:{rule.name}"
        if not any(rule.found(name, lowered) for rule in self.gemm):
            return None, "not_gemm:no-gemm-rule"
        for rule in self.precision:
            if rule.found(name, lowered):
                return rule.precision, f"precision:{rule.name}"
        return self.default, f"default:{self.default}"

    def classify(self, name: str) -> str | None:
        return self.decide(name)[0]

    def explain(self, name: str) -> str:
        """Which rule decided, for docs, debugging and the sampler's list of unrecognized kernels."""
        return self.decide(name)[1]
