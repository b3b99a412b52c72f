"""TLS, client certificates and basic auth through the web config, with real TLS clients.

Certificates are made per test run with ``cryptography``: a CA, a server certificate for
127.0.0.1/localhost, a client certificate from the same CA, and one from a stranger CA.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import bcrypt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exporter import webconfig
from exporter.scheduler import Scheduler
from exporter.server import ExporterHTTPServer
from exporter.snapshot import SnapshotStore
from exporter.webconfig import WebConfigError, WebConfigWatcher

pytestmark = pytest.mark.integration

PASSWORD = "scrape-me"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@dataclass
class Issued:
    cert: Path
    key: Path
    serial: int


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


class CA:
    def __init__(self, directory: Path, name: str) -> None:
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / f"{name}.crt"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                  else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.dir / f"{name}.crt", self.dir / f"{name}.key", serial)
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, issued.key)
        return issued


@pytest.fixture
def pki(tmp_path: Path) -> dict:
    ca = CA(tmp_path, "ca")
    stranger = CA(tmp_path, "stranger-ca")
    return {"dir": tmp_path, "ca": ca, "server": ca.issue("server", True), "client": ca.issue("client", False),
            "intruder": stranger.issue("intruder", False)}


def serve(web_yml: Path) -> ExporterHTTPServer:
    srv = ExporterHTTPServer(("127.0.0.1", 0), Scheduler([], SnapshotStore(), "hardware"), None,
                             WebConfigWatcher(web_yml))
    srv.serve_in_thread()
    return srv


def client_context(pki: dict, cert: Issued | None = None, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"].path))
    for attr, value in versions.items():
        setattr(context, attr, value)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


def get(port: int, context: ssl.SSLContext, path: str = "/metrics",
        headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_tls_serves_metrics_to_a_verifying_client_and_refuses_plain_http(pki: dict) -> None:
    web = pki["dir"] / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")  # relative to web.yml
    srv = serve(web)
    port = srv.server_address[1]
    try:
        code, body, _ = get(port, client_context(pki), "/")
        assert code == 200 and b"<h1>blackwell-exporter" in body
        response = requests.get(f"https://localhost:{port}/healthz", verify=str(pki["ca"].path), timeout=5)
        assert response.status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            get(port, ssl.create_default_context())  # a client that does not trust our CA
        assert get(port, client_context(pki))[0] == 200, "failed handshakes do not take the server down"
    finally:
        srv.shutdown()
        srv.server_close()


def test_min_version_tls13_refuses_a_tls12_only_client(pki: dict) -> None:
    web = pki["dir"] / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n")
    srv = serve(web)
    port = srv.server_address[1]
    try:
        with pytest.raises(ssl.SSLError):
            get(port, client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        with client_context(pki).wrap_socket(conn, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.3"
    finally:
        srv.shutdown()
        srv.server_close()


def test_client_certificates_required_and_verified_against_client_ca(pki: dict) -> None:
    web = pki["dir"] / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                   "  client_ca_file: ca.crt\n")  # client_auth_type defaults to RequireAndVerifyClientCert
    srv = serve(web)
    port = srv.server_address[1]
    try:
        assert get(port, client_context(pki, pki["client"]))[0] == 200
        for cert in (None, pki["intruder"]):
            # TLS 1.3 reports a refused client certificate on the first read, not in the handshake.
            with pytest.raises((ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected)):
                get(port, client_context(pki, cert))
    finally:
        srv.shutdown()
        srv.server_close()


def test_verify_client_cert_if_given_accepts_none_but_refuses_a_stranger(pki: dict) -> None:
    web = pki["dir"] / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                   "  client_ca_file: ca.crt\n  client_auth_type: VerifyClientCertIfGiven\n")
    srv = serve(web)
    port = srv.server_address[1]
    try:
        assert get(port, client_context(pki), "/healthz")[0] == 200
        assert get(port, client_context(pki, pki["client"]), "/healthz")[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected)):
            get(port, client_context(pki, pki["intruder"]), "/healthz")
    finally:
        srv.shutdown()
        srv.server_close()


def test_basic_auth_over_tls_guards_everything_but_healthz(pki: dict) -> None:
    web = pki["dir"] / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                   f"basic_auth_users:\n  prometheus: {HASH}\n"
                   "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    srv = serve(web)
    port = srv.server_address[1]
    context = client_context(pki)
    try:
        for path in ("/metrics", "/readyz", "/"):
            code, _, headers = get(port, context, path)
            assert code == 401 and headers["WWW-Authenticate"].startswith("Basic ")
            assert get(port, context, path, auth("prometheus", "wrong"))[0] == 401
            assert get(port, context, path, auth("prometheus", PASSWORD))[0] in (200, 503)
        code, body, headers = get(port, context, "/healthz")
        assert (code, body) == (200, b"ok\n") and headers["X-Content-Type-Options"] == "nosniff"
        session = requests.Session()
        session.auth = ("prometheus", PASSWORD)
        for _ in range(3):  # keep-alive on one TLS connection
            assert session.get(f"https://127.0.0.1:{port}/metrics", verify=str(pki["ca"].path), timeout=5).ok
    finally:
        srv.shutdown()
        srv.server_close()


def test_rotated_certificate_is_served_to_new_connections(pki: dict, monkeypatch) -> None:
    monkeypatch.setattr(webconfig, "RECHECK_SECONDS", 0.0)
    web = pki["dir"] / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    srv = serve(web)
    port = srv.server_address[1]

    def served_serial() -> int:
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        with client_context(pki).wrap_socket(conn, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number

    try:
        assert served_serial() == pki["server"].serial
        time.sleep(0.01)
        renewed = pki["ca"].issue("server", True)  # overwrites server.crt and server.key
        assert served_serial() == renewed.serial
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_keep_alive_tls_connection_made_under_replaced_tls_settings_is_closed(pki: dict, monkeypatch) -> None:
    """The client must reconnect and get the new settings (here: client certificates now required)."""
    monkeypatch.setattr(webconfig, "RECHECK_SECONDS", 0.0)
    web = pki["dir"] / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    srv = serve(web)
    port = srv.server_address[1]
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=client_context(pki), timeout=5)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok\n"
        web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n")
        conn.request("GET", "/healthz")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(port, client_context(pki), "/healthz")
        assert get(port, client_context(pki, pki["client"]), "/healthz")[0] == 200
    finally:
        conn.close()
        srv.shutdown()
        srv.server_close()


def test_a_connection_that_never_starts_its_tls_handshake_gives_its_slot_to_a_scrape(pki: dict) -> None:
    web = pki["dir"] / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    srv = ExporterHTTPServer(("127.0.0.1", 0), Scheduler([], SnapshotStore(), "hardware"), None,
                             WebConfigWatcher(web), max_connections=2)
    srv.serve_in_thread()
    port = srv.server_address[1]
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.2)
        assert get(port, client_context(pki), "/healthz")[0] == 200
        silent[0].settimeout(1.0)  # well inside the 5 s handshake limit
        assert silent[0].recv(1) == b"", "the oldest silent connection was shut to make room"
    finally:
        for sock in silent:
            sock.close()
        srv.shutdown()
        srv.server_close()


def test_mismatched_key_and_unreadable_ca_are_clear_errors(pki: dict) -> None:
    web = pki["dir"] / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n")
    with pytest.raises(WebConfigError, match=r"cannot load certificate .*server.crt with key .*client.key"):
        webconfig.load(web)
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                   "  client_ca_file: server.key\n")
    with pytest.raises(WebConfigError, match="client_ca_file: cannot load CA certificates"):
        webconfig.load(web)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dockerfile_healthcheck() -> list[str]:
    """The HEALTHCHECK command of the repository's Dockerfile, as an argv."""
    import json

    lines = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("HEALTHCHECK "))
    joined = ""
    for part in lines[start:]:
        joined += part.rstrip("\\").strip() + " "
        if not part.rstrip().endswith("\\"):
            break
    argv = json.loads(joined[joined.index("CMD") + 3:].strip())
    return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]


