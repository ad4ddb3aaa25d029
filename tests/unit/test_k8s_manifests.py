"""The Kubernetes base (k8s/base) and the image, checked offline: every object against the
Kubernetes OpenAPI schemas bundled by kubernetes-validate, and against Parley itself (its CLI,
roles, health routes and settings), so a manifest that drifts from the code fails here."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from parley.app import cli
from parley.config import Settings
from parley.health import add_health_routes
from parley.app.roles import ROLES
from parley.app.stores import cluster_settings
from tests.k8s_schema import K8S_VERSIONS, assert_valid
from tests.kustomize_config import KUSTOMIZATION, generated_configmaps, read_kustomization

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "k8s" / "base"
README = ROOT / "k8s" / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
CODE_DIRS = ("parley", "gateway", "chat_core", "delivery", "moderation")

Obj = dict[str, Any]


# ---- loading ------------------------------------------------------------------------------

def _load(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resources() -> list[tuple[str, Obj]]:
    return [(p.name, doc) for p in sorted(BASE.glob("*.y*ml")) if p.name != KUSTOMIZATION for doc in _load(p)]


def _objects() -> list[tuple[str, Obj]]:
    """The resources and the ConfigMaps the kustomization generates (names without their hash)."""
    return _resources() + [(f"{KUSTOMIZATION}:configMapGenerator", o) for o in generated_configmaps(BASE)]


OBJECTS = _objects()


def _of_kind(kind: str) -> list[Obj]:
    return [o for _, o in OBJECTS if o["kind"] == kind]


def _named(kind: str, name: str) -> Obj:
    found = [o for o in _of_kind(kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _pod_spec(obj: Obj) -> Obj:
    return obj["spec"]["template"]["spec"]


def _workloads() -> list[Obj]:
    return _of_kind("Deployment") + _of_kind("Job")


def _containers(obj: Obj) -> Iterator[Obj]:
    spec = _pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def _id(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _config() -> dict[str, str]:
    return dict(_named("ConfigMap", "parley-config")["data"])


def _parse_args(container: Obj) -> Any:
    """The container's command line through parley's own parser (the image's entrypoint is
    `parley`, see test_the_image_runs_parley_as_a_non_root_user)."""
    assert container.get("command", ["parley"]) == ["parley"], f"{container['name']}: command must be parley"
    try:
        return cli._parser().parse_args(container.get("args", []))
    except SystemExit:
        pytest.fail(f"{container['name']}: `parley {' '.join(container.get('args', []))}` is not a parley command")


def _deployment_of_role(role: str) -> Obj:
    found = [d for d in _of_kind("Deployment") if _parse_args(_pod_spec(d)["containers"][0]).role == role]
    assert len(found) == 1, f"expected one Deployment running `parley run {role}`, found {len(found)}"
    return found[0]


# ---- what parley itself says --------------------------------------------------------------

def _health_paths() -> set[str]:
    """The paths parley.health registers, read from an application it set up."""
    app = web.Application()

    async def ready() -> dict[str, bool]:
        return {}
    add_health_routes(app, ready)
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def _settings_env() -> set[str]:
    """Environment variables Parley reads: the names in the first column of the settings table
    in docs/operations.md, and for PARLEY_* names only those the code actually mentions (so a
    typo in the docs is not enough to make a manifest's typo pass)."""
    text = OPERATIONS.read_text()
    table = text.split("## Configuration (environment)", 1)[1].split("\n## ", 1)[0]
    documented = {name for line in table.splitlines() if line.startswith("| `")
                  for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])}
    code = "\n".join(p.read_text() for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))
    return {n for n in documented if not n.startswith("PARLEY_") or f'"{n}"' in code}


def _consumer_roles() -> set[str]:
    """Roles that join a Kafka consumer group: a replica beyond the partition count idles."""
    return {role for role, build in ROLES.items() if "_consumer(" in inspect.getsource(build)}


