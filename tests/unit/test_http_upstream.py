"""The bounded GET: whole-request deadline, size cap, clear reasons for every failure."""

import shutil
import socket
import subprocess
import threading
import time

import pytest

from exporter.sources.http_upstream import Endpoint, UpstreamError, get
from tests.unit.upstream_server import Route, Upstream


@pytest.fixture
def upstream():
    server = Upstream()
    yield server
    server.close()


def test_reads_a_body(upstream):
    upstream.routes["/metrics"] = Route(b"a 1\n")
    response = get(upstream.url("/metrics"), timeout=2, max_bytes=100)
    assert (response.status, response.body) == (200, b"a 1\n")
    assert response.content_type.startswith("text/plain")


def test_a_declared_oversized_body_is_refused_before_reading(upstream):
    upstream.routes["/big"] = Route(b"x" * 1000)
    with pytest.raises(UpstreamError, match="1000 bytes is over the 999-byte cap") as err:
        get(upstream.url("/big"), timeout=2, max_bytes=999)
    assert err.value.reason == "too_large"


def test_an_undeclared_oversized_body_is_cut_off(upstream):
    upstream.routes["/big"] = Route(b"x" * 200_000, send_length=False)
    with pytest.raises(UpstreamError, match="over the 100000-byte cap") as err:
        get(upstream.url("/big"), timeout=2, max_bytes=100_000)
    assert err.value.reason == "too_large"


def test_a_dripping_server_hits_the_total_deadline(upstream):
    upstream.routes["/slow"] = Route(b"y" * 100, drip_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(UpstreamError, match="no complete answer within 0.3s") as err:
        get(upstream.url("/slow"), timeout=0.3, max_bytes=1000)
    assert err.value.reason == "timeout"
    assert time.monotonic() - started < 1.0


def test_a_body_shorter_than_declared_is_truncated(upstream):
    upstream.routes["/cut"] = Route(b"a 1\nb", declared_length=50)
    with pytest.raises(UpstreamError) as err:
        get(upstream.url("/cut"), timeout=2, max_bytes=1000)
    assert err.value.reason == "truncated"


def test_status_codes(upstream):
    upstream.routes["/health"] = Route(b"", status=503)
    with pytest.raises(UpstreamError, match="HTTP 503") as err:
        get(upstream.url("/health"), timeout=2, max_bytes=10)
    assert err.value.reason == "http_status"
    assert get(upstream.url("/health"), timeout=2, max_bytes=10, allow_status=True).status == 503


def test_nothing_listening_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamError, match="connection refused") as err:
        get(f"http://127.0.0.1:{port}/metrics", timeout=1, max_bytes=10)
    assert err.value.reason == "unreachable"


def test_tls_to_a_plain_http_server_is_a_tls_error(upstream):
    upstream.routes["/metrics"] = Route(b"a 1\n")
    with pytest.raises(UpstreamError) as err:
        get(upstream.url("/metrics").replace("http:", "https:"), timeout=2, max_bytes=100, tls_verify=False)
    assert err.value.reason in ("tls", "unreachable")


@pytest.mark.parametrize("url", ["ftp://host/x", "127.0.0.1:8002/metrics", "http:///metrics", "http://h:port/x"])
def test_endpoint_urls_are_validated(url):
    with pytest.raises(ValueError):
        Endpoint(url=url)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def test_tls_verification_is_on_by_default_and_can_use_a_ca_file_or_be_switched_off(certificate):
    server = Upstream(tls=certificate)
    try:
        server.routes["/metrics"] = Route(b"a 1\n")
        url = server.url("/metrics")
        assert url.startswith("https://")
        with pytest.raises(UpstreamError, match="TLS failed") as err:
            get(url, timeout=2, max_bytes=100)
        assert err.value.reason == "tls"
        assert get(url, timeout=2, max_bytes=100, ca_file=certificate[0]).body == b"a 1\n"
        assert get(url, timeout=2, max_bytes=100, tls_verify=False).body == b"a 1\n"
    finally:
        server.close()


class RawUpstream:
    """A one-connection-at-a-time TCP server that answers every request with ``answer``, ``pause`` seconds per byte."""

    def __init__(self, answer: bytes, pause: float) -> None:
        self.answer, self.pause = answer, pause
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/metrics"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(65536)
                    for i in range(len(self.answer)):
                        conn.sendall(self.answer[i:i + 1])
                        time.sleep(self.pause)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_a_server_dripping_its_headers_hits_the_total_deadline():
    """A header byte every 50 ms keeps a per-read timeout alive for the 5 s the answer takes."""
    upstream = RawUpstream(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100 + b"\r\nContent-Length: 2\r\n\r\nok", 0.05)
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="no complete answer within 0.5s") as err:
            get(upstream.url, timeout=0.5, max_bytes=1000)
        assert err.value.reason == "timeout"
        assert time.monotonic() - started < 1.0
    finally:
        upstream.close()


def test_a_server_dripping_its_status_line_hits_the_total_deadline():
    upstream = RawUpstream(b"HTTP/1.1 200 OK" + b" " * 100 + b"\r\n\r\n", 0.05)
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamError) as err:
            get(upstream.url, timeout=0.5, max_bytes=1000)
        assert err.value.reason == "timeout"
        assert time.monotonic() - started < 1.0
    finally:
        upstream.close()


@pytest.mark.parametrize("length", ["\xb2", "9" * 5000, "1e3"])
def test_an_odd_content_length_from_upstream_is_an_upstream_error_not_a_crash(length):
    upstream = RawUpstream(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\na 1\n"
                           .encode("latin-1"), 0)
    try:
        try:
            response = get(upstream.url, timeout=2, max_bytes=100)
        except UpstreamError:
            return
        assert response.body == b"a 1\n", "read to the end of the connection, as http.client does"
    finally:
        upstream.close()
