"""The Flask adapter: ``api.app.create_app()`` builds the HTTP API around the domain core.

This file re-exports nothing: importing ``api.x`` must not run ``api.app`` (which imports
every route), so that no route importing a sibling can close a cycle through the package.
"""
