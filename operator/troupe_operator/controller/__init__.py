"""The kopf shell around the reconcile core: observe the cluster, execute decisions.

Nothing here decides anything about a Workflow; ``troupe_operator.workflow``
does. This package turns cluster objects into observations and the core's
actions into API calls.
"""
