"""The container image, checked by parsing the Dockerfile (no container engine on these machines).

The HEALTHCHECK command itself runs against a live daemon in tests/integration/test_tls.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()[:-1] + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            result.append((keyword.upper(), args.strip()))
            pending = ""
    return result


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    steps = instructions((ROOT / "Dockerfile").read_text())
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def values(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for k, args in stage if k == keyword]


def test_final_stage_is_slim_python_that_the_package_supports(final_stage) -> None:
    image = values(final_stage, "FROM")[0]
    match = re.fullmatch(r"python:(3\.\d+)-slim(-\w+)?", image)
    assert match, image
    requires = re.search(r'requires-python = ">=3\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert requires and int(match.group(1).split(".")[1]) >= int(requires.group(1))


def test_runs_as_a_numeric_non_root_user(final_stage) -> None:
    users = values(final_stage, "USER")
    assert users, "the final stage sets USER"
    user = users[-1].split(":")
    assert all(part.isdigit() and int(part) != 0 for part in user), users[-1]


def test_root_filesystem_can_be_read_only(final_stage) -> None:
    env = " ".join(values(final_stage, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "no .pyc writes at run time"
    assert "HOME=/tmp" in env, "library caches land in the tmpfs"
    assert values(final_stage, "WORKDIR")[-1] == "/tmp"
    assert not values(final_stage, "VOLUME"), "declare no volumes outside /tmp"
    user_index = max(i for i, (k, _) in enumerate(final_stage) if k == "USER")
    assert not [args for k, args in final_stage[user_index:] if k == "RUN"], "no RUN as the runtime user"


def test_exposes_9402_and_runs_the_daemon(final_stage) -> None:
    assert values(final_stage, "EXPOSE") == ["9402"]
    assert json.loads(values(final_stage, "ENTRYPOINT")[-1]) == ["blackwell-exporter", "run"]


def test_healthcheck_uses_python_on_healthz_not_curl(final_stage) -> None:
    (check,) = values(final_stage, "HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "HEALTHCHECK", "exec")
    assert "/healthz" in argv[2] and "9402" in argv[2]
    assert "curl" not in check and "wget" not in check
    timeout = re.search(r"--timeout=(\d+)s", options)
    assert timeout and int(timeout.group(1)) <= 10


def test_build_context_holds_only_what_the_build_copies() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "everything is excluded first; what the build needs is let back in"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    steps = instructions((ROOT / "Dockerfile").read_text())
    copied = set()
    for keyword, args in steps:
        if keyword == "COPY" and not args.startswith("--from"):
            copied.update(part.rstrip("/") for part in args.split()[:-1])
    assert copied <= allowed, copied - allowed
    assert all((ROOT / path).exists() for path in copied)
