"""Troupe operator: kopf handlers around a pure reconcile core, the API, and the CLI."""
