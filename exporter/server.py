"""HTTP endpoints: /metrics, /healthz, /readyz, the landing page, and the simulation's /-/scenario.

Handlers only read what the scheduler already prepared; nothing here calls a source.

Limits, because the port may face a shared network: a request line over ``MAX_REQUEST_LINE``
bytes gets 414, a request line plus headers over ``MAX_HEADER_BYTES``, or more than
``MAX_HEADERS`` headers, get 431, a body over
``MAX_BODY_BYTES`` gets 413 and chunked bodies 411; the request line and headers must arrive
within ``HEADER_DEADLINE_SECONDS`` in all (a slow-drip client cannot hold a thread for long);
and beyond ``MAX_CONNECTIONS`` open connections new ones are closed at once. TLS and basic auth
come from the web config (:mod:`exporter.webconfig`); ``/healthz`` answers without credentials
so liveness probes need none, and says nothing but "ok".
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from exporter import __version__
from exporter.scheduler import Scheduler
from exporter.snapshot import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.webconfig import WebConfig, WebConfigWatcher

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 16384  # request line and headers together
MAX_HEADERS = 64
MAX_BODY_BYTES = 4096
MAX_CONNECTIONS = 64
HEADER_DEADLINE_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 10
TLS_HANDSHAKE_SECONDS = 5.0
_PLAIN = WebConfig()


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], scheduler: Scheduler,
                 set_scenario: Callable[[str], None] | None = None, web: WebConfigWatcher | None = None) -> None:
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.scheduler = scheduler
        self.set_scenario = set_scenario
        self.web = web
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused_connections = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused_connections += 1
            if self.refused_connections in (1, 10, 100) or self.refused_connections % 1000 == 0:
                log.warning("%d connections open; refused %d so far", MAX_CONNECTIONS, self.refused_connections)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs on the connection's own thread, so a slow TLS handshake only holds that thread."""
        config = self.web.current() if self.web is not None else _PLAIN
        if config.tls is None:
            Handler(request, client_address, self, config)
            return
        request.settimeout(TLS_HANDSHAKE_SECONDS)
        try:
            tls = config.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            Handler(tls, client_address, self, config)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
            log.debug("client %s went away or failed TLS: %s", client_address, exc)
        else:
            log.exception("error while serving %s", client_address)

    def serve_in_thread(self) -> threading.Thread:
        # A short poll interval makes shutdown() return within 0.1 s (it waits for the loop to notice).
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True)
        thread.start()
        return thread


class _HeadersTooLarge(HTTPException):
    """Raised while headers are read; the stdlib answers an HTTPException with 431."""


class _HeaderBudget:
    """Stands in for ``rfile`` while the request line and headers are read.

    Caps their total size and count and enforces one deadline across all of them (the socket
    timeout alone restarts with every byte a slow client drips in).
    """

    def __init__(self, rfile: Any, connection: socket.socket, deadline: float) -> None:
        self._rfile = rfile
        self._connection = connection
        self._deadline = deadline
        self._left = MAX_HEADER_BYTES
        self._lines = 0

    def readline(self, size: int = -1) -> bytes:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request headers not received in time")
        self._connection.settimeout(min(remaining, REQUEST_TIMEOUT_SECONDS))
        limit = self._left + 1 if size < 0 else min(size, self._left + 1)
        line = self._rfile.readline(limit)
        self._left -= len(line)
        self._lines += 1
        if self._left < 0:
            raise _HeadersTooLarge(f"request headers exceed {MAX_HEADER_BYTES} bytes")
        if self._lines > MAX_HEADERS + 1:
            raise _HeadersTooLarge(f"more than {MAX_HEADERS} request headers")
        return line


class Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"blackwell-exporter/{__version__}"
    timeout = REQUEST_TIMEOUT_SECONDS
    # Answer unparseable request lines with a status line too (the stdlib would reply HTTP/0.9 style).
    default_request_version = "HTTP/1.0"
    error_message_format = "%(code)d %(message)s: %(explain)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def __init__(self, request: Any, client_address: Any, server: ExporterHTTPServer, web: WebConfig) -> None:
        self.web = web
        super().__init__(request, client_address, server)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def handle_one_request(self) -> None:
        """The stdlib's loop body with this module's limits; see the module docstring."""
        rfile = self.rfile
        budget = _HeaderBudget(rfile, self.connection, time.monotonic() + HEADER_DEADLINE_SECONDS)
        try:
            try:
                self.raw_requestline = budget.readline(MAX_REQUEST_LINE + 1)
            except _HeadersTooLarge:
                self.raw_requestline = b"x" * (MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, f"request line over {MAX_REQUEST_LINE} bytes")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            self.rfile = budget
            try:
                parsed = self.parse_request()
            finally:
                self.rfile = rfile
                self.connection.settimeout(REQUEST_TIMEOUT_SECONDS)
            if not parsed or not self._body_acceptable():
                self.close_connection = True
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.close_connection = True
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {self.command!r}")
                return
            if not self._authorized():
                return
            method()
            self.wfile.flush()
        except TimeoutError as exc:
            log.debug("%s: request timed out: %s", self.address_string(), exc)
            self.close_connection = True

    def _body_acceptable(self) -> bool:
        """Refuse bodies we would not read; drain the small one a GET may carry to keep the connection in step."""
        if self.headers.get("Transfer-Encoding"):
            self.send_error(HTTPStatus.LENGTH_REQUIRED, "chunked request bodies are not accepted")
            return False
        raw = self.headers.get("Content-Length")
        if raw is None:
            self.content_length = 0
            return True
        if not raw.strip().isdigit():
            self.send_error(HTTPStatus.BAD_REQUEST, "Content-Length is not a number")
            return False
        self.content_length = int(raw)
        if self.content_length > MAX_BODY_BYTES:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY_BYTES} bytes")
            return False
        if self.command != "POST" and self.content_length:
            self.rfile.read(self.content_length)
        return True

    def _authorized(self) -> bool:
        if not self.web.auth_required or urlsplit(self.path).path == "/healthz":
            return True
        assert self.server.web is not None
        if self.server.web.authorized(self.web, self.headers.get("Authorization")):
            return True
        if self.content_length and self.command == "POST":
            self.rfile.read(self.content_length)
        self._send(401, b"unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="blackwell-exporter"'})
        return False

    def end_headers(self) -> None:
        for key, value in self.web.headers.items():
            self.send_header(key, value)
        super().end_headers()

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
        length = self.content_length
        body = self.rfile.read(length).decode("utf-8", "replace").strip() if length else ""
        if url.path != "/-/scenario":
            self._send(405 if url.path in ("/metrics", "/healthz", "/readyz", "/") else 404, b"not allowed\n")
            return
        if self.server.set_scenario is None:
            self._send(404, b"scenario switching exists only in simulation mode (--simulate)\n")
            return
        if not _is_loopback(self.client_address[0]):
            self._send(403, b"scenario switching is accepted from loopback only\n")
            return
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


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1
    return address.is_loopback


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
    notes = "".join(f"<h2>{html.escape(name)}</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in lines) + "</ul>"
                    for name, runner in sorted(scheduler.runners.items()) if (lines := runner.source.notes()))
    return (
        "<!doctype html><html><head><title>blackwell-exporter</title></head><body>"
        f"<h1>blackwell-exporter {html.escape(__version__)}</h1>"
        f"<p>mode: {html.escape(scheduler.mode)} &middot; ready: {'yes' if ready else 'no'}</p>"
        '<p><a href="/metrics">/metrics</a> &middot; <a href="/healthz">/healthz</a> &middot; '
        '<a href="/readyz">/readyz</a></p>'
        "<table border=1 cellpadding=4><tr><th>source</th><th>state</th><th>interval</th>"
        "<th>last poll</th><th>last error</th></tr>" + "".join(rows) + "</table>" + notes + "</body></html>\n"
    )
