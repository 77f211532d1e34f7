"""The cluster verbs from parsed arguments to an exit code.

Each verb is a call of ``troupe.client.Troupe`` and a view. Every failure ends here as one
line on stderr, ``<prog>: <what went wrong>``, and the exit code of its kind
(``exit_codes``); no traceback reaches the user. Ctrl-C ends a wait or a followed log
with 130, and a closed pipe (``troupe logs NAME | head``) ends quietly.
"""

from __future__ import annotations

import io
import json
import os
import sys
from argparse import Namespace
from collections.abc import Callable
from typing import Final

from troupe.client import Troupe
from troupe.errors import TroupeError
from troupe.logs import TaskPod
from troupe_operator.api.run_control import DEFAULT_STOP_MESSAGE
from troupe_operator.remote import exit_codes
from troupe_operator.remote.submit import submit, wait_for
from troupe_operator.remote.views import as_data, list_view, run_view

OUTPUT_HEADER: Final = "==> {} <=="
"""Heads each output when several are printed, as ``tail`` heads files."""


def _print(text: str) -> None:
    print(text, flush=True)


def _list(troupe: Troupe, args: Namespace) -> int:
    workflows = troupe.list(args.all_namespaces, args.phase)
    if args.output is not None:
        if workflows or args.output != "name":
            _print(as_data(workflows, args.output, single=False))
    elif workflows:
        _print(list_view(workflows, args.all_namespaces))
    else:
        where = "any namespace" if args.all_namespaces else f"namespace {troupe.namespace!r}"
        print(f"No workflows found in {where}.", file=sys.stderr)
    return exit_codes.OK


def _get(troupe: Troupe, args: Namespace) -> int:
    workflow = troupe.get(args.name)
    _print(as_data([workflow], args.output, single=True) if args.output else run_view(workflow))
    return exit_codes.OK


def _logs(troupe: Troupe, args: Namespace) -> int:
    def emit(pod: TaskPod, line: str) -> None:
        print(f"{pod.label}: {line}", flush=args.follow)

    def note(line: str) -> None:
        print(line, file=sys.stderr)

    troupe.logs(args.name, args.task, emit, note, follow_run=args.follow)
    return exit_codes.OK


def _output(troupe: Troupe, args: Namespace) -> int:
    texts = troupe.outputs(args.name, args.task)
    if args.output == "json":
        _print(json.dumps(texts, indent=2, ensure_ascii=False))
    elif len(texts) == 1:
        sys.stdout.write(_ended(next(iter(texts.values()))))
    else:
        shown = [OUTPUT_HEADER.format(unit) + "\n" + _ended(text) for unit, text in texts.items()]
        sys.stdout.write("\n".join(shown))
    return exit_codes.OK


def _ended(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _wait(troupe: Troupe, args: Namespace) -> int:
    return wait_for(troupe, args.names, args.timeout)


def _retry(troupe: Troupe, args: Namespace) -> int:
    troupe.retry(args.name)
    _print(f"workflow/{args.name} retry requested")
    return exit_codes.OK


def _stop(troupe: Troupe, args: Namespace) -> int:
    troupe.stop(args.name, args.message or DEFAULT_STOP_MESSAGE)
    _print(f"workflow/{args.name} stop requested")
    return exit_codes.OK


def _suspend(troupe: Troupe, args: Namespace) -> int:
    troupe.suspend(args.name)
    _print(f"workflow/{args.name} suspended")
    return exit_codes.OK


def _resume(troupe: Troupe, args: Namespace) -> int:
    troupe.resume(args.name)
    _print(f"workflow/{args.name} resumed")
    return exit_codes.OK


VERBS: Final[dict[str, Callable[[Troupe, Namespace], int]]] = {
    "submit": submit,
    "list": _list,
    "get": _get,
    "logs": _logs,
    "output": _output,
    "wait": _wait,
    "retry": _retry,
    "stop": _stop,
    "suspend": _suspend,
    "resume": _resume,
}


def run_verb(args: Namespace, prog: str) -> int:
    """Run ``args.command`` against the cluster the flags name; the exit code."""
    for stream in (sys.stdout, sys.stderr):  # a console that cannot show a symbol shows "?"
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    try:
        with Troupe.connect(
            args.kubeconfig, args.context, args.namespace, args.request_timeout
        ) as troupe:
            return VERBS[args.command](troupe, args)
    except TroupeError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return exit_codes.exit_code(error)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except BrokenPipeError:  # the reader went away (| head): nothing left to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exit_codes.OK
