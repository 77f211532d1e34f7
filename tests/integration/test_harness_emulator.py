"""The API emulator speaks enough Kubernetes for the official `kubernetes` client."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import kubernetes
import pytest
from kubernetes.client import (
    ApiClient,
    ApiException,
    ApiextensionsV1Api,
    BatchV1Api,
    CoordinationV1Api,
    CoreV1Api,
    CustomObjectsApi,
)

from tests.support.emulator import EmulatedCluster
from tests.support.samples import WIDGET_CRD, widget

GROUP, VERSION, PLURAL = "example.com", "v1", "widgets"


@pytest.fixture
def widgets(emulator: EmulatedCluster, kube_api: ApiClient) -> CustomObjectsApi:
    emulator.load_crds(WIDGET_CRD)
    return CustomObjectsApi(kube_api)


def _status_body(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == error.status
    return body


def _create_widget(
    api: CustomObjectsApi, name: str, size: int = 1, **spec: object
) -> dict[str, Any]:
    created: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, widget(name, size, **spec)
    )
    return created


def test_server_sets_uid_timestamps_generation_and_increasing_resource_versions(
    kube_api: ApiClient,
) -> None:
    core = CoreV1Api(kube_api)
    first = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "a"}, "data": {"k": "v"}}
    )
    second = core.create_namespaced_secret(
        "default", {"metadata": {"name": "b"}, "stringData": {"k": "v"}}
    )
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert first.metadata.uid and first.metadata.uid != second.metadata.uid
    assert first.metadata.creation_timestamp is not None
    assert first.metadata.generation == 1
    listed = core.list_namespaced_config_map("default")
    assert int(listed.metadata.resource_version) >= int(second.metadata.resource_version)


def test_stale_resource_version_is_a_conflict(kube_api: ApiClient) -> None:
    leases = CoordinationV1Api(kube_api)
    lease = leases.create_namespaced_lease(
        "default", {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a"}}
    )
    lease.spec.holder_identity = "b"
    renewed = leases.replace_namespaced_lease("leader", "default", lease)
    assert renewed.spec.holder_identity == "b"
    lease.spec.holder_identity = "c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as replaced:
        leases.replace_namespaced_lease("leader", "default", lease)
    assert replaced.value.status == 409
    assert _status_body(replaced.value)["reason"] == "Conflict"
    stale_patch = {
        "metadata": {"resourceVersion": lease.metadata.resource_version},
        "spec": {"holderIdentity": "d"},
    }
    with pytest.raises(ApiException) as patched:
        leases.patch_namespaced_lease("leader", "default", stale_patch)
    assert patched.value.status == 409
    assert leases.read_namespaced_lease("leader", "default").spec.holder_identity == "b"


def test_missing_and_duplicate_objects_get_status_bodies(kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", "default")
    assert missing.value.status == 404
    assert _status_body(missing.value)["reason"] == "NotFound"
    assert _status_body(missing.value)["message"] == 'configmaps "nope" not found'
    core.create_namespaced_config_map("default", {"metadata": {"name": "twice"}})
    with pytest.raises(ApiException) as duplicate:
        core.create_namespaced_config_map("default", {"metadata": {"name": "twice"}})
    assert duplicate.value.status == 409
    assert _status_body(duplicate.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_config_map("elsewhere", {"metadata": {"name": "x"}})
    assert no_namespace.value.status == 404


def test_merge_patch_null_deletes_and_json_patch_applies(
    widgets: CustomObjectsApi, kube_api: ApiClient
) -> None:
    _create_widget(widgets, "w", note="remove me", extra={"a": 1, "b": 2})
    patched = widgets.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "w",
        {"spec": {"note": None, "extra": {"a": None, "c": 3}}},
    )
    assert "note" not in patched["spec"]
    assert patched["spec"]["extra"] == {"b": 2, "c": 3}
    core = CoreV1Api(kube_api)
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "cm"}, "data": {"a": "1", "b": "2"}}
    )
    operations = [
        {"op": "remove", "path": "/data/a"},
        {"op": "add", "path": "/data/c", "value": "3"},
        {"op": "test", "path": "/data/b", "value": "2"},
    ]
    assert core.patch_namespaced_config_map("cm", "default", operations).data == {
        "b": "2",
        "c": "3",
    }
    with pytest.raises(ApiException) as failed_test:
        core.patch_namespaced_config_map(
            "cm", "default", [{"op": "test", "path": "/data/b", "value": "9"}]
        )
    assert failed_test.value.status == 400


def test_status_subresource_isolation_and_generation(widgets: CustomObjectsApi) -> None:
    created = _create_widget(widgets, "w", size=1)
    assert created["metadata"]["generation"] == 1
    with_status = widgets.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w", {"status": {"phase": "Ready"}, "spec": {"size": 99}}
    )
    assert with_status["status"] == {"phase": "Ready"}
    assert with_status["spec"]["size"] == 1, "a status write must not change spec"
    assert with_status["metadata"]["generation"] == 1, "a status write must not bump generation"
    main = widgets.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w", {"status": {"phase": "Hacked"}, "spec": {"size": 2}}
    )
    assert main["status"] == {"phase": "Ready"}, "a main-resource write must not change status"
    assert main["spec"]["size"] == 2
    assert main["metadata"]["generation"] == 2
    unchanged = widgets.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w", {"spec": {"size": 2}}
    )
    assert unchanged["metadata"]["resourceVersion"] == main["metadata"]["resourceVersion"], (
        "no-op writes are no-ops"
    )


def test_builtin_status_subresource_for_jobs(kube_api: ApiClient) -> None:
    batch = BatchV1Api(kube_api)
    job = {
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}},
        "status": {"active": 5},
    }
    created = batch.create_namespaced_job("default", job)
    assert created.status is None, "status is dropped on create"
    batch.patch_namespaced_job_status("j", "default", {"status": {"succeeded": 1}})
    batch.patch_namespaced_job(
        "j", "default", {"status": {"succeeded": 0}, "metadata": {"labels": {"a": "b"}}}
    )
    job_now = batch.read_namespaced_job("j", "default")
    assert job_now.status.succeeded == 1
    assert job_now.metadata.labels == {"a": "b"}


def test_label_and_field_selectors_on_list(kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    for name, labels in [
        ("a", {"tier": "web", "env": "prod"}),
        ("b", {"tier": "db", "env": "prod"}),
        ("c", {"tier": "web"}),
    ]:
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})

    def names(**selectors: str) -> list[str]:
        return [
            item.metadata.name
            for item in core.list_namespaced_config_map("default", **selectors).items
        ]

    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier==web,env=prod") == ["a"]
    assert names(label_selector="tier!=web") == ["b"]
    assert names(label_selector="tier in (db, cache)") == ["b"]
    assert names(label_selector="tier notin (db)") == ["a", "c"]
    assert names(label_selector="env") == ["a", "b"]
    assert names(label_selector="!env") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    assert [
        i.metadata.name
        for i in core.list_config_map_for_all_namespaces(
            field_selector="metadata.namespace=default"
        ).items
    ] == ["a", "b", "c"]


def _watch_events(api_call: Any, *args: Any, count: int, **kwargs: Any) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    watch = kubernetes.watch.Watch()
    for event in watch.stream(api_call, *args, timeout_seconds=5, **kwargs):
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == count:
            watch.stop()
    return events


def test_watch_with_label_selector_and_resumption(kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "before", "labels": {"app": "x"}}}
    )
    listed = core.list_namespaced_config_map("default")
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "other", "labels": {"app": "y"}}}
    )
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "after", "labels": {"app": "x"}}}
    )
    core.patch_namespaced_config_map("after", "default", {"metadata": {"labels": {"app": "z"}}})
    events = _watch_events(
        core.list_namespaced_config_map,
        "default",
        count=2,
        label_selector="app=x",
        resource_version=listed.metadata.resource_version,
    )
    assert events == [("ADDED", "after"), ("DELETED", "after")], (
        "resumes after the listed version, by selector"
    )
    from_scratch = _watch_events(
        core.list_namespaced_config_map, "default", count=1, label_selector="app=x"
    )
    assert from_scratch == [("ADDED", "before")]


def test_watch_streams_live_changes(kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    listed = core.list_namespaced_config_map("default")
    writer = threading.Timer(
        0.2, lambda: core.create_namespaced_config_map("default", {"metadata": {"name": "live"}})
    )
    writer.start()
    events = _watch_events(
        core.list_namespaced_config_map,
        "default",
        count=1,
        resource_version=listed.metadata.resource_version,
    )
    writer.join()
    assert events == [("ADDED", "live")]


def test_generate_name(kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    made = {
        core.create_namespaced_config_map(
            "default", {"metadata": {"generateName": "task-"}}
        ).metadata.name
        for _ in range(3)
    }
    assert len(made) == 3
    assert all(name.startswith("task-") and len(name) == len("task-") + 5 for name in made)


def test_owner_reference_garbage_collection_is_transitive(
    kube_api: ApiClient, widgets: CustomObjectsApi
) -> None:
    core = CoreV1Api(kube_api)
    batch = BatchV1Api(kube_api)
    owner = _create_widget(widgets, "owner")

    def owned_by(obj: Any, kind: str, api_version: str) -> list[dict[str, Any]]:
        meta = (
            obj["metadata"]
            if isinstance(obj, dict)
            else {"name": obj.metadata.name, "uid": obj.metadata.uid}
        )
        return [{"apiVersion": api_version, "kind": kind, "name": meta["name"], "uid": meta["uid"]}]

    job_template = {"spec": {"containers": [{"name": "c", "image": "x"}]}}
    job = batch.create_namespaced_job(
        "default",
        {
            "metadata": {
                "name": "child",
                "ownerReferences": owned_by(owner, "Widget", "example.com/v1"),
            },
            "spec": {"template": job_template},
        },
    )
    pod = core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "grandchild", "ownerReferences": owned_by(job, "Job", "batch/v1")},
            "spec": job_template["spec"],
        },
    )
    core.create_namespaced_config_map(
        "default",
        {
            "metadata": {
                "name": "two-owners",
                "ownerReferences": owned_by(owner, "Widget", "example.com/v1")
                + owned_by(pod, "Pod", "v1")
                + owned_by(job, "Job", "batch/v1"),
            },
        },
    )
    core.create_namespaced_config_map("default", {"metadata": {"name": "unrelated"}})
    widgets.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "owner")
    assert batch.list_namespaced_job("default").items == []
    assert core.list_namespaced_pod("default").items == []
    assert [cm.metadata.name for cm in core.list_namespaced_config_map("default").items] == [
        "unrelated"
    ]


def test_finalizers_delay_deletion(kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "f", "finalizers": ["example.com/x"]}}
    )
    core.delete_namespaced_config_map("f", "default")
    marked = core.read_namespaced_config_map("f", "default")
    assert marked.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("f", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("f", "default")
    assert gone.value.status == 404


def test_schema_violations_are_rejected_with_422(widgets: CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as rejected:
        widgets.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, widget("bad", size=-1)
        )
    body = _status_body(rejected.value)
    assert rejected.value.status == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.size"
    missing = widget("bad")
    del missing["spec"]["size"]
    with pytest.raises(ApiException) as required:
        widgets.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, missing)
    assert _status_body(required.value)["details"]["causes"][0] == {
        "reason": "FieldValueRequired",
        "field": "spec.size",
        "message": "Required value",
    }


def test_schema_prunes_defaults_and_extensions(widgets: CustomObjectsApi) -> None:
    created = _create_widget(
        widgets, "w", port="http", note=None, unknown="dropped", extra={"kept": True}
    )
    expected = {"size": 1, "port": "http", "note": None, "color": "blue", "extra": {"kept": True}}
    assert created["spec"] == expected
    assert _create_widget(widgets, "w2", port=8080)["spec"]["port"] == 8080


def test_crds_posted_through_the_api_are_served(kube_api: ApiClient) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD))
    ApiextensionsV1Api(kube_api).create_custom_resource_definition(crd)
    served = ApiextensionsV1Api(kube_api).read_custom_resource_definition("widgets.example.com")
    assert {c.type for c in served.status.conditions} >= {"Established"}
    created = _create_widget(CustomObjectsApi(kube_api), "w")
    assert created["metadata"]["name"] == "w"


def test_namespace_deletion_removes_its_objects(kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": "tenant-a"}})
    core.create_namespaced_config_map("tenant-a", {"metadata": {"name": "x"}})
    assert core.read_namespace("tenant-a").status.phase == "Active"
    core.delete_namespace("tenant-a")
    assert core.list_config_map_for_all_namespaces().items == []


def test_closed_watches_are_forgotten(emulator: EmulatedCluster, kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    for _ in range(3):
        assert _watch_events(core.list_namespaced_config_map, "default", count=1) == [
            ("ADDED", "x")
        ]
    deadline = time.monotonic() + 5
    while emulator.handler.watches.watcher_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emulator.handler.watches.watcher_count == 0


def test_metadata_only_reads_answer_partial_object_metadata(emulator: EmulatedCluster) -> None:
    """What metadata informers and controllers use to read an object without its data."""
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "big", "namespace": "default", "annotations": {"a": "b"}},
            "data": {"payload": "x" * 1000},
        }
    )
    request = urllib.request.Request(
        f"{emulator.url}/api/v1/namespaces/default/configmaps/big",
        headers={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["kind"] == "PartialObjectMetadata"
    assert answer["metadata"]["annotations"] == {"a": "b"}
    assert "data" not in answer
