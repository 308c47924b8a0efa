"""Unit tests of engine.graph: one module of tests per module of the package."""
