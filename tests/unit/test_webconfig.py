"""Web config validation (exporter-toolkit format) and basic-auth checking, without TLS files.

Loading real certificates and serving TLS is in tests/integration/test_tls.py.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import bcrypt
import pytest

from exporter import webconfig
from exporter.webconfig import BasicAuth, WebConfig, WebConfigError, WebConfigWatcher

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(WebConfigError) as caught:
        webconfig.load(write(tmp_path, text))
    return caught.value.problems


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_empty_file_means_plain_http_without_auth(tmp_path: Path) -> None:
    config = webconfig.load(write(tmp_path, ""))
    assert config.tls is None and not config.auth_required


def test_basic_auth_users_and_headers_load(tmp_path: Path) -> None:
    config = webconfig.load(write(tmp_path, f"""
basic_auth_users:
  prometheus: {HASH}
http_server_config:
  http2: false
  headers:
    X-Content-Type-Options: nosniff
"""))
    assert config.users == {"prometheus": HASH.encode()}
    assert config.headers == {"X-Content-Type-Options": "nosniff"}


@pytest.mark.parametrize("text, expected", [
    ("basic_auth_users:\n  alice: hunter2\n", "basic_auth_users.alice: not a bcrypt hash"),
    ("basic_auth_users:\n  alice: $2b$12$short\n", "basic_auth_users.alice: not a bcrypt hash"),
    ("basic_auth_users: [alice]\n", "basic_auth_users: must be a mapping"),
    (f"basic_auth_users:\n  'a:b': {HASH}\n", "basic_auth_users.a:b: user names are non-empty strings"),
    ("tls_server_config:\n  key_file: k.pem\n", "tls_server_config.cert_file: required"),
    ("tls_server_config:\n  cert_file: c.pem\n", "tls_server_config.key_file: required"),
    ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
     "tls_server_config.cipher_suites: Go cipher-suite names are not supported"),
    ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: RequireAnyClientCert\n",
     "tls_server_config.client_auth_type: RequireAnyClientCert accepts certificates without verifying"),
    ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: Sometimes\n",
     "tls_server_config.client_auth_type: 'Sometimes' is not one of"),
    ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.client_ca_file: required for client_auth_type RequireAndVerifyClientCert"),
    ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: SSL3\n",
     "tls_server_config.min_version: 'SSL3' is not one of TLS10, TLS11, TLS12, TLS13"),
    ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS13\n  max_version: TLS12\n",
     "tls_server_config: min_version is above max_version"),
    ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  cert_fil: x\n", "tls_server_config.cert_fil: unknown key"),
    ("tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n",
     "tls_server_config.cert_file: cannot read"),
    ("tls_server_config: yes\n", "tls_server_config: must be a mapping"),
    ("http_server_config:\n  http2: true\n", "http_server_config.http2: this server speaks HTTP/1.1 only"),
    ("http_server_config:\n  headers:\n    Content-Type: text/html\n", "headers.Content-Type: set by the server"),
    ("http_server_config:\n  headers:\n    'Bad Header': x\n", "headers.Bad Header: not a valid header name"),
    ("basic_auth_user:\n  a: b\n", "basic_auth_user: unknown key"),
    ("- a\n- b\n", "the top level must be a mapping, got list"),
    ("a: [\n", "not valid YAML"),
])
def test_each_bad_web_config_is_refused_with_its_key_path(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found
    assert all(p.startswith(str(tmp_path / "web.yml") + ": ") for p in found)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, "basic_auth_users:\n  a: plain\n  b: plain\nfoo: 1\n")
    assert len(found) == 3


def test_oversized_and_binary_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yml"
    big.write_text("#" * (webconfig.MAX_FILE_BYTES + 1))
    with pytest.raises(WebConfigError, match="a web config is at most"):
        webconfig.load(big)
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(WebConfigError, match="not UTF-8"):
        webconfig.load(binary)
    with pytest.raises(WebConfigError, match="cannot read web config"):
        webconfig.load(tmp_path / "absent.yml")


def test_basic_auth_accepts_the_right_password_only() -> None:
    config = WebConfig(users={"prometheus": HASH.encode()})
    auth = BasicAuth()
    assert auth.check(config, basic("prometheus", "s3cret"))
    assert auth.check(config, basic("prometheus", "s3cret")), "cached"
    for header in (None, "", basic("prometheus", "wrong"), basic("nobody", "s3cret"), "Bearer abc",
                   "Basic !!notbase64!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                   basic("prometheus", "x" * 100), "Basic " + "A" * 5000):
        assert not auth.check(config, header), header


def test_a_changed_hash_is_not_satisfied_from_the_cache() -> None:
    auth = BasicAuth()
    assert auth.check(WebConfig(users={"p": HASH.encode()}), basic("p", "s3cret"))
    rotated = bcrypt.hashpw(b"new", bcrypt.gensalt(4))
    assert not auth.check(WebConfig(users={"p": rotated}), basic("p", "s3cret"))
    assert auth.check(WebConfig(users={"p": rotated}), basic("p", "new"))


def test_no_users_means_no_auth() -> None:
    assert BasicAuth().check(WebConfig(), None)


def test_unknown_user_costs_a_bcrypt_check_like_a_known_one() -> None:
    slow = bcrypt.hashpw(b"pw", bcrypt.gensalt(10))
    config = WebConfig(users={"known": slow})
    auth = BasicAuth()
    started = time.perf_counter()
    assert not auth.check(config, basic("known", "wrong"))
    known = time.perf_counter() - started
    started = time.perf_counter()
    assert not auth.check(config, basic("unknown", "wrong"))
    unknown = time.perf_counter() - started
    assert unknown > known / 3, (known, unknown)


def test_watcher_reloads_a_changed_file_and_keeps_the_old_config_when_the_new_one_is_bad(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    monkeypatch.setattr(webconfig, "RECHECK_SECONDS", 0.0)
    path = write(tmp_path, "")
    watcher = WebConfigWatcher(path)
    assert not watcher.current().auth_required
    path.write_text(f"basic_auth_users:\n  p: {HASH}\n")
    assert watcher.current().auth_required
    path.write_text("basic_auth_users:\n  p: plain-text\n")
    assert watcher.current().users == {"p": HASH.encode()}
    assert "not a bcrypt hash" in watcher.last_error
    path.write_text("")
    assert not watcher.current().auth_required and watcher.last_error == ""
