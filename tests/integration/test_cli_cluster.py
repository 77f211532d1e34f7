"""The ``troupe`` cluster verbs as users run them: real processes against the emulator.

The operator runs in the test, each task Job as a local process of the agent runtime, the
Agents' model is the OpenAI stub. Every command is a subprocess of the installed CLI with a
kubeconfig, and every failure is checked for its one line on stderr and its documented
exit code (``docs/cli.md``).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from tests.integration.troupe_driver import GROUP, VERSION, Troupe, agent, workflow
from tests.support.emulator import EmulatedCluster
from tests.support.kube.faults import Target
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for
from troupe_operator.api.run_control import RETRY_ANNOTATION, STOP_ANNOTATION, SUSPEND_ANNOTATION
from troupe_operator.remote import exit_codes

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
MANIFEST = EXAMPLES.parent / "deploy" / "operator.yaml"
SCRIPTS = pathlib.Path(sys.executable).parent
TASKS = ("research", "plan", "write", "review")


def troupe_cli(
    kubeconfig: pathlib.Path, *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / "troupe"), *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def troupe_started(kubeconfig: pathlib.Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPTS / "troupe"), *args, "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def refused(result: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    """The exit code and the one line on stderr of a command that failed."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return result.returncode, lines[0]


def pipeline_on(stub: OpenAIStub, path: pathlib.Path) -> pathlib.Path:
    """The serial-pipeline example with every Agent's model at the stub."""
    documents = list(yaml.safe_load_all((EXAMPLES / "serial-pipeline.yaml").read_text()))
    for document in documents:
        if document["kind"] == "Agent":
            document["spec"]["model"] = {"name": "stub-model", "baseURL": stub.base_url}
        else:
            document["spec"]["retryBackoffSeconds"] = 0
    path.write_text(yaml.safe_dump_all(documents))
    return path


@pytest.fixture
def with_operator(troupe: Troupe) -> Iterator[Troupe]:
    with troupe.operator():
        yield troupe


