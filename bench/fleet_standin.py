"""Stand-in NVL72 tray targets for bench/fleet.py: many trays served by one process, from exposition
bodies captured off the real simulated exporter, so that Prometheus rather than the simulator is the limit.

A tray is captured twice, some seconds apart. Every scrape of its stand-in serves the second capture's
lines (same series, same order, same HELP and TYPE lines) with the values moved on to the scrape time:

- a monotone sample (a ``counter`` family's samples; a histogram's or summary's ``_bucket``, ``_count``
  and ``_sum``) grows at the rate it grew between the two captures; one that did not grow (or fell, as
  after a restart) is served as captured, so a stand-in counter never goes backwards;
- a timestamp gauge (family name ending ``_timestamp_seconds``, e.g. a source's last success) that changed
  between the captures runs with the clock, as the real one does when every poll succeeds;
- another gauge that changed between the captures swings between its two captured values (a triangle
  wave with the capture gap as half period), so gauge rules and the TSDB's chunk encoding see changing data;
- everything else (info gauges, constant values) is served as captured.

A tray of another rack is the captured tray with its rack-derived label values (the simulator's
``RackPlace`` properties: ``cluster_uuid``, ``clique_id``, ``chassis_serial_number``, the only
rack-dependent parts of a simulated tray's exposition) replaced by the ones it derives for that rack; bench/fleet.py checks in the same run that
a real exporter of that rack exposes exactly the stand-in's series. The instance label is Prometheus's
``host:port``, one loopback port per stand-in tray as per real tray.

    python bench/fleet_standin.py --captures DIR --rack rack-1 --rack rack-2 --ready ready.json
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.sources.simulated.board import RackPlace  # noqa: E402

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
MONOTONE_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
CLOCK_SUFFIX = "_timestamp_seconds"


@dataclass(frozen=True)
class LiveValue:
    """One sample whose value moves: ``base`` at the second capture, then ``slope`` per second (monotone
    samples, clocks) or a swing of ``swing`` back towards the first capture's value (other gauges)."""

    base: float
    slope: float = 0.0
    swing: float = 0.0

    def at(self, elapsed: float, half_period: float) -> float:
        if self.slope:
            return self.base + self.slope * max(0.0, elapsed)
        phase = (elapsed / half_period) % 2.0
        return self.base - self.swing * (phase if phase <= 1.0 else 2.0 - phase)


def split_sample(line: str) -> tuple[str, str]:
    """``name{labels} value`` -> (``name{labels}``, ``value``); label values may hold spaces, never after ``}``."""
    brace = line.rfind("}")
    head, rest = (line[:brace + 1], line[brace + 1:]) if brace >= 0 else line.split(None, 1)
    fields = rest.split()
    if len(fields) != 1:
        raise ValueError(f"stand-in expects 'series value' without a timestamp, got {line!r}")
    return head, fields[0]


def sample_name(series: str) -> str:
    return series.split("{", 1)[0]


def family_types(text: str) -> dict[str, str]:
    return {fields[2]: fields[3] for line in text.splitlines()
            if line.startswith("# TYPE ") and len(fields := line.split()) >= 4}


def is_monotone(name: str, types: dict[str, str]) -> bool:
    """True for samples Prometheus treats as counters: a counter family's, a histogram's or summary's totals."""
    if types.get(name) == "counter":
        return True
    for family_type, suffixes in MONOTONE_SUFFIXES.items():
        for suffix in suffixes:
            if name.endswith(suffix) and types.get(name.removesuffix(suffix)) == family_type:
                return True
    # A counter family declared without its _total suffix (OpenMetrics style) keeps _total on the sample.
    return name.endswith("_total") and types.get(name.removesuffix("_total")) == "counter"


def samples(text: str) -> dict[str, str]:
    """series -> value text of an exposition body, in body order."""
    return dict(split_sample(line) for line in text.splitlines() if line and not line.startswith("#"))


def series_set(text: str) -> set[str]:
    """The series (name and labels, as written) of an exposition body."""
    return set(samples(text))


