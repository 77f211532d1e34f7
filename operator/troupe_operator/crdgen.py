"""Write the CustomResourceDefinitions as YAML files, from :mod:`troupe_operator.api.crd`.

Run it as ``python -m troupe_operator.crdgen [DIR]`` (``make crds``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from troupe_operator.api import GROUP
from troupe_operator.api.crd import KINDS, Kind, crd


def render(kind: Kind) -> str:
    header = "# Generated from troupe_operator.api by `make crds`; do not edit.\n"
    return header + yaml.safe_dump(crd(kind), sort_keys=False, width=100)


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = directory / f"{kind.plural}.{GROUP}.yaml"
        path.write_text(render(kind))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for path in write_all(Path(args[0] if args else "crds")):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
