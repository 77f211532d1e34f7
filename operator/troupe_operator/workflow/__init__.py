"""The Workflow reconcile core: pure rules for running a DAG of agent tasks.

``reconcile(Observation) -> Decision`` is the whole interface; the kopf shell
and ``troupe run`` both call it. Nothing in this package performs I/O or
reads the clock.
"""

from troupe_operator.workflow.actions import (
    Action,
    CreateTask,
    Decision,
    DeleteJob,
    Event,
    EventType,
    RecordSpec,
)
from troupe_operator.workflow.core import reconcile
from troupe_operator.workflow.launch import API_KEY_ENV
from troupe_operator.workflow.naming import (
    attempt_labels,
    input_config_map_name,
    job_name,
    output_config_map_name,
    owner_reference,
    spec_config_map_name,
    workflow_labels,
)
from troupe_operator.workflow.observation import JobState, Observation, ObservedJob, TaskOutput
from troupe_operator.workflow.summary import status_patch

__all__ = [
    "API_KEY_ENV",
    "Action",
    "CreateTask",
    "Decision",
    "DeleteJob",
    "Event",
    "EventType",
    "JobState",
    "Observation",
    "ObservedJob",
    "RecordSpec",
    "TaskOutput",
    "attempt_labels",
    "input_config_map_name",
    "job_name",
    "output_config_map_name",
    "owner_reference",
    "reconcile",
    "spec_config_map_name",
    "status_patch",
    "workflow_labels",
]
