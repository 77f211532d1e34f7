"""Kubeconfig files for the emulator: unrestricted, or acting as a ServiceAccount's token.

One format for every writer (the emulator's fixture kubeconfig, each pod's own), so a
client reads them all the same way. No client certificates, no exec plugins.
"""

from __future__ import annotations

import pathlib

import yaml


def write_kubeconfig(
    path: pathlib.Path, server: str, namespace: str, token: str | None = None
) -> pathlib.Path:
    """A kubeconfig whose current context is `server`, `namespace`, and the bearer `token`."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "emulator", "user": {"token": token} if token else {}}],
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
