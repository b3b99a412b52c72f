"""Where this installation keeps the CUPTI injection library (C sources in native/, built by setup.py).

Point the serving process at it with ``CUDA_INJECTION64_PATH=$(blackwell-exporter inject-path)``:
the CUDA driver loads it at ``cuInit`` in that process and in every child that inherits the
variable. What it writes: docs/dispatch-state.md; how to deploy it: docs/injection.md.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
LIBRARY_GLOB = "_blackwell_inject*.so"


class LibraryNotBuilt(RuntimeError):
    """The install had no C compiler (or no headers), so the library was not built."""


def library_path() -> Path:
    """Absolute path of the built library; LibraryNotBuilt says how to build it."""
    found = sorted(PACKAGE_DIR.glob(LIBRARY_GLOB))
    if not found:
        raise LibraryNotBuilt(
            f"the CUPTI injection library is not built in this install (no {LIBRARY_GLOB} in {PACKAGE_DIR}); "
            "it needs a C compiler when the package is installed: install gcc (apt-get install gcc libc6-dev), "
            "then reinstall with pip install --force-reinstall --no-deps . (or pip install -e . in a clone)")
    return found[0]
