"""The simulated box seen through another serving runtime: what vLLM, SGLang, Dynamo or NIM would report.

The simulation models Triton with the TensorRT-LLM backend and fills every serving family. Standing
in for another runtime it keeps only the families (and states, and failure reasons) that runtime's
map in :mod:`exporter.sources.runtime_maps` can fill, names the runtime and flavour on
``blackwell_serving_runtime_info``, and adds the families only those runtimes have, derived from
the simulation's own numbers: KV usage is used / max blocks, prefix-cache queries are the prompt
tokens and hits the share the simulated hit ratio (0.3) gives, preemptions stay 0 (the model
never preempts). Its latency histograms have that runtime's default buckets
(:func:`runtime_buckets`), the simulated requests drawn into them, so the TTFT SLO is judged at the
bound that runtime is judged at (SGLang 0.4 s, Dynamo 0.47 s). A demo then shows exactly the panels
that runtime can fill.
"""

from __future__ import annotations

from exporter.catalog.runtime_buckets import DEFAULT_BUCKETS
from exporter.snapshot import Family
from exporter.sources.runtime_maps import DYNAMO_FRONTEND, NIM, SGLANG, VLLM, WORKER_STATE, RuntimeMap

RUNTIMES = ("triton", "vllm", "sglang", "dynamo", "nim")
# runtime -> (maps whose rows it fills, endpoint, flavour, version the fixtures were made from, what the
# map accepts but that version does not print: NIM's documented families, SGLang without its
# --collect-tokens-histogram flag)
_VIEWS: dict[str, tuple[tuple[RuntimeMap, ...], str, str, str, tuple[str, ...]]] = {
    "vllm": ((VLLM,), "http://127.0.0.1:8000/metrics", "v1-engine", "0.11.0", ()),
    "sglang": ((SGLANG,), "http://127.0.0.1:30000/metrics", "unified", "0.5.5",
               ("blackwell_serving_prompt_length_tokens",)),
    "nim": ((NIM,), "http://127.0.0.1:8000/v1/metrics", "llm", "unknown",
            ("blackwell_serving_queue_time_seconds", "blackwell_serving_preemptions_total",
             "blackwell_serving_prompt_length_tokens")),
    "dynamo": ((DYNAMO_FRONTEND, VLLM), "http://127.0.0.1:8000/metrics", "frontend", "unknown", ()),
}
_IDENTITY = ("blackwell_serving_up", "blackwell_serving_live", "blackwell_serving_ready",
             "blackwell_serving_runtime_info")
_PREFIX_HIT_SHARE = 0.3


def runtime_buckets(runtime: str) -> dict[str, tuple[float, ...]]:
    """Catalog histogram -> the default bounds ``runtime`` gives it; empty for triton, whose simulated
    histograms keep the model's own, finer buckets."""
    if runtime == "triton":
        return {}
    return {name: by_runtime[runtime] for name, by_runtime in DEFAULT_BUCKETS.items() if runtime in by_runtime}


def _rows(maps: tuple[RuntimeMap, ...], dynamo: bool) -> dict[str, set[str] | None]:
    """Catalog name -> the extra label values the maps fill (None: the family has no extra label)."""
    rows: dict[str, set[str] | None] = {name: None for name in _IDENTITY}
    for index, mapping in enumerate(maps):
        worker = dynamo and index > 0  # a Dynamo worker reports its engine's state only
        names = [] if worker else list(mapping.histograms)
        rows.update({name: None for name in names})
        for rule in mapping.rules:
            if worker and rule.catalog not in WORKER_STATE:
                continue
            if rule.value:
                values = rows.get(rule.catalog) or set()
                rows[rule.catalog] = values | {rule.value} | ({"used"} if rule.value == "max" else set())
            else:
                rows.setdefault(rule.catalog, None)
    return rows


def stand_in(families: list[Family], runtime: str) -> list[Family]:
    """``families`` of the simulated Triton as ``runtime`` would report them; unchanged for triton."""
    if runtime == "triton":
        return families
    maps, endpoint, flavour, version, lacks = _VIEWS[runtime]
    rows = {name: states for name, states in _rows(maps, runtime == "dynamo").items() if name not in lacks}
    by_name = {f.metric.name: f for f in families}
    out: list[Family] = []
    for family in families:
        name = family.metric.name
        if not name.startswith("blackwell_serving_") or name in _IDENTITY:
            if name not in _IDENTITY:
                out.append(family)
            continue
        if name not in rows:
            continue
        kept = Family(name)
        names = family.metric.labels
        extra = next((i for i, n in enumerate(names) if n not in ("model", "version", "endpoint")), None)
        for labels, value in family.samples:
            states = rows[name]
            if states is None or (extra is not None and labels[extra] in states):
                # These runtimes have no model versions; the series come from the stand-in's endpoint.
                kept.add(tuple("" if n == "version" else endpoint if n == "endpoint" else v
                               for n, v in zip(names, labels, strict=True)), value)
        out.append(kept)
    ready = next((v for _, v in by_name["blackwell_serving_ready"].samples), 1)
    for name, value in (("blackwell_serving_up", 1), ("blackwell_serving_live", 1), ("blackwell_serving_ready", ready)):
        out.append(Family(name).add((runtime, endpoint), value))
    out.append(Family("blackwell_serving_runtime_info").add((runtime, endpoint, flavour, version), 1))
    out += [f for f in _only_theirs(by_name, endpoint) if f.metric.name in rows]
    return out


def _only_theirs(by_name: dict[str, Family], endpoint: str) -> list[Family]:
    """The families the simulated Triton has no counterpart of, from its own numbers."""
    usage, preemptions = Family("blackwell_serving_kv_cache_usage_ratio"), Family("blackwell_serving_preemptions_total")
    queried = Family("blackwell_serving_prefix_cache_queried_tokens_total")
    hits = Family("blackwell_serving_prefix_cache_hit_tokens_total")
    blocks = {(model, state): value for (model, state, _), value in by_name["blackwell_serving_kv_cache_blocks"].samples}
    for (model, _), prompt in by_name["blackwell_serving_prompt_tokens_total"].samples:
        total = blocks.get((model, "max"))
        if total:
            usage.add((model, endpoint), round(float(blocks.get((model, "used"), 0)) / float(total), 4))
        preemptions.add((model, endpoint), 0)
        queried.add((model, endpoint), prompt)
        hits.add((model, endpoint), int(float(prompt) * _PREFIX_HIT_SHARE))
    return [usage, preemptions, queried, hits]
