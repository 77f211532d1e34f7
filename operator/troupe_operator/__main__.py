"""``python -m troupe_operator`` runs the ``troupe`` command."""

from troupe_operator.cli import main

raise SystemExit(main())
