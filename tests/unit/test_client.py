"""The client's pure parts: run-control patches, submissions, errors, watching, outputs,
conditional writes, and what the cluster verbs print and exit with."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from troupe import control, outputs, runs, submission
from troupe.errors import (
    AlreadyExists,
    Conflict,
    Expired,
    Forbidden,
    InvalidRequest,
    NotFound,
    TroupeError,
    Unreachable,
    WaitTimeout,
    WrongPhase,
    from_status,
)
from troupe.kube import Body, Kube
from troupe.watching import GIVE_UP_SECONDS, follow
from troupe_operator.api.run_control import (
    MAX_STOP_MESSAGE_CHARS,
    RETRY_ANNOTATION,
    STOP_ANNOTATION,
    SUSPEND_ANNOTATION,
    is_suspended,
    new_retry_nonce,
    resume_patch,
    retry_patch,
    stop_patch,
    stop_requested,
    suspend_patch,
)
from troupe_operator.remote import exit_codes
from troupe_operator.remote.views import age, as_data, changes, list_view, run_view, summary_line

NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)


def annotations(patch: dict[str, Any]) -> dict[str, Any]:
    assert set(patch) == {"metadata"} and set(patch["metadata"]) == {"annotations"}
    return dict(patch["metadata"]["annotations"])


# Run control: the contract the operator reads.


def test_each_request_is_a_merge_patch_of_annotations_only() -> None:
    assert annotations(stop_patch("  out of\nbudget ")) == {STOP_ANNOTATION: "out of budget"}
    assert annotations(suspend_patch()) == {SUSPEND_ANNOTATION: "true"}
    assert annotations(resume_patch()) == {SUSPEND_ANNOTATION: None}
    assert annotations(retry_patch("n1")) == {RETRY_ANNOTATION: "n1", STOP_ANNOTATION: None}
    assert (STOP_ANNOTATION, SUSPEND_ANNOTATION, RETRY_ANNOTATION) == (
        "troupe.dev/stop",
        "troupe.dev/suspend",
        "troupe.dev/retry",
    )
    with pytest.raises(ValueError, match="empty"):
        stop_patch(" \t")
    with pytest.raises(ValueError, match=f"at most {MAX_STOP_MESSAGE_CHARS}"):
        stop_patch("x" * (MAX_STOP_MESSAGE_CHARS + 1))


def test_retry_nonces_are_fresh_and_requests_read_back() -> None:
    first, second = new_retry_nonce(NOW), new_retry_nonce(NOW)
    assert first.startswith("2025-03-01T12:00:30Z-") and first != second
    assert is_suspended({SUSPEND_ANNOTATION: "true"}) and not is_suspended(None)
    assert stop_requested({STOP_ANNOTATION: "why"}) == "why" and stop_requested({}) is None


@pytest.mark.parametrize(
    ("phase", "asked", "answered", "finished"),
    [
        ("Failed", None, None, True),
        ("Failed", "n2", "n1", False),  # retried, the operator has not answered yet
        ("Failed", "n2", "n2", True),  # answered: failed again, or the retry was refused
        ("Succeeded", "n1", None, False),
        ("Running", None, None, False),
    ],
)
def test_a_run_is_not_finished_while_a_retry_waits_for_its_answer(
    phase: str, asked: str | None, answered: str | None, finished: bool
) -> None:
    workflow = {
        "metadata": {"annotations": {RETRY_ANNOTATION: asked} if asked else {}},
        "status": {"phase": phase, "retryRequest": answered},
    }
    assert runs.finished(workflow) is finished


# Submissions.


@pytest.mark.parametrize(
    ("reference", "name"),
    [("workflowtemplate/report", "report"), ("template/a.b", "a.b"), ("WorkflowTemplate/x", "x")],
)
def test_template_references(reference: str, name: str) -> None:
    assert submission.template_name(reference) == name


@pytest.mark.parametrize(
    "reference", ["report", "cronworkflow/x", "template/", "template/Bad_Name"]
)
def test_bad_template_references(reference: str) -> None:
    with pytest.raises(InvalidRequest, match="--from"):
        submission.template_name(reference)


def test_a_workflow_from_a_template_holds_only_the_reference_and_inputs() -> None:
    assert submission.from_template("report", {"topic": "x"}, "team") == {
        "apiVersion": "troupe.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "report-", "namespace": "team"},
        "spec": {"workflowTemplateRef": {"name": "report"}, "inputs": {"topic": "x"}},
    }
    assert "inputs" not in submission.from_template("report", {})["spec"]


def test_parameters_set_declared_inputs_and_refuse_others() -> None:
    assert submission.parse_params(["a=1", "b=x=y", "a=2"]) == {"a": "2", "b": "x=y"}
    with pytest.raises(InvalidRequest, match="expected name=value"):
        submission.parse_params(["novalue"])
    one = {"metadata": {"name": "one"}, "spec": {"inputs": {"a": "0"}, "tasks": []}}
    two = {"metadata": {"name": "two"}, "spec": {"inputs": {"b": "0"}, "tasks": []}}
    updated = submission.with_inputs([one, two], {"a": "1"})
    assert [w["spec"]["inputs"] for w in updated] == [{"a": "1"}, {"b": "0"}]
    assert one["spec"]["inputs"] == {"a": "0"}  # copies, the input untouched
    with pytest.raises(
        InvalidRequest, match=r"-p c: no Workflow submitted has that input \(inputs: a, b\)"
    ):
        submission.with_inputs([one, two], {"c": "1"})


def test_names_given_generated_and_judged_as_generated() -> None:
    run = {"metadata": {"name": "brief"}, "spec": {}}
    assert submission.named(run, name="other")["metadata"] == {"name": "other"}
    generated = submission.named(run, generate=True)
    assert generated["metadata"] == {"generateName": "brief-"}
    assert submission.as_generated(generated)["metadata"]["name"] == "brief-xxxxx"
    assert submission.as_generated(run) is run


# Errors and exit codes.


def status_body(reason: str, message: str) -> str:
    return json.dumps({"kind": "Status", "reason": reason, "message": message})


@pytest.mark.parametrize(
    ("status", "body", "kind", "line"),
    [
        (404, status_body("NotFound", 'w "x" not found'), NotFound, "workflow 'x' not found"),
        (
            404,
            status_body("NotFound", "the server could not find the requested resource"),
            NotFound,
            "the server could not find the requested resource: is Troupe installed",
        ),
        (403, status_body("Forbidden", "no, you may not"), Forbidden, "no, you may not"),
        (401, "", Forbidden, "workflow 'x': unauthorized"),
        (409, status_body("AlreadyExists", "it is there"), AlreadyExists, "it is there"),
        (409, status_body("Conflict", "changed"), Conflict, "changed"),
        (410, status_body("Expired", "too old"), Expired, "too old"),
        (422, status_body("Invalid", "spec.tasks: Required"), InvalidRequest, "spec.tasks"),
        (503, "not json", Unreachable, "answered 503 for workflow 'x': no message"),
        (429, status_body("TooManyRequests", "slow down"), Unreachable, "slow down"),
        (418, status_body("Teapot", "short and stout"), TroupeError, "418"),
    ],
)
def test_answers_become_errors_of_their_kind(
    status: int, body: str, kind: type[TroupeError], line: str
) -> None:
    error = from_status(status, body, "workflow 'x'")
    assert type(error) is kind and line in str(error) and "\n" not in str(error)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRequest("x"), 2),
        (NotFound("x"), 3),
        (Forbidden("x"), 4),
        (WrongPhase("x"), 5),
        (WaitTimeout("x"), 6),
        (Unreachable("x"), 7),
        (AlreadyExists("x"), 8),
        (Conflict("x"), 1),
        (TroupeError("x"), 1),
    ],
)
def test_exit_codes(error: TroupeError, code: int) -> None:
    assert exit_codes.exit_code(error) == code


# A scripted API for the client's logic.


class FakeKube:
    """Answers ``get`` and ``stream`` from scripts: objects, lists of watch events, or errors."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.patches: list[Body] = []
        self.calls: list[str] = []

    def _next(self, call: str) -> Any:
        self.calls.append(call)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def get(self, path: str, what: str, query: Any = None) -> Body:
        return cast(Body, self._next("get"))

    def merge_patch(self, path: str, patch: Body, what: str) -> Body:
        self.patches.append(patch)
        return cast(Body, self._next("patch"))

    @contextlib.contextmanager
    def stream(self, path: str, what: str, query: Any, idle: float) -> Iterator[Iterator[bytes]]:
        events = self._next(f"watch from {query['resourceVersion']}")
        yield iter(json.dumps(event).encode() for event in events)


