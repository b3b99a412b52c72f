"""Configuration: a YAML file, then BLACKWELL_EXPORTER_* variables, then command-line flags.

Later layers override earlier ones key by key, and the merged result is validated by the
pydantic models, which reject unknown keys; :class:`ConfigError` carries one message per problem, each
starting with the key path (``sources.nvml.interval: ...``) and where the value came from.

Environment keys nest with a double underscore: ``BLACKWELL_EXPORTER_SOURCES__NVML__INTERVAL=5``.
Values are read as YAML scalars, so ``true`` and ``5`` mean what they look like.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from exporter.catalog.tiers import DetailConfig
from exporter.foundation import StrictModel
from exporter.mixin.config import MixinConfig
from exporter.sources.registry import SOURCES

ENV_PREFIX = "BLACKWELL_EXPORTER_"


class ConfigBase(StrictModel):
    """The settings of the exporter itself; :func:`config_model` adds ``sources`` and ``mixin``."""

    listen: str = Field(":9402", description="HOST:PORT to serve on; an empty host means every interface")
    web_config_file: Path | None = Field(
        None, description="exporter-toolkit style web config (tls_server_config, basic_auth_users)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log verbosity (stderr)")
    detail: DetailConfig = Field(default_factory=DetailConfig)  # series budget tiers: exporter/catalog/tiers.py

    @field_validator("listen")
    @classmethod
    def _listen_has_port(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _no_series_twice(self) -> ConfigBase:
        """Refuse source combinations that would emit one series twice (Prometheus drops such a scrape)."""
        enabled = set(self.enabled_sources())
        for name in sorted(enabled):
            problems = SOURCES[name].conflicts(getattr(self.sources, name), enabled)
            if problems:
                raise ValueError(problems[0])
        return self

    @property
    def simulated(self) -> bool:
        return bool(self.sources.simulated.enabled)  # type: ignore[attr-defined]

    def enabled_sources(self) -> list[str]:
        return [name for name in SOURCES if getattr(self.sources, name).enabled]  # type: ignore[attr-defined]


@functools.cache
def config_model() -> type[ConfigBase]:
    """The whole config model, ``sources.<name>`` for every registered source.

    Built on first use rather than at import, because it imports every source module for its
    config model; ``exporter.config.Config`` names the same class.
    """
    sources = create_model(  # type: ignore[call-overload]
        "SourcesConfig",
        __base__=StrictModel,
        **{name: (cls.config_model, Field(default_factory=cls.config_model)) for name, cls in SOURCES.items()},
    )
    return create_model(  # type: ignore[call-overload]
        "Config",
        __base__=ConfigBase,
        sources=(sources, Field(default_factory=sources)),
        mixin=(MixinConfig, Field(default_factory=MixinConfig)),
    )


if TYPE_CHECKING:
    Config = ConfigBase  # what config_model() builds: ConfigBase plus sources and mixin


def __getattr__(name: str) -> Any:
    if name == "Config":
        return config_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def replaced_in_simulation() -> tuple[str, ...]:
    """Sources whose metrics the simulation fills itself (``Source.stand_in``): --simulate turns them
    off, so no series is emitted twice. Sources it does not model (preflight) keep their setting."""
    return tuple(name for name in SOURCES if SOURCES[name].stand_in == "simulated")


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_listen(value: str) -> tuple[str, int]:
    """``":9402"`` -> ("", 9402); ``"[::1]:9402"`` -> ("::1", 9402)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (for example :9402 or 127.0.0.1:9402)")
    return host.strip("[]"), int(port)


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for depth, key in enumerate(path[:-1]):
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError([f"{'.'.join(path)}: {'.'.join(path[:depth + 1])} is also set to a plain value "
                               "(from environment)"])
    if isinstance(target.get(path[-1]), dict):
        raise ConfigError([f"{'.'.join(path)}: a nested key under it is also set (from environment)"])
    target[path[-1]] = value


MAX_CONFIG_BYTES = 1 << 20


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: config file is over {MAX_CONFIG_BYTES} bytes; refusing to parse it"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        # ValueError: PyYAML's int() of a number over Python's digit limit.
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping, got {type(data).__name__}"])
    return data


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """``BLACKWELL_EXPORTER_A__B=v`` -> {"a": {"b": v}}. Shortcuts SIMULATE and SCENARIO exist."""
    layer: dict[str, Any] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        raw = environ[name]
        key = name[len(ENV_PREFIX):].lower()
        if key == "simulate":
            _set_path(layer, ["sources", "simulated", "profile"], raw)
            _set_path(layer, ["sources", "simulated", "enabled"], True)
            continue
        if key == "scenario":
            _set_path(layer, ["sources", "simulated", "scenario"], raw)
            continue
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        _set_path(layer, [part for part in key.split("__")], value)
    return layer


Layer = tuple[str, dict[str, Any]]


def _sets(layer: Mapping[str, Any], path: tuple[str, ...]) -> str:
    """``"leaf"`` when the layer sets ``path`` itself, ``"below"`` when it sets keys under it, else ``""``."""
    node: Any = layer
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return ""
        node = node[key]
    return "below" if isinstance(node, Mapping) and node else "leaf"


def origin_of(path: tuple[str, ...], layers: list[Layer]) -> str:
    """Which layer a merged value at ``path`` came from.

    A plain value comes from the last layer that set it (later layers win). A section (a
    cross-field check such as timeout <= interval) comes from every layer that set a key in it,
    listed from the one that wins down; a path no layer set holds the defaults.
    """
    leaf = [origin for origin, layer in layers if _sets(layer, path) == "leaf"]
    if leaf:
        return leaf[-1]
    below = [origin for origin, layer in layers if _sets(layer, path)]
    return " over ".join(reversed(below)) or "the defaults"


def _describe(errors: ValidationError, layers: list[Layer]) -> list[str]:
    problems = []
    for err in errors.errors():
        path = tuple(str(p) for p in err["loc"])
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        origin = origin_of(path, layers) if path else "the combined configuration"
        problems.append(f"{'.'.join(path) or '(top level)'}: {message} (from {origin})")
    return problems


def load(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Merge file, environment and flags, validate the result; raise ConfigError listing every problem.

    The merged configuration is validated once, so a check across keys (timeout <= interval)
    sees the values in force, whichever layers set them; each problem still names its layer.
    """
    layers: list[Layer] = []
    if path is not None:
        layers.append((str(path), read_file(path)))
    layers.append(("environment", from_env(os.environ if environ is None else environ)))
    layers.append(("command line", dict(flags or {})))
    merged: dict[str, Any] = {}
    for _origin, layer in layers:
        merged = _merge(merged, layer)
    try:
        config = config_model().model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers)) from None
    if config.simulated:
        return _simulation_replaces_hardware(merged)
    return config  # type: ignore[return-value]


def _simulation_replaces_hardware(merged: dict[str, Any]) -> Config:
    sources = dict(merged.get("sources", {}))
    for name in replaced_in_simulation():
        sources[name] = {**sources.get(name, {}), "enabled": False}
    return config_model().model_validate({**merged, "sources": sources})  # type: ignore[return-value]


def simulate_flags(profile: str | None, scenario: str | None) -> dict[str, Any]:
    """Command-line --simulate/--scenario as a config layer."""
    simulated: dict[str, Any] = {}
    if profile is not None:
        simulated.update(enabled=True, profile=profile)
    if scenario is not None:
        simulated["scenario"] = scenario
    return {"sources": {"simulated": simulated}} if simulated else {}
