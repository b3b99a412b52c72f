"""HTTP endpoints: /metrics, /healthz, /readyz, the landing page, and the simulation's /-/scenario.

Handlers only read what the scheduler already prepared; nothing here calls a source.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from exporter import __version__
from exporter.scheduler import Scheduler
from exporter.snapshot import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
REQUEST_TIMEOUT_SECONDS = 10


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], scheduler: Scheduler,
                 set_scenario: Callable[[str], None] | None = None) -> None:
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.scheduler = scheduler
        self.set_scenario = set_scenario

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("client %s went away: %s", client_address, exc)
        else:
            log.exception("error while serving %s", client_address)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread


class Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"blackwell-exporter/{__version__}"
    timeout = REQUEST_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._send(200, b"ok\n")
        elif path == "/readyz":
            ready, reasons = self.server.scheduler.ready()
            body = "ready\n" if ready else "not ready:\n" + "".join(f"- {r}\n" for r in reasons)
            self._send(200 if ready else 503, body.encode())
        elif path == "/":
            self._send(200, landing_page(self.server.scheduler).encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"not found: try /metrics, /healthz, /readyz or /\n")

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path != "/-/scenario":
            self._send(405 if url.path in ("/metrics", "/healthz", "/readyz", "/") else 404, b"not allowed\n")
            return
        if self.server.set_scenario is None:
            self._send(404, b"scenario switching exists only in simulation mode (--simulate)\n")
            return
        if not ipaddress.ip_address(self.client_address[0].split("%")[0]).is_loopback:
            self._send(403, b"scenario switching is accepted from loopback only\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, b"request body too large\n")
            return
        body = self.rfile.read(length).decode("utf-8", "replace").strip() if length else ""
        name = parse_qs(url.query).get("name", [""])[0] or _scenario_from_body(body)
        if not name:
            self._send(400, b"give the scenario as ?name=NAME, a plain-text body, or JSON {\"scenario\": NAME}\n")
            return
        try:
            self.server.set_scenario(name)
        except ValueError as exc:
            self._send(400, f"{exc}\n".encode())
            return
        log.info("simulation scenario switched to %s", name)
        self._send(200, f"scenario {name}\n".encode())

    def _metrics(self) -> None:
        exposition = self.server.scheduler.store.current()
        accept = self.headers.get("Accept", "")
        openmetrics = "application/openmetrics-text" in accept
        gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
        body = exposition.body(openmetrics, gzipped)
        headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzipped else {}
        self._send(200, body, OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE, headers)


def _scenario_from_body(body: str) -> str:
    if body.startswith("{"):
        try:
            value = json.loads(body).get("scenario", "")
        except (ValueError, AttributeError):
            return ""
        return value if isinstance(value, str) else ""
    return body


def landing_page(scheduler: Scheduler) -> str:
    rows = []
    for name, runner in sorted(scheduler.runners.items()):
        last = f"{runner.last_duration * 1000:.1f} ms" if runner.last_duration is not None else "-"
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{runner.state()}</td><td>{runner.interval:g}s</td>"
            f"<td>{last}</td><td>{html.escape(runner.last_error) or '-'}</td></tr>"
        )
    ready, _ = scheduler.ready()
    return (
        "<!doctype html><html><head><title>blackwell-exporter</title></head><body>"
        f"<h1>blackwell-exporter {html.escape(__version__)}</h1>"
        f"<p>mode: {html.escape(scheduler.mode)} &middot; ready: {'yes' if ready else 'no'}</p>"
        '<p><a href="/metrics">/metrics</a> &middot; <a href="/healthz">/healthz</a> &middot; '
        '<a href="/readyz">/readyz</a></p>'
        "<table border=1 cellpadding=4><tr><th>source</th><th>state</th><th>interval</th>"
        "<th>last poll</th><th>last error</th></tr>" + "".join(rows) + "</table></body></html>\n"
    )
