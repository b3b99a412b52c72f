"""Fuzzing the config file, the environment layer and the web config: any input gives a config
or a ConfigError/WebConfigError whose every message starts with a key path, never a traceback.

Each test prints how many examples hypothesis ran (``pytest -s`` shows them)."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import config as config_mod
from exporter import webconfig
from tests.support import counted

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORKDIR = Path(tempfile.mkdtemp(prefix="fuzz-config-"))


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20))
keys = st.one_of(st.sampled_from(["listen", "log_level", "sources", "mixin", "web_config_file", "simulated",
                                  "nvml", "triton", "enabled", "interval", "timeout", "profile", "scenario",
                                  "endpoints", "url", "seed"]), st.text(max_size=12))
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=5)), max_leaves=25)

VALID = {"listen": "127.0.0.1:9402", "log_level": "info",
         "sources": {"simulated": {"enabled": True, "profile": "hgx-b200", "scenario": "healthy", "interval": 2}}}


def _paths(tree: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(tree, dict):
        found = []
        for key, value in tree.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key)))
        return found
    return []


def _replace(tree: dict, path: tuple[str, ...], value: object) -> dict:
    if len(path) == 1:
        return {**tree, path[0]: value}
    return {**tree, path[0]: _replace(tree[path[0]], path[1:], value)}


# "key.path: message (from origin)" or "file: message" for problems with the file as a whole.
PROBLEM = re.compile(r"^(.+: .+ \(from .+\)|/\S+: .+)$", re.S)


def load_text(text: str | bytes) -> None:
    """Load ``text`` as the config file; a ConfigError must name where each problem is (and is re-raised)."""
    path = WORKDIR / "config.yml"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    try:
        config_mod.load(path, environ={})
    except config_mod.ConfigError as exc:
        assert exc.problems and all(PROBLEM.match(p) for p in exc.problems), exc.problems
        raise


def test_any_yaml_document_loads_or_names_its_bad_keys() -> None:
    @SETTINGS
    @given(documents)
    def run(tick: Callable[[], None], doc: object) -> None:
        tick()
        with contextlib.suppress(config_mod.ConfigError):
            load_text(yaml.safe_dump(doc, allow_unicode=True))

    counted("config: random YAML documents", lambda tick: run(tick))


def test_a_valid_config_with_one_value_replaced_loads_or_names_that_key() -> None:
    paths = _paths(VALID)

    @SETTINGS
    @given(st.sampled_from(paths), documents)
    def run(tick: Callable[[], None], path: tuple[str, ...], value: object) -> None:
        tick()
        path_text = WORKDIR / "config.yml"
        path_text.write_text(yaml.safe_dump(_replace(VALID, path, value), allow_unicode=True))
        try:
            config_mod.load(path_text, environ={})
        except config_mod.ConfigError as exc:
            dotted = ".".join(path)
            assert any(p.startswith(dotted) or dotted.startswith(p.split(":")[0]) for p in exc.problems), (
                dotted, exc.problems)

    counted("config: one value of a valid config replaced", lambda tick: run(tick))


def test_arbitrary_text_never_escapes_as_anything_but_a_config_error() -> None:
    @SETTINGS
    @given(st.one_of(st.text(max_size=300),
                     st.text(alphabet="{}[]:,-&*!|>'\"#%@` \n\tabc0123456789", max_size=200)))
    def run(tick: Callable[[], None], text: str) -> None:
        tick()
        with contextlib.suppress(config_mod.ConfigError):
            load_text(text)

    counted("config: arbitrary text", lambda tick: run(tick))


def test_arbitrary_bytes_never_escape_as_anything_but_a_config_error() -> None:
    @SETTINGS
    @given(st.binary(max_size=300))
    def run(tick: Callable[[], None], data: bytes) -> None:
        tick()
        with contextlib.suppress(config_mod.ConfigError):
            load_text(data)

    counted("config: arbitrary bytes", lambda tick: run(tick))


def test_a_file_that_is_not_utf8_is_a_config_error() -> None:
    with pytest.raises(config_mod.ConfigError):
        load_text(b"listen: \x80\n")


def test_environment_variables_of_any_shape_load_or_name_their_key() -> None:
    names = st.one_of(st.sampled_from(["LISTEN", "LOG_LEVEL", "SIMULATE", "SCENARIO", "SOURCES__SIMULATED__INTERVAL",
                                       "SOURCES__NVML__ENABLED", "SOURCES__TRITON__ENDPOINTS", "SOURCES", "MIXIN__X",
                                       "SOURCES__SIMULATED", "WEB_CONFIG_FILE"]),
                      st.text(alphabet="ABCDEFGHIJ_", min_size=1, max_size=20))

    @SETTINGS
    @given(st.dictionaries(names, st.text(max_size=40), max_size=4))
    def run(tick: Callable[[], None], env: dict[str, str]) -> None:
        tick()
        environ = {config_mod.ENV_PREFIX + k: v.replace("\0", "") for k, v in env.items()}
        try:
            config_mod.load(None, environ=environ)
        except config_mod.ConfigError as exc:
            assert exc.problems and all(PROBLEM.match(p) for p in exc.problems), exc.problems

    counted("config: environment layer", lambda tick: run(tick))


def test_colliding_environment_variables_are_a_config_error() -> None:
    with pytest.raises(config_mod.ConfigError, match="sources"):
        config_mod.load(None, environ={"BLACKWELL_EXPORTER_SOURCES": "",
                                       "BLACKWELL_EXPORTER_SOURCES__SIMULATED__INTERVAL": "1"})


def test_a_huge_integer_is_a_config_error() -> None:
    with pytest.raises(config_mod.ConfigError):
        load_text("log_level: " + "9" * 5000 + "\n")


def test_an_oversized_config_file_is_refused_by_size() -> None:
    path = WORKDIR / "big.yml"
    path.write_text("# padding\n" * 1_000_000)  # 10 MB of comments
    with pytest.raises(config_mod.ConfigError, match="bytes"):
        config_mod.load(path, environ={})


def test_web_config_documents_load_or_name_their_key() -> None:
    web_keys = st.one_of(st.sampled_from(["tls_server_config", "basic_auth_users", "http_server_config", "cert_file",
                                          "key_file", "client_ca_file", "client_auth_type", "min_version",
                                          "max_version", "headers", "http2", "prometheus"]), st.text(max_size=10))
    web_docs = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(web_keys, inner, max_size=4)),
                            max_leaves=15)

    @SETTINGS
    @given(st.one_of(web_docs, st.text(max_size=200)))
    def run(tick: Callable[[], None], doc: object) -> None:
        tick()
        path = WORKDIR / "web.yml"
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, allow_unicode=True),
                        encoding="utf-8", errors="surrogatepass")
        try:
            webconfig.load(path)
        except webconfig.WebConfigError as exc:
            assert exc.problems and all(p.startswith(f"{path}: ") for p in exc.problems)

    counted("web config: random documents", lambda tick: run(tick))


@pytest.mark.parametrize("payload", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/name:os.system",
])
def test_yaml_tags_that_would_run_code_are_refused_everywhere(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "executed"
    value = payload.format(marker=marker)
    config_file = tmp_path / "config.yml"
    config_file.write_text(f"listen: {value}\n")
    with pytest.raises(config_mod.ConfigError, match="not valid YAML"):
        config_mod.load(config_file, environ={})
    try:
        config_mod.load(None, environ={"BLACKWELL_EXPORTER_LOG_LEVEL": value})
    except config_mod.ConfigError as exc:
        assert all(PROBLEM.match(p) for p in exc.problems)
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  u: {value}\n")
    with pytest.raises(webconfig.WebConfigError, match="not valid YAML"):
        webconfig.load(web)
    assert not marker.exists()