def _partitions() -> int:
    return int(_config().get("PARLEY_KAFKA_PARTITIONS", Settings.kafka_partitions))


# ---- structure ----------------------------------------------------------------------------

def test_kustomization_lists_every_manifest_in_the_base() -> None:
    kustomization = yaml.safe_load((BASE / KUSTOMIZATION).read_text())
    files = {p.name for p in BASE.iterdir() if p.suffix in (".yaml", ".yml") and p.name != KUSTOMIZATION}
    assert sorted(kustomization["resources"]) == sorted(files)
    # One namespace for everything, and it is the one the base creates.
    assert [o["metadata"]["name"] for o in _of_kind("Namespace")] == [kustomization["namespace"]]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("source,obj", OBJECTS, ids=[f"{f}:{_id(o)}" for f, o in OBJECTS])
def test_every_object_is_valid_for_kubernetes(source: str, obj: Obj, version: str) -> None:
    assert_valid(source, obj, version)


def test_names_are_unique_per_kind() -> None:
    keys = [(o["kind"], o["metadata"]["name"]) for _, o in OBJECTS]
    assert len(keys) == len(set(keys))


# ---- commands, ports, probes --------------------------------------------------------------

def test_every_role_has_exactly_one_deployment_running_it() -> None:
    deployed = sorted(_parse_args(_pod_spec(d)["containers"][0]).role for d in _of_kind("Deployment"))
    assert deployed == sorted(ROLES)


def test_every_container_runs_a_real_parley_command() -> None:
    for workload in _workloads():
        for container in _containers(workload):
            args = _parse_args(container)
            if container in _pod_spec(workload).get("initContainers", []):
                assert args.command == "migrate" and args.wait, f"{_id(workload)} {container['name']}"
            elif workload["kind"] == "Deployment":
                assert args.command == "run" and args.role in ROLES, _id(workload)
                # The default 127.0.0.1 cannot be reached by the kubelet's probes or the Service.
                assert args.host not in ("127.0.0.1", "localhost", "::1"), _id(workload)
            else:
                assert args.command == "migrate", _id(workload)


def test_probes_hit_the_health_routes_on_the_port_the_role_serves() -> None:
    paths = _health_paths()
    assert {"/healthz", "/readyz"} <= paths
    for deployment in _of_kind("Deployment"):
        for container in _pod_spec(deployment)["containers"]:
            served = _parse_args(container).port
            ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
            assert served in ports.values(), f"{_id(deployment)}: --port {served} is not a containerPort"
            expected = {"livenessProbe": "/healthz", "startupProbe": "/healthz", "readinessProbe": "/readyz"}
            for probe_name, path in expected.items():
                if probe_name == "startupProbe" and probe_name not in container:
                    continue
                probe = container[probe_name]["httpGet"]
                assert probe["path"] == path, f"{_id(deployment)} {probe_name}"
                port = ports.get(probe["port"], probe["port"])  # a port name or a number
                assert port == served, f"{_id(deployment)} {probe_name} probes {port}, the role serves {served}"


