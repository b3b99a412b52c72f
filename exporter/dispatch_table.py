"""Kernel name -> precision path, from the data table ``dispatch_table.yaml`` beside this module.

Runs in the exporter's dispatch source, which classifies the raw kernel names of the state files
at each poll, so it imports only the standard library and PyYAML. Decisions are cached per name
(up to ``cache_size`` names, enough for every name of a large state file): after the first poll a
name costs one dictionary lookup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

PRECISIONS = ("fp4", "fp8", "16bit", "other")
DEFAULT_TABLE = Path(__file__).with_name("dispatch_table.yaml")
MAX_PATTERN_LENGTH = 1000
CACHE_SIZE = 1 << 18


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    precision: str = ""


class KernelClassifier:
    """Classifies demangled kernel names; ``classify`` returns a precision or None (not a GEMM)."""

    def __init__(self, not_gemm: list[Rule], gemm: list[Rule], precision: list[Rule], default: str,
                 cache_size: int = CACHE_SIZE) -> None:
        self.not_gemm = not_gemm
        self.gemm = gemm
        self.precision = precision
        self.default = default
        # One decision per kernel name, cached: classify, explain and decide all read it.
        self.decide = lru_cache(maxsize=cache_size)(self._decide)

    @classmethod
    def load(cls, path: Path = DEFAULT_TABLE) -> KernelClassifier:
        """Read and validate a table; ValueError names the file and the rule that is wrong."""
        try:
            data = yaml.safe_load(path.read_text())
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

    def _decide(self, name: str) -> tuple[str | None, str]:
        """(precision or None for not a GEMM, the rule that decided: 'precision:nvjet-fp8', 'default:other', ...)."""
        for rule in self.not_gemm:
            if rule.pattern.search(name):
                return None, f"not_gemm:{rule.name}"
        if not any(rule.pattern.search(name) for rule in self.gemm):
            return None, "not_gemm:no-gemm-rule"
        for rule in self.precision:
            if rule.pattern.search(name):
                return rule.precision, f"precision:{rule.name}"
        return self.default, f"default:{self.default}"

    def classify(self, name: str) -> str | None:
        return self.decide(name)[0]

    def explain(self, name: str) -> str:
        """Which rule decided, for docs, debugging and the sampler's list of unrecognized kernels."""
        return self.decide(name)[1]
