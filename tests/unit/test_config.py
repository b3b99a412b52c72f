"""Config layers: file < environment < flags; every error names its key path and origin."""

from pathlib import Path

import pytest

from exporter import config as cfg
from exporter.cli import main


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_listen_on_9402():
    assert cfg.load(None, environ={}).listen == ":9402"


def test_unknown_keys_are_errors_with_their_path(tmp_path):
    path = write(tmp_path, "listen: ':1'\nsources:\n  simulated:\n    intervall: 3\nbogus: 1\n")
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(path, environ={})
    problems = err.value.problems
    assert any(p.startswith("sources.simulated.intervall: unknown key") for p in problems)
    assert any(p.startswith("bogus: unknown key") for p in problems)
    assert all(str(path) in p for p in problems)


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    path = write(tmp_path, "listen: nope\nlog_level: loud\nsources:\n  simulated:\n    interval: -1\n")
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(path, environ={})
    paths = {p.split(":")[0] for p in err.value.problems}
    assert {"listen", "log_level", "sources.simulated.interval"} <= paths


def test_cross_field_rules_name_the_section(tmp_path):
    path = write(tmp_path, "sources:\n  simulated:\n    interval: 1\n    timeout: 5\n")
    with pytest.raises(cfg.ConfigError, match="sources.simulated: .*timeout .* must not exceed interval"):
        cfg.load(path, environ={})


def test_environment_overrides_file_and_flags_override_environment(tmp_path):
    path = write(tmp_path, "listen: ':1000'\nsources:\n  simulated:\n    interval: 7\n")
    env = {"BLACKWELL_EXPORTER_LISTEN": ":2000", "BLACKWELL_EXPORTER_SOURCES__SIMULATED__INTERVAL": "3"}
    loaded = cfg.load(path, environ=env)
    assert loaded.listen == ":2000" and loaded.sources.simulated.interval == 3
    loaded = cfg.load(path, environ=env, flags={"listen": ":3000"})
    assert loaded.listen == ":3000" and loaded.sources.simulated.interval == 3


def test_unknown_environment_keys_are_errors_too():
    with pytest.raises(cfg.ConfigError, match=r"sources.simulated.intervl: unknown key \(from environment\)"):
        cfg.load(None, environ={"BLACKWELL_EXPORTER_SOURCES__SIMULATED__INTERVL": "3"})


def test_simulate_shortcut_enables_the_simulation_and_turns_hardware_sources_off():
    loaded = cfg.load(None, environ={"BLACKWELL_EXPORTER_SIMULATE": "h200x2", "BLACKWELL_EXPORTER_SCENARIO": "gpu-lost"})
    assert loaded.simulated and loaded.sources.simulated.profile == "h200x2"
    assert loaded.sources.simulated.scenario == "gpu-lost"
    assert all(not getattr(loaded.sources, name).enabled for name in cfg.replaced_in_simulation())


def test_unknown_profile_and_scenario_list_the_choices():
    with pytest.raises(cfg.ConfigError, match="hgx-b200, gb200-tray, h200x2"):
        cfg.load(None, environ={}, flags=cfg.simulate_flags("dgx-a100", None))
    with pytest.raises(cfg.ConfigError, match="unknown scenario 'melt'; choose one of healthy"):
        cfg.load(None, environ={}, flags=cfg.simulate_flags("hgx-b200", "melt"))


def test_a_c2c_scenario_on_a_box_without_grace_is_refused():
    with pytest.raises(cfg.ConfigError, match="grace-kv-spill.*needs a profile with Grace C2C"):
        cfg.load(None, environ={}, flags=cfg.simulate_flags("hgx-b200", "grace-kv-spill"))
    assert cfg.load(None, environ={}, flags=cfg.simulate_flags("gb200-tray", "grace-kv-spill")).simulated


def test_missing_and_malformed_files_are_clear(tmp_path):
    with pytest.raises(cfg.ConfigError, match="cannot read config file"):
        cfg.load(tmp_path / "absent.yaml", environ={})
    with pytest.raises(cfg.ConfigError, match="not valid YAML"):
        cfg.load(write(tmp_path, "a: [1, 2\n"), environ={})
    with pytest.raises(cfg.ConfigError, match="top level must be a mapping"):
        cfg.load(write(tmp_path, "- 1\n- 2\n"), environ={})


