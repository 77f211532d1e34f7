"""The ``troupe-agent`` command: ``task`` runs one workflow task, ``serve`` runs an agent pod.

Only the chosen mode's modules are imported, and argument errors exit with
``EXIT_PERMANENT`` (a wrong command line cannot be cured by a retry). Either
mode exports OpenTelemetry spans and metrics when ``OTEL_*`` ask for them
(``troupe_agent.otel_setup``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from troupe_agent.invoke_auth import DEFAULT_AUDIENCE
from troupe_agent.logs import configure_logging
from troupe_agent.otel_setup import install as install_telemetry
from troupe_operator.api import EXIT_PERMANENT, INPUT_ENV, SPEC_KEY, SPEC_MOUNT

DEFAULT_SPEC_FILE = Path(SPEC_MOUNT) / SPEC_KEY
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_PERMANENT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="troupe-agent",
        description="Troupe agent runtime: run one workflow task, or serve an agent over HTTP.",
    )
    modes = parser.add_subparsers(dest="mode", required=True)

    task = modes.add_parser(
        "task",
        help="run one workflow task and write its output",
        description=(
            "Run one workflow task: read its TaskInput and the run's spec, read its upstream "
            "outputs, render its prompt, call the model, write its output, and report in the "
            "termination log."
        ),
    )
    source = task.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, metavar="FILE", help="TaskInput JSON file")
    source.add_argument(
        "--input-env",
        default=INPUT_ENV,
        metavar="VAR",
        help="environment variable holding the TaskInput JSON, read when --input is not given "
        "(default: %(default)s)",
    )
    task.add_argument(
        "--spec",
        type=Path,
        default=DEFAULT_SPEC_FILE,
        metavar="FILE",
        help="the run's WorkflowSpec JSON (default: %(default)s)",
    )
    task.add_argument(
        "--outputs-dir",
        type=Path,
        metavar="DIR",
        help="read upstream outputs from DIR/<ConfigMap name>.json (as --output-file writes "
        "them) instead of from the Kubernetes API",
    )
    task.add_argument(
        "--output-file",
        type=Path,
        metavar="FILE",
        help="write the result here as JSON instead of to the output ConfigMap",
    )
    task.add_argument(
        "--termination-log",
        type=Path,
        default=DEFAULT_TERMINATION_LOG,
        metavar="FILE",
        help="where the one-line JSON TaskReport goes (default: %(default)s)",
    )

    serve = modes.add_parser("serve", help="serve the agent over HTTP")
    serve.add_argument(
        "--agent", type=Path, help="AgentSpec JSON file (default: env TROUPE_AGENT_SPEC)"
    )
    serve.add_argument("--name", help="agent name (default: env TROUPE_AGENT_NAME)")
    serve.add_argument(
        "--api-key-env",
        default="TROUPE_API_KEY",
        help="environment variable holding the API key (default: %(default)s)",
    )
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--token-audience",
        default=DEFAULT_AUDIENCE,
        metavar="AUDIENCE",
        help="the audience callers' tokens must be issued for; '' for the API server's "
        "(default: %(default)s)",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="let anyone invoke the agent, without a token (local development only)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    install_telemetry()
    if args.mode == "task":
        from troupe_agent.task import TaskOptions, run_task_mode

        return run_task_mode(
            TaskOptions(
                input_file=args.input,
                input_env=args.input_env,
                spec_file=args.spec,
                outputs_dir=args.outputs_dir,
                output_file=args.output_file,
                termination_log=args.termination_log,
            )
        )
    from troupe_agent.serve import ServeConfigError, ServeOptions, run_serve_mode

    options = ServeOptions(
        args.agent,
        args.name,
        args.api_key_env,
        args.host,
        args.port,
        args.token_audience,
        args.insecure_no_auth,
    )
    try:
        run_serve_mode(options)
    except ServeConfigError as exc:
        logging.getLogger("troupe_agent.serve").error("%s", exc)
        raise SystemExit(EXIT_PERMANENT) from exc
    return 0


if __name__ == "__main__":
    sys.exit(main())
