"""Is the Agent's model reachable, with its key, under its name? One cheap question to ask.

The elected supervisor pod asks it now and then for the Agent's ``ModelReady``
condition: ``GET <baseURL>/models`` (the OpenAI-compatible listing, which
costs no tokens) with the Agent's key, bounded by ``PROBE_SECONDS``. The
answer becomes a condition status and a reason people can act on:
``ModelReachable``, ``ModelNotFound`` (listed models lack it), ``Unauthorized``
(401/403), ``RateLimited`` (429: reachable, but throttling), ``Unavailable``
(5xx), ``Unreachable`` (connection refused, DNS, timeout), ``ListingUnsupported``
(the endpoint has no listing: Unknown, not False), and ``ScriptedModel`` for
an Agent without an endpoint. It never retries (the next probe is the retry)
and never reports the key or a response body, only the status and the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httpx

from troupe_operator.api import AgentSpec

PROBE_SECONDS: Final = 5.0
MODEL_READY: Final = "ModelReady"


@dataclass(frozen=True)
class ModelCheck:
    status: str
    """``True``, ``False`` or ``Unknown``, as a condition's status."""
    reason: str
    message: str


def probe_model(
    spec: AgentSpec,
    api_key: str | None,
    timeout: float = PROBE_SECONDS,
    http: httpx.Client | None = None,
) -> ModelCheck:
    """What the endpoint says about the Agent's model right now."""
    if spec.model.base_url is None:
        return ModelCheck(
            "True", "ScriptedModel", "no model.baseURL: the offline scripted model answers"
        )
    base = spec.model.base_url.rstrip("/")
    host = urlsplit(base).netloc or base
    name = spec.model.name
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = (http or httpx).get(f"{base}/models", headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        return ModelCheck("False", "Unreachable", f"{host} did not answer within {timeout:g}s")
    except httpx.TransportError as error:
        return ModelCheck("False", "Unreachable", f"cannot reach {host}: {type(error).__name__}")
    code = response.status_code
    if code in (401, 403):
        return ModelCheck("False", "Unauthorized", f"{host} refused the API key (HTTP {code})")
    if code == 429:
        return ModelCheck("True", "RateLimited", f"{host} is reachable but throttling (HTTP 429)")
    if code >= 500:
        return ModelCheck("False", "Unavailable", f"{host} answered HTTP {code}")
    if code in (404, 405) or code >= 400:
        return ModelCheck("Unknown", "ListingUnsupported", f"{host} lists no models (HTTP {code})")
    try:
        listed = {str(model.get("id")) for model in response.json().get("data") or ()}
    except (ValueError, AttributeError):
        return ModelCheck("Unknown", "ListingUnsupported", f"{host} sent an unreadable listing")
    if name not in listed:
        return ModelCheck("False", "ModelNotFound", f"{host} does not list model {name!r}")
    return ModelCheck("True", "ModelReachable", f"{host} serves model {name!r}")
