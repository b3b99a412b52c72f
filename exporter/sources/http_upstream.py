"""One bounded HTTP GET against an upstream runtime: total deadline, size cap, TLS settings.

``urllib``'s timeout bounds each socket operation, not the request: a server that drips one
byte per second would never time out. :func:`get` gives connecting, the TLS handshake, sending,
the status line, every header and every chunk of the body only what is left of one deadline, and stops reading as soon as the body passes the cap, so a hostile
or broken upstream costs at most ``timeout`` seconds and ``max_bytes`` of memory.

Every failure is an :class:`UpstreamError` (a :class:`PollError`) whose ``reason`` is one of
``unreachable``, ``timeout``, ``truncated``, ``too_large``, ``tls`` or ``http_status``, so the scheduler's
``source_errors_total{reason}`` says what went wrong. Non-2xx answers are returned, not raised,
when the caller asks (health endpoints answer 503 on purpose). Proxies from the environment are
not used: the exporter is a sidecar talking to its neighbour.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import os
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from exporter.sources.base import PollError, StrictModel

CHUNK = 64 * 1024


class UpstreamError(PollError):
    """An upstream could not be read; ``reason`` labels the failure."""


class Endpoint(StrictModel):
    """Where one upstream lives and how to talk to it. Shared by the serving sources."""

    url: str = Field(description="http(s)://host:port/path of the metrics endpoint")
    timeout: float | None = Field(None, gt=0, le=600, description="seconds; defaults to the source's timeout")
    interval: float | None = Field(None, gt=0, le=3600,
                                   description="seconds between reads; defaults to the source's interval")
    tls_verify: bool = Field(True, description="verify the server certificate for https URLs")
    ca_file: Path | None = Field(None, description="CA bundle for https URLs (default: the system's)")
    max_bytes: int = Field(16 * 1024 * 1024, gt=0, description="responses larger than this are rejected")

    def base(self) -> str:
        """scheme://host:port of the server, for its other paths (/version, /v1/models)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
        try:
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port") from None
        return value


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str


def get(url: str, *, timeout: float, max_bytes: int, tls_verify: bool = True, ca_file: Path | None = None,
        accept: str = "*/*", allow_status: bool = False) -> Response:
    """GET ``url`` within ``timeout`` seconds in total; raise UpstreamError on failure.

    With ``allow_status`` a non-2xx answer is returned (its body capped like any other);
    without it, it raises with reason ``http_status``.
    """
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    context = None
    if parts.scheme == "https":
        ca = str(ca_file) if ca_file else None
        stamp = os.stat(ca).st_mtime_ns if ca else 0  # a replaced CA bundle builds a new context
        context = _tls_context(ca, stamp, tls_verify)
    conn = _DeadlineHTTP(parts.hostname or "", parts.port, deadline, context)
    response = None
    try:
        conn.connect()
        conn.sock.settimeout(_remaining(deadline))  # sendall's timeout bounds the whole send
        conn.request("GET", target, headers={"Accept": accept, "Accept-Encoding": "identity",
                                             "User-Agent": "blackwell-exporter"})
        response = conn.getresponse()
        declared = response.getheader("Content-Length", "").strip()
        if declared.isascii() and declared.isdigit() and len(declared) < 20 and int(declared) > max_bytes:
            raise UpstreamError(f"{url}: response of {int(declared)} bytes is over the {max_bytes}-byte cap",
                                "too_large")
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read1(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise UpstreamError(f"{url}: response is over the {max_bytes}-byte cap", "too_large")
            chunks.append(chunk)
        if response.length:
            raise http.client.IncompleteRead(b"".join(chunks), response.length)
        body = b"".join(chunks)
        status = response.status
        content_type = response.getheader("Content-Type", "")
    except UpstreamError:
        raise
    except ssl.SSLError as exc:
        raise UpstreamError(f"{url}: TLS failed: {exc.reason or exc}", "tls") from None
    except TimeoutError:
        raise UpstreamError(f"{url}: no complete answer within {timeout:.3g}s", "timeout") from None
    except http.client.IncompleteRead as exc:
        raise UpstreamError(f"{url}: {_describe(exc)}", "truncated") from None
    except (OSError, http.client.HTTPException) as exc:
        raise UpstreamError(f"{url}: {_describe(exc)}", "unreachable") from None
    finally:
        if response is not None:
            response.close()  # with Connection: close the socket lives on in the response
        conn.close()
    if not allow_status and not 200 <= status < 300:
        raise UpstreamError(f"{url}: HTTP {status}", "http_status")
    return Response(status, body, content_type)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


class _DeadlineReader(io.RawIOBase):
    """The response's socket reads, each given only the time left before ``deadline``.

    ``http.client`` reads the status line and headers with one socket timeout per read, so a
    server dripping a header byte a second was never cut off; with this reader under the
    response, headers and body together end at the deadline.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)  # counts as a user of the socket, as http.client's would
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(_remaining(self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """What ``HTTPResponse`` is given instead of the socket: it only calls ``makefile("rb")``."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _DeadlineHTTP(http.client.HTTPConnection):
    """An HTTP(S) connection whose connect, handshake and response reads all end at one ``deadline``."""

    def __init__(self, host: str, port: int | None, deadline: float, tls: ssl.SSLContext | None) -> None:
        default_port = http.client.HTTPS_PORT if tls is not None else http.client.HTTP_PORT
        super().__init__(host, port or default_port)
        self.deadline = deadline
        self.tls = tls

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), _remaining(self.deadline))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            self.sock.settimeout(_remaining(self.deadline))  # the handshake's timeout bounds it as a whole
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)

    def response_class(self, sock: socket.socket, method: str | None = None) -> http.client.HTTPResponse:  # type: ignore[override]
        """Called by ``getresponse()`` in place of the class attribute it normally is."""
        return http.client.HTTPResponse(_DeadlineSocket(sock, self.deadline), method=method)  # type: ignore[arg-type]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror})"
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed after {len(exc.partial)} bytes of the body"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed before an answer"
    return f"{type(exc).__name__}: {exc}"


@functools.lru_cache(maxsize=32)
def _tls_context(ca_file: str | None, _stamp: int, verify: bool) -> ssl.SSLContext:
    """One context per CA bundle version: building one loads the bundle from disk, too slow per request."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` decoded as a JSON object; None for anything else (not JSON, nested too deep, a list)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
