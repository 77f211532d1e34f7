"""Kubernetes API semantics behind the emulator: store, selectors, patches, CRDs, watches."""
