"""Unit tests of engine.providers: one module of tests per module of the package."""
