"""`blackwell-exporter generate [--check]`: writes the committed outputs and finds drift."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from exporter.mixin.config import MixinConfig
from exporter.mixin.generate import DOCS_FILE, OUTPUT_DIRS, main, render

REPO = Path(__file__).resolve().parents[2]


def _args(output: Path, check: bool = False, config: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(output=output, check=check, config=config)


def _copy_outputs(tmp_path: Path) -> Path:
    for directory in OUTPUT_DIRS:
        shutil.copytree(REPO / directory, tmp_path / directory)
    (tmp_path / DOCS_FILE).parent.mkdir()
    shutil.copy(REPO / DOCS_FILE, tmp_path / DOCS_FILE)
    return tmp_path


def test_committed_outputs_are_up_to_date(capsys):
    assert main(_args(REPO, check=True)) == 0, capsys.readouterr().err


def test_check_fails_on_an_edited_file(tmp_path, capsys):
    root = _copy_outputs(tmp_path)
    rules = root / "alerts" / "alerts.yaml"
    rules.write_text(rules.read_text().replace("for: 10m", "for: 11m", 1))
    assert main(_args(root, check=True)) == 1
    err = capsys.readouterr().err
    assert "alerts/alerts.yaml: differs" in err and "for: 11m" in err


def test_check_fails_on_a_missing_and_an_extra_file(tmp_path, capsys):
    root = _copy_outputs(tmp_path)
    (root / "runbooks" / "BlackwellGPULost.md").unlink()
    (root / "dashboards" / "hand-made.json").write_text("{}")
    assert main(_args(root, check=True)) == 1
    err = capsys.readouterr().err
    assert "runbooks/BlackwellGPULost.md: missing" in err
    assert "dashboards/hand-made.json: not generated" in err


def test_generate_writes_everything_and_removes_strays(tmp_path):
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "BlackwellGone.md").write_text("old alert")
    assert main(_args(tmp_path)) == 0
    assert not (tmp_path / "runbooks" / "BlackwellGone.md").exists()
    assert main(_args(tmp_path, check=True)) == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == \
        sorted(render(MixinConfig()))


def test_config_file_thresholds_reach_the_rules(tmp_path):
    config = tmp_path / "exporter.yaml"
    config.write_text(yaml.safe_dump({"mixin": {"kv_cache_occupancy_max": 0.8, "ttft_slo_seconds": 0.25}}))
    assert main(_args(tmp_path, config=config)) == 0
    text = (tmp_path / "alerts" / "alerts.yaml").read_text()
    assert 'instance_model:blackwell_serving_kv_cache_blocks:used_ratio{job="blackwell-exporter"} > 0.8' in text
    assert 'p95_rate5m{job="blackwell-exporter"} > 0.25' in text
    assert main(_args(REPO, check=True, config=config)) == 1, "committed defaults differ from this config"


def test_bad_config_file_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "exporter.yaml"
    config.write_text(yaml.safe_dump({"mixin": {"kv_cache_occupancy_max": 2}}))
    assert main(_args(tmp_path, config=config)) == 2
    assert "mixin.kv_cache_occupancy_max" in capsys.readouterr().err


def test_cli_check_exit_status():
    result = subprocess.run([sys.executable, "-m", "exporter", "generate", "--check"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
