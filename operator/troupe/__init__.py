"""Troupe's Python client: Workflow runs on a cluster, through the Kubernetes API.

``troupe.client.Troupe`` is the entry point; ``troupe.errors`` holds what it raises. The
``troupe`` command's cluster verbs (submit, list, get, logs, output, wait, retry, stop,
suspend, resume) are built on it. The operator itself lives in ``troupe_operator``.
"""
