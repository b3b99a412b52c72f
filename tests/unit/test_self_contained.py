"""The repository stands on its own: a clone with nothing beside it has everything its tests, docs and tools need."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Anything that reaches out of the clone into the sibling folder: a relative path up into it, REPO.parent / it,
# parents[3]. Spelled in pieces so that this file does not itself name that path.
SIBLING = "sha" + "red"
OUTSIDE = re.compile(r"\.\./" + SIBLING + r"|\.parent\s*/\s*[\"']" + SIBLING + r"[\"']|parents\[3\]")
# The team's reference notes, kept beside the checkout: "REFERENCE.md section N" means nothing to a reader.
NOTES = re.compile(r"\bREFERENCE\.md\b")


def _tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "exporter", "tests", "bench", "docs",
                             "deploy", "README.md", "dev", "Dockerfile"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / name for name in listed if (REPO / name).is_file()]


def test_nothing_refers_to_a_folder_beside_the_checkout():
    offenders = []
    for path in _tracked_files():
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "files that need something outside the repository:\n" + "\n".join(offenders)


def test_nothing_cites_the_reference_notes_a_clone_does_not_have():
    """The team's reference notes are not in the repository: a comment or doc cites the upstream source itself."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    paths = [REPO / name for name in listed if (REPO / name).is_file() and REPO / name != Path(__file__).resolve()]
    assert REPO / "exporter" / "mixin" / "recording.py" in paths, "the scan covers the exporter's sources"
    offenders = []
    for path in paths:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
                      for number, line in enumerate(text.splitlines(), 1) if NOTES.search(line)]
    assert not offenders, "files citing notes a clone does not have:\n" + "\n".join(offenders)


def test_the_measured_fixtures_and_schemas_are_in_the_repository():
    assert (REPO / "tests" / "fixtures" / "nvml" / "h200x2" / "nvml_probe.json").is_file()
    for schema in ("dashboard", "prometheus", "timeseries", "common"):
        assert (REPO / "tests" / "fixtures" / "grafana_schemas" / f"{schema}.jsonschema.json").is_file()


def test_committed_generated_files_do_not_depend_on_where_the_clone_lies():
    """CI regenerates in its own checkout and fails on drift: an absolute path of this checkout is drift."""
    for folder in ("alerts", "dashboards", "runbooks", "docs"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file():
                assert str(REPO) not in path.read_text(), f"{path.relative_to(REPO)} names the checkout {REPO}"
