"""`troupe validate`, `troupe run` and the cluster give every adversarial manifest one verdict.

The cluster is the emulator answering the real `kubectl apply` (default, strict field
validation) and the real operator judging each Workflow it admitted (`Error` is its refusal).
`troupe run` uses the offline scripted model, so an accepted entry really runs. Every refusal
must be one readable line per problem with the documented exit code, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import io
import pathlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import kubernetes
import pytest

from tests.corpus.adversarial import ENTRIES, Entry
from tests.integration.troupe_driver import Troupe
from tests.support.emulator import EmulatedCluster
from tests.support.fixtures import REPO_CRDS
from tests.support.kopf_runner import running_operator
from tests.support.kubectl import run_kubectl
from tests.support.waiting import wait_for
from troupe_operator.cli import main

MAX_LINE = 400
"""A refusal line names file, object and field and quotes at most 40 characters of a value."""


@dataclass
class Cluster:
    emulator: EmulatedCluster
    api: kubernetes.client.ApiClient
    kubeconfig: pathlib.Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One emulator and one operator for the whole corpus: each entry gets its own namespace."""
    with EmulatedCluster() as emulator:
        for crd_file in sorted(REPO_CRDS.glob("*.yaml")):
            emulator.load_crds(crd_file)
        kubeconfig = emulator.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        configuration = kubernetes.client.Configuration(host=emulator.url)
        with kubernetes.client.ApiClient(configuration) as api:
            run = functools.partial(running_operator, api_url=emulator.url)
            with Troupe(api, run).operator():
                yield Cluster(emulator, api, kubeconfig)


def _troupe(*args: str) -> tuple[int, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, (out.getvalue() + err.getvalue()).splitlines()


def _cluster_accepts(cluster: Cluster, entry: Entry, path: pathlib.Path) -> tuple[bool, str]:
    namespace = f"v{ENTRIES.index(entry)}"
    cluster.emulator.create_namespace(namespace)
    applied = run_kubectl(cluster.kubeconfig, "apply", "-n", namespace, "-f", str(path))
    if applied.returncode != 0:
        return False, applied.stderr.strip()
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    workflows = custom.list_namespaced_custom_object(
        "troupe.dev", "v1alpha1", namespace, "workflows"
    )
    for workflow in workflows["items"]:
        name = workflow["metadata"]["name"]

        def phase(name: str = name) -> str | None:
            body = custom.get_namespaced_custom_object(
                "troupe.dev", "v1alpha1", namespace, "workflows", name
            )
            return (body.get("status") or {}).get("phase")

        if wait_for(phase, timeout=60, interval=0.1, what=f"{name} to get a phase") == "Error":
            return False, f"the operator: {name} is Error"
    return True, applied.stdout.strip()


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.id for entry in ENTRIES])
def test_validate_run_and_the_cluster_agree(
    cluster: Cluster, entry: Entry, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / f"{entry.id}.yaml"
    path.write_bytes(entry.text if isinstance(entry.text, bytes) else entry.text.encode())

    validated, lines = _troupe("validate", str(path))
    assert validated in ((0,) if entry.accepted else (1, 2)), lines
    ran, run_lines = _troupe("run", str(path), "--output-dir", str(tmp_path / "out"))
    assert ran in ((0, 1) if entry.accepted else (2,)), run_lines
    accepted, said = _cluster_accepts(cluster, entry, path)
    assert accepted == entry.accepted, said

    warned = [line for line in lines + run_lines if ": warning: " in line]
    assert len(warned) == (2 if entry.warns else 0), warned
    if not entry.accepted:
        for line in lines + run_lines:
            assert "Traceback" not in line and len(line) <= MAX_LINE, line
        problems = [line for line in lines if re.search(r"\S: ", line)]
        assert problems and all(line.startswith(str(path)) for line in problems), lines
