"""A Kubernetes API emulator on loopback, for the operator and kubectl to talk to.

Built on kmock 0.8 (the kopf author's mock server): kmock runs the HTTP server, dispatches
requests to reactions, and serves discovery; `tests.support.kube` adds what an operator
needs from a real API server and kmock leaves out, following kube-apiserver 1.32 (what
`/version` reports). The gaps filled, module by module:

- `kube.handler`: the API as kmock reactions, so tests can put their own in front;
  `Status` bodies as kube-apiserver writes them;
- `kube.dispatch`: kmock's dispatch without scanning the request history on each request;
- `kube.resources`: built-in kinds registered in discovery (namespaces, configmaps, secrets,
  serviceaccounts (+ `token`), events (v1 and events.k8s.io/v1), pods, services,
  resourcequotas, limitranges, jobs, deployments, leases, networkpolicies, roles,
  rolebindings, clusterroles, clusterrolebindings, CRDs);
- `kube.paths`, `kube.request_info`: URLs kmock cannot parse (`/api/v1/namespaces[/<name>]`),
  and the verb/resource/namespace/name of a request as kube-apiserver reads it;
- `kube.store`: resourceVersion (cluster-wide, 409 on stale writes), uid, creationTimestamp,
  generation, generateName, status subresource, 404/409 `Status` bodies, finalizers,
  ownerReference garbage collection, namespace and CRD cascades, a `default`
  ServiceAccount per namespace, the ServiceAccount admission of Pods;
- `kube.bodies`, `kube.decoding`, `kube.warnings`: request bodies decoded as kube-apiserver
  decodes them: `fieldValidation` (`Strict` refuses unknown and duplicate fields, `Warn`, the
  default, answers with `Warning` headers, `Ignore`), 400 for unreadable or too deeply
  nested JSON, never a 500;
- `kube.validation`, `kube.fields`, `kube.gotext`: names, labels, annotations,
  ConfigMap/Secret keys and sizes refused (422) where kube-apiserver refuses them, in its
  words, values printed as Go prints them;
- `kube.crds`, `kube.crd_validation`, `kube.formats`: CRDs from files, dicts or POSTs;
  pruning, defaults, and 422 on schema violations (formats included) with kube-openapi's
  messages;
- `kube.etcd`: custom resources too large for etcd refused as kube-apiserver passes on
  etcd's refusal (500);
- `kube.openapi`: `/openapi/v3` and `/openapi/v2` documents, so kubectl validates on the
  server;
- `kube.tokens`, `kube.access`, `kube.rbac`, `kube.auth_api`: ServiceAccount tokens
  (TokenRequest), 401 / 403 / 413 in front of every request, RBAC evaluation,
  TokenReview and (Self)SubjectAccessReview;
- `kube.faults`: errors, latency, cut watches and lost events for chosen clients;
- `kube.selectors`: label and field selectors on list, watch and deletecollection;
- `kube.patches`: JSON merge patch (`null` deletes), strategic merge (built-ins), JSON patch;
- `kube.watches`: watch resumption from `resourceVersion`, 410 for versions too old,
  bookmarks, `timeoutSeconds`, per-selector ADDED/DELETED;
- `kube.tables`: `Table` output with CRD printer columns, so `kubectl get workflows` works;
- `kube.pod_logs`: Pods' `log` subresource, from the Job runner's record of their output.

A request without credentials is unrestricted (cluster admin); one with a token from
`token_for` is what that ServiceAccount may do, and no more.

kubectl works for `get` (tables, `-o yaml/json`, `-l`, `--field-selector`), `create -f`,
`apply -f` with validation (server-side field validation: `--validate=strict` (the default),
`warn`, `false`; a `kind: List` too), `delete`, `patch`, `label`/`annotate`, `wait`,
`explain` for custom resources, `version`, `logs` (of Pods the Job runner ran:
`kube.pod_logs`). It does not work for: `get -w` (no watch in `Table` form),
`apply --server-side` (no server-side apply), `explain` for built-in kinds (no schemas
published for them), generator forms such as `create namespace x` (they send protobuf),
`exec`, `port-forward`, `scale`, `top`, `--dry-run=server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import pathlib
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import kmock
import yaml

from tests.support.kube.faults import FaultInjector
from tests.support.kube.handler import KubeEmulator
from tests.support.kube.resources import KubeObject
from tests.support.kube.selectors import ObjectFilter
from tests.support.kubeconfig import write_kubeconfig
from tests.support.loopback import BackgroundService

_READ_LIMIT = 64 * 1024 * 1024
"""aiohttp refuses bodies over 1 MiB by default; the emulator reads up to this and answers
413 itself beyond kube-apiserver's 3 MiB."""


def _large_body_request(
    message: Any, payload: Any, protocol: Any, writer: Any, task: Any
) -> aiohttp.web.BaseRequest:
    return aiohttp.web.BaseRequest(
        message,
        payload,
        protocol,
        writer,
        task,
        asyncio.get_running_loop(),
        client_max_size=_READ_LIMIT,
    )


class _ApiServer(aiohttp.test_utils.RawTestServer):
    """aiohttp's low-level test server, reading request bodies as large as the API accepts."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        return await super()._make_runner(
            debug=debug, request_factory=_large_body_request, **kwargs
        )


class EmulatedCluster(BackgroundService):
    """The emulator served on 127.0.0.1 (a free port) from its own thread and event loop."""

    def __init__(
        self,
        *,
        bookmark_interval: float = 1.0,
        history_limit: int = 20_000,
        request_log_limit: int = 5_000,
        fault_seed: int = 0,
    ) -> None:
        super().__init__("kube-emulator")
        self.handler = KubeEmulator(
            bookmark_interval=bookmark_interval,
            history_limit=history_limit,
            request_log_limit=request_log_limit,
            fault_seed=fault_seed,
        )
        self._stack = contextlib.AsyncExitStack()
        self.url = ""

    async def _start(self) -> None:
        await self._stack.enter_async_context(self.handler)
        server = await self._stack.enter_async_context(
            kmock.Server(self.handler, server_cls=_ApiServer)
        )
        self.url = f"http://{server.host}:{server.port}"

    async def _stop(self) -> None:
        self.handler.watches.close_all()
        await self._stack.aclose()

    @property
    def faults(self) -> FaultInjector:
        """Faults for chosen clients' requests (see `tests.support.kube.faults`)."""
        return self.handler.faults

    def write_kubeconfig(
        self, path: pathlib.Path, namespace: str = "default", *, token: str | None = None
    ) -> pathlib.Path:
        """A kubeconfig for this emulator: unrestricted, or acting with a bearer `token`."""
        return write_kubeconfig(path, self.url, namespace, token)

    def token_for(
        self, namespace: str, service_account: str, *, expiration_seconds: int = 3600
    ) -> str:
        """A bearer token of an existing ServiceAccount, as TokenRequest would issue it."""
        return self._loop.call(self._token_for, namespace, service_account, expiration_seconds)

    def _token_for(self, namespace: str, name: str, expiration_seconds: int) -> str:
        request = {"spec": {"expirationSeconds": expiration_seconds}}
        try:
            granted = self.handler.auth_api.token_request(namespace, name, request)
        except kmock.KubernetesError as refused:
            raise LookupError(f"no token for {namespace}/{name}: {refused.message}") from refused
        token: str = granted["status"]["token"]
        return token

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
