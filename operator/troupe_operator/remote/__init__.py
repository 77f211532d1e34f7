"""The ``troupe`` command's verbs that act on a cluster, in the style of ``argo``.

``submit``, ``list``, ``get``, ``logs``, ``output``, ``wait``, ``retry``, ``stop``,
``suspend`` and ``resume`` (``docs/cli.md``), built on the Python client ``troupe.client``:
parsing (``arguments``), what each verb does (``commands``, ``submit``), what it prints
(``views``) and how it ends (``exit_codes``). ``troupe run`` (``troupe_operator.local``)
runs the same Workflows on this machine instead.
"""