def owner_kubeconfig(emulator: EmulatedCluster, path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig of a ServiceAccount bound, as a Tenant's owner is, to ``troupe-edit`` as
    deploy/operator.yaml ships it, and nothing else."""
    for document in yaml.safe_load_all(MANIFEST.read_text()):
        if document and document["metadata"]["name"] == "troupe-edit":
            emulator.create(document)
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "owner", "namespace": "default"},
        }
    )
    emulator.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "owner", "namespace": "default"},
            "subjects": [{"kind": "ServiceAccount", "name": "owner", "namespace": "default"}],
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "troupe-edit",
            },
        }
    )
    return emulator.write_kubeconfig(path, token=emulator.token_for("default", "owner"))


def test_submit_wait_then_output_get_list_and_logs(
    with_operator: Troupe,
    emulator: EmulatedCluster,
    openai_stub: OpenAIStub,
    tmp_path: pathlib.Path,
) -> None:
    """The whole tour as a Tenant's owner, who holds troupe-edit and nothing else."""
    kubeconfig = owner_kubeconfig(emulator, tmp_path / "owner")
    manifest = pipeline_on(openai_stub, tmp_path / "pipeline.yaml")
    submitted = troupe_cli(kubeconfig, "submit", str(manifest), "--wait")
    assert submitted.returncode == exit_codes.OK, submitted.stderr
    lines = submitted.stdout.splitlines()
    assert lines[:5] == [
        *(f"agent/{name} created" for name in ("researcher", "planner", "writer", "reviewer")),
        "workflow/launch-brief created",
    ]
    assert lines[5].startswith("launch-brief Succeeded (4/4 tasks, ")

    review = troupe_cli(kubeconfig, "output", "launch-brief", "review")
    assert review.returncode == exit_codes.OK, review.stderr
    run = with_operator.run("launch-brief")
    stored = with_operator.config_maps("launch-brief")[run.output_config_map("review")]["output"]
    assert review.stdout == stored + "\n" and stored.startswith("stub reply to:")
    assert troupe_cli(kubeconfig, "output", "launch-brief").stdout == review.stdout

    shown = troupe_cli(kubeconfig, "get", "launch-brief")
    assert shown.returncode == exit_codes.OK, shown.stderr
    assert "Phase:      Succeeded" in shown.stdout and "Progress:   4/4" in shown.stdout
    rows = {line.split()[1]: line.split() for line in shown.stdout.splitlines() if line[:1] == "✔"}
    assert list(rows) == list(TASKS)
    assert rows["plan"][2:4] == ["Succeeded", "1"] and rows["plan"][-1] == "research"
    assert all(int(row[5]) > 0 for row in rows.values())  # tokens the stub billed

    listed = troupe_cli(kubeconfig, "list")
    assert listed.stdout.splitlines()[0].split() == [
        "NAME",
        "PHASE",
        "PROGRESS",
        "TOKENS",
        "AGE",
        "DURATION",
        "MESSAGE",
    ]
    assert listed.stdout.splitlines()[1].split()[:3] == ["launch-brief", "Succeeded", "4/4"]
    assert troupe_cli(kubeconfig, "list", "--phase", "failed").stderr == (
        "No workflows found in namespace 'default'.\n"
    )

    logs = troupe_cli(kubeconfig, "logs", "launch-brief", "review")
    assert logs.returncode == exit_codes.OK, logs.stderr
    assert "review[1]: " in logs.stdout and "task launch-brief/review attempt 1" in logs.stdout
    assert "research[1]" not in logs.stdout

    again = troupe_cli(kubeconfig, "submit", str(manifest))
    assert again.stdout.count("unchanged (exists)") == 4
    code, line = refused(again)
    assert code == exit_codes.ALREADY_EXISTS and "launch-brief" in line and "already exists" in line

    plugin = kubectl_troupe(kubeconfig, tmp_path, "get", "launch-brief")
    ago = re.compile(r"\(\d+[smhd] ago\)")
    assert ago.sub("", plugin) == ago.sub("", shown.stdout)


def kubectl_troupe(kubeconfig: pathlib.Path, home: pathlib.Path, *args: str) -> str:
    """``kubectl troupe ARGS``: kubectl finds the installed plugin on PATH and runs it."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl not installed")
    environment = {"PATH": f"{SCRIPTS}{os.pathsep}{os.environ['PATH']}", "HOME": str(home)}
    result = subprocess.run(
        [binary, "troupe", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


TWO_TASKS = [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]


def make_run(
    api: kubernetes.client.ApiClient, name: str, phase: str | None, **tasks: dict[str, Any]
) -> None:
    """A Workflow no operator looks after, its status written as one would have."""
    custom = kubernetes.client.CustomObjectsApi(api)
    body = workflow(name, [dict(task) for task in TWO_TASKS])
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", "workflows", body)
    if phase is not None:
        status = {"phase": phase, "progress": "0/2", "tasks": tasks}
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", "workflows", name, {"status": status}
        )


def annotations_of(api: kubernetes.client.ApiClient, name: str) -> dict[str, str]:
    custom = kubernetes.client.CustomObjectsApi(api)
    found = custom.get_namespaced_custom_object(GROUP, VERSION, "default", "workflows", name)
    return dict(found["metadata"].get("annotations") or {})


def set_phase(api: kubernetes.client.ApiClient, name: str, phase: str) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    patch = {"status": {"phase": phase}}
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", "workflows", name, patch
    )


def test_stop_suspend_resume_retry_write_the_run_control_annotations(
    kube_api: kubernetes.client.ApiClient, kubeconfig: pathlib.Path
) -> None:
    make_run(kube_api, "busy", "Running", a={"phase": "Running", "attempts": 1})
    stopped = troupe_cli(kubeconfig, "stop", "busy", "--message", "enough  for\ttoday")
    assert (stopped.returncode, stopped.stdout) == (0, "workflow/busy stop requested\n")
    assert annotations_of(kube_api, "busy") == {STOP_ANNOTATION: "enough for today"}
    assert troupe_cli(kubeconfig, "suspend", "busy").stdout == "workflow/busy suspended\n"
    assert annotations_of(kube_api, "busy")[SUSPEND_ANNOTATION] == "true"
    assert troupe_cli(kubeconfig, "resume", "busy").stdout == "workflow/busy resumed\n"
    assert SUSPEND_ANNOTATION not in annotations_of(kube_api, "busy")
    code, line = refused(troupe_cli(kubeconfig, "resume", "busy"))
    assert (code, line) == (
        exit_codes.WRONG_PHASE,
        "troupe: cannot resume workflow 'busy': it is not suspended",
    )
    code, line = refused(troupe_cli(kubeconfig, "retry", "busy"))
    assert code == exit_codes.WRONG_PHASE and "it is Running" in line

    set_phase(kube_api, "busy", "Failed")
    retried = troupe_cli(kubeconfig, "retry", "busy")
    assert (retried.returncode, retried.stdout) == (0, "workflow/busy retry requested\n")
    first = annotations_of(kube_api, "busy")
    assert STOP_ANNOTATION not in first
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ-[0-9a-f]{8}", first[RETRY_ANNOTATION])
    troupe_cli(kubeconfig, "retry", "busy")
    assert annotations_of(kube_api, "busy")[RETRY_ANNOTATION] != first[RETRY_ANNOTATION]
    for verb in ("stop", "suspend"):
        code, line = refused(troupe_cli(kubeconfig, verb, "busy"))
        assert (code, line) == (
            exit_codes.WRONG_PHASE,
            f"troupe: cannot {verb} workflow 'busy': it has Failed",
        )


@pytest.fixture
def kubeconfigs(
    emulator: EmulatedCluster,
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: pathlib.Path,
    tmp_path: pathlib.Path,
) -> dict[str, pathlib.Path]:
    """Who runs the command: the cluster's admin, a ServiceAccount with no rights, one that
    may only read Workflows, a cluster nobody answers at, and a kubeconfig that is not there;
    with a finished run ``done`` and a running one ``busy``."""
    done = {"phase": "Succeeded", "attempts": 1}
    make_run(kube_api, "done", "Succeeded", a=done, b=done)
    make_run(kube_api, "busy", "Running", a={"phase": "Running", "attempts": 1})
    core = kubernetes.client.CoreV1Api(kube_api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_api)
    for account in ("nobody", "viewer"):
        core.create_namespaced_service_account("default", {"metadata": {"name": account}})
    verbs = ["get", "list", "watch"]
    rules = [{"apiGroups": [GROUP], "resources": ["workflows"], "verbs": verbs}]
    rbac.create_namespaced_role("default", {"metadata": {"name": "viewer"}, "rules": rules})
    subject = {"kind": "ServiceAccount", "name": "viewer", "namespace": "default"}
    role = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"}
    binding = {"metadata": {"name": "viewer"}, "subjects": [subject], "roleRef": role}
    rbac.create_namespaced_role_binding("default", binding)
    unreachable = tmp_path / "unreachable"
    unreachable.write_text(kubeconfig.read_text().replace(emulator.url, "http://127.0.0.1:9"))
    return {
        "admin": kubeconfig,
        **{
            account: emulator.write_kubeconfig(
                tmp_path / account, token=emulator.token_for("default", account)
            )
            for account in ("nobody", "viewer")
        },
        "unreachable": unreachable,
        "missing": tmp_path / "missing",
    }


NOT_FOUND = "troupe: workflow 'missing' in namespace 'default' not found"


def denied(who: str, args: tuple[str, ...], verb: str, resource: str) -> tuple[Any, ...]:
    """A case the API server's RBAC refuses, in its words."""
    says = f'User "system:serviceaccount:default:{who}" cannot {verb} resource "{resource}"'
    return who, args, exit_codes.FORBIDDEN, says


@pytest.mark.parametrize(
    ("who", "args", "code", "says"),
    [
        *(
            ("admin", (verb, "missing"), exit_codes.NOT_FOUND, NOT_FOUND)
            for verb in ("get", "output", "logs", "retry", "stop", "suspend", "resume")
        ),
        ("admin", ("wait", "missing", "--timeout", "5"), exit_codes.NOT_FOUND, NOT_FOUND),
        ("admin", ("output", "done", "nope"), exit_codes.NOT_FOUND, "has no task 'nope'"),
        ("admin", ("logs", "done", "nope"), exit_codes.NOT_FOUND, "has no task 'nope'"),
        ("admin", ("retry", "done"), exit_codes.WRONG_PHASE, "only a Failed run is retried"),
        ("admin", ("stop", "done"), exit_codes.WRONG_PHASE, "it has Succeeded"),
        ("admin", ("suspend", "done"), exit_codes.WRONG_PHASE, "it has Succeeded"),
        ("admin", ("resume", "done"), exit_codes.WRONG_PHASE, "it is not suspended"),
        ("admin", ("output", "busy"), exit_codes.WRONG_PHASE, "task 'b' has no output: it is"),
        ("admin", ("output", "busy", "a"), exit_codes.WRONG_PHASE, "has no output: it is Running"),
        (
            "admin",
            ("wait", "busy", "--timeout", "1"),
            exit_codes.TIMEOUT,
            "did not finish within 1s (it is Running, 0/2 tasks)",
        ),
        ("admin", ("submit", "--from", "nonsense"), exit_codes.USAGE, "expected workflowtemplate/"),
        ("admin", ("stop", "busy", "--message", " "), exit_codes.USAGE, "stop message is empty"),
        ("admin", ("list", "--phase", "Bogus"), exit_codes.USAGE, "expected one of Pending"),
        denied("nobody", ("get", "done"), "get", "workflows"),
        denied("nobody", ("list",), "list", "workflows"),
        denied("nobody", ("stop", "busy"), "get", "workflows"),
        denied("viewer", ("stop", "busy"), "patch", "workflows"),
        ("viewer", ("retry", "busy"), exit_codes.WRONG_PHASE, "it is Running"),
        denied("viewer", ("output", "done"), "get", "configmaps"),
        denied("viewer", ("logs", "done"), "list", "jobs"),
        (
            "unreachable",
            ("get", "done"),
            exit_codes.UNREACHABLE,
            "at http://127.0.0.1:9 (workflow 'done' in namespace 'default'): connection refused",
        ),
        ("missing", ("list",), exit_codes.USAGE, "no kubeconfig at"),
        denied("nobody", ("submit", "PIPELINE"), "create", "agents"),
        (
            "admin",
            ("submit", "PIPELINE", "-p", "colour=red"),
            exit_codes.USAGE,
            "-p colour: no Workflow submitted has that input (inputs: audience, product)",
        ),
        ("admin", ("submit", "PIPELINE", "--timeout", "5"), exit_codes.USAGE, "needs --wait"),
        ("admin", ("submit", "/nonexistent.yaml"), exit_codes.USAGE, "/nonexistent.yaml"),
    ],
)
def test_each_failure_is_one_line_and_its_exit_code(
    kubeconfigs: dict[str, pathlib.Path], who: str, args: tuple[str, ...], code: int, says: str
) -> None:
    pipeline = str(EXAMPLES / "serial-pipeline.yaml")
    result = troupe_cli(kubeconfigs[who], *(pipeline if arg == "PIPELINE" else arg for arg in args))
    assert refused(result)[0] == code, result.stderr
    assert says in result.stderr


def test_submit_checks_the_file_as_validate_does_and_creates_nothing_invalid(
    kubeconfigs: dict[str, pathlib.Path], kube_api: kubernetes.client.ApiClient
) -> None:
    pipeline = str(EXAMPLES / "serial-pipeline.yaml")
    result = troupe_cli(kubeconfigs["admin"], "submit", pipeline, "--name", "Not_A_Name")
    assert result.returncode == exit_codes.USAGE
    assert result.stderr.splitlines() == [
        f"{pipeline}: Workflow/Not_A_Name: metadata.name: must be a name of lowercase letters, "
        "digits and '-', starting and ending with a letter or digit ('.' allowed between "
        'parts), at most 253 characters, not "Not_A_Name"',
        f"troupe: {pipeline}: 1 objects invalid; nothing submitted",
    ]
    agents = kubernetes.client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
        GROUP, VERSION, "default", "agents"
    )
    assert agents["items"] == []


