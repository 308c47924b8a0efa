"""Unit tests of the workers package (the Celery adapter)."""
