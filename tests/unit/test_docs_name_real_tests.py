"""Every test a document names (``test_file.py::test_name``, or ``::test_name`` after one on the same
line) exists in that file, so a renamed or removed test cannot leave a doc pointing at nothing."""

from __future__ import annotations

import re

from tests.support import REPO

_REFERENCE = re.compile(r"(test_\w+\.py)?::(test_\w+)")


def defined_tests() -> dict[str, set[str]]:
    return {path.name: set(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M))
            for path in (REPO / "tests").rglob("test_*.py")}


def named_tests() -> list[tuple[str, str, str]]:
    """(document, test file, test name) for each reference in the documentation."""
    named = []
    for document in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for line in document.read_text().splitlines():
            file = None
            for match in _REFERENCE.finditer(line):
                file = match.group(1) or file
                if file is not None:
                    named.append((document.name, file, match.group(2)))
    return named


def test_every_test_a_document_names_exists():
    defined = defined_tests()
    named = named_tests()
    assert named, "the documents name tests"
    missing = [f"{document}: {file}::{name}" for document, file, name in named if name not in defined.get(file, ())]
    assert not missing
