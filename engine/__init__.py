"""Quorum's domain core.

Nothing in this package imports a web framework, a task queue or a broker client:
those live in :mod:`api` and :mod:`workers`, which adapt this core to HTTP and Celery.
"""
