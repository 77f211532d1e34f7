"""A Kubernetes API emulator on loopback, for the operator and kubectl to talk to.

Built on kmock 0.8 (the kopf author's mock server): kmock runs the HTTP server and serves
discovery, `/version` and `Status` errors; `tests.support.kube` adds what an operator needs
from a real API server and kmock leaves out. The gaps filled, module by module:

- `kube.resources`: built-in kinds registered in discovery (namespaces, configmaps, secrets,
  serviceaccounts, events (v1 and events.k8s.io/v1), pods, services, resourcequotas,
  limitranges, jobs, deployments, leases, networkpolicies, roles, rolebindings, CRDs);
- `kube.paths`: URLs kmock cannot parse (`/api/v1/namespaces[/<name>]`) and PUT;
- `kube.store`: resourceVersion (cluster-wide, 409 on stale writes), uid, creationTimestamp,
  generation, generateName, status subresource, 404/409 `Status` bodies, finalizers,
  ownerReference garbage collection, namespace and CRD cascades; no per-version history and
  no full scans (kmock keeps every version of every object and scans all objects per call);
- `kube.selectors`: label and field selectors on list, watch and deletecollection;
- `kube.patches`: JSON merge patch (`null` deletes), strategic merge (built-ins), JSON patch;
- `kube.crds`: CRDs from files, dicts or POSTs; pruning, defaults, 422 on schema violations;
- `kube.watches`: watch resumption from `resourceVersion`, 410 for versions too old,
  bookmarks, `timeoutSeconds`, per-selector ADDED/DELETED;
- `kube.tables`: `Table` output with CRD printer columns, so `kubectl get workflows` works.

kubectl works for `get` (tables, `-o yaml/json`, `-l`, `--field-selector`), `create -f`,
`apply --validate=false` (client-side apply), `delete`, `patch`, `label`/`annotate`, `wait`.
It does not work for: `get -w` (no watch in `Table` form), `apply` with validation or
`--server-side` (no OpenAPI documents, no server-side apply), generator forms such as
`create namespace x` (they send protobuf), `explain`, `logs`, `exec`, `port-forward`,
`scale`, `top`, `auth can-i`, `--dry-run=server`.
"""

from __future__ import annotations

import contextlib
import copy
import pathlib
from typing import Any

import kmock
import yaml

from tests.support.kube.handler import KubeEmulator
from tests.support.kube.resources import KubeObject
from tests.support.kube.selectors import ObjectFilter
from tests.support.loopback import BackgroundService


class EmulatedCluster(BackgroundService):
    """The emulator served on 127.0.0.1 (a free port) from its own thread and event loop."""

    def __init__(self, *, bookmark_interval: float = 1.0, history_limit: int = 20_000) -> None:
        super().__init__("kube-emulator")
        self.handler = KubeEmulator(
            bookmark_interval=bookmark_interval, history_limit=history_limit
        )
        self._stack = contextlib.AsyncExitStack()
        self.url = ""

    async def _start(self) -> None:
        await self._stack.enter_async_context(self.handler)
        server = await self._stack.enter_async_context(kmock.Server(self.handler))
        self.url = f"http://{server.host}:{server.port}"

    async def _stop(self) -> None:
        self.handler.watches.close_all()
        await self._stack.aclose()

    def write_kubeconfig(self, path: pathlib.Path, namespace: str = "default") -> pathlib.Path:
        """A kubeconfig whose current context points at this emulator (no credentials)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
                }
            ],
            "current-context": "emulator",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def create(self, obj: KubeObject) -> KubeObject:
        """Create any object of a served kind, as a POST would (for test set-up)."""
        return self._loop.call(self._create, obj)

    def load_crds(self, source: KubeObject | pathlib.Path) -> list[KubeObject]:
        """Serve the CRDs in a dict or a YAML file (several documents allowed)."""
        documents = (
            [source] if isinstance(source, dict) else list(yaml.safe_load_all(source.read_text()))
        )
        return [self.create(document) for document in documents if document]

    def create_namespace(self, name: str) -> KubeObject:
        return self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def _create(self, obj: KubeObject) -> KubeObject:
        group, _, version = obj["apiVersion"].rpartition("/")
        for rtype in self.handler.registry:
            if (rtype.group, rtype.version, rtype.kind) == (group, version, obj["kind"]):
                namespace = obj.get("metadata", {}).get("namespace")
                return copy.deepcopy(self.handler.store.create(rtype, namespace, obj))
        raise LookupError(f"no served kind {obj['kind']} in {obj['apiVersion']}")

    def objects(self, api_version: str, plural: str) -> list[dict[str, Any]]:
        """A snapshot of every stored object of one resource (for assertions)."""
        group, _, version = api_version.rpartition("/")
        return self._loop.call(self._objects, group, version, plural)

    def _objects(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        rtype = self.handler.registry.find(group, version, plural)
        if rtype is None:
            raise LookupError(f"no served resource {plural} in {group}/{version}")
        return copy.deepcopy(self.handler.store.select(rtype, ObjectFilter()))
