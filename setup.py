"""Builds the CUPTI injection library (native/) into the package as exporter/_blackwell_inject*.so, and
the dispatch source's small C helper (native/moved.c) as exporter._moved.

The headers come from PyPI wheels listed as build requirements in pyproject.toml
(nvidia-cuda-cupti: cupti.h; nvidia-cuda-runtime: cuda.h), so a C compiler is all the machine
needs; native/shim supplies the one toolkit-only header they include. BLACKWELL_CUDA_INCLUDE
(colon-separated) uses other headers, e.g. a CUDA toolkit's. The extension is optional: without a
C compiler the package installs anyway and `blackwell-exporter inject-path` says what is missing.
libcupti itself is loaded at run time, never linked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent


def _wheel_include_dirs() -> list[str]:
    """Include folders of the nvidia-* wheels on this Python's path that hold cupti.h or cuda.h."""
    try:
        import nvidia  # namespace package of the nvidia-* wheels
    except ImportError:
        return []
    found: list[str] = []
    for root in map(Path, nvidia.__path__):
        for header in ("cupti.h", "cuda.h"):
            for path in sorted(root.glob(f"*/include/{header}")):
                if str(path.parent) not in found:
                    found.append(str(path.parent))
    return found


def _include_dirs() -> list[str]:
    explicit = os.environ.get("BLACKWELL_CUDA_INCLUDE", "")
    return [p for p in explicit.split(":") if p] or _wheel_include_dirs()


def _version() -> str:
    text = (ROOT / "exporter" / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


inject = Extension(
    "exporter._blackwell_inject",
    sources=["native/inject.c", "native/table.c"],
    include_dirs=["native", *_include_dirs()],
    define_macros=[("BLACKWELL_VERSION", f'"{_version()}"')],
    extra_compile_args=["-std=c11", "-O2", "-fvisibility=hidden", "-pthread", "-idirafter", "native/shim"],
    extra_link_args=["-pthread"],
    libraries=["dl"],
    optional=True,
)

# The dispatch source's comparison of two polls' counts (exporter/moved.py falls back to Python without it).
moved = Extension("exporter._moved", sources=["native/moved.c"], extra_compile_args=["-std=c11", "-O2"], optional=True)

setup(ext_modules=[inject, moved])
