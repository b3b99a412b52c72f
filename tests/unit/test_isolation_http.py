"""HTTP server limits and the scenario endpoint's restrictions, over real sockets.

Each oversized or malformed request must get its 4xx and the server must keep answering.
"""

from __future__ import annotations

import base64
import gzip
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from exporter import server as server_mod
from exporter import webconfig
from exporter.scheduler import Scheduler
from exporter.server import ExporterHTTPServer
from exporter.snapshot import SnapshotStore
from exporter.webconfig import WebConfigWatcher


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


@pytest.mark.parametrize("start, drip", [
    (b"GET /metrics HTTP/1.1\r\n", b"X-%d: 1\r\n"),
    (b"POST /-/scenario HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n", b"%d "),
], ids=["headers", "body"])
def test_a_slow_drip_request_is_cut_off_at_the_request_deadline(served, monkeypatch, start: bytes,
                                                                drip: bytes) -> None:
    monkeypatch.setattr(server_mod, "REQUEST_DEADLINE_SECONDS", 1.0)
    srv, _ = served
    port = srv.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(start)
        started = time.monotonic()
        closed_after = None
        for i in range(40):  # a byte every 0.1 s would keep a per-read timeout alive forever
            try:
                sock.sendall(drip % i)
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


def partial_requests(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` connections that each sent half a request line and then wait (slowloris)."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Wait: ")
        sockets.append(sock)
    time.sleep(0.1)  # every one is accepted and waiting
    return sockets


def closed_by_server(sockets: list[socket.socket]) -> list[bool]:
    """For each socket, whether the server has closed it (nothing of a response was sent on these)."""
    time.sleep(0.1)
    closed = []
    for sock in sockets:
        readable, _, _ = select.select([sock], [], [], 0)
        try:
            closed.append(bool(readable) and sock.recv(1) == b"")
        except ConnectionResetError:
            closed.append(True)
    return closed


def scrape_status(port: int) -> int | None:
    response = exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return status(response) if response else None


def test_a_flood_of_partial_requests_from_many_clients_cannot_lock_scrapes_out(served) -> None:
    srv, _ = served
    port = srv.server_address[1]
    flood = []
    try:
        for client in range(2, 7):  # five addresses, 15 sockets each: more than every slot
            flood += partial_requests(port, 15, f"127.0.0.{client}")
        for _ in range(5):
            assert scrape_status(port) == 200
        assert srv.slots.open_count() <= server_mod.MAX_CONNECTIONS
        assert sum(closed_by_server(flood)) >= len(flood) - server_mod.MAX_CONNECTIONS
    finally:
        for sock in flood:
            sock.close()


def test_one_client_holds_at_most_its_share_and_its_own_oldest_waiting_connections_go_first(served) -> None:
    srv, _ = served
    port = srv.server_address[1]
    share = server_mod.MAX_CONNECTIONS_PER_CLIENT
    other = partial_requests(port, share, "127.0.0.2")
    greedy = partial_requests(port, share + 4, "127.0.0.3")
    try:
        assert closed_by_server(greedy) == [True] * 4 + [False] * share
        assert not any(closed_by_server(other)), "another client's connections are left alone"
        assert scrape_status(port) == 200
    finally:
        for sock in other + greedy:
            sock.close()


def test_a_scrape_from_the_flooding_address_itself_gets_through(served) -> None:
    srv, _ = served
    port = srv.server_address[1]
    flood = partial_requests(port, server_mod.MAX_CONNECTIONS + 10)
    try:
        assert scrape_status(port) == 200
    finally:
        for sock in flood:
            sock.close()


def test_connections_beyond_the_cap_replace_the_oldest_waiting_one() -> None:
    srv = ExporterHTTPServer(("127.0.0.1", 0), Scheduler([], SnapshotStore(), "hardware"), max_connections=4)
    srv.serve_in_thread()
    port = srv.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)
        assert scrape_status(port) == 200
        assert closed_by_server(idle) == [True, False, False, False]
        assert srv.refused_connections == 0
    finally:
        for sock in idle:
            sock.close()
        srv.shutdown()
        srv.server_close()


def scenario_post(body: bytes, content_type: str = "application/json", query: str = "",
                  extra: bytes = b"", host: bytes = b"127.0.0.1") -> bytes:
    return (b"POST /-/scenario%s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s"
            b"Connection: close\r\n\r\n%s" % (query.encode(), host, content_type.encode(), len(body), extra, body))


def test_scenario_switch_from_loopback_takes_a_json_body(served) -> None:
    srv, switched = served
    port = srv.server_address[1]
    for raw in (scenario_post(b'{"scenario": "gpu-lost"}'),
                scenario_post(b'{"scenario": "healthy"}', "application/json; charset=utf-8", host=b"localhost:9402"),
                scenario_post(b'{"scenario": "gpu-lost"}', host=b"[::1]:9402")):
        assert status(exchange(port, raw)) == 200
    assert switched == ["gpu-lost", "healthy", "gpu-lost"]
    bad = exchange(port, scenario_post(b'{"scenario": "nope"}'))
    assert status(bad) == 400 and b"unknown scenario 'nope'" in bad
    missing = exchange(port, scenario_post(b'{"name": "gpu-lost"}'))
    assert status(missing) == 400 and b"curl -X POST -H 'Content-Type: application/json'" in missing


@pytest.mark.parametrize("raw, code", [
    (scenario_post(b"scenario=gpu-lost", "application/x-www-form-urlencoded"), 415),  # an HTML form
    (scenario_post(b"gpu-lost", "text/plain"), 415),
    (scenario_post(b'{"scenario": "gpu-lost"}', "text/plain;charset=UTF-8"), 415),  # fetch() in no-cors mode
    (scenario_post(b"", "multipart/form-data; boundary=x", query="?name=gpu-lost"), 415),
    (b"POST /-/scenario?name=gpu-lost HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 415),
    (scenario_post(b'{"scenario": "gpu-lost"}', extra=b"Sec-Fetch-Site: cross-site\r\n"), 403),
    (scenario_post(b'{"scenario": "gpu-lost"}', host=b"rebound.example.com:9402"), 403),  # DNS rebinding
], ids=["form", "text", "no-cors-json", "multipart-query", "bare-query", "cross-site", "foreign-host"])
def test_scenario_switch_refuses_what_a_cross_site_page_could_send(served, raw: bytes, code: int) -> None:
    srv, switched = served
    response = exchange(srv.server_address[1], raw)
    assert status(response) == code
    assert switched == []


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
    response = exchange(srv.server_address[1], scenario_post(b'{"scenario": "gpu-lost"}'), host=address)
    assert status(response) == 403 and b"loopback only" in response
    assert switched == []
    metrics = exchange(srv.server_address[1], b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       host=address)
    assert status(metrics) == 200, "the rest of the server still answers remote clients"


def test_scenario_endpoint_does_not_exist_without_simulation() -> None:
    srv = ExporterHTTPServer(("127.0.0.1", 0), Scheduler([], SnapshotStore(), "hardware"), None)
    srv.serve_in_thread()
    try:
        response = exchange(srv.server_address[1], scenario_post(b'{"scenario": "gpu-lost"}'))
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


@pytest.mark.parametrize("length, reason", [
    (b"\xb2", b"ASCII digits"),  # superscript two: str.isdigit() says yes, int() says no
    (b"\xd9\xa3", b"ASCII digits"),  # Arabic-Indic three, as UTF-8
    (b"9" * 5000, b"more than 19 digits"),  # int() refuses over 4300 digits
    (b"+5", b"ASCII digits"),
    (b"0x10", b"ASCII digits"),
    (b"", b"ASCII digits"),
    (b"4\r\nContent-Length: 5", b"conflicting Content-Length"),
], ids=["superscript", "arabic-indic", "5000-digits", "plus", "hex", "empty", "conflicting"])
def test_a_malformed_content_length_gets_400_with_its_reason_and_closes(served, caplog, length: bytes,
                                                                        reason: bytes) -> None:
    srv, _ = served
    port = srv.server_address[1]
    raw = (b"POST /-/scenario HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n"
           b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    with caplog.at_level("DEBUG", logger="exporter.server"):
        response = exchange(port, raw)
    assert status(response) == 400 and reason in response
    assert response.count(b"HTTP/1.1") == 1, "the connection closes after the 400"
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info], "no traceback"
    still_serving(port)


@pytest.mark.parametrize("accept_encoding, gzipped", [
    ("gzip", True),
    ("GZIP", True),
    ("x-gzip", True),
    ("gzip, deflate, br", True),
    ("*", True),
    ("identity;q=0, gzip;q=0.5", True),
    ("deflate, gzip;q=0.001", True),
    ("gzip;q=0", False),
    ("gzip; q=0.000, identity", False),
    ("gzip;q=0, *", False),
    ("*;q=0", False),
    ("identity, gzip;q=0.5", False),
    ("gzip;q=1.5", False),
    ("gzip;q=abc", False),
    ("deflate, br", False),
    ("", False),
    ("notgzip", False),
])
def test_gzip_follows_the_accept_encoding_q_values(served, accept_encoding: str, gzipped: bool) -> None:
    srv, _ = served
    raw = (b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: " + accept_encoding.encode()
           + b"\r\nConnection: close\r\n\r\n")
    head, _, body = exchange(srv.server_address[1], raw).partition(b"\r\n\r\n")
    assert (b"Content-Encoding: gzip" in head) is gzipped
    if gzipped:
        gzip.decompress(body)


HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


def basic(user: str) -> bytes:
    return b"Authorization: Basic " + base64.b64encode(f"{user}:s3cret".encode()) + b"\r\n"


@pytest.fixture
def guarded(tmp_path, monkeypatch) -> Iterator[tuple[int, Path]]:
    """A plain-HTTP server with basic auth for alice, and the web config file it reads."""
    monkeypatch.setattr(webconfig, "RECHECK_SECONDS", 0.0)
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: {HASH}\n")
    srv = ExporterHTTPServer(("127.0.0.1", 0), Scheduler([], SnapshotStore(), "hardware"), None,
                             WebConfigWatcher(path))
    srv.serve_in_thread()
    yield srv.server_address[1], path
    srv.shutdown()
    srv.server_close()


def test_a_401_closes_the_connection_so_each_guess_costs_a_new_one(guarded) -> None:
    port, _ = guarded
    two_guesses = (b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + basic("mallory") + b"\r\n"
                   b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + basic("mallory") + b"\r\n")
    response = exchange(port, two_guesses)
    assert response.count(b"HTTP/1.1 401") == 1 and b"Connection: close" in response


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body from a keep-alive connection; b"" if the server closed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_removed_user_is_refused_on_a_keep_alive_connection_opened_before_the_change(guarded) -> None:
    port, path = guarded
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + basic("alice") + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        assert status(read_response(sock)) == 200
        path.write_text(f"basic_auth_users:\n  bob: {HASH}\n")
        sock.sendall(request)
        assert status(read_response(sock)) == 401