def test_the_service_reaches_the_gateway_port() -> None:
    service = _named("Service", "gateway")
    gateway = _deployment_of_role("gateway")
    container = _pod_spec(gateway)["containers"][0]
    names = {p.get("name") for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in names
    # Clients reconnect anywhere and `sync`: no affinity (k8s/README.md).
    assert service["spec"].get("sessionAffinity", "None") == "None"


# ---- environment and configuration --------------------------------------------------------

def test_every_environment_variable_is_a_parley_setting() -> None:
    known = _settings_env()
    assert "PARLEY_KAFKA_BOOTSTRAP" in known  # the table was found and read
    unknown = {k for k in _config() if k not in known}
    assert not unknown, f"parley-config sets variables Parley does not read: {sorted(unknown)}"
    for workload in _workloads():
        for container in _containers(workload):
            names = {e["name"] for e in container.get("env", [])}
            assert not names - known, f"{_id(workload)}: unknown variables {sorted(names - known)}"


def _settings_of_config(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What a pod's parley reads from `parley-config` alone."""
    for name in _settings_env():
        monkeypatch.delenv(name, raising=False)
    for name, value in _config().items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def test_the_config_is_accepted_by_parley(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_of_config(monkeypatch)
    assert settings.store == "cassandra"
    cluster_settings(settings)  # hosts, keyspace and datacenter are well formed
    assert settings.s3 is not None, "attachments must go to S3: pods have no shared disk"


def test_kafka_topics_survive_a_brokers_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """acks=all loses nothing acknowledged to one broker's loss only if every record is on two
    brokers (min ISR >= 2), and keeps publishing through it only if a third copy remains."""
    settings = _settings_of_config(monkeypatch)
    assert settings.kafka_min_insync_replicas is not None and settings.kafka_min_insync_replicas >= 2
    assert settings.kafka_replication_factor > settings.kafka_min_insync_replicas


def _configmaps_read(obj: Obj) -> set[str]:
    """The ConfigMaps a workload's pods read: as variables (envFrom, env) or as volumes."""
    names = {v["configMap"]["name"] for v in _pod_spec(obj).get("volumes", []) if "configMap" in v}
    for container in _containers(obj):
        names |= {s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s}
        names |= {e["valueFrom"]["configMapKeyRef"]["name"] for e in container.get("env", [])
                  if "configMapKeyRef" in e.get("valueFrom", {})}
    return names


def test_every_configmap_the_pods_read_is_generated_so_a_change_rolls_them() -> None:
    """A plain ConfigMap changes under running pods, which read it once, at start; a generated
    one gets a new name, so the pod templates that name it change and the pods roll."""
    spec = read_kustomization(BASE)
    generated = {o["metadata"]["name"] for o in generated_configmaps(BASE)}
    assert not spec.get("generatorOptions", {}).get("disableNameSuffixHash")
    assert not any(g.get("options", {}).get("disableNameSuffixHash") for g in spec["configMapGenerator"])
    read = set().union(*(_configmaps_read(w) for w in _workloads()))
    assert "parley-config" in read and read <= generated, f"not generated: {sorted(read - generated)}"


def _kustomize_build(base: Path) -> list[Obj]:
    out = subprocess.run(["kubectl", "kustomize", str(base)], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (its built-in kustomize)")
def test_kustomize_names_the_settings_by_their_hash_in_every_pod_template(tmp_path: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(BASE, base)

    def templates_and_names() -> tuple[dict[str, Obj], dict[str, str]]:
        built = _kustomize_build(base)
        names = {o["metadata"]["name"].rsplit("-", 1)[0]: o["metadata"]["name"]
                 for o in built if o["kind"] == "ConfigMap"}
        return {_id(o): o["spec"]["template"] for o in built if o["kind"] in ("Deployment", "Job")}, names

    before, names = templates_and_names()
    assert names["parley-config"] != "parley-config", "the name carries a hash of the settings"
    for workload, template in before.items():
        read = _configmaps_read({"spec": {"template": template}})
        assert read and read <= set(names.values()), f"{workload} reads {sorted(read)}, not the generated ones"
    with (base / "config.env").open("a") as env:
        env.write("PARLEY_HEARTBEAT_S=20\n")
    after, _ = templates_and_names()
    assert all(after[w] != before[w] for w in before), "a changed setting changes every pod template"


def test_every_configmap_and_secret_referenced_exists_or_is_documented() -> None:
    configmaps = {o["metadata"]["name"] for o in _of_kind("ConfigMap")}
    secrets = {o["metadata"]["name"] for o in _of_kind("Secret")}
    readme = README.read_text()
    for workload in _workloads():
        for container in _containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, _id(workload)
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets | set(re.findall(r"`([a-z0-9-]+)`", readme))
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["name"] in configmaps, _id(workload)
                if "secretKeyRef" in ref:
                    name, key = ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
                    if name not in secrets:  # operator-provided: k8s/README.md names it and its key
                        assert f"`{name}`" in readme and f"`{key}`" in readme, \
                            f"{_id(workload)}: Secret {name} key {key} is neither in the base nor in k8s/README.md"


def test_every_pod_uses_the_service_account_of_the_base() -> None:
    accounts = {o["metadata"]["name"] for o in _of_kind("ServiceAccount")}
    for workload in _workloads():
        assert _pod_spec(workload).get("serviceAccountName") in accounts, _id(workload)


def test_no_secret_values_are_shipped() -> None:
    assert not _of_kind("Secret"), "the operator creates parley-secrets; the base only references it"
    assert "PARLEY_JWT_SECRET" not in _config()


def test_gateways_share_the_signing_key_and_are_named_after_their_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    container = _pod_spec(_deployment_of_role("gateway"))["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["PARLEY_GATEWAY_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    monkeypatch.setenv("PARLEY_GATEWAY_ID", "gateway-7d9f-abcde")
    assert Settings.from_env().gateway_id == "gateway-7d9f-abcde"  # parley does read it
    # Without it each gateway would generate its own key: tokens would work on one pod only.
    secret = env["PARLEY_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert not secret.get("optional", False)


# ---- labels and selectors -----------------------------------------------------------------

def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pods_selected(selector: dict[str, str]) -> list[str]:
    return [d["metadata"]["name"] for d in _workloads()
            if _selects(selector, d["spec"]["template"]["metadata"]["labels"])]


def test_deployment_selectors_match_their_pods() -> None:
    for deployment in _of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(deployment["spec"]["selector"]["matchLabels"], labels), _id(deployment)
        for spread in _pod_spec(deployment).get("topologySpreadConstraints", []):
            assert _selects(spread["labelSelector"]["matchLabels"], labels), _id(deployment)


def test_services_and_budgets_select_exactly_one_deployment() -> None:
    for service in _of_kind("Service"):
        assert len(_pods_selected(service["spec"]["selector"])) == 1, _id(service)
    for pdb in _of_kind("PodDisruptionBudget"):
        assert len(_pods_selected(pdb["spec"]["selector"]["matchLabels"])) == 1, _id(pdb)
    covered = {name for pdb in _of_kind("PodDisruptionBudget")
               for name in _pods_selected(pdb["spec"]["selector"]["matchLabels"])}
    assert covered == {d["metadata"]["name"] for d in _of_kind("Deployment")}, "every Deployment has a PDB"


def test_autoscalers_target_deployments_that_leave_replicas_to_them() -> None:
    for hpa in _of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        deployment = _named("Deployment", target["name"])
        # A replicas field would be reset on every `kubectl apply`, fighting the autoscaler.
        assert "replicas" not in deployment["spec"], _id(deployment)
        assert hpa["spec"]["minReplicas"] >= 2, "one replica leaves nothing during a restart"
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in _of_kind("HorizontalPodAutoscaler")}
    for role in ("gateway", "delivery"):
        assert _deployment_of_role(role)["metadata"]["name"] in scaled, f"{role} has no autoscaler"


def test_consumer_groups_never_outnumber_the_partitions() -> None:
    roles = _consumer_roles()
    assert roles == {"chat-core", "delivery", "calls", "push"}  # the derivation still sees what it should
    partitions = _partitions()
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in _of_kind("HorizontalPodAutoscaler")}
    for role in roles:
        deployment = _deployment_of_role(role)
        name = deployment["metadata"]["name"]
        most = hpas[name]["spec"]["maxReplicas"] if name in hpas else deployment["spec"].get("replicas", 1)
        assert most <= partitions, f"{name}: up to {most} replicas for {partitions} partitions"


# ---- resources, security, shutdown --------------------------------------------------------

_UNITS = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _quantity(value: str | int) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value)).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def test_every_container_has_requests_and_limits() -> None:
    for workload in _workloads():
        for container in _containers(workload):
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request and limit, f"{_id(workload)} {container['name']}: {resource} request and limit"
                assert _quantity(request) <= _quantity(limit), f"{_id(workload)} {resource}"


def test_every_pod_runs_as_non_root_without_capabilities() -> None:
    uid = int(re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M).group(1))  # type: ignore[union-attr]
    for workload in _workloads():
        pod = _pod_spec(workload)
        assert pod.get("automountServiceAccountToken") is False, _id(workload)
        for container in _containers(workload):
            ctx = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            assert ctx.get("runAsNonRoot") is True, _id(workload)
            assert ctx.get("runAsUser", uid) == uid, f"{_id(workload)}: not the image's user"
            assert ctx.get("allowPrivilegeEscalation") is False, _id(workload)
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], _id(workload)
            # Every role can: with Cassandra and S3 nothing is written to the data dir.
            assert ctx.get("readOnlyRootFilesystem") is True, _id(workload)
            assert ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", _id(workload)


def test_shutdown_has_time_to_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_of_config(monkeypatch)
    for deployment in _of_kind("Deployment"):
        assert "terminationGracePeriodSeconds" in _pod_spec(deployment), _id(deployment)
    gateway = _pod_spec(_deployment_of_role("gateway"))
    container = gateway["containers"][0]
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep", "the gateway must keep serving until the Service has dropped it"
    # After the sleep: tell sessions 4009 and drain, then the server's own shutdown.
    assert gateway["terminationGracePeriodSeconds"] >= (int(sleep[1]) + settings.limits.drain_timeout_s
                                                        + settings.shutdown_timeout_s)
    assert gateway.get("topologySpreadConstraints"), "gateways spread over zones and nodes"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_role_waits_for_the_schema_before_it_starts(role: str) -> None:
    """An init container runs `parley migrate --wait` as the role would reach the store: same
    image, settings and Cassandra credentials, same security context; it changes nothing."""
    pod = _pod_spec(_deployment_of_role(role))
    main = pod["containers"][0]
    (init,) = pod.get("initContainers", [])
    args = _parse_args(init)
    assert args.command == "migrate" and args.wait and not args.check
    assert 60 <= args.timeout <= 900, "long enough for the Job, short enough to surface a stuck one"
    assert init["image"] == main["image"]
    assert init["envFrom"] == main["envFrom"]
    store_env = [e for e in main.get("env", []) if e["name"].startswith("PARLEY_CASSANDRA_")]
    assert store_env and init.get("env") == store_env
    assert init["securityContext"] == main["securityContext"]
    assert init["volumeMounts"] == main["volumeMounts"]
    # Small: init containers run before the main one, so these never add to the pod's request.
    assert _quantity(init["resources"]["requests"]["cpu"]) <= _quantity(main["resources"]["requests"]["cpu"])
    assert _quantity(init["resources"]["requests"]["memory"]) <= _quantity(main["resources"]["requests"]["memory"])


def test_the_migration_job_runs_once_at_a_time() -> None:
    job = _named("Job", "parley-migrate")
    assert job["spec"].get("parallelism", 1) == 1 and job["spec"].get("completions", 1) == 1
    assert _pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")


# ---- the image ----------------------------------------------------------------------------

def test_the_image_runs_parley_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert re.search(r"^RUN .*pip install \.$", dockerfile, re.M)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and not user[-1].startswith(("0", "root")), "the last USER must not be root"
    assert re.search(r'^ENTRYPOINT \["parley"\]$', dockerfile, re.M)


def test_the_build_context_has_the_package_but_no_dev_files() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for dev in ("tests", ".git", ".venv", "docs", "k8s"):
        assert dev in patterns
    # What `pip install .` needs: pyproject.toml, the readme it names, every package it finds.
    needed = {"pyproject.toml", "README.md", *CODE_DIRS}
    assert not needed & set(patterns)
