"""Test harness: a Kubernetes API emulator, a local Job runner and an OpenAI-compatible stub."""
