"""Facts about the serving process: which pid it is and its environment, from /proc."""

from __future__ import annotations

from pathlib import Path

from exporter.preflight.facts import ProcessFacts

PROC = Path("/proc")


def find(name: str, proc: Path = PROC) -> list[int]:
    """Pids whose comm, argv[0] or argv[1] (a script run by an interpreter) is ``name``."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        heads = {Path(a.decode(errors="replace")).name for a in argv[:2] if a}
        if comm == name or name in heads:
            found.append(int(entry.name))
    return sorted(found)


def read(pid: int, proc: Path = PROC) -> ProcessFacts:
    base = proc / str(pid)
    try:
        name = (base / "comm").read_text().strip()
    except FileNotFoundError:
        return ProcessFacts(pid, reason=f"no process {pid}")
    except OSError as exc:
        name = f"? ({exc.strerror})"
    try:
        raw = (base / "environ").read_bytes()
    except PermissionError:
        return ProcessFacts(pid, name, reason=f"permission denied reading {base}/environ: run preflight as "
                                             "root or as the serving process's user")
    except OSError as exc:
        return ProcessFacts(pid, name, reason=f"cannot read {base}/environ: {exc.strerror or exc}")
    environ = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            environ[key] = value
    return ProcessFacts(pid, name, environ)
