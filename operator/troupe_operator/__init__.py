"""Troupe operator: kopf handlers around a pure reconcile core, the API models, and the `troupe` CLI."""
