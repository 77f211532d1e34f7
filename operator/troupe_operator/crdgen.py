"""Write the CustomResourceDefinitions as YAML files, from :mod:`troupe_operator.api.crd`.

Run it as ``python -m troupe_operator.crdgen [DIR...]`` (``make crds``). Without a
directory it writes both places the CRDs are installed from: ``crds/`` (``kubectl
apply -f crds/``) and the Helm chart's ``charts/troupe/crds/`` (which ``helm install``
applies before the chart's templates); the files in both are identical, and
``tests/unit/test_crds.py`` fails when either differs from what the models generate.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

import yaml

from troupe_operator.api import GROUP
from troupe_operator.api.crd import KINDS, Kind, crd

DIRECTORIES: Final = (Path("crds"), Path("charts") / "troupe" / "crds")
"""Where the CRDs live, relative to the repository's root."""


def render(kind: Kind) -> str:
    header = "# Generated from troupe_operator.api by `make crds`; do not edit.\n"
    return header + yaml.safe_dump(crd(kind), sort_keys=False, width=100)


def file_name(kind: Kind) -> str:
    return f"{kind.plural}.{GROUP}.yaml"


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = directory / file_name(kind)
        path.write_text(render(kind))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for directory in [Path(arg) for arg in args] or DIRECTORIES:
        for path in write_all(directory):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
