"""The ``troupe`` command: check manifests, run them here, or drive runs on a cluster.

``validate``: every problem is one line, ``FILE: Kind/name: message``; exit
codes are 0 (all valid), 1 (something invalid) and 2 (a file unreadable or
not YAML), so the command slots into CI and pre-commit hooks.
``run``: see :mod:`troupe_operator.local.command`.
``submit``, ``list``, ``get``, ``logs``, ``output``, ``wait``, ``retry``, ``stop``,
``suspend``, ``resume``: see :mod:`troupe_operator.remote` and ``docs/cli.md``.

Installed twice: as ``troupe`` and as ``kubectl-troupe``, which kubectl's
plugin mechanism runs as ``kubectl troupe`` (its usage lines say so).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from troupe_operator.manifests import ManifestError, load, warning_lines
from troupe_operator.remote.arguments import CLUSTER_VERBS, add_cluster_verbs
from troupe_operator.validation import check_manifests

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def validate(paths: Sequence[str]) -> int:
    try:
        manifests = load(paths)
    except ManifestError as error:
        print(error, file=sys.stderr)
        return EXIT_UNREADABLE
    for line in warning_lines(manifests):
        print(line, file=sys.stderr)
    problems = check_manifests(manifests)
    for manifest, message in problems:
        print(f"{manifest.source}: {manifest.label}: {message}")
    checked = sum(1 for manifest in manifests if manifest.is_troupe)
    if problems:
        invalid = len({id(manifest) for manifest, _ in problems})
        print(f"{invalid} of {len(manifests)} objects invalid", file=sys.stderr)
        return EXIT_INVALID
    print(f"{checked} Troupe objects valid ({len(manifests) - checked} other objects not checked)")
    return EXIT_OK


PROGRAM = "troupe"
PLUGIN_PROGRAM = "kubectl troupe"


class _Parser(argparse.ArgumentParser):
    """argparse, saying a usage error in one line (the usage itself is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_UNREADABLE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str = PROGRAM) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog, description="Multi-agent LLM workflows as Kubernetes custom resources."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "validate", help="check Agents, Workflows and Tenants in YAML files"
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="YAML files, many documents each")
    run = commands.add_parser(
        "run", help="run the Workflows in YAML files on this machine, with their Agents"
    )
    run.add_argument("files", nargs="+", metavar="FILE", help="YAML files, many documents each")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        dest="overrides",
        help="override a workflow input (repeatable)",
    )
    run.add_argument(
        "--output-dir",
        default="troupe-output",
        metavar="DIR",
        help="where DIR/<workflow>/<task>.md and status.json go (default: %(default)s)",
    )
    run.add_argument("--workflow", metavar="NAME", help="run only this Workflow")
    run.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where memoized tasks' outputs are kept between runs "
        "(default: $XDG_CACHE_HOME/troupe, else ~/.cache/troupe)",
    )
    run.add_argument(
        "--parallelism",
        type=_positive,
        metavar="N",
        help="most task processes at once, across all Workflows "
        "(default: min(CPUs, available memory / 128 MiB))",
    )
    add_cluster_verbs(commands)
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def plugin_main() -> int:
    """``kubectl troupe ...``: kubectl found ``kubectl-troupe`` on PATH and ran it."""
    return main(prog=PLUGIN_PROGRAM)


def main(argv: Sequence[str] | None = None, prog: str = PROGRAM) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.command == "validate":
        return validate(args.files)
    if args.command == "run":
        from troupe_operator.local.command import run_command

        try:
            return run_command(
                args.files,
                args.overrides,
                args.output_dir,
                args.workflow,
                args.parallelism,
                cache_dir=args.cache_dir,
            )
        except KeyboardInterrupt:  # before the run's own signal handling is in place
            print("interrupted before any task started", file=sys.stderr)
            return 130
    if args.command in CLUSTER_VERBS:
        from troupe_operator.remote.commands import run_verb

        return run_verb(args, prog)
    raise AssertionError(f"unhandled command {args.command}")
