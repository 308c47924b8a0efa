"""Celery adapter: the app factory, the tasks and the dispatcher the core publishes through."""
