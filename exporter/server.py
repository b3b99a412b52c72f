"""HTTP endpoints: /metrics, /healthz, /readyz, the landing page, and the simulation's /-/scenario.

Handlers only read what the scheduler already prepared; nothing here calls a source.

Limits, because the port may face a shared network: a request line over ``MAX_REQUEST_LINE``
bytes gets 414, a request line plus headers over ``MAX_HEADER_BYTES``, or more than
``MAX_HEADERS`` headers, get 431, a body over ``MAX_BODY_BYTES`` gets 413, chunked bodies 411,
and a ``Content-Length`` that is not plain ASCII digits (at most ``MAX_CONTENT_LENGTH_DIGITS``)
400; the request line, headers and body must arrive within ``REQUEST_DEADLINE_SECONDS`` in all
(a slow-drip client cannot hold a thread for long). Every 4xx for a malformed request, and every
401, closes the connection. Connection slots (``MAX_CONNECTIONS`` in all,
``MAX_CONNECTIONS_PER_CLIENT`` per client address) go to requests before waiting sockets: see
:mod:`exporter.connection_slots`. TLS and basic auth come from the web config
(:mod:`exporter.webconfig`), taken afresh for every request; ``/healthz`` answers without
credentials so liveness probes need none, and says nothing but "ok".
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import re
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
from urllib.parse import urlsplit

from exporter import __version__
from exporter.connection_slots import ConnectionSlots, Slot
from exporter.scheduler import Scheduler
from exporter.snapshot import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.webconfig import WebConfig, WebConfigWatcher

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 16384  # request line and headers together
MAX_HEADERS = 64
MAX_BODY_BYTES = 4096
MAX_CONTENT_LENGTH_DIGITS = 19
MAX_CONNECTIONS = 64
MAX_CONNECTIONS_PER_CLIENT = 16
REQUEST_DEADLINE_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 10
TLS_HANDSHAKE_SECONDS = 5.0
SCENARIO_CURL = ("curl -X POST -H 'Content-Type: application/json' -d '{\"scenario\": \"NAME\"}' "
                 "localhost:9402/-/scenario")
_PLAIN = WebConfig()


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], scheduler: Scheduler,
                 set_scenario: Callable[[str], None] | None = None, web: WebConfigWatcher | None = None,
                 max_connections: int = MAX_CONNECTIONS, max_per_client: int = MAX_CONNECTIONS_PER_CLIENT) -> None:
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.scheduler = scheduler
        self.set_scenario = set_scenario
        self.web = web
        self.slots = ConnectionSlots(max_connections, max_per_client)

    @property
    def refused_connections(self) -> int:
        return self.slots.refused

    def process_request(self, request: Any, client_address: Any) -> None:
        """Runs on the accept loop: take a slot (see :mod:`exporter.connection_slots`) and hand the connection a thread."""
        evicted = self.slots.evicted
        slot = self.slots.admit(request, client_address[0])
        if self.slots.evicted != evicted and _worth_logging(self.slots.evicted):
            log.warning("connection slots full: closed %d waiting connections so far to admit new ones "
                        "(slow or idle clients)", self.slots.evicted)
        if slot is None:
            if _worth_logging(self.slots.refused):
                log.warning("all %d connection slots busy answering requests; refused %d connections so far",
                            self.slots.total, self.slots.refused)
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address, slot),
                                  name="http-connection", daemon=True)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any, slot: Slot) -> None:
        """Runs on the connection's own thread, so a slow TLS handshake only holds that thread."""
        try:
            config = self.web.current() if self.web is not None else _PLAIN
            if config.tls is None:
                Handler(request, client_address, self, config, slot)
                return
            request.settimeout(TLS_HANDSHAKE_SECONDS)
            # Wrapping takes the descriptor from ``request``; the slot must hold the wrapper before
            # the handshake, or a client that never sends its hello could not be shut out.
            tls = config.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            slot.connection = tls
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                tls.close()
                return
            try:
                Handler(tls, client_address, self, config, slot)
            finally:
                try:
                    tls.close()
                except OSError:
                    pass
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.slots.release(slot)
            self.shutdown_request(request)

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


def _worth_logging(count: int) -> bool:
    return count in (1, 10, 100) or count % 1000 == 0


class _HeadersTooLarge(HTTPException):
    """Raised while headers are read; the stdlib answers an HTTPException with 431."""


