"""A pod's first container run as a local process: the kubelet's part of the Job runner.

The container image is ignored; its `command` + `args` run on this machine (unless a
`Launcher` runs them elsewhere: `tests/images` runs them inside the built image, with the
pod directory mounted at the same path). Paths inside the container do not exist here, so
they are rewritten:

- ConfigMap, Secret and emptyDir volumes are materialised under `<pod dir>/volumes/<volume>`;
  any command/arg/env value or `workingDir` that starts with a volumeMount's `mountPath` is
  rewritten to that local directory (`subPath` honoured);
- a value equal to the container's `terminationMessagePath` (default `/dev/termination-log`)
  is rewritten to `<pod dir>/termination-log`, read back as the termination message (its
  first 4096 bytes; `FallbackToLogsOnError` uses the log's last 4096 when the file is empty);
- env: literal `value`, `valueFrom.secretKeyRef` / `configMapKeyRef` / `fieldRef` (dotted
  path into the Pod), and `envFrom` with `configMapRef` / `secretRef` and `prefix`;
  `$(VAR)` references are not expanded;
- the process also gets `KUBECONFIG` (the pod's own, with its ServiceAccount token),
  `HOME` (the pod dir), and, run here, the harness's own `PATH` / `PYTHONPATH` /
  `VIRTUAL_ENV` appended, so `python` and the venv's console scripts work.

A Secret, ConfigMap or key that a volume or env needs and that does not exist (and is not
`optional`) raises `VolumeSetupError` or `ContainerConfigError` with the kubelet's message
(`secret "x" not found`, `couldn't find key k in Secret ns/x`), for the kubelet to wait and
retry; the container never starts without them.

Output (stdout and stderr together) goes to `<pod dir>/log`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pathlib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.kube_http import KubeHttp, KubeHttpError, KubeObject

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
_MESSAGE_LIMIT = 4096
_INHERITED = ("PATH", "PYTHONPATH", "VIRTUAL_ENV")

Launcher = Callable[[list[str], dict[str, str], pathlib.Path], tuple[list[str], dict[str, str]]]
"""The local command line and environment that run a container's argv and env (its sandbox
root given): where, and as whom, the container's process runs."""


def run_here(
    argv: list[str], env: dict[str, str], root: pathlib.Path
) -> tuple[list[str], dict[str, str]]:
    """As a process of this machine, with the harness's `PATH` / `PYTHONPATH` / `VIRTUAL_ENV`."""
    env = dict(env)
    for name in _INHERITED:
        inherited = os.environ.get(name)
        if inherited:
            env[name] = f"{env[name]}{os.pathsep}{inherited}" if env.get(name) else inherited
    return argv, env


class ContainerConfigError(Exception):
    """The container's env cannot be built yet (the kubelet's CreateContainerConfigError)."""


class VolumeSetupError(Exception):
    """A volume cannot be set up yet (the kubelet's FailedMount)."""

    def __init__(self, volume: str, problem: str) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {problem}')


@dataclass(frozen=True)
class _Source:
    """A Secret or ConfigMap a pod refers to."""

    is_secret: bool
    name: str
    optional: bool

    @property
    def plural(self) -> str:
        return "secrets" if self.is_secret else "configmaps"

    @property
    def kind(self) -> str:
        return "Secret" if self.is_secret else "ConfigMap"

    def not_found(self) -> str:
        return f'{"secret" if self.is_secret else "configmap"} "{self.name}" not found'

    def missing_key(self, namespace: str, key: str) -> str:
        return f"couldn't find key {key} in {self.kind} {namespace}/{self.name}"


def _decoded(source: KubeObject, is_secret: bool) -> dict[str, str]:
    if is_secret:
        return {
            key: base64.b64decode(value).decode()
            for key, value in (source.get("data") or {}).items()
        }
    return dict(source.get("data") or {})