class Exposition:
    """One tray's stand-in body: static text between the values that move, rendered at a given time."""

    def __init__(self, first: str, second: str, seconds_between: float, captured_at: float) -> None:
        """``first`` and ``second`` are the tray's bodies captured ``seconds_between`` apart, the second at
        unix time ``captured_at``. The second capture is the template: a series only in the first is gone."""
        if seconds_between <= 0:
            raise ValueError(f"the two captures must be apart in time, got {seconds_between!r} s")
        types = family_types(second)
        earlier = {series: float(value) for series, value in samples(first).items()}
        self.captured_at = captured_at
        self.half_period = seconds_between
        self.chunks: list[str] = []
        self.values: list[LiveValue] = []
        static: list[str] = []
        for line in second.splitlines():
            if not line or line.startswith("#"):
                static.append(line + "\n")
                continue
            series, text = split_sample(line)
            value = LiveValue(float(text))
            if series in earlier and earlier[series] != value.base:
                change = value.base - earlier[series]
                if sample_name(series).endswith(CLOCK_SUFFIX) and types.get(sample_name(series)) == "gauge":
                    value = LiveValue(value.base, slope=1.0)
                elif is_monotone(sample_name(series), types):
                    value = LiveValue(value.base, slope=max(0.0, change) / seconds_between)
                else:
                    value = LiveValue(value.base, swing=change)
            if not value.slope and not value.swing:
                static.append(line + "\n")
                continue
            static.append(series + " ")
            self.chunks.append("".join(static))
            self.values.append(value)
            static = ["\n"]
        self.chunks.append("".join(static))

    def render(self, now: float) -> str:
        """The body a scrape at unix time ``now`` gets."""
        elapsed = now - self.captured_at
        parts = [self.chunks[0]]
        for value, chunk in zip(self.values, self.chunks[1:], strict=True):
            parts.append(repr(value.at(elapsed, self.half_period)))
            parts.append(chunk)
        return "".join(parts)


def rack_labels(place: RackPlace) -> dict[str, str]:
    """What the simulator derives from a tray's rack (every property of RackPlace), by label name."""
    return {name: getattr(place, name) for name, member in vars(RackPlace).items() if isinstance(member, property)}


def for_rack(text: str, tray: int, captured_rack: str, rack: str) -> str:
    """A body captured from ``tray`` of ``captured_rack`` as the same tray of ``rack`` exposes it: every
    rack-derived label value (fabric cluster UUID, clique id, chassis serial number) swapped for ``rack``'s."""
    wanted = rack_labels(RackPlace(tray, rack))
    for name, captured in rack_labels(RackPlace(tray, captured_rack)).items():
        text = text.replace(f'{name}="{captured}"', f'{name}="{wanted[name]}"')
    return text


def load_captures(directory: Path, rack: str) -> dict[int, Exposition]:
    """tray -> stand-in for ``rack``, from the captures bench/fleet.py wrote (manifest.json and two bodies a tray)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    trays = {}
    for tray, (first, second) in manifest["trays"].items():
        bodies = [for_rack((directory / name).read_text(), int(tray), manifest["rack"], rack) for name in (first, second)]
        trays[int(tray)] = Exposition(*bodies, manifest["seconds_between"], manifest["captured_at"])
    return trays


async def answer(exposition: Exposition, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 with keep-alive, as Prometheus scrapes: GET /metrics gets the body (gzip when accepted)."""
    try:
        while request := await reader.readuntil(b"\r\n\r\n"):
            lines = request.decode("latin-1").split("\r\n")
            path = lines[0].split()[1] if len(lines[0].split()) > 1 else ""
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if path.split("?")[0] != "/metrics":
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                continue
            body = exposition.render(time.time()).encode()
            extra = b""
            if "gzip" in headers.get("accept-encoding", ""):
                body, extra = gzip.compress(body, compresslevel=1), b"Content-Encoding: gzip\r\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE + b"\r\n" + extra
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(directory: Path, racks: list[str], ready: Path) -> None:
    """One listening loopback port per tray of every rack; ``ready`` gets [{rack, tray, port}] once all listen."""
    listening = []
    for rack in racks:
        for tray, exposition in sorted(load_captures(directory, rack).items()):
            server = await asyncio.start_server(
                lambda r, w, e=exposition: answer(e, r, w), "127.0.0.1", 0)
            listening.append({"rack": rack, "tray": tray, "port": server.sockets[0].getsockname()[1]})
    partial = ready.with_suffix(".partial")
    partial.write_text(json.dumps(listening))
    partial.rename(ready)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captures", type=Path, required=True, help="directory bench/fleet.py captured into")
    parser.add_argument("--rack", action="append", required=True, help="a rack to stand in for (repeatable)")
    parser.add_argument("--ready", type=Path, required=True, help="written with the ports once all listen")
    args = parser.parse_args()
    asyncio.run(serve(args.captures, args.rack, args.ready))


if __name__ == "__main__":
    main()
