"""Pluggable model providers: the only place a block's prompt meets a model.

Two implementations share one prompt renderer (``prompt``): ``openai`` speaks the
chat-completions protocol over HTTP, and ``local`` answers heuristically with no network so
the embedded default and the demos work on a bare machine. ``base`` holds the request, the
response, the errors and the ``Provider`` protocol; ``factory`` builds the configured one.
Import the leaf module; this file re-exports nothing.
"""
