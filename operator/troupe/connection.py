"""Which cluster, as whom, in which namespace: the kubeconfig read the way kubectl reads it.

The file is ``kubeconfig`` if given, else ``$KUBECONFIG`` (several files joined by the path
separator are merged), else ``~/.kube/config``; inside a Pod with none of these, the Pod's
own ServiceAccount. ``context`` picks a context other than the current one. The namespace
is the one asked for, else the context's, else ``default`` (inside a Pod: its own).

It only hands credentials to the ``kubernetes`` client; it never prints, stores or copies
them, and refuses a kubeconfig it cannot use with one line naming the file and the problem.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

import kubernetes
import urllib3
from kubernetes.config.config_exception import ConfigException

from troupe.bounds import DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS
from troupe.errors import InvalidRequest

DEFAULT_NAMESPACE: Final = "default"
POD_NAMESPACE_FILE: Final = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
CONNECT_RETRIES: Final = 2
"""Connection attempts retried (never a request the server may have received)."""


def user_agent() -> str:
    """``troupe-client/<version>``: how the API server's logs and audit name these calls."""
    try:
        version = metadata.version("troupe")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"troupe-client/{version}"


@dataclass(frozen=True)
class Connection:
    """An API client for one cluster and identity, the namespace to work in, and the bound
    on each call."""

    api: kubernetes.client.ApiClient
    namespace: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]  # untyped upstream


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    namespace: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    environ: dict[str, str] | None = None,
) -> Connection:
    """The connection kubectl would use with the same flags; InvalidRequest if there is none."""
    if not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise InvalidRequest(
            f"the request timeout must be more than 0 and at most {MAX_TIMEOUT_SECONDS:g} seconds"
        )
    env = os.environ if environ is None else environ
    configuration = kubernetes.client.Configuration()
    files = kubeconfig or env.get("KUBECONFIG") or str(pathlib.Path("~/.kube/config").expanduser())
    if kubeconfig is None and _in_pod(env) and not _any_exists(files):
        chosen = _load_in_pod(configuration)
    else:
        chosen = _load_kubeconfig(configuration, files, context)
    configuration.retries = urllib3.util.Retry(
        total=CONNECT_RETRIES, connect=CONNECT_RETRIES, read=0, status=0, other=0
    )
    api = kubernetes.client.ApiClient(configuration)
    api.user_agent = user_agent()
    return Connection(api, namespace or chosen or DEFAULT_NAMESPACE, timeout_seconds)


def _in_pod(env: dict[str, str] | os._Environ[str]) -> bool:
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and POD_NAMESPACE_FILE.exists()


def _any_exists(files: str) -> bool:
    return any(pathlib.Path(f).expanduser().exists() for f in files.split(os.pathsep) if f)


def _load_in_pod(configuration: kubernetes.client.Configuration) -> str | None:
    try:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except ConfigException as error:
        raise InvalidRequest(f"cannot use this Pod's ServiceAccount: {error}") from None
    return POD_NAMESPACE_FILE.read_text().strip() or None


def _load_kubeconfig(
    configuration: kubernetes.client.Configuration, files: str, context: str | None
) -> str | None:
    """Load the context into ``configuration``; the context's namespace."""
    if not _any_exists(files):
        raise InvalidRequest(f"no kubeconfig at {files}: set --kubeconfig or KUBECONFIG")
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=files
        )
        chosen: dict[str, Any] | None = current
        if context is not None:
            chosen = next((c for c in contexts or [] if c.get("name") == context), None)
            if chosen is None:
                names = ", ".join(sorted(str(c.get("name")) for c in contexts or [])) or "none"
                raise InvalidRequest(f"no context {context!r} in {files} (contexts: {names})")
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=files,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise InvalidRequest(f"cannot use the kubeconfig {files}: {detail}") from None
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None