def test_config_check_prints_each_error_and_fails(tmp_path, capsys):
    bad = write(tmp_path, "sources:\n  simulated:\n    enabled: true\n    profile: nope\n    color: red\n")
    assert main(["config", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "sources.simulated.color: unknown key" in out
    assert "sources.simulated.profile: Value error, unknown profile 'nope'" in out
    assert "2 error(s)" in out
    good = write(tmp_path, "listen: '127.0.0.1:9402'\n")
    assert main(["config", "check", str(good)]) == 0


@pytest.mark.parametrize("value, expected", [(":9402", ("", 9402)), ("127.0.0.1:1", ("127.0.0.1", 1)),
                                             ("[::1]:9402", ("::1", 9402))])
def test_listen_addresses(value, expected):
    assert cfg.parse_listen(value) == expected


def test_config_check_also_validates_the_web_config_it_names(tmp_path, capsys):
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  alice: not-a-bcrypt-hash\ntls_server_config:\n  cert_file: /nope.pem\n")
    config = write(tmp_path, f"web_config_file: {web}\n")
    assert main(["config", "check", str(config)]) == 1
    out = capsys.readouterr().out
    assert out.count("web_config_file: ") >= 2
    assert "error(s)" in out


def test_sources_that_would_emit_the_same_series_cannot_both_be_enabled(tmp_path):
    both = write(tmp_path, "sources:\n  nvml: {enabled: true}\n  dcgm: {enabled: true}\n")
    with pytest.raises(cfg.ConfigError, match="nvml and sources.dcgm fill the same GPU metrics"):
        cfg.load(both, environ={})
    mapped = write(tmp_path, "sources:\n  nvml: {enabled: false}\n  logs: {enabled: true, paths: [/x.log]}\n"
                             "  counter_mapping:\n    enabled: true\n    mappings:\n"
                             "      - {upstream: te_promotions_total, metric: blackwell_te_promotion_events_total,"
                             " labels: {layer: '{layer}'}}\n")
    with pytest.raises(cfg.ConfigError, match="sources.logs also fills"):
        cfg.load(mapped, environ={})


def test_the_merged_configuration_is_validated_not_each_layer_against_defaults(tmp_path):
    """Issue 15 item 18: a file's interval and the environment's timeout are judged together."""
    path = write(tmp_path, "sources:\n  nvml:\n    interval: 60\n")
    loaded = cfg.load(path, environ={"BLACKWELL_EXPORTER_SOURCES__NVML__TIMEOUT": "20"})
    assert (loaded.sources.nvml.interval, loaded.sources.nvml.timeout) == (60, 20)


def test_a_problem_across_layers_names_every_layer_that_set_the_section(tmp_path):
    path = write(tmp_path, "sources:\n  nvml:\n    interval: 60\n")
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(path, environ={"BLACKWELL_EXPORTER_SOURCES__NVML__TIMEOUT": "90"})
    assert caught.value.problems == [
        f"sources.nvml: Value error, timeout (90.0s) must not exceed interval (60.0s) (from environment over {path})"]


def test_a_plain_value_names_the_layer_whose_value_is_in_force(tmp_path):
    path = write(tmp_path, "listen: nowhere\nsources:\n  simulated:\n    intervl: 3\n")
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(path, environ={"BLACKWELL_EXPORTER_LISTEN": "also-nowhere"}, flags={"listen": "nor-here"})
    assert sorted(caught.value.problems) == [
        "listen: Value error, 'nor-here' is not HOST:PORT (for example :9402 or 127.0.0.1:9402) (from command line)",
        f"sources.simulated.intervl: unknown key (from {path})"]


def test_config_check_applies_the_environment_and_flags_run_would(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, "sources:\n  nvml:\n    interval: 60\n")
    monkeypatch.setenv("BLACKWELL_EXPORTER_SOURCES__NVML__TIMEOUT", "20")
    assert main(["config", "check", str(path)]) == 0
    monkeypatch.setenv("BLACKWELL_EXPORTER_SOURCES__NVML__TIMEOUT", "61")
    assert main(["config", "check", str(path)]) == 1
    assert "(from environment over" in capsys.readouterr().out
    monkeypatch.delenv("BLACKWELL_EXPORTER_SOURCES__NVML__TIMEOUT")
    assert main(["config", "check", str(path), "--listen", "bad"]) == 1
    assert "listen: Value error, 'bad' is not HOST:PORT" in capsys.readouterr().out
    assert main(["config", "check", "--simulate", "h200x2", "--scenario", "gpu-lost"]) == 0
