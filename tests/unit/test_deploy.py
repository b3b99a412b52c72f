"""The deployment examples are wired together: every port, mount, rule file and dashboard path they
name exists in the repository or in another part of the same example.

No container engine runs here, so each file is parsed and followed by hand: a path inside a
container is traced back through the volume that mounts it to the repository file it comes
from, and a host:port is traced to the service (and the container port) that serves it.
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from exporter import config as config_mod
from exporter.mixin.config import MixinConfig

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
EXPORTER_PORT = 9402
TRITON_METRICS_PORT = 8002


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _flag(args: list[str], name: str) -> str:
    """The value of ``--name=value`` or ``--name value`` in an argument list."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    raise AssertionError(f"{name} not in {args}")


def _check_exporter_config(path: Path) -> config_mod.Config:
    """Loads as the exporter would at start-up; serves 9402, reads Triton on loopback (a sidecar) and dispatch state."""
    config = config_mod.load(path, environ={})
    assert config_mod.parse_listen(config.listen)[1] == EXPORTER_PORT
    urls = [e.url for e in config.sources.triton.endpoints]  # type: ignore[attr-defined]
    assert config.sources.triton.enabled and urls == [f"http://127.0.0.1:{TRITON_METRICS_PORT}/metrics"]  # type: ignore[attr-defined]
    assert config.sources.nvml.enabled  # type: ignore[attr-defined]
    assert config.sources.dispatch.enabled  # type: ignore[attr-defined]
    return config


# -- the injection library in the serving container ------------------------------------------

def _library_variables() -> set[str]:
    """The variables the writers read: the state file doc's settings table, and the names the native sources spell."""
    doc = (REPO / "docs" / "dispatch-state.md").read_text()
    settings = doc[doc.index("## Settings read by both writers"):]
    names = set(re.findall(r"^\| `(BLACKWELL_DISPATCH_[A-Z_]+)` \|", settings, re.M))
    for source in (REPO / "native").rglob("*.c") if (REPO / "native").is_dir() else ():
        names |= set(re.findall(r'"(BLACKWELL_DISPATCH_[A-Z_]+)"', source.read_text()))
    assert "BLACKWELL_DISPATCH_STATE_DIR" in names
    return names | {"CUDA_INJECTION64_PATH"}


def _check_injection(env: dict[str, str], serving_mounts: dict[PurePosixPath, str],
                     exporter_mounts: dict[PurePosixPath, str], copy_command: str, copy_mounts: dict[PurePosixPath, str],
                     config: config_mod.Config) -> None:
    """The serving container loads the library the copy step put on a shared volume and writes state where the
    exporter reads it; every variable set is one the writers read."""
    assert set(env) <= _library_variables(), f"variables no writer reads: {set(env) - _library_variables()}"
    library = PurePosixPath(env["CUDA_INJECTION64_PATH"])
    assert "blackwell-exporter inject-path" in copy_command and str(library) in copy_command
    assert serving_mounts[library.parent] == copy_mounts[library.parent], "the library is not on the copied volume"
    state_dir = PurePosixPath(env["BLACKWELL_DISPATCH_STATE_DIR"])
    assert state_dir in serving_mounts and state_dir in exporter_mounts, "the state directory is not shared"
    assert serving_mounts[state_dir] == exporter_mounts[state_dir], "the two containers mount different volumes"
    assert PurePosixPath(str(config.sources.dispatch.state_dir)) == state_dir  # type: ignore[attr-defined]


# -- docker compose --------------------------------------------------------------------------

COMPOSE_FILE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE_FILE)


def _host_path(source: str) -> Path:
    """A bind mount's source as compose resolves it: relative to the compose file's directory."""
    source = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", source)  # ${VAR:-default} -> default
    return (COMPOSE_FILE.parent / source).resolve()


def _mounts(service: dict[str, Any]) -> dict[PurePosixPath, str]:
    """Container path -> volume source (a host path or a named volume) for a service."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        out[PurePosixPath(target)] = source
    return out


def _repo_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository file or directory a service sees at ``container_path``, through its bind mounts."""
    path = PurePosixPath(container_path)
    for target, source in sorted(_mounts(service).items(), key=lambda m: -len(m[0].parts)):
        if path == target or target in path.parents:
            assert source.startswith((".", "/", "$")), f"{container_path} is on the named volume {source}"
            return _host_path(source) / path.relative_to(target)
    raise AssertionError(f"nothing is mounted at {container_path}")


def _published(service: dict[str, Any]) -> set[int]:
    return {int(str(port).split(":")[-1]) for port in service.get("ports", [])}


