"""Classifying by the literals of each rule decides exactly what searching every rule's regex in order decides.

The reference is the plain search, rule by rule in table order (first match per section), on the
real kernel names of tests/fixtures/kernels/, on those names mutated (case, fragments of the
rules' words, non-ASCII characters that fold onto ASCII ones), and on adversarial patterns:
anchors, lookarounds, classes, scoped and global flags, groups, back references, repeats.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.dispatch_table import DEFAULT_TABLE, KernelClassifier, Rule
from exporter.regex_literals import literals

FIXTURES = Path(__file__).parents[1] / "fixtures" / "kernels"


def real_names() -> list[str]:
    names = [k["name"] for k in yaml.safe_load((FIXTURES / "blackwell.yaml").read_text())["kernels"]]
    for fixture in ("h200_torch.json", "h200_gemv_splitk.json"):
        for workload in json.loads((FIXTURES / fixture).read_text())["workloads"]:
            names += workload.get("kernels", [])
    return sorted(set(names))


REAL = real_names()
# Pieces of the shipped rules' words, in other cases, and characters that Unicode case folding
# maps onto ASCII letters (KELVIN SIGN ~ k, LONG S ~ s, dotted I ~ i) or that are plain non-ASCII.
FRAGMENTS = ["FP8", "e4M3", "_f8_", "F16", "fp4", "_Fp4", "xf4_", "NVJET_sm100_", "nvjet_sm90_tst_", "bmm_", "BMM_",
             "gemm", "GeMm", "Gemv", "matmul", "NCCL", "allReduce", "flash_fwd", "flashbwd", "_sdpa_", "xqa", "_mla_",
             "quantiz", "splitKreduce_kernel", "ReduceSplitK", "_castBfloat16_", "_castFp16_", "hgemm", "_h16816",
             "__half", "bf16", "BFloat16", "float16", "E2m1", "mxf4", "\u212a", "\u017f", "\u0130", "é", "ß", "\n",
             "_", "^", "0", "9", "a", "z", " "]
ADVERSARIAL = [
    "^nvjet_", "gemm$", "(?i)^bmm_", r"\bgemm\b", r"(?i)fp8(?=_)", r"(?<=_)fp8", r"(?<!x)qa", r"fp(?!8)\d",
    r"(?i)[qr]f8", r"[^a-z0-9]fp4", r"(\w+)_\1", r"(?i)(fp)(?(1)8|4)", r"(?i:FP8)_x", r"(?-i:Gemm)", r"(?i)a(?-i:B)c",
    r"(?i)e[0-9]m[0-9]", r"(?i)x{0}gemm", r"(?i)(ab){2,3}", r"(?i)gem+", r"(?i)gem*v", r"(?i)ge??mm", r"(?i)(?:nv)?jet",
    "", "|", "(?i)fp8|", r"(?x) g e m m  # verbose", r"(?s)a.b", r"(?m)^gemm", r"(?a)(?i)k", r"(?i)\u212a", r"(?i)\u017f",
    r"(?i)[\u212a]ernel", "é", "(?i)É", r"(?i)[^\W\d]+gemm", r"(?i)[k-m]ernel", r"[\x00-\x7f]x",
    r"(?i)(?P<t>fp)(?P=t)", r"\Afp", r"fp\Z", r"(?i)qqtst|rqtst|_(?:qq|rq)sss_",
]
MODERN = sys.version_info >= (3, 11)  # atomic groups and possessive repeats, which refuse what backtracking finds
if MODERN:
    ADVERSARIAL += [r"(?>ab|a)c", r"(?>a|ab)c", r"(?i)(?>fp|fp8)8", r"a++b", r"(?:a)*+a", r"(?:fp)?+fp", r"_?+_gemm"]


def plain(table: KernelClassifier, name: str) -> tuple[str | None, str]:
    """The decision as made before the literals: every rule's regex searched, in table order."""
    for rule in table.not_gemm:
        if rule.pattern.search(name):
            return None, f"not_gemm:{rule.name}"
    if not any(rule.pattern.search(name) for rule in table.gemm):
        return None, "not_gemm:no-gemm-rule"
    for rule in table.precision:
        if rule.pattern.search(name):
            return rule.precision, f"precision:{rule.name}"
    return table.default, f"default:{table.default}"


def mutations(names: list[str], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        name = list(rng.choice(names))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(name) + 1)
            move = rng.random()
            if move < 0.4:
                name[at:at] = rng.choice(FRAGMENTS)
            elif move < 0.6 and name:
                del name[at:at + rng.randint(1, 6)]
            elif move < 0.8 and name:
                name[at - 1] = name[at - 1].swapcase()
            else:
                name = list("".join(name).upper() if rng.random() < 0.5 else "".join(name).lower())
        out.append("".join(name))
    return out


NAMES = REAL + mutations(REAL, 1500, seed=13)


def adversarial_table(patterns: list[str], seed: int) -> KernelClassifier:
    """The shipped table with adversarial rules mixed into each section."""
    rng = random.Random(seed)
    shipped = KernelClassifier.load()
    sections = [list(shipped.not_gemm), list(shipped.gemm), list(shipped.precision)]
    for i, pattern in enumerate(patterns):
        section = sections[rng.randrange(3)]
        section.insert(rng.randrange(len(section) + 1), Rule(f"adversarial-{i}", re.compile(pattern),
                                                             rng.choice(["fp4", "fp8", "16bit", "other"])))
    return KernelClassifier(*sections, default=shipped.default)


