"""HTTP server limits and the scenario endpoint's restrictions, over real sockets.

Each oversized or malformed request must get its 4xx and the server must keep answering.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from exporter import server as server_mod
from exporter.scheduler import Scheduler
from exporter.server import ExporterHTTPServer
from exporter.snapshot import SnapshotStore


@pytest.fixture
def served() -> Iterator[tuple[ExporterHTTPServer, list[str]]]:
    switched: list[str] = []

    def set_scenario(name: str) -> None:
        if name not in ("healthy", "gpu-lost"):
            raise ValueError(f"unknown scenario {name!r}")
        switched.append(name)

    srv = ExporterHTTPServer(("0.0.0.0", 0), Scheduler([], SnapshotStore(), "simulated"), set_scenario)
    srv.serve_in_thread()
    yield srv, switched
    srv.shutdown()
    srv.server_close()


def exchange(port: int, raw: bytes, host: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it has read everything we send
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def still_serving(port: int) -> None:
    response = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status(response) == 200 and response.endswith(b"ok\n")


@pytest.mark.parametrize("raw, code", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 400) for i in range(50)) + b"\r\n",
     431),
    (b"POST /-/scenario HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"h" * 5000, 413),
    (b"POST /-/scenario HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
    (b"POST /-/scenario HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /-/scenario HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n", 400),  # TLS hello on plain HTTP
    (b"GARBAGE\r\n\r\n", 400),
    (b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 501),
], ids=["url", "header-line", "header-count", "header-total", "body", "huge-length", "negative-length", "chunked",
        "get-body", "tls-on-plain", "garbage", "method"])
def test_oversized_or_malformed_requests_get_4xx_and_the_server_stays_up(served, raw: bytes, code: int) -> None:
    srv, _ = served
    port = srv.server_address[1]
    assert status(exchange(port, raw)) == code
    still_serving(port)


def test_a_small_body_on_get_is_drained_so_keep_alive_stays_in_step(served) -> None:
    srv, _ = served
    two = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
           b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response = exchange(srv.server_address[1], two)
    assert response.count(b"HTTP/1.1 200") == 2


def test_slow_drip_headers_are_cut_off_at_the_header_deadline(served, monkeypatch) -> None:
    monkeypatch.setattr(server_mod, "HEADER_DEADLINE_SECONDS", 1.0)
    srv, _ = served
    port = srv.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        started = time.monotonic()
        closed_after = None
        for i in range(40):  # a header byte every 0.1 s would keep a per-read timeout alive forever
            try:
                sock.sendall(b"X-%d: 1\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
            time.sleep(0.1)
        if closed_after is None:
            sock.settimeout(2)
            assert sock.recv(1024) == b""
            closed_after = time.monotonic() - started
    assert closed_after < 2.5
    still_serving(port)


def test_connections_beyond_the_cap_are_refused_and_scrapes_recover(served, monkeypatch) -> None:
    srv, _ = served
    monkeypatch.setattr(srv, "_slots", server_mod.threading.BoundedSemaphore(4))
    port = srv.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)
        assert exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == b""
        assert srv.refused_connections >= 1
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    still_serving(port)


def test_scenario_switch_from_loopback_takes_query_text_or_json(served) -> None:
    srv, switched = served
    port = srv.server_address[1]
    for raw in (b"POST /-/scenario?name=gpu-lost HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b"POST /-/scenario HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nConnection: close\r\n\r\nhealthy",
                b'POST /-/scenario HTTP/1.1\r\nHost: x\r\nContent-Length: 24\r\nConnection: close\r\n\r\n'
                b'{"scenario": "gpu-lost"}'):
        assert status(exchange(port, raw)) == 200
    assert switched == ["gpu-lost", "healthy", "gpu-lost"]
    bad = exchange(port, b"POST /-/scenario?name=nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status(bad) == 400 and b"unknown scenario 'nope'" in bad


def _non_loopback_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; this only picks the outgoing address
            address = probe.getsockname()[0]
        except OSError:
            address = ""
    if not address or address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    return address


def test_scenario_switch_is_refused_from_a_non_loopback_address(served) -> None:
    srv, switched = served
    address = _non_loopback_address()
    response = exchange(srv.server_address[1],
                        b"POST /-/scenario?name=gpu-lost HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        host=address)
    assert status(response) == 403 and b"loopback only" in response
    assert switched == []
    metrics = exchange(srv.server_address[1], b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       host=address)
    assert status(metrics) == 200, "the rest of the server still answers remote clients"


def test_scenario_endpoint_does_not_exist_without_simulation() -> None:
    srv = ExporterHTTPServer(("127.0.0.1", 0), Scheduler([], SnapshotStore(), "hardware"), None)
    srv.serve_in_thread()
    try:
        response = exchange(srv.server_address[1],
                            b"POST /-/scenario?name=gpu-lost HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status(response) == 404 and b"only in simulation mode" in response
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("192.0.2.2", False), ("::ffff:192.0.2.2", False), ("fd00::2", False), ("fe80::1%eth0", False),
])
def test_loopback_check_sees_through_ipv4_mapped_addresses(host: str, loopback: bool) -> None:
    assert server_mod._is_loopback(host) is loopback
