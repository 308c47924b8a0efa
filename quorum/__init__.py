"""Quorum's command line and Python client."""
