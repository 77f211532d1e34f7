"""Built images run as local processes with Debian's ``buildah`` (chroot isolation, as root).

No container engine runs here (``podman run`` does not work on these machines), but
``buildah run --isolation chroot`` runs a command inside a working container of an image:
its root filesystem, its environment and user, the host's network (``--network host``,
so loopback servers of the test are reachable). What it does not give: a PID or network
namespace of its own, cgroups, capabilities dropped, a read-only root. The smoke tests in
``tests/images`` use it to run the operator's entry point and task pods in the images
``images/build.sh`` built.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

from tests.support.pod_sandbox import Launcher


def buildah(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr}"
    return done.stdout


def image_config(image: str) -> dict[str, Any]:
    """The image's OCI config: ``User``, ``Entrypoint``, ``Env``, ``WorkingDir``..."""
    inspected: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image))
    return dict(inspected["OCIv1"]["config"])


@contextlib.contextmanager
def working_container(image: str) -> Iterator[str]:
    """A working container of ``image`` (nothing runs in it until ``run_in`` starts something)."""
    name = buildah("from", "--pull-never", image).strip()
    try:
        yield name
    finally:
        buildah("rm", name)


def run_in(
    container: str,
    argv: list[str],
    env: Mapping[str, str] = {},
    mounts: Mapping[pathlib.Path, str] = {},
) -> list[str]:
    """The command line that runs ``argv`` in ``container``, as the image's user."""
    line = ["buildah", "run", "--isolation", "chroot", "--network", "host"]
    for key, value in env.items():
        line += ["--env", f"{key}={value}"]
    for source, target in mounts.items():
        line += ["--volume", f"{source}:{target}"]
    return [*line, container, "--", *argv]


def output_of(image: str, *argv: str) -> str:
    """What ``argv`` prints, run in a fresh working container of ``image``."""
    with working_container(image) as container:
        done = subprocess.run(
            run_in(container, list(argv)), capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    return done.stdout


def pods_in(container: str, uid: int) -> Launcher:
    """A ``pod_sandbox.Launcher``: each Pod's command in ``container``, as the image's user.

    The pod directory is mounted at its own path, so the paths the sandbox rewrote (volumes,
    termination log, kubeconfig) are the same inside, and owned by ``uid``, as a kubelet
    hands a pod's volumes to its ``fsGroup``. Only the Pod's own environment goes in: the
    image's ``PATH`` stays.
    """

    def launch(
        argv: list[str], env: dict[str, str], root: pathlib.Path
    ) -> tuple[list[str], dict[str, str]]:
        for path in [root, *root.rglob("*")]:
            os.chown(path, uid, uid)
        return run_in(container, argv, env, {root: str(root)}), dict(os.environ)

    return launch
