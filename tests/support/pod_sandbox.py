"""A pod's first container run as a local process: the kubelet's part of the Job runner.

The container image is ignored; its `command` + `args` run on this machine. Paths inside
the container do not exist here, so they are rewritten:

- ConfigMap, Secret and emptyDir volumes are materialised under `<pod dir>/volumes/<volume>`;
  any command/arg/env value or `workingDir` that starts with a volumeMount's `mountPath` is
  rewritten to that local directory (`subPath` honoured);
- a value equal to the container's `terminationMessagePath` (default `/dev/termination-log`)
  is rewritten to `<pod dir>/termination-log`, read back as the termination message (capped
  at 4096 bytes; `FallbackToLogsOnError` uses the log tail when the file is empty);
- env: literal `value`, `valueFrom.secretKeyRef` / `configMapKeyRef` / `fieldRef` (dotted
  path into the Pod), and `envFrom` with `configMapRef` / `secretRef` and `prefix`;
  `$(VAR)` references are not expanded;
- the process also gets `KUBECONFIG` (the emulator's), `HOME` (the pod dir), and the
  harness's own `PATH` / `PYTHONPATH` / `VIRTUAL_ENV` appended, so `python` and the venv's
  console scripts work.

Output (stdout and stderr together) goes to `<pod dir>/log`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pathlib
import signal
from typing import Any

from tests.support.kube_http import KubeHttp, KubeObject

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
_MESSAGE_LIMIT = 4096
_INHERITED = ("PATH", "PYTHONPATH", "VIRTUAL_ENV")


def _decoded(source: KubeObject, is_secret: bool) -> dict[str, str]:
    if is_secret:
        return {
            key: base64.b64decode(value).decode()
            for key, value in (source.get("data") or {}).items()
        }
    return dict(source.get("data") or {})


class PodSandbox:
    def __init__(
        self, root: pathlib.Path, pod: KubeObject, api: KubeHttp, kubeconfig: pathlib.Path
    ) -> None:
        self.root = root
        self.pod = pod
        self.container: KubeObject = pod["spec"]["containers"][0]
        self._api = api
        self._kubeconfig = kubeconfig
        self._namespace: str = pod["metadata"]["namespace"]
        self._rewrites: list[tuple[str, pathlib.Path]] = []
        self.log_path = root / "log"
        self.message_path = root / "termination-log"

    async def run(self) -> int:
        """Prepare the sandbox, run the container command, and return its exit code."""
        argv = [*(self.container.get("command") or []), *(self.container.get("args") or [])]
        if not argv:
            self.message_path.write_text(
                "the image entrypoint cannot run locally: the container has no command"
            )
            return 127
        env = await self._environment()
        working_dir = self._rewritten(self.container.get("workingDir") or str(self.root))
        with self.log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *[self._rewritten(arg) for arg in argv],
                env=env,
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
        message = (
            self.message_path.read_text(errors="replace") if self.message_path.exists() else ""
        )
        fallback = self.container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not message and exit_code != 0 and fallback and self.log_path.exists():
            message = self.log_path.read_text(errors="replace")[-_MESSAGE_LIMIT:]
        return message[:_MESSAGE_LIMIT]

    async def prepare(self) -> None:
        """Materialise the volumes and register the path rewrites."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)
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
        source = volume.get("configMap") or volume.get("secret")
        if source is None:
            return directory  # emptyDir and anything else: an empty directory
        is_secret = "secret" in volume
        name = source["secretName"] if is_secret else source["name"]
        data = await self._source_data(
            "secrets" if is_secret else "configmaps", name, source.get("optional", False)
        )
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            target = directory / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
        return directory

    async def _source_data(self, plural: str, name: str, optional: bool) -> dict[str, str]:
        try:
            source = await self._api.get(f"/api/v1/namespaces/{self._namespace}/{plural}/{name}")
        except Exception:
            if optional:
                return {}
            raise
        return _decoded(source, plural == "secrets")

    async def _environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for env_from in self.container.get("envFrom") or []:
            reference = env_from.get("configMapRef") or env_from.get("secretRef") or {}
            plural = "secrets" if "secretRef" in env_from else "configmaps"
            data = await self._source_data(
                plural, reference["name"], reference.get("optional", False)
            )
            env.update({env_from.get("prefix", "") + key: value for key, value in data.items()})
        for variable in self.container.get("env") or []:
            env[variable["name"]] = self._rewritten(await self._env_value(variable))
        for name in _INHERITED:
            inherited = os.environ.get(name)
            if inherited:
                env[name] = f"{env[name]}{os.pathsep}{inherited}" if env.get(name) else inherited
        env["KUBECONFIG"] = str(self._kubeconfig)
        env.setdefault("HOME", str(self.root / "home"))
        return env

    async def _env_value(self, variable: KubeObject) -> str:
        value_from: dict[str, Any] = variable.get("valueFrom") or {}
        if "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
            is_secret = "secretKeyRef" in value_from
            reference = value_from["secretKeyRef" if is_secret else "configMapKeyRef"]
            optional = reference.get("optional", False)
            data = await self._source_data(
                "secrets" if is_secret else "configmaps", reference["name"], optional
            )
            return data.get(reference["key"], "")
        if "fieldRef" in value_from:
            value: Any = self.pod
            for part in value_from["fieldRef"]["fieldPath"].split("."):
                value = value.get(part, "") if isinstance(value, dict) else ""
            return str(value)
        return str(variable.get("value", ""))
