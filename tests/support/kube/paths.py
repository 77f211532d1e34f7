"""Resource URLs of the Kubernetes API, parsed into their parts.

kmock's parser cannot read `/api/v1/namespaces` or `/api/v1/namespaces/<name>` (it takes the
segment after `namespaces` as a namespace and fails when there is none), so the emulator
routes resource URLs with this parser and leaves everything else (discovery, `/version`,
reactions a test adds) to kmock.
"""

from __future__ import annotations

from dataclasses import dataclass

_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass(frozen=True)
class ApiPath:
    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @classmethod
    def parse(cls, path: str) -> ApiPath | None:
        """The parts of a resource URL, or None for discovery and non-API URLs."""
        segments = [segment for segment in path.split("/") if segment]
        if len(segments) >= 3 and segments[0] == "api":
            group, version, rest = "", segments[1], segments[2:]
        elif len(segments) >= 4 and segments[0] == "apis":
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            return None
        namespace = None
        is_namespace_itself = len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES
        if rest[0] == "namespaces" and len(rest) >= 3 and not is_namespace_itself:
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            return None
        return cls(
            group=group,
            version=version,
            plural=rest[0],
            namespace=namespace,
            name=rest[1] if len(rest) > 1 else None,
            subresource=rest[2] if len(rest) > 2 else None,
        )