def test_get_of_both_runs_through_kubectl(
    kubeconfigs: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    admin = kubeconfigs["admin"]
    for name in ("done", "busy"):
        direct = troupe_cli(admin, "get", name)
        assert direct.returncode == 0, direct.stderr
        ago = re.compile(r"\(\d+[smhd] ago\)")
        assert ago.sub("", kubectl_troupe(admin, tmp_path, "get", name)) == ago.sub(
            "", direct.stdout
        )


def test_wait_survives_cut_watches_and_server_errors(
    emulator: EmulatedCluster, kube_api: kubernetes.client.ApiClient, kubeconfig: pathlib.Path
) -> None:
    make_run(kube_api, "busy", "Running", a={"phase": "Running", "attempts": 1})
    client = Target("troupe-client", verbs={"watch"})
    cuts = emulator.faults.cut_watches(client, every=0.2)
    errors = emulator.faults.watch_error(client, count=2)
    waiting = troupe_started(kubeconfig, "wait", "busy", "--timeout", "60")
    wait_for(lambda: cuts.injected >= 3 and errors.injected == 2, timeout=30, what="broken watches")
    set_phase(kube_api, "busy", "Failed")
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == exit_codes.RUN_FAILED, err
    assert out == "busy Failed (0/2 tasks, 0s, 0 tokens)\n" and err == ""


def test_submit_watch_and_logs_follow_a_run_from_its_first_task_to_its_end(
    with_operator: Troupe, kubeconfig: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    release = threading.Event()
    manifest = tmp_path / "pair.yaml"
    with OpenAIStub() as stub:
        stub.inject(Fault.held(release))  # the first task waits for its model
        documents = [agent("worker", stub.base_url), workflow("pair", [dict(t) for t in TWO_TASKS])]
        manifest.write_text(yaml.safe_dump_all(documents))
        watching = troupe_started(kubeconfig, "submit", str(manifest), "--watch")
        assert watching.stdout is not None
        created = [watching.stdout.readline(), watching.stdout.readline()]
        assert created == ["agent/worker created\n", "workflow/pair created\n"]
        following = troupe_started(kubeconfig, "logs", "pair", "-f")
        assert following.stdout is not None
        first = following.stdout.readline()
        assert first.startswith("a[1]: "), first
        release.set()
        out, err = following.communicate(timeout=90)
        watched, watch_err = watching.communicate(timeout=90)
    assert following.returncode == 0, err
    lines = [first, *out.splitlines(keepends=True)]
    assert any("task pair/a attempt 1" in line for line in lines)
    assert any(line.startswith("b[1]: ") and "task pair/b attempt 1" in line for line in lines)
    assert watching.returncode == 0, watch_err
    shown = watched.splitlines()
    for change in (
        "pair Running",
        "  a Running",
        "  a Succeeded",
        "  b Succeeded",
        "pair Succeeded",
    ):
        assert change in shown, watched
    assert (
        shown.index("  a Succeeded") < shown.index("  b Succeeded") < shown.index("pair Succeeded")
    )
    assert shown[-1].startswith("pair Succeeded (2/2 tasks, ")


def test_submit_places_objects_and_names_as_asked(
    emulator: EmulatedCluster,
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:
    emulator.create_namespace("team")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "key"},
        "stringData": {"k": "v"},
    }
    documents = [
        secret,
        agent("worker", "http://127.0.0.1:9/v1"),
        workflow("pair", [dict(t) for t in TWO_TASKS]),
    ]
    for document in documents:
        document["metadata"].pop("namespace", None)
    manifest = tmp_path / "pair.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    submitted = troupe_cli(
        kubeconfig, "submit", str(manifest), "-n", "team", "--generate-name", "-o", "name"
    )
    assert submitted.returncode == 0, submitted.stderr
    name = submitted.stdout.strip()
    assert re.fullmatch(r"pair-[a-z0-9]{5}", name), submitted.stdout
    assert submitted.stderr.splitlines() == [
        f"{manifest}: Secret/key: not submitted (troupe submit creates Workflows and their Agents; "
        "use kubectl apply for the rest)",
        "agent/worker created",
        f"workflow/{name} created",
    ]
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    assert custom.get_namespaced_custom_object(GROUP, VERSION, "team", "workflows", name)
    assert custom.get_namespaced_custom_object(GROUP, VERSION, "team", "agents", "worker")
    assert kubernetes.client.CoreV1Api(kube_api).list_namespaced_secret("team").items == []

    documents[2]["metadata"]["namespace"] = "default"
    manifest.write_text(yaml.safe_dump_all(documents[2:]))
    code, line = refused(troupe_cli(kubeconfig, "submit", str(manifest), "-n", "team"))
    assert code == exit_codes.USAGE
    assert (
        line == "troupe: Workflow/pair: its namespace 'default' does not match --namespace 'team'"
    )
