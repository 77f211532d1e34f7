"""The object store: what the API server and etcd do for each create/update/delete.

kmock's store keys every object by (resource, namespace, name), scans all objects on each
list/fetch, keeps every past version in memory, and leaves metadata to the client. This
store fills the gaps an operator depends on:

- `metadata.resourceVersion` on every write from one cluster-wide counter; a write whose
  body carries a different `resourceVersion` fails with 409 Conflict (optimistic locking,
  which Leases rely on); a write that changes nothing is a no-op (no new version, no event);
- `uid`, `creationTimestamp`, `generation` (bumped when anything but metadata/status
  changes), `generateName`; 409 AlreadyExists, 404 NotFound (also for a missing namespace);
- the `status` subresource: for kinds that have it, writes to the object keep the stored
  status and writes to `/status` change only status; status is dropped on create;
- unknown `metadata` fields dropped (`kube.decoding`); custom resources pruned, defaulted
  and validated against their CRD schema (422, `kube.crds`; writes to `/status` check the
  status schema alone), and refused as etcd refuses them when too large (500, `kube.etcd`);
- finalizers: DELETE sets `deletionTimestamp` while finalizers remain, and the object goes
  away when the last finalizer is removed (as kmock does);
- garbage collection by `ownerReferences` uid, transitively, when the owner goes away;
  deleting a Namespace deletes what is in it; deleting a CRD deletes its objects;
- CRDs created through the API start being served at once (status `Established`);
- Secret `stringData` is folded into base64 `data` (its keys overriding `data`'s), as the
  API server does;
- names, labels, annotations, ConfigMap/Secret keys and sizes are checked as kube-apiserver
  checks them (`kube.validation`), on every write;
- a Pod gets `spec.serviceAccountName` (default `default`) and is refused with 403 when that
  ServiceAccount does not exist (the ServiceAccount admission plugin); a new Namespace gets
  its `default` ServiceAccount at once (the ServiceAccount controller).

Lookups are by resource, namespace and name in nested dicts, so a list costs the number of
objects of that resource in that namespace, never the whole cluster.
"""

from __future__ import annotations

import base64
import copy
import datetime
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from tests.support.kube import crds, etcd, validation
from tests.support.kube.decoding import known_metadata
from tests.support.kube.errors import (
    already_exists,
    bad_request,
    conflict,
    forbidden,
    invalid,
    not_found,
)
from tests.support.kube.resources import KubeObject, ResourceRegistry, ResourceType
from tests.support.kube.selectors import ObjectFilter
from tests.support.kube.watches import Change, WatchHub

_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_CRDS_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
_NAMESPACES_KEY = ("", "namespaces")
_SECRETS_KEY = ("", "secrets")
_PODS_KEY = ("", "pods")
_SERVICE_ACCOUNTS_KEY = ("", "serviceaccounts")
DEFAULT_SERVICE_ACCOUNT = "default"
_SERVER_OWNED_METADATA = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
)


def now_timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _content(obj: KubeObject, rtype: ResourceType) -> KubeObject:
    """What `generation` tracks: everything but metadata (and status, if a subresource)."""
    skipped = {"metadata", "status"} if rtype.has_status else {"metadata"}
    return {key: value for key, value in obj.items() if key not in skipped}


