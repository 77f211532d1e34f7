"""Keep API keys out of everything the agent prints, logs, returns or exports.

Providers sometimes echo the key (or part of it) back in an error body, and
libraries put it in headers they may log. Every message that leaves the
process passes through :func:`scrub`, which removes the keys this process was
given and anything shaped like a bearer token, an OpenAI-style key or a JWT
(a ServiceAccount token a caller of serve mode sent, should an error echo it).
"""

from __future__ import annotations

import re
from typing import Final

REDACTED: Final = "[REDACTED]"

_MIN_SECRET_LENGTH: Final = 4
_KEY_SHAPES: Final = re.compile(
    r"(?i)(?:bearer\s+[A-Za-z0-9._~+/=-]{8,})|(?:\bsk-[A-Za-z0-9_*.-]{6,})"
    r"|(?:\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"
)
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`scrub` removes it from every later message."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        _known_secrets.add(value)


def scrub(text: str) -> str:
    """The text without any registered secret or key-shaped token."""
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


def one_line(text: str, limit: int = 300) -> str:
    """The scrubbed text on one line, cut to ``limit`` characters."""
    flat = " ".join(scrub(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