class PodSandbox:
    def __init__(
        self, root: pathlib.Path, pod: KubeObject, api: KubeHttp, launch: Launcher = run_here
    ) -> None:
        self.root = root
        self._launch = launch
        self.pod = pod
        self.container: KubeObject = pod["spec"]["containers"][0]
        self._api = api
        self._namespace: str = pod["metadata"]["namespace"]
        self._rewrites: list[tuple[str, pathlib.Path]] = []
        self.log_path = root / "log"
        self.message_path = root / "termination-log"
        self.kubeconfig_path = root / "kubeconfig"
        """Where the kubelet writes the pod's kubeconfig (its token) before `environment()`."""

    async def run(self, env: dict[str, str]) -> int:
        """Run the container command in the prepared sandbox and return its exit code."""
        argv = [*(self.container.get("command") or []), *(self.container.get("args") or [])]
        if not argv:
            self.message_path.write_text(
                "the image entrypoint cannot run locally: the container has no command"
            )
            return 127
        working_dir = self._rewritten(self.container.get("workingDir") or str(self.root))
        command, environment = self._launch([self._rewritten(arg) for arg in argv], env, self.root)
        with self.log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *command,
                env=environment,
                cwd=working_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                return await process.wait()
            finally:
                if process.returncode is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()

    def termination_message(self, exit_code: int) -> str:
        """The termination message file's first 4096 bytes (or the log's last, on fallback)."""
        message = (
            self.message_path.read_bytes()[:_MESSAGE_LIMIT] if self.message_path.exists() else b""
        )
        fallback = self.container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not message and exit_code != 0 and fallback and self.log_path.exists():
            message = self.log_path.read_bytes()[-_MESSAGE_LIMIT:]
        return message.decode(errors="replace")

    async def prepare(self) -> None:
        """Materialise the volumes and register the path rewrites (`VolumeSetupError`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)
        self._rewrites = []
        volume_dirs = {}
        for volume in self.pod["spec"].get("volumes") or []:
            volume_dirs[volume["name"]] = await self._materialise(volume)
        for mount in self.container.get("volumeMounts") or []:
            local = volume_dirs.get(mount["name"])
            if local is not None:
                self._rewrites.append(
                    (mount["mountPath"].rstrip("/"), local / mount.get("subPath", ""))
                )
        self._rewrites.sort(key=lambda rewrite: len(rewrite[0]), reverse=True)
        termination_path = (
            self.container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
        )
        self._rewrites.insert(0, (termination_path, self.message_path))

    def _rewritten(self, value: str) -> str:
        for container_path, local_path in self._rewrites:
            if value == container_path:
                return str(local_path)
            if value.startswith(container_path + "/") and local_path != self.message_path:
                return str(local_path) + value[len(container_path) :]
        return value

    async def _materialise(self, volume: KubeObject) -> pathlib.Path:
        directory: pathlib.Path = self.root / "volumes" / str(volume["name"])
        directory.mkdir(parents=True, exist_ok=True)
        reference = volume.get("configMap") or volume.get("secret")
        if reference is None:
            return directory  # emptyDir and anything else: an empty directory
        is_secret = "secret" in volume
        source = _Source(
            is_secret,
            reference["secretName"] if is_secret else reference["name"],
            reference.get("optional", False),
        )
        try:
            data = await self._source_data(source)
        except ContainerConfigError as missing:
            raise VolumeSetupError(volume["name"], str(missing)) from missing
        items = reference.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            if item["key"] not in data:
                if source.optional:
                    continue
                kind = "secret" if is_secret else "config"
                raise VolumeSetupError(
                    volume["name"],
                    f"{source.kind.lower()} references non-existent {kind} key: {item['key']}",
                )
            target = directory / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
        return directory

    async def _source_data(self, source: _Source) -> dict[str, str]:
        """The decoded data; {} for a missing optional source; else `ContainerConfigError`."""
        path = f"/api/v1/namespaces/{self._namespace}/{source.plural}/{source.name}"
        try:
            found = await self._api.get(path)
        except KubeHttpError as error:
            if error.status != 404:
                raise ContainerConfigError(error.message) from error
            if source.optional:
                return {}
            raise ContainerConfigError(source.not_found()) from error
        return _decoded(found, source.is_secret)

    async def environment(self) -> dict[str, str]:
        """The process environment (`ContainerConfigError` when a source is missing)."""
        env: dict[str, str] = {}
        for env_from in self.container.get("envFrom") or []:
            reference = env_from.get("configMapRef") or env_from.get("secretRef") or {}
            source = _Source(
                "secretRef" in env_from, reference["name"], reference.get("optional", False)
            )
            data = await self._source_data(source)
            env.update({env_from.get("prefix", "") + key: value for key, value in data.items()})
        for variable in self.container.get("env") or []:
            value = await self._env_value(variable)
            if value is not None:
                env[variable["name"]] = self._rewritten(value)
        env["KUBECONFIG"] = str(self.kubeconfig_path)
        env.setdefault("HOME", str(self.root / "home"))
        return env

    async def _env_value(self, variable: KubeObject) -> str | None:
        """The variable's value; None when an optional source or key is missing."""
        value_from: dict[str, Any] = variable.get("valueFrom") or {}
        if "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
            is_secret = "secretKeyRef" in value_from
            reference = value_from["secretKeyRef" if is_secret else "configMapKeyRef"]
            source = _Source(is_secret, reference["name"], reference.get("optional", False))
            data = await self._source_data(source)
            if reference["key"] in data:
                return data[reference["key"]]
            if source.optional:
                return None
            raise ContainerConfigError(source.missing_key(self._namespace, reference["key"]))
        if "fieldRef" in value_from:
            value: Any = self.pod
            for part in value_from["fieldRef"]["fieldPath"].split("."):
                value = value.get(part, "") if isinstance(value, dict) else ""
            return str(value)
        return str(variable.get("value", ""))
