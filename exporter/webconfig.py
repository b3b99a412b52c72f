"""TLS and basic auth for the HTTP server, from a web config file in the exporter-toolkit format.

The file is the one Prometheus exporters take with ``--web.config.file``::

    tls_server_config:
      cert_file: server.crt          # PEM; relative paths are relative to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # default when client_ca_file is set
      client_ca_file: ca.crt
      min_version: TLS12             # TLS10 | TLS11 | TLS12 (default) | TLS13
      max_version: TLS13
    basic_auth_users:
      prometheus: $2b$12$...         # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':')
    http_server_config:
      headers: {X-Content-Type-Options: nosniff}

Toolkit options Python's ``ssl`` cannot honour (Go cipher-suite and curve names, accepting a
client certificate without verifying it, inline PEM, HTTP/2) are refused with a message rather
than ignored, so a config copied from a Go exporter never runs weaker than it reads.
:class:`WebConfigWatcher` re-reads the file, and the certificate files it names, when any of
them changes, so rotated certificates apply to new connections without a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1 << 20
RECHECK_SECONDS = 1.0
AUTH_CACHE_SIZE = 256
# Hashing runs on the request thread; more than this many at once would let a password-guessing
# client take every core away from the scrapes.
CONCURRENT_HASHES = 2

_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_CLIENT_AUTH_UNVERIFIED = ("RequestClientCert", "RequireAnyClientCert")
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
             "prefer_server_cipher_suites"}
_TLS_UNSUPPORTED = {
    "cert": "inline PEM is not supported; put the certificate in a file and use cert_file",
    "key": "inline PEM is not supported; put the key in a file and use key_file",
    "cipher_suites": "Go cipher-suite names are not supported; OpenSSL's secure defaults apply (TLS 1.3 suites are fixed)",
    "curve_preferences": "Go curve names are not supported; OpenSSL's defaults apply",
    "client_allowed_sans": "not supported; issue client certificates from a CA that only signs allowed clients",
}
_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")


class WebConfigError(Exception):
    """One message per problem, each starting with the key path."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__("\n".join(f"{path}: {p}" for p in problems))
        self.problems = [f"{path}: {p}" for p in problems]


@dataclass(frozen=True)
class WebConfig:
    """What the server applies to a connection: a TLS context or None, users, extra headers."""

    tls: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: Mapping[str, str] = field(default_factory=dict)
    files: tuple[Path, ...] = ()  # everything the config was built from, for change detection

    @property
    def auth_required(self) -> bool:
        return bool(self.users)


def load(path: Path) -> WebConfig:
    """Read and validate ``path``; :class:`WebConfigError` lists every problem found."""
    data = _read(path)
    problems: list[str] = []
    base = path.parent
    files = [path]
    tls = None
    tls_section = data.pop("tls_server_config", None)
    if tls_section is not None:
        tls = _tls(tls_section, base, problems, files)
    users = _users(data.pop("basic_auth_users", None), problems)
    headers = _http(data.pop("http_server_config", None), problems)
    for key in sorted(data):
        problems.append(f"{key}: unknown key (known: tls_server_config, basic_auth_users, http_server_config)")
    if problems:
        raise WebConfigError(path, problems)
    return WebConfig(tls, users, headers, tuple(files))


