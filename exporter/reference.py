"""Reference documentation generated from the code: the metric catalog and the config models.

``blackwell-exporter generate`` writes these to ``docs/metrics.md`` and ``docs/configuration.md``,
so the docs cannot drift from what the exporter emits and accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from exporter import catalog
from exporter.catalog.model import Metric
from exporter.config import Config
from exporter.sources.simulated import budget
from exporter.sources.simulated.profiles import PROFILES
from exporter.sources.simulated.scenarios import SCENARIOS
from exporter.sources.simulated.source import scenario_fits

_AREAS = {
    "DCGM_FI_": "dcgm-exporter compatible names (nvml or dcgm option dcgm_compat_names)",
    "blackwell_exporter_": "Exporter self-metrics",
    "blackwell_gpu_": "GPU",
    "blackwell_c2c_": "Grace NVLink-C2C",
    "blackwell_nvlink": "NVLink",
    "blackwell_serving_": "Serving (Triton, trtllm-serve)",
    "blackwell_preflight_": "Preflight checks",
}


def _area(metric: Metric) -> str:
    for prefix, area in _AREAS.items():
        if metric.name.startswith(prefix):
            return area
    return "Blackwell precision and engine"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def metrics_markdown() -> str:
    by_area: dict[str, list[Metric]] = {}
    for metric in catalog.CATALOG.values():
        by_area.setdefault(_area(metric), []).append(metric)
    lines = [
        "# Metric reference",
        "",
        "Generated from `exporter/catalog/` by `blackwell-exporter generate`; do not edit by hand.",
        "Histograms add `_bucket`, `_sum` and `_count` series. `gpu` is the NVML index; join on it with",
        "`blackwell_gpu_info` for the UUID or model name.",
        "",
    ]
    lines += budget.detail_section()
    for area, metrics in by_area.items():
        lines += [f"## {area}", "", "| metric | type | labels | filled by | tier | meaning |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for m in metrics:
            labels = ", ".join(f"`{label}`" for label in m.labels) or "-"
            sources = ", ".join(m.sources)
            lines.append(f"| `{m.name}` | {m.type.value} | {labels} | {sources} | {budget.tier_cell(m.name)} | "
                         f"{_cell(m.help)} |")
        lines.append("")
    return "\n".join(lines)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value: Any = field.default
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(section)"
        if isinstance(value, list) and value:
            return f"{len(value)} default entr{'y' if len(value) == 1 else 'ies'}"
    if value is None:
        return "-"
    if isinstance(value, str):
        return f"`{value!r}`" if value else "`''`"
    if isinstance(value, (list, tuple)) and not value:
        return "`[]`"
    return f"`{value}`"


def _description(model: type[BaseModel], name: str) -> str:
    """A subclass that only changes a default inherits the base field's description."""
    for klass in model.__mro__:
        fields = getattr(klass, "model_fields", {})
        if name in fields and fields[name].description:
            return fields[name].description
    return ""


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``list[Model]``, whose keys each list entry takes."""
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def _walk(model: type[BaseModel], prefix: str, rows: list[str]) -> None:
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _walk(annotation, key + ".", rows)
            continue
        item = _list_item_model(annotation)
        if item is not None:
            rows.append(f"| `{key}` | list | {_default(field)} | {_cell(_description(model, name))} |")
            _walk(item, key + "[].", rows)
            continue
        if get_origin(annotation) is Literal:
            type_name = " \\| ".join(f"`{choice}`" for choice in get_args(annotation))
        else:
            type_name = str(annotation) if get_args(annotation) else getattr(annotation, "__name__", str(annotation))
            type_name = type_name.replace("typing.", "").replace("pathlib.", "")
        rows.append(f"| `{key}` | {_cell(type_name)} | {_default(field)} | {_cell(_description(model, name))} |")


def configuration_markdown() -> str:
    rows: list[str] = []
    _walk(Config, "", rows)
    return "\n".join([
        "# Configuration reference",
        "",
        "Generated from the config models by `blackwell-exporter generate`; do not edit by hand.",
        "",
        "Settings come from a YAML file (`--config FILE`), then `BLACKWELL_EXPORTER_*` environment",
        "variables, then command-line flags; each layer overrides the one before, key by key. Nested",
        "keys join with a double underscore in the environment: `sources.nvml.interval` is",
        "`BLACKWELL_EXPORTER_SOURCES__NVML__INTERVAL`. `BLACKWELL_EXPORTER_SIMULATE=PROFILE` and",
        "`BLACKWELL_EXPORTER_SCENARIO=NAME` are shortcuts for `--simulate` and `--scenario`.",
        "The merged result is validated once, so checks across keys (a timeout within its interval) see",
        "the values in force whichever layers set them; unknown keys are errors, and every error names its",
        "key path and the layer it came from. `blackwell-exporter config check [FILE] [flags]` validates",
        "what `run` with the same file, environment and flags would load. SIGHUP reloads all of it",
        "(sources, thresholds, scenario, web config, log level; `listen` needs a restart); an invalid",
        "configuration is logged and refused, the previous one stays in force, and",
        "`blackwell_exporter_config_last_reload_successful` is 0 until a reload succeeds.",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
    ])


def scenarios_markdown() -> str:
    rows = ["| scenario | what happens | alerts it should fire | profiles |", "| --- | --- | --- | --- |"]
    for scenario in SCENARIOS.values():
        profiles = [p.name for p in PROFILES.values() if scenario_fits(scenario, p.name)]
        alerts = ", ".join(f"`{a}`" for a in scenario.alerts) or "none (baseline)"
        rows.append(f"| `{scenario.name}` | {_cell(scenario.description)} | {alerts} | {', '.join(profiles)} |")
    return "\n".join(rows)


README_START, README_END = "<!-- scenarios:start -->", "<!-- scenarios:end -->"


def readme_with_scenarios(readme: str) -> str:
    """README.md with the generated scenario table between its markers."""
    head, start, rest = readme.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not start or not end:
        raise ValueError(f"README.md lacks the {README_START} / {README_END} markers")
    return f"{head}{README_START}\n{scenarios_markdown()}\n{README_END}{tail}"


def outputs(root: Path) -> dict[Path, str]:
    """Relative path -> content, for generate and its --check."""
    return {
        Path("docs/metrics.md"): metrics_markdown(),
        Path("docs/configuration.md"): configuration_markdown(),
        Path("README.md"): readme_with_scenarios((root / "README.md").read_text()),
    }


def sync(root: Path, check: bool) -> int:
    """Write the generated docs under ``root``, or with ``check`` report which differ (exit 1)."""
    drifted = []
    for relative, content in outputs(root).items():
        path = root / relative
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        if check:
            drifted.append(str(relative))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    for name in drifted:
        print(f"{name} is out of date: run `blackwell-exporter generate` and commit the result")
    return 1 if drifted else 0
