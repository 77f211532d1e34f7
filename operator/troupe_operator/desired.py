"""Whether an observed object already holds what is wanted, and what to write when it does not.

The API server keeps fields it defaults and writes quantities in canonical
form (``0.5`` comes back as ``500m``, ``1024Mi`` as ``1Gi``), so comparing
what was written with what is read back would see a change on every look
and write forever. Here an object *covers* what is wanted when every wanted
field is there with the same value, extra fields are the server's, and the
quantities of a quota or a limit range compare by amount (and a limit added
to them is drift: the server adds none). It refuses to guess: a value that
does not parse as a quantity compares as text.

Shared by the reconcile cores that write whole child objects (Agents',
Tenants'); it does no I/O.
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Final

Body = dict[str, Any]

QUANTITY_MAPS: Final = frozenset({"hard", "default", "defaultRequest", "max", "min"})
"""Keys whose values are maps of resource quantities (ResourceQuota, LimitRange)."""
_QUANTITY: Final = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<exponent>[eE][+-]?[0-9]+)|(?P<suffix>[KMGTPE]i|[numkMGTPE])?)$"
)
_SUFFIXES: Final = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def quantity(value: Any) -> Decimal | None:
    """The amount a Kubernetes quantity (``2``, ``500m``, ``4Gi``, ``1e3``) stands for."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    found = _QUANTITY.match(str(value))
    if found is None:
        return None
    try:
        number = Decimal(found["number"])
        if found["exponent"]:
            return number * Decimal(10) ** int(found["exponent"][1:])
    except (InvalidOperation, ValueError):
        return None
    return number * _SUFFIXES.get(found["suffix"] or "", Decimal(1))


def _same(observed: Any, wanted: Any, quantities: bool) -> bool:
    if observed == wanted:
        return True
    if not quantities:
        return False
    amount = quantity(wanted)
    return amount is not None and quantity(observed) == amount


def covers(observed: Any, wanted: Any, *, quantities: bool = False) -> bool:
    """Whether ``observed`` holds everything in ``wanted`` (extra fields are the server's,
    but in a map of quantities, which the server never adds to, an extra limit is drift)."""
    if isinstance(wanted, dict):
        if quantities and isinstance(observed, dict) and observed.keys() != wanted.keys():
            return False
        return isinstance(observed, dict) and all(
            covers(observed.get(key), value, quantities=quantities or key in QUANTITY_MAPS)
            for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(wanted)
            and all(covers(o, w) for o, w in zip(observed, wanted, strict=True))
        )
    return _same(observed, wanted, quantities)


def replacement(observed: Body, wanted: Body) -> Body:
    """The observed object with the wanted fields laid over it, keeping its resourceVersion.

    Labels and annotations are merged (other controllers' stay); top-level
    fields are merged one level deep, so what the server filled in stays.
    """
    body = copy.deepcopy(observed)
    body.pop("status", None)
    metadata = body["metadata"]
    for key in ("labels", "annotations"):
        if key in wanted["metadata"]:
            metadata[key] = {**(metadata.get(key) or {}), **wanted["metadata"][key]}
    if "ownerReferences" in wanted["metadata"]:
        metadata["ownerReferences"] = wanted["metadata"]["ownerReferences"]
    for key, value in wanted.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        current = body.get(key)
        body[key] = (
            {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value
        )
    return body


def without(observed: Body, labels: tuple[str, ...], annotations: tuple[str, ...]) -> Body:
    """The observed object without those labels and annotations (its resourceVersion kept)."""
    body = copy.deepcopy(observed)
    body.pop("status", None)
    metadata = body["metadata"]
    for key, names in (("labels", labels), ("annotations", annotations)):
        kept = {k: v for k, v in (metadata.get(key) or {}).items() if k not in names}
        metadata[key] = kept
    return body
