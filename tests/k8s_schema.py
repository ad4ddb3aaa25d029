"""Kubernetes objects against the OpenAPI schemas bundled by kubernetes-validate, offline: what
the manifest tests of k8s/base and k8s/loadtest share."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

#: The oldest Kubernetes the manifests claim to run on (k8s/README.md) and the newest schemas bundled.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())


def assert_valid(source: str, obj: dict[str, Any], version: str) -> None:
    # strict: an unknown (e.g. misspelt) field is an error, not silently dropped by the API server.
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        pytest.fail(f"{source} {obj['kind']}/{obj['metadata']['name']} at {'.'.join(map(str, err.path))}: "
                    f"{err.message}")
