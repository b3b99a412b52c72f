"""The ``logs`` source: follow the serving process's log files and count regex-rule matches.

Each poll reads what was appended since the last one (at most ``max_read_bytes`` per file, the
rest on the next poll), splits it into lines, and runs every rule on every complete line. A rule
counts into a catalog counter (default ``blackwell_log_matches_total``); its named groups fill that
counter's labels, ``labels`` fills the others, and ``rule`` is filled with the rule's name where the
counter has it. Counters are cumulative for the exporter's lifetime.

Following files: a file is identified by (device, inode). When the path names a new file
(rotation by rename) the old one is read to its end first, then the new one from its start; when
the file shrinks below the read offset (truncation, ``copytruncate``) reading restarts at 0. A line
without its newline waits for the next poll; lines longer than ``max_line_bytes`` are cut (the
rest of that line is skipped). Bytes that are not UTF-8 are replaced, never fatal.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from exporter import catalog
from exporter.catalog import MetricType
from exporter.safe_regex import UnsafePatternError, bounded, compile_pattern
from exporter.snapshot import Family
from exporter.sources.base import Source, SourceConfig, StrictModel

log = logging.getLogger(__name__)

DEFAULT_RULES_FILE = Path(__file__).with_name("log_rules.yaml")
GENERIC_METRIC = "blackwell_log_matches_total"
MAX_PATTERN_LENGTH = 2000
OVERFLOW = "_overflow_"
_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class LogRule(StrictModel):
    name: str = Field(description="snake_case rule name; the rule label value")
    pattern: str = Field(description="Python regular expression searched in each line; named groups become labels")
    metric: str = Field(GENERIC_METRIC, description="catalog counter the logs source may fill")
    labels: dict[str, str] = Field(default_factory=dict, description="fixed values for the counter's other labels")
    max_series: int = Field(100, ge=1, le=10000, description="distinct label sets kept before folding into _overflow_")
    requires: list[str] = Field(
        default_factory=list,
        description="optional speed-up: literals (matched case-insensitively) of which every line the pattern "
                    "matches contains at least one; other lines skip the regex",
    )

    @field_validator("requires")
    @classmethod
    def _lowercase(cls, value: list[str]) -> list[str]:
        if any(not literal for literal in value):
            raise ValueError("requires: literals must not be empty")
        return [literal.lower() for literal in value]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _RULE_NAME.match(value):
            raise ValueError(f"rule name {value!r} must be snake_case")
        return value

    @model_validator(mode="after")
    def _compiles_and_fills_the_metric(self) -> LogRule:
        try:
            regex = compile_pattern(self.pattern, max_length=MAX_PATTERN_LENGTH)
        except UnsafePatternError as exc:
            raise ValueError(f"rule {self.name}: {exc}") from None
        try:
            metric = catalog.get(self.metric)
        except KeyError as exc:
            raise ValueError(f"rule {self.name}: {exc.args[0]}") from None
        if metric.type is not MetricType.COUNTER or "logs" not in metric.sources:
            raise ValueError(f"rule {self.name}: {self.metric} is not a counter the logs source may fill")
        groups = set(regex.groupindex)
        if self.metric == GENERIC_METRIC:
            if set(self.labels) - {"key"}:
                raise ValueError(f"rule {self.name}: {GENERIC_METRIC} has only the labels rule and key")
            return self
        allowed = set(metric.labels) - {"rule"}
        if groups - allowed or set(self.labels) - allowed:
            raise ValueError(f"rule {self.name}: named groups {sorted(groups)} and labels {sorted(self.labels)} must "
                             f"be labels of {self.metric}: {sorted(allowed)}")
        missing = allowed - groups - set(self.labels)
        if missing:
            raise ValueError(f"rule {self.name}: nothing fills label(s) {sorted(missing)} of {self.metric}; "
                             "add a named group or a labels: entry")
        return self


class LogsConfig(SourceConfig):
    interval: float = Field(5.0, gt=0, le=3600, description="seconds between reads")
    timeout: float = Field(5.0, gt=0, le=600, description="seconds a poll may take before it is abandoned")
    paths: list[str] = Field(default_factory=list, description="log files to follow; glob patterns allowed")
    default_rules: bool = Field(True, description="count the documented default rules (exporter/sources/log_rules.yaml)")
    rules: list[LogRule] = Field(default_factory=list, description="your own rules, counted as well")
    start_at: Literal["end", "beginning"] = Field("end", description="where to start in a file first seen")
    max_line_bytes: int = Field(16384, ge=256, le=1 << 20, description="longer lines are cut to this many bytes")
    max_read_bytes: int = Field(64 << 20, ge=4096, description="most bytes read from one file in one poll")

    @model_validator(mode="after")
    def _unique_rule_names(self) -> LogsConfig:
        names = [r.name for r in self.all_rules()]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique (default rules included): {repeated}")
        return self

    def all_rules(self) -> list[LogRule]:
        return [*(default_rules() if self.default_rules else []), *self.rules]


def default_rules() -> list[LogRule]:
    return [LogRule(**raw) for raw in yaml.safe_load(DEFAULT_RULES_FILE.read_text())]


class Tail:
    """One followed path: the open file, the read offset, and an unfinished last line."""

    def __init__(self, path: str, from_end: bool, max_line: int) -> None:
        self.path = path
        self.max_line = max_line
        self.handle: Any = None
        self.identity: tuple[int, int] | None = None
        self.partial = b""
        self.skipping = False  # inside an over-long line, dropping bytes up to its newline
        self._from_end = from_end
        self._resume: tuple[tuple[int, int], int] | None = None  # (identity, offset) kept by suspend()

    def _open(self, from_end: bool) -> bool:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open across polls on purpose
        except FileNotFoundError:
            return False
        st = os.fstat(handle.fileno())
        identity = (st.st_dev, st.st_ino)
        resume, self._resume = self._resume, None
        self.handle, self.identity = handle, identity
        if resume is not None and resume[0] == identity and resume[1] <= st.st_size:
            handle.seek(resume[1])  # the same file as before a restart: carry on where we were
            return True
        if from_end:
            handle.seek(0, os.SEEK_END)
        self.partial, self.skipping = b"", False
        return True

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle = None

    def suspend(self) -> None:
        """Close the file but remember where we were, so a source restart counts no line twice."""
        if self.handle is not None and self.identity is not None:
            self._resume = (self.identity, self.handle.tell())
        self.close()

    def read(self, budget: int) -> tuple[list[bytes], int, list[str]]:
        """(complete lines, bytes read, reopen reasons) since the last call."""
        reasons: list[str] = []
        lines: list[bytes] = []
        read = 0
        if self.handle is None:
            if not self._open(self._from_end):
                return lines, read, reasons
            self._from_end = False  # a file that appears later is read from its start
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current, st = None, None
        if current == self.identity and st is not None and st.st_size < self.handle.tell():
            self.handle.seek(0)
            self.partial, self.skipping = b"", False
            reasons.append("truncated")
        chunk = self.handle.read(budget)
        read += len(chunk)
        lines += self._split(chunk)
        if current != self.identity and len(chunk) < budget:
            # Rotated or deleted: the old file is read to its end (its unfinished last line ends
            # with it) and closed, so a deleted log's disk space is released.
            if self.partial and not self.skipping:
                lines.append(self.partial)
            self.close()
            reasons.append("rotated" if current is not None else "deleted")
            if current is not None and self._open(False):
                more = self.handle.read(budget - len(chunk))
                read += len(more)
                lines += self._split(more)
        return lines, read, reasons

    def _split(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        pieces = chunk.split(b"\n")
        out = []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if self.skipping:
                if not last:
                    self.skipping = False  # the newline that ends the over-long line
                continue
            data = self.partial + piece
            self.partial = b""
            if last:
                if len(data) > self.max_line:
                    out.append(data[: self.max_line])
                    self.skipping = True
                else:
                    self.partial = data
            else:
                out.append(data[: self.max_line])
        return out


class LogsSource(Source):
    name: ClassVar[str] = "logs"
    stand_in: ClassVar[str | None] = "simulated"
    config_model: ClassVar[type[SourceConfig]] = LogsConfig

    def __init__(self, config: LogsConfig) -> None:
        super().__init__(config)
        self.config: LogsConfig = config
        self.rules = [(rule, compile_pattern(rule.pattern, max_length=MAX_PATTERN_LENGTH), catalog.get(rule.metric))
                      for rule in config.all_rules()]
        self.counts: Counter[tuple[str, tuple[str, ...]]] = Counter()
        self.series: dict[str, set[tuple[str, ...]]] = {rule.name: set() for rule in config.all_rules()}
        self.overflow: Counter[str] = Counter()
        self.bytes_read: Counter[str] = Counter()
        self.reopens: Counter[tuple[str, str]] = Counter()
        self.tails: dict[str, Tail] = {}
        self._started = False
        self._literals = tuple(sorted({literal for rule, _, _ in self.rules for literal in rule.requires}))
        unfiltered = [entry for entry in self.rules if not entry[0].requires]
        self._unfiltered = unfiltered if self._literals else None
        for rule, regex, metric in self.rules:
            if not regex.groupindex:  # group-less rules have one series: export it from 0
                self.counts[(metric.name, self._labels(rule, metric, {}))] += 0

    @staticmethod
    def _labels(rule: LogRule, metric: catalog.Metric, groups: dict[str, str]) -> tuple[str, ...]:
        if metric.name == GENERIC_METRIC:
            if len(groups) == 1:
                key = next(iter(groups.values()))
            else:
                key = ",".join(f"{k}={v}" for k, v in groups.items()) or rule.labels.get("key", "")
            return rule.name, key
        values = {**rule.labels, **groups, "rule": rule.name}
        return tuple(values[label] for label in metric.labels)

    def count_line(self, line: str) -> None:
        line = bounded(line)  # what a rule sees of a line is capped, so a polynomial pattern stays cheap
        lowered = line.lower()
        rules = self.rules
        if self._unfiltered is not None:
            # Most lines name no rule's keyword: one pass over every literal decides that, and then
            # only the rules without `requires` run (plain `in` on a str is far cheaper than a regex).
            for literal in self._literals:
                if literal in lowered:
                    break
            else:
                rules = self._unfiltered
        for rule, regex, metric in rules:
            if rule.requires and not any(literal in lowered for literal in rule.requires):
                continue
            match = regex.search(line)
            if match is None:
                continue
            groups = {k: (v if v is not None else "") for k, v in match.groupdict().items()}
            labels = self._labels(rule, metric, groups)
            seen = self.series[rule.name]
            if labels not in seen:
                if len(seen) >= rule.max_series:
                    self.overflow[rule.name] += 1
                    groups = dict.fromkeys(groups, OVERFLOW)
                    labels = self._labels(rule, metric, groups)
                else:
                    seen.add(labels)
            self.counts[(metric.name, labels)] += 1

    def _paths(self) -> list[str]:
        found: list[str] = []
        for pattern in self.config.paths:
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            found += [m for m in matches if m not in found]
        return found

    def poll(self) -> list[Family]:
        first = not self._started
        self._started = True
        paths = self._paths()
        for path in paths:
            if path not in self.tails:
                from_end = first and self.config.start_at == "end"
                self.tails[path] = Tail(path, from_end, self.config.max_line_bytes)
        for path, tail in list(self.tails.items()):
            try:
                lines, read, reasons = tail.read(self.config.max_read_bytes)
            except OSError as exc:  # one unreadable path (a directory, no permission) must not stop the others
                log.warning("logs: cannot read %s: %s", path, exc.strerror or exc)
                tail.suspend()
                continue
            self.bytes_read[path] += read
            for reason in reasons:
                self.reopens[(path, reason)] += 1
                log.info("logs: %s was %s; reading the new file from its start", path, reason)
            for raw in lines:
                self.count_line(raw.decode("utf-8", errors="replace"))
            if path not in paths and (tail.handle is None or read == 0):
                tail.close()  # no longer named by the config (a glob stopped matching): drained, let go
                del self.tails[path]
        return self._families()

    def close(self) -> None:
        """Release the files; offsets survive, so the restart after a failed poll re-reads nothing."""
        for tail in self.tails.values():
            tail.suspend()

    def _families(self) -> list[Family]:
        families: dict[str, Family] = {}
        for (metric, labels), value in sorted(self.counts.items()):
            families.setdefault(metric, Family(metric)).add(labels, value)
        overflow = Family("blackwell_log_label_overflow_total")
        for rule, value in sorted(self.overflow.items()):
            overflow.add((rule,), value)
        read = Family("blackwell_log_read_bytes_total")
        for path, value in sorted(self.bytes_read.items()):
            read.add((path,), value)
        reopens = Family("blackwell_log_reopens_total")
        for (path, reason), value in sorted(self.reopens.items()):
            reopens.add((path, reason), value)
        return [*families.values(), overflow, read, reopens]
