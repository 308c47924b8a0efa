"""Unit tests of engine.expressions: one module of tests per module of the package."""