def _serves(compose: dict[str, Any], host: str, port: int) -> bool:
    """Whether ``host:port`` on the compose network reaches something listening on ``port``.

    A service's name reaches its own containers and every container that joined its network
    namespace (``network_mode: service:NAME``), the sidecar pattern.
    """
    services = compose["services"]
    if host not in services:
        return False
    members = [host] + [name for name, s in services.items() if s.get("network_mode") == f"service:{host}"]
    return any(_listens(name, services[name], port) for name in members)


def _listens(name: str, service: dict[str, Any], port: int) -> bool:
    command = [str(a) for a in service.get("command", [])]
    if name == "exporter":
        return port == EXPORTER_PORT
    if name == "triton":
        return port in {int(_flag(command, f"--{kind}-port")) for kind in ("http", "grpc", "metrics")}
    return port == {"prometheus": 9090, "alertmanager": 9093, "grafana": 3000}.get(name)


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"inject", "triton", "exporter", "prometheus", "alertmanager", "grafana"}


def test_every_bind_mount_exists_in_the_repository(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for target, source in _mounts(service).items():
            if source in compose.get("volumes", {}) or "MODEL_REPOSITORY" in source:
                continue  # named volumes, and the models the user brings
            assert _host_path(source).exists(), f"{name} mounts {source} at {target}, which does not exist"


def test_exporter_is_a_sidecar_of_triton_built_from_the_repository(compose: dict[str, Any]) -> None:
    services = compose["services"]
    exporter = services["exporter"]
    assert exporter["network_mode"] == "service:triton"
    # Ports of a sidecar are published by the container whose network it joined.
    assert {EXPORTER_PORT, TRITON_METRICS_PORT} <= _published(services["triton"])
    assert int(_flag([str(a) for a in services["triton"]["command"]], "--metrics-port")) == TRITON_METRICS_PORT
    dockerfile = (COMPOSE_FILE.parent / exporter["build"]["context"] / exporter["build"]["dockerfile"]).resolve()
    assert dockerfile.is_file(), f"compose builds the exporter from {dockerfile}, which does not exist"
    assert re.search(rf"^EXPOSE\s+{EXPORTER_PORT}\b", dockerfile.read_text(), re.M)
    config_path = _repo_path(exporter, _flag(exporter["command"], "--config"))
    _check_exporter_config(config_path)


def test_triton_loads_the_injection_library_and_shares_the_state_directory_with_the_exporter(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    triton, exporter, inject = services["triton"], services["exporter"], services["inject"]
    assert triton["depends_on"]["inject"]["condition"] == "service_completed_successfully"
    assert inject["image"] == exporter["image"], "the library comes from the exporter's own image"
    config = config_mod.load(_repo_path(exporter, _flag(exporter["command"], "--config")), environ={})
    for volume in {source for source in _mounts(inject).values()}:
        assert volume in compose["volumes"], f"{volume} is not a named volume shared between services"
    _check_injection({k: str(v) for k, v in triton["environment"].items()}, _mounts(triton), _mounts(exporter),
                     " ".join(inject["entrypoint"]), _mounts(inject), config)
    state_dir = PurePosixPath(triton["environment"]["BLACKWELL_DISPATCH_STATE_DIR"])
    assert not [v for v in exporter["volumes"] if v.startswith(f"{_mounts(exporter)[state_dir]}:") and v.endswith(":ro")]


def test_prometheus_loads_the_generated_rules_and_reaches_the_exporter(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config_file = _repo_path(prometheus, _flag(prometheus["command"], "--config.file"))
    assert config_file == DEPLOY / "prometheus.yml"
    config = _load(config_file)

    rule_files = config.get("rule_files", [])
    assert rule_files, "the Prometheus config loads no rules"
    loaded = set()
    for pattern in rule_files:
        matches = glob.glob(str(_repo_path(prometheus, pattern)))
        assert matches, f"rule_files entry {pattern} matches no file of the repository"
        loaded |= {Path(m).resolve() for m in matches}
    assert {p.resolve() for p in (REPO / "alerts").glob("*.yaml")} <= loaded, "some generated rule files are not loaded"

    targets = [t for job in config["scrape_configs"] if job["job_name"] == MixinConfig().job
               for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert targets, f"no static scrape job named {MixinConfig().job!r} (the job the alerts select)"
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert _serves(compose, host, int(port)) and int(port) == EXPORTER_PORT, f"{target} is not the exporter"

    managers = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert managers
    for target in managers:
        host, port = target.rsplit(":", 1)
        assert host == "alertmanager" and _serves(compose, host, int(port)), f"alerts go to {target}"


def test_alertmanager_reads_the_example_config(compose: dict[str, Any]) -> None:
    alertmanager = compose["services"]["alertmanager"]
    config_file = _repo_path(alertmanager, _flag(alertmanager["command"], "--config.file"))
    assert config_file == DEPLOY / "alertmanager.yml" and config_file.is_file()


def test_grafana_provisions_prometheus_and_every_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = _repo_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == DEPLOY / "grafana" / "provisioning"

    sources = [s for f in (provisioning / "datasources").glob("*.yaml") for s in _load(f)["datasources"]]
    assert [s["type"] for s in sources] == ["prometheus"]
    url = re.fullmatch(r"http://([\w-]+):(\d+)", sources[0]["url"])
    assert url and _serves(compose, url[1], int(url[2])), f"the datasource URL {sources[0]['url']} reaches nothing"

    providers = [p for f in (provisioning / "dashboards").glob("*.yaml") for p in _load(f)["providers"]]
    assert len(providers) == 1
    folder = _repo_path(grafana, providers[0]["options"]["path"])
    assert folder == REPO / "dashboards"
    boards = sorted(folder.glob("*.json"))
    assert boards, "the provisioned folder holds no dashboards"
    for board in boards:
        variables = {v["name"]: v for v in json.loads(board.read_text())["templating"]["list"]}
        assert variables["datasource"]["query"] == sources[0]["type"], f"{board.name} picks another datasource type"


# -- Kubernetes ------------------------------------------------------------------------------

K8S = DEPLOY / "kubernetes"


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """Kind -> the one object of that kind the example ships."""
    objects = [doc for f in sorted(K8S.glob("*.yaml")) if f.name != "kustomization.yaml"
               for doc in yaml.safe_load_all(f.read_text()) if doc]
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {o["kind"]: o for o in objects}


def _containers(manifests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in manifests["Deployment"]["spec"]["template"]["spec"]["containers"]}


def _port(container: dict[str, Any], name_or_number: str | int) -> int:
    for port in container.get("ports", []):
        if name_or_number in (port.get("name"), port["containerPort"]):
            return port["containerPort"]
    raise AssertionError(f"{container['name']} has no port {name_or_number}")


def _pod_mounts(container: dict[str, Any]) -> dict[PurePosixPath, str]:
    return {PurePosixPath(m["mountPath"]): m["name"] for m in container.get("volumeMounts", [])}


def test_triton_loads_the_injection_library_from_an_init_container_and_shares_an_emptydir_with_the_sidecar(
        manifests: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    containers = _containers(manifests)
    triton, exporter = containers["triton"], containers["blackwell-exporter"]
    (init,) = pod["initContainers"]
    assert init["image"] == exporter["image"], "the library comes from the exporter's own image"
    assert init["securityContext"]["runAsNonRoot"] and not init["securityContext"]["allowPrivilegeEscalation"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    env = {e["name"]: e["value"] for e in triton["env"]}
    (tmp_path / "config.yaml").write_text(manifests["ConfigMap"]["data"]["config.yaml"])
    _check_injection(env, _pod_mounts(triton), _pod_mounts(exporter), " ".join(init["command"]), _pod_mounts(init),
                     config_mod.load(tmp_path / "config.yaml", environ={}))
    state_volume = _pod_mounts(exporter)[PurePosixPath(env["BLACKWELL_DISPATCH_STATE_DIR"])]
    assert "emptyDir" in volumes[state_volume] and "emptyDir" in volumes[_pod_mounts(init)[
        PurePosixPath(env["CUDA_INJECTION64_PATH"]).parent]]
    exporter_mount = next(m for m in exporter["volumeMounts"] if m["name"] == state_volume)
    assert not exporter_mount.get("readOnly"), "the exporter removes the files of finished processes"


def test_the_sidecar_sees_exactly_the_serving_containers_gpus_and_no_others(manifests: dict[str, dict[str, Any]]) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    containers = _containers(manifests)
    for container in [*containers.values(), *pod.get("initContainers", [])]:
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("NVIDIA_VISIBLE_DEVICES") != "all", f"{container['name']} would see every GPU of the node"
    claims = {c["name"] for c in containers["triton"]["resources"]["claims"]}
    assert claims and {c["name"] for c in containers["blackwell-exporter"]["resources"]["claims"]} == claims
    templates = {c["name"]: c["resourceClaimTemplateName"] for c in pod["resourceClaims"]}
    template = manifests["ResourceClaimTemplate"]
    assert {templates[c] for c in claims} == {template["metadata"]["name"]}
    (request,) = template["spec"]["spec"]["devices"]["requests"]
    assert request["exactly"]["deviceClassName"] == "gpu.nvidia.com" and request["exactly"]["count"] >= 1
    assert "nvidia.com/gpu" not in containers["blackwell-exporter"]["resources"].get("limits", {})


def test_kustomization_lists_every_manifest() -> None:
    listed = set(_load(K8S / "kustomization.yaml")["resources"])
    assert listed == {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_pod_runs_triton_with_the_exporter_as_sidecar(manifests: dict[str, dict[str, Any]]) -> None:
    containers = _containers(manifests)
    assert set(containers) == {"triton", "blackwell-exporter"}
    triton, exporter = containers["triton"], containers["blackwell-exporter"]
    assert int(_flag(triton["args"], "--metrics-port")) == _port(triton, TRITON_METRICS_PORT)
    assert _port(exporter, "exporter") == EXPORTER_PORT
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert exporter[probe]["httpGet"]["path"] == path
        assert _port(exporter, exporter[probe]["httpGet"]["port"]) == EXPORTER_PORT
    annotations = manifests["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == EXPORTER_PORT


def test_sidecar_runs_as_the_images_unprivileged_user(manifests: dict[str, dict[str, Any]]) -> None:
    user = re.search(r"^USER\s+(\d+)", (REPO / "Dockerfile").read_text(), re.M)
    context = _containers(manifests)["blackwell-exporter"]["securityContext"]
    assert user and context["runAsUser"] == int(user[1]) and context["runAsNonRoot"]
    assert context["readOnlyRootFilesystem"]


def test_exporter_config_comes_from_the_configmap(manifests: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    exporter = _containers(manifests)["blackwell-exporter"]
    config_path = PurePosixPath(_flag(exporter["args"], "--config"))
    mount = next(m for m in exporter["volumeMounts"] if PurePosixPath(m["mountPath"]) == config_path.parent)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = manifests["ConfigMap"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    text = configmap["data"][config_path.name]
    (tmp_path / "config.yaml").write_text(text)
    _check_exporter_config(tmp_path / "config.yaml")
    assert yaml.safe_load(text) == _load(DEPLOY / "exporter.yaml"), "the compose and Kubernetes configs drifted"


def test_service_and_servicemonitor_reach_the_exporter_port(manifests: dict[str, dict[str, Any]]) -> None:
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = manifests["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    exporter = _containers(manifests)["blackwell-exporter"]
    assert _port(exporter, ports["exporter"]["targetPort"]) == EXPORTER_PORT

    monitor = manifests["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in ports and ports[endpoint["port"]]["targetPort"] == "exporter"
    job = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    assert job == [MixinConfig().job], "the scraped job must be the one the alerts select"


# -- examples for each runtime ---------------------------------------------------------------

EXAMPLES = DEPLOY / "examples"


@pytest.mark.parametrize("script", sorted(EXAMPLES.glob("*.sh")), ids=lambda p: p.name)
def test_each_shell_example_parses_and_sets_only_variables_the_library_reads(script: Path) -> None:
    import subprocess

    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    set_here = set(re.findall(r"^export ([A-Z0-9_]+)=", text, re.M)) | set(re.findall(r"-x ([A-Z0-9_]+)", text))
    assert set_here <= _library_variables()
    if script.name != "inject.env.sh":
        assert re.search(r'^source "\$\(dirname "\$0"\)/inject.env.sh"$', text, re.M), "the library is not set up"
        assert os.access(script, os.X_OK)


def test_the_shared_setup_finds_the_library_with_inject_path_and_sets_the_state_directory() -> None:
    text = (EXAMPLES / "inject.env.sh").read_text()
    assert 'CUDA_INJECTION64_PATH="$(blackwell-exporter inject-path)"' in text
    assert {"CUDA_INJECTION64_PATH", "BLACKWELL_DISPATCH_STATE_DIR"} <= set(re.findall(r"^export ([A-Z0-9_]+)", text, re.M))


def test_the_llm_api_example_sets_the_library_before_cuda_and_guards_its_main() -> None:
    text = (EXAMPLES / "llm_api_tp2.py").read_text()
    compile(text, "llm_api_tp2.py", "exec")
    assert text.index('os.environ["CUDA_INJECTION64_PATH"]') < text.index("from tensorrt_llm import")
    assert '["blackwell-exporter", "inject-path"]' in text and 'if __name__ == "__main__":' in text
    assert "tensor_parallel_size=2" in text


def test_the_examples_readme_links_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for example in [*EXAMPLES.glob("*.sh"), *EXAMPLES.glob("*.py")]:
        if example.name != "inject.env.sh":
            assert f"]({example.name})" in readme, f"{example.name} is not listed"
    for link in re.findall(r"\]\(([^)#]+)\)", readme):
        assert (EXAMPLES / link).resolve().exists(), link
