"""Matrix-vector and split-K kernel names recorded on an H200 (bench/inject_proof.py kernels).

Each workload is one product: exactly one of its kernels counts as a GEMM (a split-K reduction
never does), with the workload's precision path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.dispatch_table import KernelClassifier

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "fixtures/kernels/h200_gemv_splitk.json").read_text())
TABLE = KernelClassifier.load()


@pytest.mark.parametrize("workload", RECORDED["workloads"], ids=lambda w: w["workload"])
def test_each_product_counts_once_with_its_precision(workload: dict) -> None:
    decided = [TABLE.classify(name) for name in workload["kernels"]]
    gemms = [precision for precision in decided if precision is not None]
    assert gemms == [workload["precision"]], list(zip(workload["kernels"], decided, strict=True))


def test_the_recording_holds_gemv_and_split_k_kernels() -> None:
    names = [name for workload in RECORDED["workloads"] for name in workload["kernels"]]
    assert any("gemvx::kernel" in name for name in names)
    assert any("gemv2T_kernel" in name for name in names)
    assert any("splitKreduce_kernel" in name for name in names)
    assert any("_splitK_" in name and name.startswith("nvjet_sm90_qqtst") for name in names)
