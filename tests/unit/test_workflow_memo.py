"""Memoized tasks in the core: the key's ingredients, hits, misses, reads and grants."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tests.unit.test_workflow_core import T0, Cluster, workflow
from troupe_operator.api import AgentSpec, Cache, TaskPhase, WorkflowSpec
from troupe_operator.workflow import (
    CacheEntry,
    CreateTask,
    GrantReads,
    Observation,
    PrepareRun,
)
from troupe_operator.workflow.cache_gc import to_collect
from troupe_operator.workflow.memo import cache_key
from troupe_operator.workflow.units import Unit

CHAIN = dict(
    cache={"maxAge": "1h"},
    inputs={"topic": "vector databases", "tone": "dry", "unused": "x"},
)
TASKS = (
    {"name": "research", "prompt": "Research {{ inputs.topic }}"},
    {"name": "style", "prompt": "Pick a style: {{ inputs.tone }}"},
    {"name": "write", "deps": ["research"], "prompt": "Write {{ tasks.research.output }}"},
)


class CachingCluster(Cluster):
    """The core's simulated cluster with a namespace cache the task pods fill."""

    def __init__(self, spec: WorkflowSpec, cache: dict[str, CacheEntry] | None = None) -> None:
        super().__init__(spec)
        self.cache = {} if cache is None else cache

    def observe(self) -> Observation:
        return replace(super().observe(), cache=self.cache)

    def succeed(self, task: str, preview: str | None = None, **more: Any) -> None:
        """The pod writes its output, reports its digest, and caches it when told to."""
        job = self.running(task).name
        super().succeed(task, preview, **more)
        finished = self.jobs[job]
        assert finished.report is not None
        text = preview or f"output of {task}"
        digest = hashlib.sha256(text.encode()).hexdigest()
        report = finished.report.model_copy(update={"digest": digest})
        self.jobs[job] = replace(finished, report=report)
        target = next(a.task_input.cache_entry for a in self.created if a.job_name == job)
        if target is not None:
            self.cache[target.key] = CacheEntry(target.name, self.now, digest, report)

    def run_all(
        self, outputs: dict[str, str] | None = None, counts: dict[str, int] | None = None
    ) -> list[str]:
        """Run to the end, every started task succeeding; the tasks that ran, in order."""
        ran = []
        for _ in range(20):
            decision = self.step()
            started = decision.of_type(CreateTask)
            if not started and self.status.phase == "Succeeded":
                return ran
            for action in started:
                ran.append(action.task)
                self.succeed(action.task, (outputs or {}).get(action.task), counts=counts)
        raise AssertionError("the run did not end")


def spec(**changes: Any) -> WorkflowSpec:
    settings = {**CHAIN, **changes}
    return workflow(*(dict(task) for task in TASKS), **settings)


def test_the_second_run_of_the_same_spec_runs_nothing_and_spends_nothing() -> None:
    first = CachingCluster(spec())
    assert first.run_all() == ["research", "style", "write"]
    second = CachingCluster(spec(), first.cache)
    decision = second.step()
    assert decision.of_type(CreateTask) == [] and decision.of_type(PrepareRun) == []
    assert second.status.phase == "Succeeded"
    assert second.status.usage is not None and second.status.usage.total_tokens == 0
    for name in ("research", "style", "write"):
        task = second.task(name)
        assert task.reason == "Cached" and task.cached is not None
        assert task.output.config_map == task.cached.entry
        assert task.preview == f"output of {name}"
    assert [e.reason for e in second.events_of("TaskCached")] == ["TaskCached"] * 3


def test_changing_one_input_reruns_exactly_the_tasks_downstream_of_it() -> None:
    first = CachingCluster(spec())
    first.run_all()
    inputs = {**CHAIN["inputs"], "topic": "graph databases"}  # type: ignore[dict-item]
    second = CachingCluster(spec(inputs=inputs), first.cache)
    assert second.run_all({"research": "other facts"}) == ["research", "write"]
    assert second.task("style").cached is not None


