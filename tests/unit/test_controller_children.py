"""The shell's pure parts: the objects a run creates, and Jobs and pods read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from troupe_operator.api import (
    EXIT_PERMANENT,
    INPUT_ENV,
    AgentSpec,
    TaskInput,
    TaskReport,
    TaskResult,
    WorkflowSpec,
)
from troupe_operator.controller import children, observe
from troupe_operator.controller.config import ConfigError, OperatorConfig
from troupe_operator.workflow import JobState, PrepareRun, WorkflowRef
from troupe_operator.workflow.launch import create_task
from troupe_operator.workflow.units import Unit

RUN = WorkflowRef("team", "brief", "uid-1")
SPEC = WorkflowSpec.model_validate(
    {"tasks": [{"name": "research", "agent": "r", "prompt": "p", "timeoutSeconds": 60}]}
)
AGENT = AgentSpec.model_validate(
    {
        "role": "researcher",
        "model": {"baseURL": "http://llm/v1", "apiKeySecretRef": {"name": "openai"}},
        "resources": {"limits": {"memory": "256Mi"}},
    }
)
PREPARE = PrepareRun(RUN.spec_config_map(), SPEC, RUN.task_identity(), ("brief-x-out",))


def test_job_runs_the_task_locked_down_with_references_and_a_key_only_from_the_secret() -> None:
    action = create_task(RUN, Unit(SPEC.tasks[0].name, SPEC.tasks[0]), 2, AGENT)
    job = children.task_job(RUN, action, OperatorConfig(agent_image="img:1"))
    assert job["metadata"]["name"] == RUN.job_name("research", 2)
    [owner] = job["metadata"]["ownerReferences"]
    assert owner["uid"] == "uid-1" and owner["blockOwnerDeletion"] is True
    assert job["metadata"]["labels"]["troupe.dev/attempt"] == "2"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 60
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [EXIT_PERMANENT]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == RUN.task_identity()
    [container] = pod["containers"]
    assert container["image"] == "img:1"
    assert container["args"][:3] == ["task", "--input-env", INPUT_ENV]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"] == {"limits": {"memory": "256Mi"}, "requests": {}}
    task_input, key = container["env"]
    assert TaskInput.model_validate_json(task_input["value"]).attempt == 2
    assert key["valueFrom"]["secretKeyRef"] == {"name": "openai", "key": "api-key"}
    assert pod["volumes"][0]["configMap"]["name"] == RUN.spec_config_map()


def test_secret_inputs_reach_the_pod_only_from_their_secrets() -> None:
    spec = WorkflowSpec.model_validate(
        {
            **SPEC.to_wire(),
            "inputsFrom": [
                {"name": "token", "secretKeyRef": {"name": "creds", "key": "token"}},
                {"name": "pin", "secretKeyRef": {"name": "creds", "key": "pin"}},
            ],
        }
    )
    action = create_task(RUN, Unit(spec.tasks[0].name, spec.tasks[0]), 1, AgentSpec())
    job = children.task_job(RUN, action, OperatorConfig(), inputs_from=spec.inputs_from)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["env"][1:] == [
        {
            "name": "TROUPE_SECRET_INPUT_0",
            "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}},
        },
        {
            "name": "TROUPE_SECRET_INPUT_1",
            "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pin"}},
        },
    ]


def test_the_recorded_spec_is_immutable_and_owned_by_the_run() -> None:
    config_map = children.spec_config_map(RUN, PREPARE)
    assert config_map["immutable"] is True
    assert WorkflowSpec.model_validate_json(config_map["data"]["spec.json"]) == SPEC
    assert config_map["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_task_pods_may_touch_only_their_runs_outputs_and_never_secrets() -> None:
    role = children.role(RUN, PREPARE)
    named, create = role["rules"]
    assert named == {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["brief-x-out"],
        "verbs": ["get", "update", "patch"],
    }
    assert create == {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}
    binding = children.role_binding(RUN, PREPARE)
    assert binding["subjects"][0]["name"] == RUN.task_identity()
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def job_body(conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "brief-research-1",
            "namespace": "team",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"troupe.dev/workflow": "brief", "troupe.dev/task": "research"}
            | {"troupe.dev/attempt": "1"},
            "ownerReferences": [{"uid": "uid-1", "controller": True}],
        },
        "status": {"startTime": "2026-01-01T00:00:00Z", "conditions": conditions or [], **status},
    }


def finished(kind: str, reason: str = "") -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": "job says"}


def pod(terminated: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    states = {"terminated": terminated} if terminated else {}
    return {"status": {"containerStatuses": [{"state": states}], **status}}


REPORT = TaskReport(succeeded=True, result=TaskResult(model="m", bytes=3), preview="abc")


def test_a_job_record_keeps_only_what_observing_needs() -> None:
    record = observe.job_record(job_body(ready=1))
    assert record is not None
    assert (record.task, record.attempt, record.owner_uid, record.ready) == (
        "research",
        1,
        "uid-1",
        True,
    )
    assert not record.finished
    assert observe.job_record({"metadata": {"name": "x", "labels": {}}}) is None


@pytest.mark.parametrize(
    ("conditions", "pods", "state", "expect"),
    [
        ([], [], JobState.ACTIVE, {}),
        (
            [finished("Complete")],
            [pod({"exitCode": 0, "message": REPORT.encode()})],
            JobState.SUCCEEDED,
            {"report": REPORT},
        ),
        ([finished("Complete")], [], JobState.SUCCEEDED, {"report": None}),
        (
            [finished("Failed", "BackoffLimitExceeded")],
            [pod({"exitCode": 1, "message": "plain words from a crash"})],
            JobState.FAILED,
            {"message": "plain words from a crash", "permanent": False},
        ),
        (
            [finished("Failed", "PodFailurePolicy")],
            [pod({"exitCode": 3, "message": ""})],
            JobState.FAILED,
            {"message": "job says", "permanent": True},
        ),
        (
            [finished("Failed", "DeadlineExceeded")],
            [],
            JobState.FAILED,
            {"deadline_exceeded": True},
        ),
    ],
)
def test_jobs_and_their_pods_read_as_observations(
    conditions: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    state: JobState,
    expect: dict[str, Any],
) -> None:
    record = observe.job_record(job_body(conditions))
    assert record is not None
    job = observe.observed_job(record, observe.termination_of(pods))
    assert job.state == state
    for field, value in expect.items():
        assert getattr(job, field) == value, field


def test_a_job_names_the_agent_its_attempt_runs_on_and_reads_back_with_it() -> None:
    action = create_task(
        RUN, Unit(SPEC.tasks[0].name, SPEC.tasks[0]), 1, AGENT, agent_name="chosen.by-skill"
    )
    body = children.task_job(RUN, action, OperatorConfig(agent_image="img:1"))
    assert body["metadata"]["annotations"] == {"troupe.dev/agent": "chosen.by-skill"}
    record = observe.job_record({**job_body(), "metadata": body["metadata"]})
    assert record is not None and observe.observed_job(record).agent == "chosen.by-skill"
    assert observe.observed_job(observe.job_record(job_body()) or record).agent is None


def test_an_agents_labels_and_call_statistics_read_as_its_profile() -> None:
    calls = {"requests": 9, "errors": 1, "reportedBy": "p", "updatedAt": "2026-01-01T00:00:00Z"}
    agent = {"metadata": {"labels": {"tier": "gold"}}, "status": {"calls": calls}}
    profile = observe.agent_profile(agent)
    assert profile.labels == {"tier": "gold"}
    assert profile.calls is not None and (profile.calls.requests, profile.calls.errors) == (9, 1)
    assert observe.agent_profile({"status": {"calls": {"requests": -1}}}).calls is None
    assert observe.agent_profile({}).labels == {}


def test_a_report_stamped_on_the_output_is_read_only_for_its_own_attempt() -> None:
    stamped = {"annotations": {"troupe.dev/report": REPORT.encode(), "troupe.dev/attempt": "2"}}
    assert observe.stamped_report(stamped, 2) == (REPORT.encode(), 0)
    assert observe.stamped_report(stamped, 1) is None, "another attempt's report"
    assert observe.stamped_report({}, 1) is None


def test_pods_that_cannot_start_say_why() -> None:
    waiting = {
        "waiting": {"reason": "CreateContainerConfigError", "message": 'secret "k" not found'}
    }
    stuck = {"status": {"containerStatuses": [{"state": waiting}]}}
    problem = observe.pod_problem([stuck])
    assert problem is not None and problem.reason == "CreateContainerConfigError"
    unscheduled = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    }
    problem = observe.pod_problem([unscheduled])
    assert problem is not None and problem.since == datetime(2026, 1, 1, tzinfo=UTC)
    creating = {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}
    assert observe.pod_problem([{"status": creating}]) is None


def test_a_report_fits_a_termination_message_and_round_trips() -> None:
    report = TaskReport(
        succeeded=False,
        message="é" * 300,
        result=TaskResult(model="m" * 100),
        preview="🙂" * 200,
    )
    assert len(report.encode().encode()) <= 4096
    assert TaskReport.decode(report.encode()) == report
    assert TaskReport.decode("not json at all") is None
    assert json.loads(report.encode())["succeeded"] is False


def test_settings_come_from_the_environment_and_bad_ones_name_their_variable() -> None:
    config = OperatorConfig.from_env({"TROUPE_RESYNC_SECONDS": "7200", "TROUPE_WORKERS": "4"})
    assert config.resync_seconds == 300 and config.workers == 4
    with pytest.raises(ConfigError, match="TROUPE_API_TIMEOUT_SECONDS"):
        OperatorConfig.from_env({"TROUPE_API_TIMEOUT_SECONDS": "soon"})
    with pytest.raises(ConfigError, match="TROUPE_TASK_EVENTS"):
        OperatorConfig.from_env({"TROUPE_TASK_EVENTS": "some"})
