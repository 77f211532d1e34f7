"""etcd's request size limits, as a custom resource meets them when it is written.

kube-apiserver refuses request bodies over 3 MiB (`kube.access`), and some kinds limit
their data (`kube.validation`); anything else that validates is handed to etcd. etcd
refuses a request over `--max-request-bytes` (default 1.5 MiB, 1572864 bytes), and
kube-apiserver's etcd client refuses to send one over 2 MiB (client-go's default
`MaxCallSendMsgSize`). kube-apiserver does not translate either error (`isTooLargeError` in
k8s.io/apiserver/pkg/endpoints/handlers/rest.go only retries without managedFields), so the
client gets 500 with no reason (kubectl: `Error from server: etcdserver: request is too
large`):

- over 1572864 bytes: `etcdserver: request is too large`;
- over 2097152 bytes: `rpc error: code = ResourceExhausted desc = trying to send message
  larger than max (N vs. 2097152)`.

The request is measured as the object's JSON as kube-apiserver stores a custom resource
(Go's encoding, plus a newline) and its key (`/registry/<group>/<plural>/<ns>/<name>`)
three times (the transaction's compare, put and get), plus 32 bytes of framing: within a
few dozen bytes of etcd's count. Built-in kinds are stored as protobuf, smaller than
their JSON by an amount the emulator does not compute, so they are not measured.
"""

from __future__ import annotations

from tests.support.kube import gotext
from tests.support.kube.errors import etcd_refusal
from tests.support.kube.resources import KubeObject, ResourceType

MAX_REQUEST_BYTES = 1536 * 1024
MAX_CLIENT_SEND_BYTES = 2 * 1024 * 1024
_FRAMING_BYTES = 32


def _key(rtype: ResourceType, obj: KubeObject) -> str:
    metadata = obj.get("metadata") or {}
    scope = [metadata["namespace"]] if metadata.get("namespace") else []
    return "/".join(["/registry", rtype.group, rtype.plural, *scope, metadata.get("name", "")])


def request_size(rtype: ResourceType, obj: KubeObject) -> int:
    value = len(gotext.json_text(obj).encode()) + 1
    return value + 3 * len(_key(rtype, obj).encode()) + _FRAMING_BYTES


def check_request_size(rtype: ResourceType, obj: KubeObject) -> None:
    """500 as kube-apiserver passes on etcd's refusal of an object this large."""
    size = request_size(rtype, obj)
    if size > MAX_CLIENT_SEND_BYTES:
        message = (
            "rpc error: code = ResourceExhausted desc = trying to send message larger than max"
            f" ({size} vs. {MAX_CLIENT_SEND_BYTES})"
        )
    elif size > MAX_REQUEST_BYTES:
        message = "etcdserver: request is too large"
    else:
        return
    raise etcd_refusal(message)