def test_daemon_serves_tls_with_basic_auth_and_the_container_healthcheck_passes(pki: dict) -> None:
    port = _free_port()
    web = pki["dir"] / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki['server'].cert}\n  key_file: {pki['server'].key}\n"
                   f"basic_auth_users:\n  prometheus: {HASH}\n")
    config = pki["dir"] / "exporter.yml"
    config.write_text(f"listen: 127.0.0.1:{port}\nweb_config_file: {web}\n")
    env = {**os.environ, "BLACKWELL_EXPORTER_LISTEN": f"127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "run", "--config", str(config), "--simulate",
                             "hgx-b200"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                response = requests.get(f"{url}/metrics", auth=("prometheus", PASSWORD),
                                        verify=str(pki["ca"].path), timeout=2)
                if "blackwell_gpu" in response.text:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "daemon did not come up"
            time.sleep(0.2)
        assert requests.get(f"{url}/metrics", verify=str(pki["ca"].path), timeout=5).status_code == 401
        check = subprocess.run(_dockerfile_healthcheck(), env=env, capture_output=True, timeout=10)
        assert check.returncode == 0, check.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode == 0, output
    assert "web config" in output


def test_daemon_refuses_to_start_with_a_bad_web_config(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: plaintext\n")
    result = subprocess.run([sys.executable, "-m", "exporter", "run", "--simulate", "hgx-b200", "--listen",
                             f"127.0.0.1:{_free_port()}"],
                            env={**os.environ, "BLACKWELL_EXPORTER_WEB_CONFIG_FILE": str(web)},
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "web config error" in result.stderr and "basic_auth_users.prometheus: not a bcrypt hash" in result.stderr