def _read(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise WebConfigError(path, [f"file is {size} bytes; a web config is at most {MAX_FILE_BYTES}"])
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError(path, [f"cannot read web config: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise WebConfigError(path, [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(path, [f"not valid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise WebConfigError(path, [f"the top level must be a mapping, got {type(data).__name__}"])
    return data


def _str(section: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        problems.append(f"{where}.{key}: must be a string, got {type(value).__name__}")
        return None
    return value


def _tls(section: Any, base: Path, problems: list[str], files: list[Path]) -> ssl.SSLContext | None:
    where = "tls_server_config"
    if not isinstance(section, dict):
        problems.append(f"{where}: must be a mapping, got {type(section).__name__}")
        return None
    before = len(problems)
    for key in sorted(section):
        if key in _TLS_UNSUPPORTED:
            problems.append(f"{where}.{key}: {_TLS_UNSUPPORTED[key]}")
        elif key not in _TLS_KEYS:
            problems.append(f"{where}.{key}: unknown key")
    cert = _str(section, "cert_file", where, problems)
    key = _str(section, "key_file", where, problems)
    ca = _str(section, "client_ca_file", where, problems)
    if cert is None:
        problems.append(f"{where}.cert_file: required when tls_server_config is given")
    if key is None:
        problems.append(f"{where}.key_file: required when tls_server_config is given")

    auth_name = _str(section, "client_auth_type", where, problems) or (
        "RequireAndVerifyClientCert" if ca else "NoClientCert")
    if auth_name in _CLIENT_AUTH_UNVERIFIED:
        problems.append(f"{where}.client_auth_type: {auth_name} accepts certificates without verifying them, "
                        "which Python's ssl cannot do; use VerifyClientCertIfGiven or RequireAndVerifyClientCert")
    elif auth_name not in _CLIENT_AUTH:
        problems.append(f"{where}.client_auth_type: {auth_name!r} is not one of {', '.join(_CLIENT_AUTH)}")
    elif auth_name != "NoClientCert" and ca is None:
        problems.append(f"{where}.client_ca_file: required for client_auth_type {auth_name}")

    versions = []
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = _str(section, name, where, problems) or default
        if value not in _VERSIONS:
            problems.append(f"{where}.{name}: {value!r} is not one of {', '.join(_VERSIONS)}")
            value = default
        versions.append(_VERSIONS[value])
    if versions[0] > versions[1]:
        problems.append(f"{where}: min_version is above max_version")
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        problems.append(f"{where}.prefer_server_cipher_suites: must be true or false")
    if len(problems) > before or cert is None or key is None:
        return None

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version, context.maximum_version = versions
    except (ValueError, ssl.SSLError) as exc:
        problems.append(f"{where}: this OpenSSL build refuses the TLS version range: {exc}")
        return None
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    cert_path, key_path = base / cert, base / key
    files.extend((cert_path, key_path))
    for name, file in (("cert_file", cert_path), ("key_file", key_path)):
        if not os.access(file, os.R_OK):
            problems.append(f"{where}.{name}: cannot read {file}")
    if len(problems) == before:
        try:
            context.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"{where}: cannot load certificate {cert_path} with key {key_path}: {exc}")
    context.verify_mode = _CLIENT_AUTH.get(auth_name, ssl.CERT_NONE)
    if ca is not None:
        ca_path = base / ca
        files.append(ca_path)
        try:
            context.load_verify_locations(cafile=ca_path)
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"{where}.client_ca_file: cannot load CA certificates from {ca_path}: {exc}")
    return context if len(problems) == before else None


def _users(section: Any, problems: list[str]) -> dict[str, bytes]:
    where = "basic_auth_users"
    if section is None:
        return {}
    if not isinstance(section, dict):
        problems.append(f"{where}: must be a mapping of user name to bcrypt hash, got {type(section).__name__}")
        return {}
    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        if not isinstance(user, str) or not user or ":" in user:
            problems.append(f"{where}.{user}: user names are non-empty strings without ':'")
            continue
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            problems.append(f"{where}.{user}: not a bcrypt hash ($2a$/$2b$/$2y$, cost 04-31, 60 characters); "
                            "plain-text passwords are not accepted")
            continue
        users[user] = hashed.encode()
    return users


def _http(section: Any, problems: list[str]) -> dict[str, str]:
    where = "http_server_config"
    if section is None:
        return {}
    if not isinstance(section, dict):
        problems.append(f"{where}: must be a mapping, got {type(section).__name__}")
        return {}
    headers: dict[str, str] = {}
    for key in sorted(section):
        value = section[key]
        if key == "http2":
            if value is not False:
                problems.append(f"{where}.http2: this server speaks HTTP/1.1 only; set http2: false or remove it")
        elif key == "headers":
            if not isinstance(value, dict):
                problems.append(f"{where}.headers: must be a mapping of header name to value")
                continue
            for name, text in value.items():
                if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", name):
                    problems.append(f"{where}.headers.{name}: not a valid header name")
                elif name.lower() in ("content-type", "content-length", "content-encoding", "www-authenticate",
                                      "connection", "transfer-encoding"):
                    problems.append(f"{where}.headers.{name}: set by the server; may not be overridden")
                elif not isinstance(text, str) or "\r" in text or "\n" in text or len(text) > 1024:
                    problems.append(f"{where}.headers.{name}: value must be one line of text, at most 1024 chars")
                else:
                    headers[name] = text
        else:
            problems.append(f"{where}.{key}: unknown key (known: headers, http2)")
    return headers


class WebConfigWatcher:
    """The current :class:`WebConfig`, re-read when the file or a file it names changes.

    Checks at most once per ``RECHECK_SECONDS``. A change that does not load (a half-written
    certificate during rotation) keeps the previous config in force and logs the problems.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._config = load(path)
        self._stamp = _stamp(self._config.files)
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._auth = BasicAuth()
        self.last_error = ""

    def current(self) -> WebConfig:
        if time.monotonic() - self._checked < RECHECK_SECONDS:
            return self._config
        with self._lock:
            if time.monotonic() - self._checked >= RECHECK_SECONDS:
                self._checked = time.monotonic()
                stamp = _stamp(self._config.files)
                if stamp != self._stamp:
                    self._reload(stamp)
        return self._config

    def _reload(self, stamp: tuple[tuple[int, int], ...]) -> None:
        try:
            fresh = load(self.path)
        except WebConfigError as exc:
            if str(exc) != self.last_error:
                log.error("web config changed but does not load; keeping the previous one:\n%s", exc)
            self.last_error = str(exc)
            return
        self._config, self._stamp, self.last_error = fresh, _stamp(fresh.files), ""
        log.info("web config %s reloaded (tls %s, %d basic-auth users)", self.path,
                 "on" if fresh.tls else "off", len(fresh.users))

    def authorized(self, config: WebConfig, header: str | None) -> bool:
        return self._auth.check(config, header)


def _stamp(files: tuple[Path, ...]) -> tuple[tuple[int, int], ...]:
    stamps = []
    for file in files:
        try:
            st = file.stat()
            stamps.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append((-1, -1))
    return tuple(stamps)


class BasicAuth:
    """Checks an ``Authorization: Basic`` header against bcrypt hashes.

    bcrypt is slow on purpose (tens of ms at cost 10), and Prometheus sends the same
    credentials every scrape, so a successful check is remembered by a keyed digest of
    (user, password, hash); a changed hash or password never matches an old entry.
    """

    def __init__(self) -> None:
        self._good: dict[bytes, None] = {}
        self._key = os.urandom(32)
        self._hashing = threading.BoundedSemaphore(CONCURRENT_HASHES)
        self._lock = threading.Lock()

    def check(self, config: WebConfig, header: str | None) -> bool:
        if not config.users:
            return True
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = config.users.get(user)
        digest = hmac.new(self._key, b"\0".join((user.encode(), password, hashed or b"")), hashlib.sha256).digest()
        if hashed is not None and digest in self._good:
            return True
        # An unknown user is checked against a known user's hash, so both cost the same time.
        reference = hashed if hashed is not None else next(iter(config.users.values()))
        with self._hashing:
            try:
                ok = bcrypt.checkpw(password, reference) and hashed is not None
            except ValueError:  # bcrypt refuses passwords over 72 bytes
                ok = False
        if ok:
            with self._lock:
                if len(self._good) >= AUTH_CACHE_SIZE:
                    self._good.clear()
                self._good[digest] = None
        return ok


def _parse_basic(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or len(value) > 1024:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None