def test_an_unread_input_or_an_unchanged_upstream_output_changes_nothing() -> None:
    first = CachingCluster(spec())
    first.run_all()
    inputs = {**CHAIN["inputs"], "unused": "y"}  # type: ignore[dict-item]
    assert CachingCluster(spec(inputs=inputs), first.cache).run_all() == []
    # research reruns (its input changed) but writes the same text: write stays cached.
    changed = {**CHAIN["inputs"], "topic": "again"}  # type: ignore[dict-item]
    again = CachingCluster(spec(inputs=changed), first.cache)
    assert again.run_all({"research": "output of research"}) == ["research"]


def test_a_task_reading_a_cached_output_reads_the_entry_and_may_get_it() -> None:
    first = CachingCluster(spec())
    first.run_all()
    tasks = [*TASKS, {"name": "extra", "deps": ["write"], "prompt": "{{ tasks.write.output }}"}]
    second = CachingCluster(workflow(*(dict(t) for t in tasks), **CHAIN), first.cache)
    decision = second.step()
    kinds = [type(action).__name__ for action in decision.actions if not hasattr(action, "type")]
    assert kinds == ["PrepareRun", "GrantReads", "CreateTask"]
    grant = decision.of_type(GrantReads)[0]
    entry = second.task("write").cached.entry
    assert decision.of_type(CreateTask)[0].task_input.upstream == {"write": entry}
    assert entry in grant.config_maps and len(grant.config_maps) == 3


@pytest.mark.parametrize(
    ("cache", "task_cache", "age", "served"),
    [
        ({"maxAge": "1h"}, None, 3599, True),
        ({"maxAge": "1h"}, None, 3601, False),
        (None, {"maxAge": "2h"}, 3601, True),
        ({"maxAge": "1h"}, {"enabled": False}, 1, False),
        (None, None, 1, False),
    ],
)
def test_a_task_is_served_only_when_memoized_and_the_entry_young_enough(
    cache: dict[str, Any] | None, task_cache: dict[str, Any] | None, age: int, served: bool
) -> None:
    def one() -> WorkflowSpec:
        task = {"name": "a", **({"cache": task_cache} if task_cache else {})}
        return workflow(task, **({"cache": cache} if cache else {}))

    first = CachingCluster(workflow({"name": "a"}, cache={"maxAge": "1h"}))
    first.run_all()
    second = CachingCluster(one(), first.cache)
    second.now = T0 + timedelta(seconds=age)
    decision = second.step()
    assert (second.task("a").phase == TaskPhase.SUCCEEDED) is served
    if not served and (cache or task_cache) and (task_cache or {}).get("enabled", True):
        assert decision.of_type(CreateTask)[0].task_input.cache_entry is not None
    elif not served:
        assert decision.of_type(CreateTask)[0].task_input.cache_entry is None


def test_for_each_instances_are_memoized_by_position_and_read_downstream() -> None:
    topics = {"type": "object", "properties": {"topics": {"type": "array"}}}
    tasks = (
        {"name": "plan", "outputSchema": topics},
        {
            "name": "research",
            "deps": ["plan"],
            "prompt": "Research {{ item }}",
            "forEach": {"from": "tasks.plan.json.topics"},
        },
        {"name": "join", "deps": ["research"], "prompt": "Join {{ tasks.research.output }}"},
    )
    spec = workflow(*(dict(t) for t in tasks), cache={"maxAge": "1h"})
    first = CachingCluster(spec)
    assert first.run_all(counts={"topics": 2}) == [
        "plan",
        "research.0",
        "research.1",
        "join",
    ]
    assert len(first.cache) == 4, "every instance has an entry of its own"
    second = CachingCluster(spec, first.cache)
    assert second.run_all() == []
    assert second.task("research").items == 2
    assert second.task("research.1").cached is not None


BASE = workflow(
    {"name": "up", "outputSchema": {"type": "object"}},
    {"name": "t", "deps": ["up"], "prompt": "{{ inputs.a }} {{ tasks.up.output }}"},
    inputs={"a": "1", "b": "2"},
    cache={"maxAge": "1h"},
)
AGENT = AgentSpec.model_validate({"model": {"name": "m", "baseURL": "http://x/v1"}})


