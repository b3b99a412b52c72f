"""The kernel-name classifier against real kernel names (tests/fixtures/kernels/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from exporter.dispatch_table import KernelClassifier

FIXTURES = Path(__file__).parents[1] / "fixtures" / "kernels"
CLASSIFIER = KernelClassifier.load()


def _h200_cases() -> list[tuple[str, str, str]]:
    data = json.loads((FIXTURES / "h200_torch.json").read_text())
    cases = []
    for workload in data["workloads"]:
        for kernel in workload.get("kernels", []):
            cases.append((workload["workload"], workload["precision"], kernel))
    return cases


H200 = _h200_cases()
BLACKWELL = yaml.safe_load((FIXTURES / "blackwell.yaml").read_text())["kernels"]


def test_the_h200_recording_covers_every_precision_and_non_gemm_work():
    assert {precision for _, precision, _ in H200} == {"16bit", "fp8", "other", "not-gemm"}
    assert len(H200) > 50


@pytest.mark.parametrize(("workload", "precision", "kernel"), H200, ids=[f"{w}|{k[:40]}" for w, _, k in H200])
def test_every_kernel_recorded_on_h200_is_classified_as_the_matmul_that_launched_it(workload, precision, kernel):
    got = CLASSIFIER.classify(kernel)
    if precision == "not-gemm":
        assert got is None, CLASSIFIER.explain(kernel)
    elif "splitKreduce" in kernel:
        assert got is None  # the GEMM's own split-K reduction: one GEMM is counted once
    else:
        assert got == precision, f"{workload}: {CLASSIFIER.explain(kernel)}"


def test_every_gemm_workload_recorded_on_h200_counts_exactly_one_gemm_launch():
    data = json.loads((FIXTURES / "h200_torch.json").read_text())
    for workload in data["workloads"]:
        if workload["precision"] == "not-gemm" or "kernels" not in workload:
            continue
        gemms = [k for k in workload["kernels"] if CLASSIFIER.classify(k) is not None]
        # fp32 split-K on cuBLAS runs a main and a split_k kernel, both GEMM passes
        assert 1 <= len(gemms) <= 2, (workload["workload"], gemms)


@pytest.mark.parametrize("case", BLACKWELL, ids=[c["name"][:50] for c in BLACKWELL])
def test_blackwell_tensorrt_llm_and_cublas_kernels(case):
    expected = None if case["expected"] == "not-gemm" else case["expected"]
    assert CLASSIFIER.classify(case["name"]) == expected, CLASSIFIER.explain(case["name"])


def test_w4a16_kernels_count_as_16bit_because_the_tensor_cores_run_bf16():
    assert CLASSIFIER.explain("bmm_Bfloat16_MxE2m1Bfloat16_castBfloat16_t128x8") == "precision:fp4-weights-cast-to-16bit"


def test_a_table_with_a_bad_rule_is_refused_with_the_rule_named(tmp_path):
    table = tmp_path / "t.yaml"
    table.write_text("version: 1\ngemm:\n  - name: broken\n    pattern: '(unclosed'\n")
    with pytest.raises(ValueError, match=r"gemm\[0\] \(broken\): bad regular expression"):
        KernelClassifier.load(table)
    table.write_text("version: 1\nprecision:\n  - name: p\n    pattern: x\n    precision: fp6\n")
    with pytest.raises(ValueError, match="precision 'fp6' is not one of"):
        KernelClassifier.load(table)
    table.write_text("version: 2\n")
    with pytest.raises(ValueError, match="version: 1"):
        KernelClassifier.load(table)


def test_every_rule_of_the_table_is_documented():
    doc = (Path(__file__).parents[2] / "docs" / "precision.md").read_text()
    names = [r.name for r in (*CLASSIFIER.not_gemm, *CLASSIFIER.gemm, *CLASSIFIER.precision)]
    assert [n for n in names if f"`{n}`" not in doc] == []
