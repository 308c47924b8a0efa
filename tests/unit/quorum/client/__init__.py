"""Unit tests of the Python client: its transport-neutral core, driven by both clients."""
