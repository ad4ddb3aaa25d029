"""The Helm chart (k8s/) renders the kustomize manifests of k8s/base and k8s/monitoring
themselves, with its values applied, offline (helm-python-sdk: Helm's Go SDK, no binary, no
cluster); and k8s/monitoring's generated objects are current with observability/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from observability import k8s as monitoring
from tests.kustomize_config import generated_configmaps, read_kustomization

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s"

Obj = dict[str, Any]


def render(values: dict[str, Any] | None = None) -> list[Obj]:
    out = helm.Chart.load(str(CHART)).render(values or {}, name="parley", namespace="chat")
    return [doc for text in out.values() for doc in yaml.safe_load_all(text) if doc]


def kustomize_objects(directory: str) -> list[Obj]:
    root = CHART / directory
    files = read_kustomization(root)["resources"]
    return [doc for name in files for doc in yaml.safe_load_all((root / name).read_text()) if doc] \
        + generated_configmaps(root)


def ids(objects: list[Obj]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def pod_templates(objects: list[Obj]) -> list[Obj]:
    return [o["spec"]["template"] for o in objects if o["kind"] in ("Deployment", "Job")]


def test_the_chart_renders_every_object_of_the_base_and_nothing_else() -> None:
    base = kustomize_objects("base")
    assert ids(render({"createNamespace": True})) == ids(base) - {("Namespace", "parley")} | {("Namespace", "chat")}
    assert ids(render()) == ids(base) - {("Namespace", "parley")}
    assert not any(o["kind"] == "NetworkPolicy" for o in render({"networkPolicies": False}))


def test_with_monitoring_it_adds_the_monitoring_objects() -> None:
    assert ids(render({"monitoring": True})) == ids(kustomize_objects("base")) - {("Namespace", "parley")} \
        | ids(kustomize_objects("monitoring"))


def test_every_rendered_object_is_valid_kubernetes() -> None:
    for obj in render({"createNamespace": True}):
        kubernetes_validate.validate(obj, kubernetes_validate.utils.latest_version(), strict=True)


def test_the_values_reach_the_objects() -> None:
    objects = render({"image": {"repository": "registry.example/parley", "tag": "9.9"},
                      "config": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"},
                      "autoscaling": {"gateway": {"maxReplicas": 40}}})
    assert all(o["metadata"]["namespace"] == "chat" for o in objects)
    images = {c["image"] for t in pod_templates(objects)
              for c in t["spec"]["containers"] + t["spec"].get("initContainers", [])}
    assert images == {"registry.example/parley:9.9"}
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "parley-config")
    assert config["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4318"
    assert config["data"]["PARLEY_KAFKA_PARTITIONS"] == "16", "the base's settings stay"
    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler" and o["metadata"]["name"] == "gateway")
    assert (hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"]) == (40, 2)


def test_the_chart_makes_the_configmaps_the_kustomization_generates_with_their_settings() -> None:
    rendered = {o["metadata"]["name"]: o for o in render() if o["kind"] == "ConfigMap"}
    for generated in generated_configmaps(CHART / "base"):
        made = rendered[generated["metadata"]["name"]]  # the plain name: the checksum rolls the pods
        assert (made["data"], made["metadata"]["labels"]) == (generated["data"], generated["metadata"]["labels"])


def test_a_settings_change_rolls_every_pod() -> None:
    def checksums(values: dict[str, Any]) -> set[str]:
        return {t["metadata"]["annotations"]["checksum/config"] for t in pod_templates(render(values))}
    before, after = checksums({}), checksums({"config": {"PARLEY_HEARTBEAT_S": "20"}})
    assert len(before) == len(after) == 1 and before != after
    assert checksums({}) == before, "the same settings keep the same pods"


@pytest.mark.parametrize("name", sorted(monitoring.rendered()))
def test_the_generated_monitoring_objects_are_current(name: str) -> None:
    assert (monitoring.OUT / name).read_text() == monitoring.rendered()[name], "run: python -m observability.k8s"