def test_the_shipped_table_decides_every_real_and_mutated_name_as_the_plain_search_does():
    table = KernelClassifier.load()
    assert [table.decide(name) for name in NAMES] == [plain(table, name) for name in NAMES]
    fresh = KernelClassifier.load()
    assert fresh.decide_all(NAMES) == [plain(table, name) for name in NAMES]


@pytest.mark.parametrize("seed", range(6))
def test_tables_with_adversarial_rules_decide_as_the_plain_search_does(seed):
    table = adversarial_table(random.Random(seed).sample(ADVERSARIAL, 12), seed)
    names = NAMES + mutations(NAMES, 300, seed)
    expected = [plain(table, name) for name in names]
    assert list(map(table._decide, names)) == expected
    assert table.decide_all(names) == expected


@pytest.mark.parametrize("pattern", ADVERSARIAL + [rule["pattern"] for section in ("not_gemm", "gemm", "precision")
                                                   for rule in yaml.safe_load(DEFAULT_TABLE.read_text())[section]])
def test_where_the_literals_decide_a_search_they_decide_it_as_the_regex_does(pattern):
    compiled = re.compile(pattern)
    needs = literals(compiled)
    if needs is None:
        return  # nothing known: the classifier always searches
    for name in NAMES:
        if needs.folded and not name.isascii():
            continue  # the classifier searches non-ASCII names with case-insensitive rules
        decided = needs.decide(name.lower() if needs.folded else name)
        assert decided in (None, compiled.search(name) is not None), name


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_text_generated_to_match_a_pattern_is_never_decided_as_not_matching(data):
    pattern = data.draw(st.sampled_from([p for p in ADVERSARIAL if p] + [
        rule["pattern"] for section in ("not_gemm", "gemm", "precision")
        for rule in yaml.safe_load(DEFAULT_TABLE.read_text())[section]]))
    compiled = re.compile(pattern)
    text = data.draw(st.from_regex(compiled))
    needs = literals(compiled)
    if needs is not None and not (needs.folded and not text.isascii()):
        assert needs.decide(text.lower() if needs.folded else text) in (None, True), text


def test_a_rule_made_only_of_words_is_decided_without_its_regex_and_an_anchored_one_needs_its_word():
    attention = literals(re.compile("(?i)fmha|flash_?fwd|attention"))
    assert attention is not None and attention.rest == ()  # the words decide: the regex never runs
    assert set(attention.sure) == {"fmha", "flash_fwd", "flashfwd", "attention"}
    nvjet = literals(re.compile(r"^nvjet_sm\d+[a-z]*_"))
    assert nvjet is not None and (nvjet.sure, nvjet.rest) == ((), ("nvjet_sm",))
    assert literals(re.compile("(?i:fp8)_x")) is None  # case sensitivity that changes inside: always searched


def test_explain_names_the_same_rule_as_before_for_every_real_name():
    table = KernelClassifier.load()
    assert [table.explain(name) for name in REAL] == [plain(table, name)[1] for name in REAL]


ATOMS = ["gemm", "fp8", "F", "_", "a", "8", "[qr]", "[a-c]", "[^a]", ".", r"\d", r"\w", "^", "$", r"\b", "(?=fp)",
         "(?<!x)", "(?!8)", "\u017f", "\u212a", "é", "K", "s"]
SUFFIXES = ["*", "+", "?", "{2}", "{0,2}", "{1,3}", "*?", "+?", "{3,}", *(["*+", "?+"] if MODERN else [])]
PATTERNS = st.recursive(st.sampled_from(ATOMS), lambda inner: st.one_of(
    st.tuples(inner, inner).map("".join),
    st.tuples(inner, inner).map("|".join),
    inner.map(lambda p: f"(?:{p})"),
    inner.map(lambda p: f"({p})"),
    inner.map(lambda p: f"(?>{p})") if MODERN else inner,
    st.tuples(inner, st.sampled_from(SUFFIXES)).map(lambda t: f"(?:{t[0]}){t[1]}"),
), max_leaves=8)
TEXTS = st.one_of(st.sampled_from(NAMES), st.lists(st.sampled_from(ATOMS[:6] + FRAGMENTS), max_size=8).map("".join),
                  st.text(alphabet="gemfpFP8_aqrKks\u017f\u212aé0x ", max_size=20))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=PATTERNS, flags=st.sampled_from(["", "(?i)"]), texts=st.lists(TEXTS, min_size=1, max_size=20))
def test_random_patterns_are_decided_by_their_literals_as_by_the_regex(body, flags, texts):
    compiled = re.compile(flags + body)
    needs = literals(compiled)
    for text in texts:
        if needs is not None and not (needs.folded and not text.isascii()):
            assert needs.decide(text.lower() if needs.folded else text) in (None, compiled.search(text) is not None)
    rule = Rule("random", compiled, "fp8")
    table = KernelClassifier(list(KernelClassifier.load().not_gemm), [rule, Rule("any", re.compile(""))], [rule],
                             default="other")
    assert table.decide_all(texts) == [plain(table, text) for text in texts]