class _RequestBudget:
    """Stands in for ``rfile`` while the request line, headers and body are read.

    Caps the headers' total size and count and enforces one deadline across the whole request
    (the socket timeout alone restarts with every byte a slow client drips in).
    """

    def __init__(self, rfile: Any, connection: socket.socket, deadline: float) -> None:
        self._rfile = rfile
        self._connection = connection
        self._deadline = deadline
        self._left = MAX_HEADER_BYTES
        self._lines = 0

    def _arm(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request not received in time")
        self._connection.settimeout(min(remaining, REQUEST_TIMEOUT_SECONDS))

    def readline(self, size: int = -1) -> bytes:
        self._arm()
        limit = self._left + 1 if size < 0 else min(size, self._left + 1)
        line = self._rfile.readline(limit)
        self._left -= len(line)
        self._lines += 1
        if self._left < 0:
            raise _HeadersTooLarge(f"request headers exceed {MAX_HEADER_BYTES} bytes")
        if self._lines > MAX_HEADERS + 1:
            raise _HeadersTooLarge(f"more than {MAX_HEADERS} request headers")
        return line

    def read(self, size: int) -> bytes:
        chunks = []
        while size > 0:
            self._arm()
            chunk = self._rfile.read1(size)
            if not chunk:
                raise ConnectionError("connection closed inside the request body")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


class Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"blackwell-exporter/{__version__}"
    timeout = REQUEST_TIMEOUT_SECONDS
    # Answer unparseable request lines with a status line too (the stdlib would reply HTTP/0.9 style).
    default_request_version = "HTTP/1.0"
    error_message_format = "%(code)d %(message)s: %(explain)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def __init__(self, request: Any, client_address: Any, server: ExporterHTTPServer, web: WebConfig,
                 slot: Slot) -> None:
        self.web = web
        self._tls_at_connect = web.tls
        self.slot = slot
        self.body = b""
        super().__init__(request, client_address, server)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def handle_one_request(self) -> None:
        """The stdlib's loop body with this module's limits; see the module docstring."""
        self.server.slots.set_waiting(self.slot, True)
        rfile = self.rfile
        budget = _RequestBudget(rfile, self.connection, time.monotonic() + REQUEST_DEADLINE_SECONDS)
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
                parsed = self.parse_request() and self._read_body(budget)
            finally:
                self.rfile = rfile
                self.connection.settimeout(REQUEST_TIMEOUT_SECONDS)
            if not parsed or not self._config_still_applies():
                self.close_connection = True
                return
            self.server.slots.set_waiting(self.slot, False)
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.close_connection = True
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {self.command!r}")
                return
            if not self._authorized():
                return
            method()
            self.wfile.flush()
        except (TimeoutError, ConnectionError) as exc:
            log.debug("%s: request not completed: %s", self.address_string(), exc)
            self.close_connection = True

    def _read_body(self, budget: _RequestBudget) -> bool:
        """Read the body within the request deadline, or answer why not (always closing the connection)."""
        if self.headers.get("Transfer-Encoding"):
            self.send_error(HTTPStatus.LENGTH_REQUIRED, "chunked request bodies are not accepted")
            return False
        length, problem = _content_length(self.headers.get_all("Content-Length") or [])
        if problem:
            self.send_error(HTTPStatus.BAD_REQUEST, problem)
            return False
        if length > MAX_BODY_BYTES:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY_BYTES} bytes")
            return False
        self.body = budget.read(length)
        return True

    def _config_still_applies(self) -> bool:
        """Take the web config in force now for this request; False when its TLS settings changed since connect.

        Credentials and headers are checked per request against the current config, so a removed
        user is refused on a keep-alive connection too. A connection made under other TLS settings
        is closed unanswered: the client reconnects under the new ones.
        """
        if self.server.web is None:
            return True
        current = self.server.web.current()
        if current.tls is not self._tls_at_connect:
            log.debug("%s: web config TLS settings changed; closing the connection", self.address_string())
            return False
        self.web = current
        return True

    def _authorized(self) -> bool:
        if not self.web.auth_required or urlsplit(self.path).path == "/healthz":
            return True
        assert self.server.web is not None
        if self.server.web.authorized(self.web, self.headers.get("Authorization")):
            return True
        self.close_connection = True  # a password guesser reconnects for every try, like a scraper would
        self._send(401, b"unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="blackwell-exporter"',
                                                     "Connection": "close"})
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
        path = urlsplit(self.path).path
        if path != "/-/scenario":
            self._send(405 if path in ("/metrics", "/healthz", "/readyz", "/") else 404, b"not allowed\n")
            return
        if self.server.set_scenario is None:
            self._send(404, b"scenario switching exists only in simulation mode (--simulate)\n")
            return
        refusal = self._scenario_refusal()
        if refusal is not None:
            self._send(refusal[0], refusal[1].encode())
            return
        name = _scenario_from_json(self.body)
        if not name:
            self._send(400, f'give the scenario as a JSON object {{"scenario": NAME}}: {SCENARIO_CURL}\n'.encode())
            return
        try:
            self.server.set_scenario(name)
        except ValueError as exc:
            self._send(400, f"{exc}\n".encode())
            return
        log.info("simulation scenario switched to %s", name)
        self._send(200, f"scenario {name}\n".encode())

    def _scenario_refusal(self) -> tuple[int, str] | None:
        """Why this POST may not switch the scenario, or None.

        Loopback clients only, and only non-simple requests: a JSON body with ``Content-Type:
        application/json`` is something a web page on another origin cannot send without a CORS
        preflight, which this server never approves (a form post or ``no-cors`` fetch arrives as
        text/plain or form data). The Host must name loopback too, so a DNS-rebound page cannot
        pass as same-origin.
        """
        if not _is_loopback(self.client_address[0]):
            return 403, "scenario switching is accepted from loopback only\n"
        if self.headers.get("Sec-Fetch-Site", "none").lower() not in ("none", "same-origin"):
            return 403, "scenario switching is refused for cross-site browser requests\n"
        if not _is_loopback_host(self.headers.get("Host", "")):
            return 403, "scenario switching needs a loopback Host (localhost, 127.0.0.1 or [::1])\n"
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return 415, f"send the scenario as JSON with Content-Type: application/json: {SCENARIO_CURL}\n"
        return None

    def _metrics(self) -> None:
        exposition = self.server.scheduler.store.current()
        accept = self.headers.get("Accept", "")
        openmetrics = "application/openmetrics-text" in accept
        gzipped = gzip_accepted(self.headers.get_all("Accept-Encoding") or [])
        body = exposition.body(openmetrics, gzipped)
        headers = {"Vary": "Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        self._send(200, body, OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE, headers)


def _content_length(values: list[str]) -> tuple[int, str]:
    """The body length and "" if the Content-Length headers are well formed, else 0 and why not."""
    if not values:
        return 0, ""
    raw = {value.strip() for value in values}
    if len(raw) > 1:
        return 0, "conflicting Content-Length headers"
    text = raw.pop()
    if not text or not text.isascii() or not text.isdigit():
        return 0, "Content-Length must be a decimal number of ASCII digits"
    if len(text) > MAX_CONTENT_LENGTH_DIGITS:
        return 0, f"Content-Length has more than {MAX_CONTENT_LENGTH_DIGITS} digits"
    return int(text), ""


def gzip_accepted(values: list[str]) -> bool:
    """Whether ``Accept-Encoding`` (all its header lines) prefers gzip to identity, q-values included.

    gzip is used when its q (its own entry, else ``*``'s, else 0) is above 0 and not below a q
    the client gave identity (its own entry, else ``*``'s): ``identity, gzip;q=0.5`` stays
    uncompressed, ``deflate, gzip;q=0.1`` is gzipped, as client_golang's negotiation does. An
    unparsable q counts as 0. When neither is acceptable (``*;q=0``) the body goes out
    uncompressed, as RFC 9110 section 12.5.3 allows.
    """
    weights: dict[str, float] = {}
    for value in values:
        for item in value.split(","):
            coding, *params = (part.strip() for part in item.split(";"))
            coding = {"x-gzip": "gzip"}.get(coding.lower(), coding.lower())
            if coding:
                weights[coding] = _quality(params)
    gzip_q = weights.get("gzip", weights.get("*", 0.0))
    identity_q = weights.get("identity", weights.get("*", 0.0))
    return gzip_q > 0 and gzip_q >= identity_q


def _quality(params: list[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            value = value.strip()
            if not re.fullmatch(r"0(\.\d{0,3})?|1(\.0{0,3})?", value):
                return 0.0
            return float(value)
    return 1.0


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1
    return address.is_loopback


def _is_loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback: localhost, 127.x or [::1], with any port."""
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return _is_loopback(name)
    except ValueError:
        return False


def _scenario_from_json(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    value = data.get("scenario", "") if isinstance(data, dict) else ""
    return value.strip() if isinstance(value, str) else ""


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