def run(version: str, phase: str = "Running", **extra: Any) -> Body:
    return {
        "metadata": {"name": "r", "resourceVersion": version},
        "status": {"phase": phase},
        **extra,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_watch_resumes_after_cuts_errors_and_410_without_repeating_a_version() -> None:
    kube = FakeKube(
        run("1"),
        [{"type": "BOOKMARK", "object": run("2")}, {"type": "MODIFIED", "object": run("3")}],
        Unreachable("the stream broke"),
        [{"type": "ERROR", "object": {"code": 410, "message": "too old"}}],
        run("3"),  # read anew after the 410: the version already seen is not repeated
        [{"type": "MODIFIED", "object": run("4", "Succeeded")}],
    )
    clock = Clock()
    seen = follow(
        cast(Kube, kube), "/c", "r", "run r", deadline=100, clock=clock, sleep=clock.sleep
    )
    versions = []
    for obj in seen:
        versions.append(obj["metadata"]["resourceVersion"])
        if obj["status"]["phase"] == "Succeeded":
            break
    assert versions == ["1", "3", "4"]
    assert kube.calls == [
        "get",
        "watch from 1",
        "watch from 3",
        "watch from 3",
        "get",
        "watch from 3",
    ]
    assert clock.slept == [0.2]


def test_a_watch_gives_up_only_after_a_minute_without_answers_and_sees_deletion() -> None:
    clock = Clock()
    failing = FakeKube(run("1"), *[Unreachable("refused")] * 20)
    seen = follow(cast(Kube, failing), "/c", "r", "run r", clock=clock, sleep=clock.sleep)
    assert next(seen)["metadata"]["resourceVersion"] == "1"
    with pytest.raises(Unreachable, match="refused"):
        next(seen)
    assert GIVE_UP_SECONDS < clock.now < GIVE_UP_SECONDS + 10 and max(clock.slept) == 5.0
    deleted = FakeKube(run("1"), [{"type": "DELETED", "object": run("2")}])
    seen = follow(cast(Kube, deleted), "/c", "r", "run r")
    next(seen)
    with pytest.raises(NotFound, match="run r was deleted"):
        next(seen)


def test_requests_are_conditional_on_the_version_read_and_retried_on_conflict() -> None:
    kube = FakeKube(
        run("1"), Conflict("changed"), run("2"), Conflict("changed"), run("3"), run("4")
    )
    control.suspend(cast(Kube, kube), "/w/r", "run r")
    assert [p["metadata"]["resourceVersion"] for p in kube.patches] == ["1", "2", "3"]
    assert kube.patches[-1]["metadata"]["annotations"] == {SUSPEND_ANNOTATION: "true"}
    finished = FakeKube(run("1", "Failed"))
    with pytest.raises(WrongPhase, match="cannot suspend workflow 'r': it has Failed"):
        control.suspend(cast(Kube, finished), "/w/r", "run r")
    assert finished.patches == []
    endless = FakeKube(*[run("1"), Conflict("changed")] * control.CONFLICT_ATTEMPTS)
    with pytest.raises(Conflict, match="changed 5 times"):
        control.stop(cast(Kube, endless), "/w/r", "run r", "why")


# Outputs.


def with_tasks(**tasks: Body) -> Body:
    return {"metadata": {"name": "r", "namespace": "ns", "uid": "u"}, "status": {"tasks": tasks}}


DONE = {"phase": "Succeeded"}


@pytest.mark.parametrize(
    ("tasks", "task", "units"),
    [
        ({"a": DONE}, "a", ["a"]),
        ({"a": {**DONE, "items": 3}}, "a", ["a.0", "a.1", "a.2"]),
        ({"a": {**DONE, "resultOf": "a.judge"}, "a.judge": DONE}, "a", ["a.judge"]),
        ({"a": DONE, "a.1": DONE}, "a.1", ["a.1"]),
    ],
)
def test_which_units_make_a_tasks_output(
    tasks: dict[str, Body], task: str, units: list[str]
) -> None:
    assert outputs.output_units(with_tasks(**tasks), task) == units


def test_a_task_without_output_says_why() -> None:
    workflow = with_tasks(a={"phase": "Skipped", "reason": "ConditionFalse"})
    with pytest.raises(
        WrongPhase, match=r"task 'a' has no output: it is Skipped \(ConditionFalse\)"
    ):
        outputs.output_units(workflow, "a")
    with pytest.raises(NotFound, match=r"workflow 'r' has no task 'b' \(tasks: a\)"):
        outputs.output_units(workflow, "b")
    from_template = {**with_tasks(), "spec": {"workflowTemplateRef": {"name": "t"}}}
    with pytest.raises(WrongPhase, match="workflow 'r' has not started: it has no output yet"):
        outputs.outputs(cast(Kube, FakeKube()), from_template)


# Views.

RUN: Body = {
    "metadata": {"name": "brief", "namespace": "team", "creationTimestamp": "2025-03-01T12:00:00Z"},
    "spec": {
        "tasks": [
            {"name": "research"},
            {"name": "topics", "dependsOn": ["research"]},
            {"name": "review", "dependsOn": ["research", "topics"]},
        ]
    },
    "status": {
        "phase": "Running",
        "progress": "2/4",
        "startedAt": "2025-03-01T12:00:01Z",
        "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42},
        "tasks": {
            "research": {
                "phase": "Succeeded",
                "attempts": 2,
                "startedAt": "2025-03-01T12:00:01Z",
                "finishedAt": "2025-03-01T12:00:05Z",
                "usage": {"totalTokens": 42},
            },
            "topics": {"phase": "Running", "items": 11, "startedAt": "2025-03-01T12:00:05Z"},
            "topics.2": {"phase": "Running", "attempts": 1, "startedAt": "2025-03-01T12:00:06Z"},
            "topics.10": {"phase": "Failed", "attempts": 1, "message": "model said 401\nbad key"},
            "review": {"phase": "Pending"},
        },
    },
}


def test_get_shows_the_run_then_its_tasks_as_a_tree() -> None:
    assert run_view(RUN, NOW) == "\n".join(
        [
            "Name:       brief",
            "Namespace:  team",
            "Phase:      Running",
            "Progress:   2/4",
            "Created:    2025-03-01T12:00:00Z (30s ago)",
            "Started:    2025-03-01T12:00:01Z",
            "Duration:   29s",
            "Tokens:     42 (input 30, output 12)",
            "",
            "TASK            PHASE       ATTEMPTS   DURATION   TOKENS   DEPENDS            MESSAGE",
            "✔ research      Succeeded   2          4s         42",
            "● topics        Running                25s                 research",
            "├─● topics.2    Running     1          24s",
            "└─✖ topics.10   Failed      1" + " " * 49 + "model said 401 bad key",
            "◷ review        Pending                                    research, topics",
        ]
    )


def test_get_says_what_holds_a_ready_task_back_and_at_what_priority() -> None:
    held = {"phase": "Pending", "waiting": {"reason": "Parallelism", "priority": 5}}
    waiting = {**RUN, "status": {**RUN["status"], "tasks": {"review": held}}}
    shown = run_view(waiting, NOW).splitlines()
    assert shown[-1].endswith("research, topics   waits: Parallelism (priority 5)")


def test_get_names_the_template_and_pending_requests() -> None:
    requested = {
        **RUN,
        "metadata": {
            **RUN["metadata"],
            "annotations": {SUSPEND_ANNOTATION: "true", STOP_ANNOTATION: "why"},
        },
        "spec": {"workflowTemplateRef": {"name": "report"}},
        "status": {},
    }
    shown = run_view(requested, NOW).splitlines()
    assert shown[2] == "Template:   report" and shown[3] == "Phase:      Pending"
    assert shown[-1] == "Requests:   suspended; stop requested (why)"


def test_list_summary_and_changes() -> None:
    done = {
        **RUN,
        "status": {
            **RUN["status"],
            "phase": "Failed",
            "message": "topics failed",
            "finishedAt": "2025-03-01T12:00:11Z",
        },
    }
    assert list_view([done], all_namespaces=True, now=NOW).splitlines() == [
        "NAMESPACE   NAME    PHASE    PROGRESS   TOKENS   AGE   DURATION   MESSAGE",
        "team        brief   Failed   2/4        42       30s   10s        topics failed",
    ]
    assert summary_line(done, NOW) == "brief Failed (2/4 tasks, 10s, 42 tokens): topics failed"
    assert changes(RUN, done) == ["brief Failed"]
    assert changes(None, RUN)[:2] == ["brief Running", "  research Succeeded"]
    assert [age(f"2025-03-01T{t}Z", NOW) for t in ("12:00:29", "11:58:00", "09:00:00")] == [
        "1s",
        "2m",
        "3h",
    ]
    assert as_data([RUN, done], "name", single=False) == "brief\nbrief"
    assert json.loads(as_data([RUN], "json", single=True)) == RUN
