"""Fixtures the controller's integration tests share: the cluster with the real operator."""

from __future__ import annotations

import kubernetes
import pytest

from tests.integration.troupe_driver import Troupe
from tests.support.emulator import EmulatedCluster
from tests.support.fixtures import RunOperator
from tests.support.jobrunner import JobRunner


@pytest.fixture
def troupe(
    emulator: EmulatedCluster,
    kube_api: kubernetes.client.ApiClient,
    job_runner: JobRunner,
    run_operator: RunOperator,
) -> Troupe:
    """The emulator with the Job runner playing the kubelet, and the operator to start."""
    return Troupe(kube_api, run_operator)
