"""Plain one-line logs on stderr, scrubbed of keys, with chatty libraries kept quiet.

Kubernetes collects stderr; one line per event with no multi-line tracebacks
keeps ``kubectl logs`` readable, and every line passes through the scrubber.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

from troupe_agent.scrub import one_line

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_QUIET_LOGGERS: Final = ("httpx", "httpcore", "httpx2", "openai", "langsmith", "urllib3")


class OneLineScrubbingFormatter(logging.Formatter):
    """Formats a record (exception included) as one scrubbed line."""

    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record), limit=2000)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the process's logs to stderr as scrubbed single lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineScrubbingFormatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
