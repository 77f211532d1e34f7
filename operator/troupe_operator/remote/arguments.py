"""The cluster verbs' arguments, added to the ``troupe`` parser beside ``validate`` and ``run``.

Every verb takes kubectl's connection flags (``-n``, ``--kubeconfig``, ``--context``,
``--request-timeout``) after its name, which is also where kubectl passes them to a
plugin. Parsing only: importing this module loads no Kubernetes client.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Final

from troupe.bounds import DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS, MAX_WAIT_SECONDS

PHASES: Final = ("Pending", "Running", "Succeeded", "Failed", "Error")
OUTPUTS: Final = ("name", "json", "yaml")
CLUSTER_VERBS: Final = frozenset(
    {"submit", "list", "get", "logs", "output", "wait", "retry", "stop", "suspend", "resume"}
)


def _seconds(limit: float) -> Callable[[str], float]:
    def seconds(text: str) -> float:
        try:
            value = float(text.removesuffix("s"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
        if not 0 < value <= limit:
            raise argparse.ArgumentTypeError(f"expected more than 0 and at most {limit:g}")
        return value

    return seconds


def _phase(text: str) -> str:
    for phase in PHASES:
        if phase.lower() == text.lower():
            return phase
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(PHASES)}, not {text!r}")


def _connection_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("cluster")
    group.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    group.add_argument("--kubeconfig", metavar="FILE", help="the kubeconfig (default: $KUBECONFIG)")
    group.add_argument("--context", help="the kubeconfig context (default: the current one)")
    group.add_argument(
        "--request-timeout",
        type=_seconds(MAX_TIMEOUT_SECONDS),
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="most time one API call may take (default: %(default)g)",
    )
    return flags


def _output(parser: argparse.ArgumentParser, choices: tuple[str, ...] = OUTPUTS) -> None:
    parser.add_argument("-o", "--output", choices=choices, help="print the object(s) this way")


def add_cluster_verbs(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the cluster verbs to ``troupe``'s subcommands."""
    flags = [_connection_flags()]

    submit = commands.add_parser(
        "submit", parents=flags, help="create the Workflows in a file (or from a template)"
    )
    source = submit.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", metavar="FILE", help="YAML: Workflows and their Agents")
    source.add_argument(
        "--from",
        dest="template",
        metavar="workflowtemplate/NAME",
        help="a Workflow that runs this WorkflowTemplate",
    )
    submit.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        dest="parameters",
        metavar="NAME=VALUE",
        help="set a workflow input (repeatable)",
    )
    submit.add_argument("--name", help="the Workflow's name (one Workflow only)")
    submit.add_argument(
        "--generate-name",
        action="store_true",
        help="let the API server add a unique suffix to each Workflow's name",
    )
    follow = submit.add_mutually_exclusive_group()
    follow.add_argument("--wait", action="store_true", help="wait until the runs finish")
    follow.add_argument("--watch", action="store_true", help="show the run as it goes (one)")
    submit.add_argument(
        "--timeout", type=_seconds(MAX_WAIT_SECONDS), metavar="SECONDS", help="with --wait/--watch"
    )
    _output(submit)

    listing = commands.add_parser("list", parents=flags, help="list Workflows")
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")
    listing.add_argument(
        "--phase",
        type=_phase,
        action="append",
        default=[],
        help="only runs in this phase (repeatable)",
    )
    _output(listing)

    get = commands.add_parser("get", parents=flags, help="show a run: its tasks as a tree")
    get.add_argument("name", metavar="NAME")
    _output(get)

    logs = commands.add_parser("logs", parents=flags, help="print the logs of a run's task pods")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("task", nargs="?", metavar="TASK", help="one task (and its instances)")
    logs.add_argument("-f", "--follow", action="store_true", help="until the run ends")

    output = commands.add_parser("output", parents=flags, help="print a run's output text")
    output.add_argument("name", metavar="NAME")
    output.add_argument("task", nargs="?", metavar="TASK", help="default: the final tasks")
    _output(output, ("json",))

    wait = commands.add_parser("wait", parents=flags, help="wait until runs finish")
    wait.add_argument("names", nargs="+", metavar="NAME")
    wait.add_argument("--timeout", type=_seconds(MAX_WAIT_SECONDS), metavar="SECONDS")

    retry = commands.add_parser("retry", parents=flags, help="run a Failed run's failures again")
    retry.add_argument("name", metavar="NAME")
    stop = commands.add_parser("stop", parents=flags, help="stop a run; it ends Failed (Stopped)")
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--message", default=None, help="why (kept in the run's status)")
    suspend = commands.add_parser("suspend", parents=flags, help="start nothing new in a run")
    suspend.add_argument("name", metavar="NAME")
    resume = commands.add_parser("resume", parents=flags, help="resume a suspended run")
    resume.add_argument("name", metavar="NAME")