def key(
    spec: WorkflowSpec = BASE, agent: AgentSpec = AGENT, upstream: str = "d1", **task: Any
) -> str | None:
    base = spec.tasks[1]
    return cache_key(spec, Unit("t", base.model_copy(update=task)), agent, {"up": upstream})


def _agent(**model: Any) -> AgentSpec:
    return AGENT.model_copy(update={"model": AGENT.model.model_copy(update=model)})


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(lambda: key(agent=_agent(name="m2")), id="model"),
        pytest.param(lambda: key(agent=_agent(base_url="http://y/v1")), id="endpoint"),
        pytest.param(lambda: key(agent=_agent(temperature=0.9)), id="temperature"),
        pytest.param(lambda: key(agent=_agent(max_tokens=99)), id="maxTokens"),
        pytest.param(
            lambda: key(agent=AGENT.model_copy(update={"system_prompt": "x"})), id="systemPrompt"
        ),
        pytest.param(lambda: key(prompt="{{ inputs.a }}!"), id="prompt"),
        pytest.param(lambda: key(output_schema={"type": "object"}), id="outputSchema"),
        pytest.param(
            lambda: key(BASE.model_copy(update={"inputs": {"a": "9", "b": "2"}})), id="input read"
        ),
        pytest.param(lambda: key(upstream="d2"), id="upstream digest"),
    ],
)
def test_each_ingredient_changes_the_key(changed: Any) -> None:
    assert key() is not None and changed() not in (None, key())


def test_an_input_the_template_does_not_read_leaves_the_key_alone() -> None:
    assert key(BASE.model_copy(update={"inputs": {"a": "1", "b": "other"}})) == key()


def test_what_no_key_can_cover_is_not_cached() -> None:
    source = {"name": "a", "secretKeyRef": {"name": "s", "key": "k"}}
    secret = WorkflowSpec.model_validate({**BASE.to_wire(), "inputsFrom": [source]})
    assert key(secret) is None, "a Secret input's value never reaches the operator"
    base = BASE.tasks[1]
    assert cache_key(BASE, Unit("t", base), AGENT, {"up": None}) is None, "unknown digest"
    assert cache_key(BASE, Unit("t.candidate-1", base), AGENT, {"up": "d"}) is None


def test_collection_takes_the_expired_then_the_oldest_beyond_the_count() -> None:
    entries = [CacheEntry(f"e{age}", T0 - timedelta(days=age), "d") for age in (9, 0, 1, 2, 3)]
    assert to_collect(entries, T0, retention=timedelta(days=7), limit=10) == ["e9"]
    assert to_collect(entries, T0, retention=timedelta(days=7), limit=2) == ["e9", "e3", "e2"]
    assert to_collect([], T0, retention=timedelta(days=7), limit=0) == []


@pytest.mark.parametrize(
    ("max_age", "seconds"),
    [("90s", 90), ("30m", 1800), ("24h", 86_400), ("30d", 2_592_000), ("720h", 2_592_000)],
)
def test_max_age_reads_one_number_and_one_unit(max_age: str, seconds: int) -> None:
    assert Cache(max_age=max_age).max_age_seconds == seconds


@pytest.mark.parametrize(
    ("max_age", "said"),
    [
        ("31d", "maxAge 31d is beyond the limit of 30d"),
        ("2592001s", "maxAge 2592001s is beyond the limit of 30d"),
        ("1w", "'1w' is not a duration like 90s, 30m, 24h or 7d"),
        ("1h30m", "'1h30m' is not a duration like 90s, 30m, 24h or 7d"),
    ],
)
def test_max_age_beyond_its_bound_or_unreadable_is_refused_naming_why(
    max_age: str, said: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(said)):
        Cache(max_age=max_age)
    schema = Cache.model_json_schema(by_alias=True)["properties"]["maxAge"]["pattern"]
    assert re.search(schema, max_age) is None, "the CRD's schema refuses it too"
