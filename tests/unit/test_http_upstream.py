"""The bounded GET: whole-request deadline, size cap, clear reasons for every failure."""

import shutil
import socket
import subprocess
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