class ObjectStore:
    def __init__(self, registry: ResourceRegistry, hub: WatchHub) -> None:
        self._registry = registry
        self._hub = hub
        self._revision = 0
        self._objects: dict[tuple[str, str], dict[str, dict[str, KubeObject]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        self._by_uid: dict[str, tuple[ResourceType, KubeObject]] = {}
        self._dependents: dict[str, set[str]] = defaultdict(set)

    @property
    def revision(self) -> int:
        return self._revision

    def is_alive(self, uid: str) -> bool:
        """Whether an object with this uid exists (tokens die with what they are bound to)."""
        return uid in self._by_uid

    # Reads.

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> KubeObject:
        obj = self._objects[rtype.key][namespace or ""].get(name)
        if obj is None:
            raise not_found(rtype, name)
        return obj

    def select(self, rtype: ResourceType, filter: ObjectFilter) -> list[KubeObject]:
        by_namespace = self._objects[rtype.key]
        buckets = (
            [by_namespace[filter.namespace]]
            if filter.namespace is not None
            else by_namespace.values()
        )
        found: list[KubeObject] = []
        for bucket in buckets:
            if filter.fields.name is not None:
                candidates: Any = (
                    [bucket[filter.fields.name]] if filter.fields.name in bucket else []
                )
            else:
                candidates = bucket.values()
            found.extend(obj for obj in candidates if filter.matches(obj))
        return sorted(
            found, key=lambda obj: (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        )

    # Writes.

    def create(self, rtype: ResourceType, namespace: str | None, body: KubeObject) -> KubeObject:
        obj = copy.deepcopy(body)
        metadata = obj.setdefault("metadata", {})
        namespace = self._target_namespace(rtype, namespace, metadata.get("namespace"))
        if rtype.key == _PODS_KEY:
            self._admit_pod(rtype, namespace or "", obj)
        name = metadata.get("name") or self._generate_name(
            rtype, namespace, metadata.get("generateName")
        )
        if name in self._objects[rtype.key][namespace or ""]:
            raise already_exists(rtype, name)
        for server_owned in _SERVER_OWNED_METADATA:
            metadata.pop(server_owned, None)
        metadata.update(
            name=name, uid=str(uuid.uuid4()), creationTimestamp=now_timestamp(), generation=1
        )
        if namespace is not None:
            metadata["namespace"] = namespace
        obj.update(apiVersion=rtype.api_version, kind=rtype.kind)
        if rtype.has_status:
            obj.pop("status", None)
        obj = self._admitted(rtype, obj)
        obj.update(self._initial_status(rtype, obj))
        self._commit(rtype, "ADDED", obj, None)
        if rtype.key == _NAMESPACES_KEY:  # the ServiceAccount controller's first act
            service_accounts = self._registry.versions_of(_SERVICE_ACCOUNTS_KEY)[0]
            self.create(service_accounts, name, {"metadata": {"name": DEFAULT_SERVICE_ACCOUNT}})
        return obj

    def update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        desired: KubeObject,
        *,
        status_only: bool,
    ) -> KubeObject:
        """PUT semantics; PATCH computes `desired` from the current object first."""
        current = self.get(rtype, namespace, name)
        desired_metadata = desired.get("metadata") or {}
        if desired_metadata.get("resourceVersion") not in (
            None,
            "",
            current["metadata"]["resourceVersion"],
        ):
            raise conflict(rtype, name)
        if desired_metadata.get("name") not in (None, name):
            raise bad_request(
                f"the object name ({desired_metadata['name']}) does not match the URL ({name})"
            )
        merged = self._merged(rtype, current, desired, status_only=status_only)
        new = self._admitted(rtype, merged, status_only=status_only)
        if new == current:
            return current
        if _content(new, rtype) != _content(current, rtype):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._remove(rtype, new)
        self._commit(rtype, "MODIFIED", new, current)
        return new

    def delete(self, rtype: ResourceType, namespace: str | None, name: str) -> KubeObject:
        current = self.get(rtype, namespace, name)
        if current["metadata"].get("deletionTimestamp"):
            return current
        if current["metadata"].get("finalizers"):
            metadata = dict(
                current["metadata"], deletionTimestamp=now_timestamp(), deletionGracePeriodSeconds=0
            )
            marked = dict(current, metadata=metadata)
            self._commit(rtype, "MODIFIED", marked, current)
            return marked
        return self._remove(rtype, current)

    def delete_collection(self, rtype: ResourceType, filter: ObjectFilter) -> list[KubeObject]:
        return [
            self.delete(rtype, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            for obj in self.select(rtype, filter)
        ]

    # Internals.

    def _target_namespace(
        self, rtype: ResourceType, from_url: str | None, from_body: str | None
    ) -> str | None:
        if not rtype.namespaced:
            return None
        if from_url and from_body and from_url != from_body:
            raise bad_request(
                "the namespace of the object does not match the namespace of the request"
            )
        namespace = from_url or from_body
        if not namespace:
            raise bad_request("the namespace of the object is required")
        if namespace not in self._objects[_NAMESPACES_KEY][""]:
            namespaces = self._registry.versions_of(_NAMESPACES_KEY)[0]
            raise not_found(namespaces, namespace)
        return namespace

    def _admit_pod(self, rtype: ResourceType, namespace: str, pod: KubeObject) -> None:
        """The ServiceAccount admission plugin: a Pod runs as an existing ServiceAccount."""
        spec = pod.setdefault("spec", {})
        account = spec.get("serviceAccountName") or spec.get("serviceAccount")
        spec["serviceAccountName"] = account or DEFAULT_SERVICE_ACCOUNT
        if spec["serviceAccountName"] not in self._objects[_SERVICE_ACCOUNTS_KEY][namespace]:
            metadata = pod.get("metadata") or {}
            raise forbidden(
                rtype.group,
                rtype.plural,
                metadata.get("name") or metadata.get("generateName") or "Unknown",
                f"error looking up service account {namespace}/{spec['serviceAccountName']}:"
                f' serviceaccount "{spec["serviceAccountName"]}" not found',
            )

    def _generate_name(self, rtype: ResourceType, namespace: str | None, prefix: str | None) -> str:
        if not prefix:
            raise invalid(
                rtype, "", [("metadata.name", "Required value: name or generateName is required")]
            )
        while True:
            name = prefix + "".join(random.choices(_NAME_SUFFIX_ALPHABET, k=5))
            if name not in self._objects[rtype.key][namespace or ""]:
                return name

    def _initial_status(self, rtype: ResourceType, obj: KubeObject) -> KubeObject:
        if rtype.key == _NAMESPACES_KEY:
            return {"status": {"phase": "Active"}}
        if rtype.key == ("", "pods"):
            return {"status": {"phase": "Pending"}}
        if rtype.key == _CRDS_KEY:
            return {"status": crds.established_status(obj, now_timestamp())}
        return {}

    def _merged(
        self, rtype: ResourceType, current: KubeObject, desired: KubeObject, *, status_only: bool
    ) -> KubeObject:
        if status_only:
            new = {key: value for key, value in current.items() if key != "status"}
            if desired.get("status") is not None:
                new["status"] = desired["status"]
            return new
        new = {
            key: value
            for key, value in desired.items()
            if not (rtype.has_status and key == "status")
        }
        if rtype.has_status and "status" in current:
            new["status"] = current["status"]
        metadata = dict(desired.get("metadata") or {})
        metadata.update(
            {
                key: current["metadata"][key]
                for key in _SERVER_OWNED_METADATA
                if key in current["metadata"]
            }
        )
        new.update(metadata=metadata, apiVersion=current["apiVersion"], kind=current["kind"])
        return new

    def _admitted(
        self, rtype: ResourceType, obj: KubeObject, *, status_only: bool = False
    ) -> KubeObject:
        """The object as decoding, admission and validation leave it, or 422 / 500."""
        obj = known_metadata(obj)[0]
        if rtype.key == _SECRETS_KEY and "stringData" in obj:
            encoded = {
                key: base64.b64encode(value.encode()).decode()
                for key, value in obj["stringData"].items()
            }
            obj = {key: value for key, value in obj.items() if key != "stringData"}
            obj["data"] = {**(obj.get("data") or {}), **encoded}
        if rtype.schema is not None:
            obj = rtype.schema.prune(obj)
        causes = validation.violations(rtype, obj)
        if rtype.schema is not None:
            causes += rtype.schema.violations(obj, status_only=status_only)
        if causes:
            raise invalid(rtype, obj["metadata"].get("name", ""), causes)
        if rtype.custom:
            etcd.check_request_size(rtype, obj)
        return obj

    def _commit(
        self, rtype: ResourceType, kind: str, obj: KubeObject, old: KubeObject | None
    ) -> None:
        self._revision += 1
        obj["metadata"] = dict(obj["metadata"], resourceVersion=str(self._revision))
        metadata = obj["metadata"]
        owner_uids = {owner["uid"] for owner in metadata.get("ownerReferences") or ()}
        if kind == "DELETED":
            del self._objects[rtype.key][metadata.get("namespace", "")][metadata["name"]]
            del self._by_uid[metadata["uid"]]
            for owner_uid in owner_uids & self._dependents.keys():
                self._dependents[owner_uid].discard(metadata["uid"])
        else:
            self._objects[rtype.key][metadata.get("namespace", "")][metadata["name"]] = obj
            self._by_uid[metadata["uid"]] = (rtype, obj)
            for owner_uid in owner_uids:
                self._dependents[owner_uid].add(metadata["uid"])
        self._hub.publish(rtype.key, Change(self._revision, kind, obj, old))
        if rtype.key == _CRDS_KEY:
            self._serve_crd(obj if kind != "DELETED" else None, old)

    def _remove(self, rtype: ResourceType, obj: KubeObject) -> KubeObject:
        removed = dict(obj, metadata=dict(obj["metadata"]))
        self._commit(rtype, "DELETED", removed, obj)
        for dependent_rtype, dependent in self._orphaned_dependents(obj["metadata"]["uid"]):
            self.delete(
                dependent_rtype,
                dependent["metadata"].get("namespace"),
                dependent["metadata"]["name"],
            )
        if rtype.key == _NAMESPACES_KEY:
            for contained_rtype, contained in list(
                self._objects_in_namespace(obj["metadata"]["name"])
            ):
                self.delete(
                    contained_rtype,
                    contained["metadata"]["namespace"],
                    contained["metadata"]["name"],
                )
        return removed

    def _remove_all_of_crd(self, crd: KubeObject) -> None:
        """Objects of a deleted CRD go at once, finalizers or not."""
        for rtype in crds.served_types(crd)[:1]:
            for by_namespace in list(self._objects.get(rtype.key, {}).values()):
                for obj in list(by_namespace.values()):
                    self._commit(rtype, "DELETED", dict(obj, metadata=dict(obj["metadata"])), obj)

    def _orphaned_dependents(self, owner_uid: str) -> Iterator[tuple[ResourceType, KubeObject]]:
        for dependent_uid in sorted(self._dependents.pop(owner_uid, set())):
            if dependent_uid not in self._by_uid:
                continue
            dependent_rtype, dependent = self._by_uid[dependent_uid]
            owner_uids = {
                owner["uid"] for owner in dependent["metadata"].get("ownerReferences") or ()
            }
            if owner_uid in owner_uids and not owner_uids & self._by_uid.keys():
                yield dependent_rtype, dependent

    def _objects_in_namespace(self, namespace: str) -> Iterator[tuple[ResourceType, KubeObject]]:
        for key, by_namespace in list(self._objects.items()):
            rtypes = self._registry.versions_of(key)
            for obj in list(by_namespace.get(namespace, {}).values()):
                if rtypes:
                    yield rtypes[0], obj

    def _serve_crd(self, crd: KubeObject | None, previous: KubeObject | None) -> None:
        if crd is None and previous is not None:
            self._remove_all_of_crd(previous)
        for old_type in crds.served_types(previous) if previous else []:
            self._registry.remove(old_type)
        for new_type in crds.served_types(crd) if crd else []:
            self._registry.add(new_type)
