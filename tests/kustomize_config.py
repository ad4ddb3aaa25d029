"""The ConfigMaps a kustomization's `configMapGenerator` makes, read offline as kustomize reads
its env files (one KEY=value a line, whole-line `#` comments, no quoting): what the manifest
tests of k8s/base and the Helm chart's tests share. Names are the generator's, without the hash
suffix kustomize adds (and rewrites every reference to)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION = "kustomization.yaml"


def read_kustomization(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((directory / KUSTOMIZATION).read_text())
    return loaded


def read_env_file(path: Path) -> dict[str, str]:
    data: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        # A bare KEY would take its value from the environment of whoever runs kustomize.
        assert sep, f"{path.name}: {line!r} is not KEY=value"
        data[key] = value
    return data


def generated_configmaps(directory: Path) -> list[dict[str, Any]]:
    """Every ConfigMap of the kustomization's configMapGenerator, as kustomize would make it."""
    spec = read_kustomization(directory)
    labels = spec.get("generatorOptions", {}).get("labels", {})
    out = []
    for generator in spec.get("configMapGenerator", []):
        unread = set(generator) - {"name", "envs"}
        assert not unread, f"{generator['name']}: generator fields these tests do not read: {sorted(unread)}"
        data: dict[str, str] = {}
        for env in generator.get("envs", []):
            data.update(read_env_file(directory / env))
        metadata: dict[str, Any] = {"name": generator["name"]}
        if labels:
            metadata["labels"] = dict(labels)
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    return out
