"""Troupe operator: kopf handlers around a pure reconcile core, the API, and the CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("troupe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
