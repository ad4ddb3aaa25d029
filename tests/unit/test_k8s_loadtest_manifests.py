"""The distributed Locust run on Kubernetes (k8s/loadtest), checked offline: every object against
the bundled Kubernetes schemas, and every Locust command line against Locust's own parser with the
locustfile's arguments (in a subprocess: importing Locust monkey-patches the interpreter)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s_schema import K8S_VERSIONS, assert_valid

ROOT = Path(__file__).resolve().parents[2]
LOADTEST = ROOT / "k8s" / "loadtest"
#: Active WebSocket users one Locust worker process sustains (docs/loadtesting.md).
MAX_USERS_PER_WORKER = 2500
#: The namespaced sysctls Kubernetes deems safe (allowed by Pod Security baseline and restricted).
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}

Obj = dict[str, Any]
OBJECTS = [(p.name, doc) for p in sorted(LOADTEST.glob("*.yaml")) if p.name != "kustomization.yaml"
           for doc in yaml.safe_load_all(p.read_text()) if doc]


def _named(kind: str, name: str) -> Obj:
    [found] = [o for _, o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _pod(obj: Obj) -> Obj:
    return obj["spec"]["template"]["spec"]


def _locust_argv(job: Obj) -> list[str]:
    """The arguments after `locust -f locustfile`, from the entrypoint or the master's shell line."""
    container = _pod(job)["containers"][0]
    if container.get("command") == ["sh", "-c"]:
        line = container["args"][0].split(";")[0]
        words = shlex.split(line)
        assert words[:5] == ["python", "-m", "locust", "-f", _entry_locustfile()], line
        return words[5:]
    return list(container["args"])


def _entry_locustfile() -> str:
    entry = re.search(r"^ENTRYPOINT (\[.*\])", (LOADTEST / "Dockerfile").read_text(), re.M)
    assert entry is not None
    argv = json.loads(entry.group(1))
    assert argv[:4] == ["python", "-m", "locust", "-f"]
    return str(argv[4])


def _parse(argv: list[str]) -> dict[str, Any]:
    """Locust's own parser, with the locustfile's arguments registered, in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "import loadtests.locust.locustfile\n"
        "from locust.argument_parser import parse_options\n"
        "opts = parse_options(sys.argv[1:])\n"
        "print(json.dumps({k: v for k, v in vars(opts).items() if isinstance(v, (str, int, float, bool))}))\n")
    run = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, f"locust refuses {argv}: {run.stderr[-1500:]}"
    parsed: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return parsed


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((LOADTEST / "kustomization.yaml").read_text())
    files = {p.name for p in LOADTEST.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert [o["metadata"]["name"] for _, o in OBJECTS if o["kind"] == "Namespace"] == [kustomization["namespace"]]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("source,obj", OBJECTS, ids=[f"{f}:{o['kind']}/{o['metadata']['name']}" for f, o in OBJECTS])
def test_every_object_is_valid_for_kubernetes(source: str, obj: Obj, version: str) -> None:
    assert_valid(source, obj, version)


def test_the_image_runs_the_repositorys_locustfile() -> None:
    assert (ROOT / _entry_locustfile().removeprefix("/src/")).is_file()


def test_master_and_workers_agree_and_locust_accepts_their_command_lines() -> None:
    master = _parse(_locust_argv(_named("Job", "locust-master")))
    workers_job = _named("Job", "locust-workers")
    worker = _parse(_locust_argv(workers_job))
    assert master["master"] and master["headless"] and worker["worker"]
    pods = workers_job["spec"]["parallelism"]
    assert workers_job["spec"]["completions"] == pods == master["expect_workers"]
    assert master["num_users"] / pods <= MAX_USERS_PER_WORKER
    # Workers on several nodes: only the wall clock is shared (synchronised) between them.
    assert master["parley_clock"] == worker["parley_clock"] == "wall"
    assert master["parley_plan"] == worker["parley_plan"]
    service = _named("Service", "locust-master")
    assert worker["master_host"] == service["metadata"]["name"]
    assert worker["master_port"] == service["spec"]["ports"][0]["port"]
    assert service["spec"]["selector"].items() <= _named("Job", "locust-master")["spec"]["template"]["metadata"][
        "labels"].items()


def test_pods_run_as_non_root_and_set_only_safe_sysctls() -> None:
    for _, job in OBJECTS:
        if job["kind"] != "Job":
            continue
        pod = _pod(job)
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {s["name"] for s in pod["securityContext"].get("sysctls", [])} <= SAFE_SYSCTLS
        for container in pod["containers"]:
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]
